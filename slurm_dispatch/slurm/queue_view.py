"""The dispatcher's queue as users and admins see it: one entry per container, with its scheduling status. Pure.

The management API (``slurm_dispatch.service.management``) serves these entries in the shape of Arvados's cloud
dispatcher (lib/dispatchcloud/scheduler/run_queue.go: QueueEnt); ``slurm-dispatch status`` shows the same words.
An entry is built from what the runner knows of a container it runs (``decide.RunnerView``), or from a Queued
container the dispatcher holds back and why (``dispatch.admission``).
"""

from __future__ import annotations

from dataclasses import dataclass

from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import Container
from slurm_dispatch.settings import InstanceType, Settings
from slurm_dispatch.slurm.decide import RunnerView
from slurm_dispatch.slurm.instance_types import eligible_instance_types
from slurm_dispatch.slurm.reasons import scheduling_status


@dataclass(frozen=True)
class QueueEntry:
    """One container as the management API shows it."""

    container: Container
    scheduling_status: str
    instance_types: tuple[InstanceType, ...] = ()
    first_seen_at: float | None = None
    """Wall-clock seconds when this dispatcher first saw the container (None: unknown)."""
    running: bool = False
    """Its job runs (such entries are listed first)."""


def _types(container: Container, settings: Settings) -> tuple[InstanceType, ...]:
    try:
        return tuple(eligible_instance_types(container, settings))
    except UnsatisfiableContainer:
        return ()


def view_status(view: RunnerView) -> str:
    """Return the scheduling status of a container the runner runs. Pure."""
    if view.give_up is not None:
        return f"Cancelling: {view.give_up.error}."
    if view.stop_sent:
        return "Stopping at its time limit: crunch-run was asked to stop the container and save its logs."
    if view.partition_refused and view.job is None and not view.submitted:
        return (f"Locked; its partition is inactive or draining, and sbatch refused the job ({view.partition_refused})"
                ": it is submitted again once the partition is up.")
    return scheduling_status(view.latest.state.value, view.job, submitted=view.submitted)


def tracked_entry(view: RunnerView, *, settings: Settings, first_seen: float | None) -> QueueEntry:
    """Return the entry of a container the runner runs. Pure."""
    return QueueEntry(
        container=view.latest,
        scheduling_status=view_status(view),
        instance_types=_types(view.latest, settings),
        first_seen_at=first_seen,
        running=view.job is not None and view.job.state == "RUNNING",
    )


def waiting_entry(container: Container, reason: str, *, settings: Settings, first_seen: float) -> QueueEntry:
    """Return the entry of a Queued container the dispatcher holds back. Pure."""
    return QueueEntry(container=container, scheduling_status=reason, instance_types=_types(container, settings),
                      first_seen_at=first_seen)


__all__ = ["QueueEntry", "tracked_entry", "view_status", "waiting_entry"]
