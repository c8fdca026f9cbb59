"""The admin view of Arvados and Slurm side by side: parsing and comparison. Pure.

Used by the ``status`` and ``adopt`` admin commands (``slurm_dispatch.cli``), which fetch the two snapshots
(containers from the API, jobs from squeue) and hand them here; nothing in this module does I/O.

* ``parse_queue_detail``: ``SQUEUE_DETAIL_ARGV``'s output (``SlurmCLI.queue_detail``), which is the
  dispatcher's format with the job id in front. Unlike ``parse_squeue`` it keeps every job, so two jobs
  sharing one container's name both show up (the dispatcher would scancel both, and an operator should know).
* ``status_rows``: one row per (container, job) with the mismatches an operator should look at.

Which jobs are ours, and what the service does with them, is decided in ``slurm_dispatch.slurm.decide``; this
module only lays the two views side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import Container, ContainerState, SlurmJob
from slurm_dispatch.slurm.decide import is_our_job_name
from slurm_dispatch.slurm.squeue import parse_squeue_line


@dataclass(frozen=True)
class JobDetail:
    """One squeue line with its job id: a Slurm job as the ``status`` command shows it."""

    job_id: int
    job: SlurmJob

    @property
    def name(self) -> str:
        """The job name (a container uuid, for our jobs)."""
        return self.job.name


def parse_queue_detail(text: str) -> tuple[list[JobDetail], list[SqueueParseError]]:
    """Return every job in ``squeue --format=%i %j %y %Q %T %r`` output, in order, and the lines skipped.

    Pure. Blank lines are ignored. After the id, a line is read exactly as the dispatcher reads its own
    squeue line (``parse_squeue_line``: five tokens, the rest of the reason dropped). Jobs with the same
    name are all kept.
    """
    jobs: list[JobDetail] = []
    errors: list[SqueueParseError] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        head, _, rest = line.strip().partition(" ")
        if not head.isascii() or not head.isdigit():
            errors.append(SqueueParseError(line, f"job id {head!r} is not a number"))
            continue
        try:
            jobs.append(JobDetail(job_id=int(head), job=parse_squeue_line(rest)))
        except SqueueParseError as exc:
            errors.append(SqueueParseError(line, exc.reason))
    return jobs, errors


@dataclass(frozen=True)
class StatusRow:
    """One line of ``status``: a container (if Arvados knows it) and one of its jobs (if any)."""

    uuid: str
    state: str | None
    """Arvados state; None when the API does not know this uuid."""
    priority: int | None
    locked_by_uuid: str
    job_id: int | None
    """None when no job is named after the container."""
    slurm_state: str | None
    nice: int | None
    slurm_priority: int | None
    reason: str | None
    problems: list[str] = field(default_factory=list)
    """Mismatches between the two views, one sentence each; empty when all is well."""


_FINISHED_OR_QUEUED = (ContainerState.QUEUED, ContainerState.COMPLETE, ContainerState.CANCELLED)


def _problems(
    container: Container | None, jobs: Sequence[JobDetail], *, my_token_uuid: str
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
            problems.append(f"{state.value} by this dispatcher with no Slurm job (after a submission this "
                            "lasts at most one poll; otherwise the dispatcher unlocks or cancels it)")
        return problems
    if len(jobs) > 1:
        problems.append(f"{len(jobs)} Slurm jobs share this container's name")
    if other:
        problems.append(f"Slurm job of ours for a container locked by another token ({container.locked_by_uuid})")
    elif state in _FINISHED_OR_QUEUED:
        problems.append(f"Slurm job for a {state.value} container (a leftover: the dispatcher scancels it)")
    return problems


def status_rows(
    containers: Iterable[Container],
    jobs: Iterable[JobDetail],
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
    jobs_by_uuid: dict[str, list[JobDetail]] = {}
    for job in jobs:
        if is_our_job_name(job.name, cluster_id):
            jobs_by_uuid.setdefault(job.name, []).append(job)
    rows: list[StatusRow] = []
    for uuid in sorted(set(by_uuid) | set(jobs_by_uuid)):
        container = by_uuid.get(uuid)
        mine = sorted(jobs_by_uuid.get(uuid, []), key=lambda j: j.job_id)
        problems = _problems(container, mine, my_token_uuid=my_token_uuid)
        state = container.state.value if container else None
        priority = container.priority if container else None
        locked_by = container.locked_by_uuid if container else ""
        if not mine:
            rows.append(StatusRow(uuid=uuid, state=state, priority=priority, locked_by_uuid=locked_by,
                                  job_id=None, slurm_state=None, nice=None, slurm_priority=None,
                                  reason=None, problems=problems))
        for job in mine:
            rows.append(StatusRow(uuid=uuid, state=state, priority=priority, locked_by_uuid=locked_by,
                                  job_id=job.job_id, slurm_state=job.job.state, nice=job.job.nice,
                                  slurm_priority=job.job.slurm_priority, reason=job.job.reason,
                                  problems=list(problems)))
    return rows


__all__ = [
    "JobDetail",
    "StatusRow",
    "parse_queue_detail",
    "status_rows",
]
