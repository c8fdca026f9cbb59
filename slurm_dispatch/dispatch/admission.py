"""Which Queued containers the dispatcher locks this tick, and why it holds the others back.

Arvados's Go crunch-dispatch-slurm locks every Queued container it sees. An admin sharing Slurm and the API
with everyone needs levers (the cloud dispatcher has some: lib/dispatchcloud/scheduler/run_queue.go):

* **drain**: lock nothing new (everything already locked or running is followed to the end);
* **a cap** on containers in Slurm at once (``Limits.MaxContainersInSlurm``);
* **a supervisor cap** (``Limits.MaxSupervisors``, or ``SupervisorFraction`` of the cap): workflow runners wait
  for their children; if they fill the cluster no child can start, and every workflow stalls;
* **a lock rate limit** (``Limits.MaxSubmitsPerMinute``; each lock leads to one sbatch);
* **API overload backoff**: after the API answers 503 (or 429, or its proxy 502 or 504), lock at most half as many as the last tick
  did, and grow again by a tenth per tick after a quiet minute, as the cloud dispatcher does with its
  container limit;
* **busy**: a container whose previous job is still in squeue (being scancelled) is not locked again yet.

``admit`` is the pure decision; ``Admission`` keeps what must be remembered between ticks (the rate limiter's
tokens, the backoff) on an injected clock. Containers held back stay Queued; the reason is their scheduling
status (for the management API, ``status`` and metrics), in the cloud dispatcher's words where it has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from slurm_dispatch.model import Container

WORKFLOW_QUEUE = ("Waiting in workflow queue at position {n}.  Cluster is at capacity and cannot start any new "
                  "workflows right now.")
"""The cloud dispatcher's words for a supervisor over its cap (run_queue.go: schedStatusSupervisorLimitReached)."""

PREVIOUS_ATTEMPT = "Waiting for previous container attempt to exit."
"""The cloud dispatcher's words for a container whose previous attempt is still alive."""

_Raw = TypeVar("_Raw")

QUIET_AFTER_OVERLOAD_S = 60.0
"""After an API overload (503/429), the lock budget grows again only after this long without another one."""


@dataclass(frozen=True)
class Drain:
    """The dispatcher is drained: it locks no new container."""

    reason: str
    since: str
    """When it was drained (an Arvados timestamp), for the status line."""


MAX_DRAIN_REASON_CHARS = 500


def drain_reason_problem(reason: str) -> str | None:
    """Return why ``reason`` cannot be a drain reason (it goes into the state file, logs and status lines), or None.
    Pure. One line of at most ``MAX_DRAIN_REASON_CHARS`` characters without control characters."""
    if len(reason) > MAX_DRAIN_REASON_CHARS:
        return f"the drain reason is {len(reason)} characters long; at most {MAX_DRAIN_REASON_CHARS}"
    if not reason.isprintable():  # control characters, and the line and paragraph separators of Unicode too
        return "the drain reason holds a control character (a newline, a tab...); write it on one line"
    return None


@dataclass(frozen=True)
class Waiting:
    """A Queued container the dispatcher holds back, why, and since when (for the management API)."""

    container: Container
    reason: str
    first_seen: float
    """Wall-clock seconds when it was first held back."""


@dataclass(frozen=True)
class Limits:
    """The caps that apply to locking (0: none)."""

    max_in_slurm: int = 0
    max_supervisors: int = 0
    locks_per_minute: float = 0.0

    @classmethod
    def from_settings(cls, *, max_in_slurm: int, max_supervisors: int, supervisor_fraction: float,
                      locks_per_minute: float) -> Limits:
        """Return the limits; the supervisor cap comes from the fraction of the cap when not given outright.

        As the cloud dispatcher: floor(cap × fraction), at least 1; with no cap (unlimited) no supervisor limit.
        """
        supervisors = max_supervisors
        if supervisors <= 0 and max_in_slurm > 0 and supervisor_fraction > 0:
            supervisors = max(1, math.floor(max_in_slurm * supervisor_fraction))
        return cls(max_in_slurm=max_in_slurm, max_supervisors=max(0, supervisors), locks_per_minute=locks_per_minute)


@dataclass(frozen=True)
class Verdict:
    """This tick's decision: the containers to lock, and a reason for each one held back."""

    lock: list[Container]
    waiting: dict[str, str] = field(default_factory=dict)
    """Scheduling status by uuid, for the Queued containers not locked."""
    capped: frozenset[str] = frozenset()
    """Which limits held containers back this tick: drain, cap, supervisors, rate, overload, busy."""


