"""On the real cluster: containers ready for sbatch at the same time are submitted highest want first, and Slurm
ranks their jobs in about that order (its job ids and priorities) before any renice."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.squeue import SqueueChecker

pytestmark = pytest.mark.slurm

PRIORITIES = [3, 9, 1, 7, 5, 10, 2, 8, 4, 6]


class _NoApi:
    def get(self, uuid: str) -> Container:
        raise AssertionError("submission reads nothing from the API")


def test_a_burst_is_submitted_by_want_and_slurm_ranks_it_so(slurm_clean: Any) -> None:
    tag = secrets.token_hex(4)
    containers = [
        Container.from_api({
            "uuid": f"zzzzz-dz642-order{tag}{i:02d}", "state": "Locked", "priority": p,
            "locked_by_uuid": "zzzzz-gj3su-000000000000000", "created_at": "2026-12-01T00:00:00.000000000Z",
            "runtime_constraints": {"ram": 100_000_000, "vcpus": 1},
        })
        for i, p in enumerate(PRIORITIES)
    ]
    cli = SlurmCLI(env=slurm_clean.env)
    settings = Settings(crunch_run_command="/bin/true", poll_interval=10,
                        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--output=/dev/null", "--begin=now+3600"))

    async def main() -> list[int | None]:
        runner = SlurmRunner(settings=settings, backend=cli, squeue=SqueueChecker(backend=cli, poll_interval_s=10),
                             client=_NoApi())
        try:
            # All ten ask in the same round, in the order their locks came back; three sbatch at once.
            return await asyncio.gather(*(runner.submit(c) for c in containers))
        finally:
            runner.close()

    job_ids = asyncio.run(main())
    assert all(job_ids), job_ids
    job_of = {c.priority: int(j) for c, j in zip(containers, job_ids, strict=True)}  # type: ignore[arg-type]
    # slurmctld numbers jobs as sbatch reaches it, and three sbatch run at once, so neighbours in turn order may
    # swap; but the first turns (10, 9, 8, then 7) reach it well before the last (1), which starts after six more
    # sbatch have ended.
    assert all(job_of[p] < job_of[1] for p in (10, 9, 8, 7)), job_of
    # Without turns, sbatch would run in the order asked (3, 9, 1, 7, ...): 1 among the first three, before 7.

    # Slurm ranks them by that order: priority/basic gives each later job a lower priority (none was reniced).
    lines = slurm_clean.run(["squeue", "--noheader", "--format=%i|%Q|%y", "--jobs=" + ",".join(map(str, job_ids))],
                            check=True).stdout.split()
    slurm_priority = {}
    for line in lines:
        job, prio, nice = line.split("|")
        slurm_priority[int(job)] = int(prio)
        assert nice == "10000", line  # the submission nice (Go's), untouched
    assert slurm_priority[job_of[10]] > slurm_priority[job_of[1]]
