"""The dispatch core's decisions about one container record, as pure functions.

Port of the per-record ``switch`` of sdk/go/dispatch/dispatch.go (``checkListForUpdates`` and
``TrackContainer``). The ``Dispatcher`` fetches the records and carries the actions out (locking, starting
and closing trackers); what to do with each record is decided here, from the record's state and lock holder
and from what the dispatcher already tracks, so that the rule can be read, and tested, as one table.

Nothing here knows Slurm; the Slurm dispatcher's own decisions are in ``slurm_dispatch.slurm.decide``, which
builds its startup-adoption rule on ``track_decision``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from slurm_dispatch.model import Container, ContainerState

STATES_LEFT = frozenset({ContainerState.QUEUED.value, ContainerState.CANCELLED.value, ContainerState.COMPLETE.value})
"""States in which a container is no longer run by any dispatcher (as the raw strings of a record)."""

STATES_OURS = frozenset({ContainerState.LOCKED.value, ContainerState.RUNNING.value})
"""States in which a dispatcher holds the lock."""


class RecordAction(enum.Enum):
    """What the dispatcher does with one listed record."""

    IGNORE = "ignore"
    """Nothing: another dispatcher's container, or one that is finished and not ours."""
    CLOSE = "close"
    """Close the container's tracker: it left this dispatcher (finished, re-queued, or locked by another)."""
    OFFER = "offer"
    """Offer the record to the container's tracker (it wakes only if the record changed)."""
    LOCK = "lock"
    """Lock the Queued container (throttle permitting) and start a tracker."""
    ADOPT = "adopt"
    """Start a tracker for a container we already hold the lock on (after a restart; throttle permitting)."""


@dataclass(frozen=True)
class RecordDecision:
    """The action for one record, with the reason in a few words (for logs and tests)."""

    action: RecordAction
    reason: str


def record_action(*, state: object, locked_by: str, me: str, tracked: bool) -> RecordDecision:
    """Return what to do with a listed container record. Pure.

    Args:
        state: the record's ``state`` as received (a string, or anything a broken server sends).
        locked_by: the record's ``locked_by_uuid`` ("" when blank).
        me: our token's uuid.
        tracked: whether the dispatcher has a tracker for this uuid, open or still finishing. A finishing
            tracker (closed, its RunContainer still cleaning up) makes a Queued container wait: it is locked
            again only once the old RunContainer has returned, so two never run for one container.

    Port of sdk/go/dispatch/dispatch.go: checkListForUpdates. Two differences, each for a promise Go does not
    keep: a tracked container now locked by another token is closed (Go leaves its tracker open for ever), and
    a Queued container whose old tracker is still finishing is not locked.
    """
    if not isinstance(state, str):
        return RecordDecision(RecordAction.IGNORE, f"malformed state {state!r}")
    if locked_by and locked_by != me:
        if tracked:
            return RecordDecision(RecordAction.CLOSE, f"now locked by {locked_by} (another dispatcher)")
        return RecordDecision(RecordAction.IGNORE, f"locked by {locked_by}")
    if tracked:
        if state in STATES_OURS:
            return RecordDecision(RecordAction.OFFER, f"{state} by us")
        if state in STATES_LEFT:
            return RecordDecision(RecordAction.CLOSE, f"container is {state}")
        return RecordDecision(RecordAction.IGNORE, f"unknown state {state!r}")
    if state == ContainerState.QUEUED.value:
        return RecordDecision(RecordAction.LOCK, "Queued")
    if state in STATES_OURS:
        if locked_by != me:  # an inconsistent record: never run a container whose lock we do not hold
            return RecordDecision(RecordAction.IGNORE, f"{state} with no lock holder")
        return RecordDecision(RecordAction.ADOPT, f"{state} by us, not tracked")
    return RecordDecision(RecordAction.IGNORE, f"container is {state}")


class TrackDecision(enum.Enum):
    """What ``track_container`` does with a container it was asked to track (a job found at startup)."""

    IGNORE = "ignore"
    """Another token holds the lock: not ours to touch."""
    TRACK = "track"
    """Locked or Running by us: track it, so its RunContainer follows its job (adoption)."""
    TRACK_CLOSED = "track closed"
    """Queued, Cancelled or Complete: track it with its channel closed at once, so its RunContainer
    stops whatever work is left (for Slurm: scancels a leftover job)."""


def track_decision(container: Container, me: str) -> TrackDecision:
    """Return what ``track_container`` does with ``container``. Pure.

    Port of sdk/go/dispatch/dispatch.go: TrackContainer (with checkSqueueForOrphans of
    services/crunch-dispatch-slurm/crunch-dispatch-slurm.go, the caller that gives it its purpose:
    cleaning up jobs a previous process left, Arvados issue 10979).
    """
    if container.locked_by_uuid and container.locked_by_uuid != me:
        return TrackDecision.IGNORE
    if container.state.value in STATES_LEFT:
        return TrackDecision.TRACK_CLOSED
    return TrackDecision.TRACK


__all__ = [
    "STATES_LEFT",
    "STATES_OURS",
    "RecordAction",
    "RecordDecision",
    "TrackDecision",
    "record_action",
    "track_decision",
]