def admit(
    candidates: Sequence[Container],
    *,
    in_slurm: int,
    supervisors_in_slurm: int,
    limits: Limits,
    drain: Drain | None,
    budget: int | None,
    busy: Callable[[Container], str | None],
    overloaded: bool = False,
) -> Verdict:
    """Return which of ``candidates`` (Queued, highest priority first) to lock now, and why not the others. Pure.

    Args:
        candidates: the Queued containers the throttle allows this tick, in priority order.
        in_slurm: containers this dispatcher holds locked or running now.
        supervisors_in_slurm: of those, the supervisors (``scheduling_parameters.supervisor``).
        limits: the caps.
        drain: set when the dispatcher is drained.
        budget: at most this many locks this tick (rate limit and overload backoff together); None: no limit.
        busy: why a container cannot be locked yet (its previous job is still in squeue), or None.
        overloaded: the budget comes from an API overload (for the words).
    """
    lock: list[Container] = []
    waiting: dict[str, str] = {}
    capped: set[str] = set()
    queue_position = 0
    workflow_position = 0
    supervisors = supervisors_in_slurm
    for container in candidates:
        busy_reason = busy(container)
        if busy_reason is not None:
            waiting[container.uuid] = busy_reason
            capped.add("busy")
            continue
        if drain is not None:
            waiting[container.uuid] = (f"Waiting: the dispatcher is drained since {drain.since} ({drain.reason}); "
                                       "it locks no new container until it is resumed.")
            capped.add("drain")
            continue
        supervisor = container.scheduling_parameters.supervisor
        if supervisor and limits.max_supervisors and supervisors >= limits.max_supervisors:
            workflow_position += 1
            waiting[container.uuid] = WORKFLOW_QUEUE.format(n=workflow_position)
            capped.add("supervisors")
            continue
        if limits.max_in_slurm and in_slurm + len(lock) >= limits.max_in_slurm:
            queue_position += 1
            waiting[container.uuid] = (f"Waiting in queue at position {queue_position}.  This dispatcher is at its "
                                       f"limit of {limits.max_in_slurm} containers in Slurm.")
            capped.add("cap")
            continue
        if budget is not None and len(lock) >= budget:
            queue_position += 1
            if overloaded:
                waiting[container.uuid] = (f"Waiting in queue at position {queue_position}.  The Arvados API is "
                                           "overloaded: this dispatcher locks fewer containers until it recovers.")
                capped.add("overload")
            else:
                waiting[container.uuid] = (f"Waiting in queue at position {queue_position}.  Submissions are "
                                           f"limited to {limits.locks_per_minute:g} a minute.")
                capped.add("rate")
            continue
        lock.append(container)
        if supervisor:
            supervisors += 1
    return Verdict(lock=lock, waiting=waiting, capped=frozenset(capped))


def in_priority_order(candidates: Sequence[tuple[_Raw, Container]]) -> list[tuple[_Raw, Container]]:
    """Return the Queued candidates of one query once each, highest priority first (the API's order among equal
    ones). Pure.

    Offset paging is not a snapshot: a priority that changes between two pages can show a container on both, or
    leave the pages out of order, while admission counts places in this order (``admission.admit``). A container
    seen twice keeps its later record.
    """
    last = {container.uuid: (raw, container) for raw, container in candidates}
    return sorted(last.values(), key=lambda pair: -pair[1].priority)


class Admission:
    """The stateful half: the lock rate limiter and the overload backoff, on an injected clock. Not thread-safe."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float],
                 quiet_s: float = QUIET_AFTER_OVERLOAD_S) -> None:
        self.limits = limits
        self._clock = clock
        self._quiet_s = quiet_s
        burst = max(1.0, limits.locks_per_minute / 6)  # ten seconds' worth at most
        self._burst = burst
        self._tokens = burst
        self._refilled = clock()
        self._overload_budget: int | None = None
        self._last_overload: float | None = None

    @property
    def overloaded(self) -> bool:
        """True while the overload backoff limits locking."""
        return self._overload_budget is not None

    def budget(self) -> int | None:
        """Return how many containers may be locked this tick (None: any number). Does not block."""
        now = self._clock()
        budgets = []
        if self.limits.locks_per_minute > 0:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self.limits.locks_per_minute / 60)
            self._refilled = now
            budgets.append(int(self._tokens))
        if self._overload_budget is not None:
            budgets.append(self._overload_budget)
        return min(budgets) if budgets else None

    def locked(self, count: int) -> None:
        """Record that ``count`` containers were locked (they used the rate limiter's tokens)."""
        if self.limits.locks_per_minute > 0:
            self._tokens = max(0.0, self._tokens - count)

    def tick_ended(self, *, overloaded: bool, locks_tried: int) -> None:
        """Update the backoff after a tick: an overload halves the budget; a quiet minute grows it by a tenth.

        Port of lib/dispatchcloud/scheduler/run_queue.go (maxConcurrency after a 503, +10% after quietAfter503).
        """
        now = self._clock()
        if overloaded:
            self._last_overload = now
            if locks_tried == 0:
                # Only queries met it (a tick whose first query failed locks nothing): no measure of how many locks
                # the API takes, so the budget stays as it was rather than being halved from nothing to 1.
                return
            current = self._overload_budget if self._overload_budget is not None else max(1, locks_tried)
            self._overload_budget = max(1, min(current, max(1, locks_tried)) // 2)
            return
        if self._overload_budget is None or self._last_overload is None:
            return
        if now - self._last_overload >= self._quiet_s:
            self._overload_budget += max(1, self._overload_budget // 10)
            if locks_tried < self._overload_budget // 2:  # the budget no longer binds: back to no limit
                self._overload_budget = None


__all__ = [
    "MAX_DRAIN_REASON_CHARS",
    "PREVIOUS_ATTEMPT",
    "QUIET_AFTER_OVERLOAD_S",
    "WORKFLOW_QUEUE",
    "Admission",
    "Drain",
    "Limits",
    "Verdict",
    "admit",
    "drain_reason_problem",
    "in_priority_order",
]
