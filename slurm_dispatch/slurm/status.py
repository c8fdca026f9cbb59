"""The admin view of Arvados and Slurm side by side: parsing and comparison. Pure.

Used by the ``status`` and ``adopt`` admin commands (``slurm_dispatch.cli``), which fetch the two snapshots
(containers from the API, jobs from squeue) and hand them here; nothing in this module does I/O.

* the jobs come from ``parse_squeue_all`` (the dispatcher's own squeue), which, unlike ``parse_squeue``, keeps
  every job, so two jobs sharing one container's name both show up (the dispatcher would scancel both, and an
  operator should know).
* ``status_rows``: one row per (container, job) with the mismatches an operator should look at.

Which jobs are ours, and what the service does with them, is decided in ``slurm_dispatch.slurm.decide``; this
module only lays the two views side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from slurm_dispatch.model import Container, ContainerState, SlurmJob
from slurm_dispatch.slurm.decide import is_our_job_name
from slurm_dispatch.slurm.reasons import LEFTOVER, scheduling_status


@dataclass(frozen=True)
class StatusRow:
    """One line of ``status``: a container (if Arvados knows it) and one of its jobs (if any)."""

    uuid: str
    state: str | None
    """Arvados state; None when the API does not know this uuid."""
    priority: int | None
    locked_by_uuid: str
    job_id: int | None
    """None when no job is named after the container (or squeue printed no number)."""
    slurm_state: str | None
    nice: int | None
    slurm_priority: int | None
    reason: str | None
    problems: list[str] = field(default_factory=list)
    """Mismatches between the two views, one sentence each; empty when all is well."""
    scheduling_status: str = ""
    """Where the container stands in Slurm, in words (``reasons.scheduling_status``); "" when Arvados does not
    know it."""


def _job_number(job: SlurmJob) -> int | None:
    return int(job.job_id) if job.job_id.isascii() and job.job_id.isdigit() else None


def _job_id_order(job: SlurmJob) -> tuple[int, str]:
    """Job ids in numeric order ("9" before "10"), whatever squeue printed."""
    return (int(job.job_id), "") if job.job_id.isascii() and job.job_id.isdigit() else (1 << 62, job.job_id)


_FINISHED_OR_QUEUED = (ContainerState.QUEUED, ContainerState.COMPLETE, ContainerState.CANCELLED)


def _problems(
    container: Container | None, jobs: Sequence[SlurmJob], *, my_token_uuid: str
) -> list[str]:
    """Return the mismatches for one container uuid and the jobs named after it. Pure."""
    problems: list[str] = []
    if container is None:
        return ["a Slurm job is named after this container, but the API does not know it"]
    state = container.state
    mine = container.locked_by_uuid == my_token_uuid
    other = container.locked_by_uuid not in ("", my_token_uuid)
    if not jobs:
        if mine and state.is_locked:
            held = ("; while its partition is inactive or draining, until it is up, as the service log says"
                    if state is ContainerState.LOCKED else "")
            problems.append(f"{state.value} by this dispatcher with no Slurm job (after a submission this "
                            f"lasts at most one poll{held}; otherwise the dispatcher unlocks or cancels it)")
        return problems
    if len(jobs) > 1:
        problems.append(f"{len(jobs)} Slurm jobs share this container's name")
    if other:
        problems.append(f"Slurm job of ours for a container locked by another token ({container.locked_by_uuid})")
    elif state is ContainerState.QUEUED:
        problems.append("Slurm job for a Queued container (an earlier attempt's: the container is not dispatched "
                        "again until it has gone)")
    elif state in _FINISHED_OR_QUEUED:
        problems.append(f"Slurm job for a {state.value} container ({LEFTOVER})")
    return problems


def status_rows(
    containers: Iterable[Container],
    jobs: Iterable[SlurmJob],
    my_token_uuid: str,
    cluster_id: str,
) -> list[StatusRow]:
    """Return the status table: every container given and every job of ours, matched by uuid, with problems.

    Pure. ``containers`` are the ones the caller fetched (those locked by our token, plus those named by
    our jobs); ``jobs`` may be the whole squeue (other users' and other clusters' jobs are skipped). Each
    uuid gets one row per job named after it, or one row without a job. Problems flagged:

    * Locked or Running by our token with no job;
    * a job named after a container that is Queued, Complete or Cancelled (a leftover);
    * a job of ours for a container locked by another token;
    * several jobs sharing one name, and a job named after a uuid the API does not know.

    Rows are sorted by uuid, then job id.
    """
    by_uuid = {c.uuid: c for c in containers}
    jobs_by_uuid: dict[str, list[SlurmJob]] = {}
    for job in jobs:
        if is_our_job_name(job.name, cluster_id):
            jobs_by_uuid.setdefault(job.name, []).append(job)
    rows: list[StatusRow] = []
    for uuid in sorted(set(by_uuid) | set(jobs_by_uuid)):
        container = by_uuid.get(uuid)
        mine = sorted(jobs_by_uuid.get(uuid, []), key=_job_id_order)
        problems = _problems(container, mine, my_token_uuid=my_token_uuid)
        state = container.state.value if container else None
        priority = container.priority if container else None
        locked_by = container.locked_by_uuid if container else ""
        if not mine:
            rows.append(StatusRow(uuid=uuid, state=state, priority=priority, locked_by_uuid=locked_by,
                                  job_id=None, slurm_state=None, nice=None, slurm_priority=None,
                                  reason=None, problems=problems,
                                  scheduling_status=scheduling_status(state, None, submitted=None) if state
                                  else ""))
        for job in mine:
            rows.append(StatusRow(uuid=uuid, state=state, priority=priority, locked_by_uuid=locked_by,
                                  job_id=_job_number(job), slurm_state=job.state, nice=job.nice,
                                  slurm_priority=job.slurm_priority, reason=job.reason,
                                  problems=list(problems),
                                  scheduling_status=scheduling_status(state, job) if state else ""))
    return rows


__all__ = [
    "StatusRow",
    "status_rows",
]
