"""On the real cluster: a burst whose jobs reached slurmctld slightly out of Arvados's order is put in order by
renicing the few jobs out of place (``plan_nice``), through the real scontrol, and then stays put."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Sequence
from typing import Any

import pytest

from slurm_dispatch.model import Container
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.squeue import SqueueChecker

pytestmark = pytest.mark.slurm

JOBS = 150
"""At least 112, so that want_nice keeps the in-order gaps of the burst (its keep-gap is 90 × jobs points) and the
test sees only what puts the order right."""

SWAPPED = (20, 70, 120)
"""Each of these jobs reached slurmctld just after the next one in Arvados's order, as two sbatch at once can."""


class _CountingRenices:
    """SlurmCLI, counting renice commands and the job ids in them."""

    def __init__(self, inner: SlurmCLI) -> None:
        self._inner = inner
        self.commands: list[tuple[int, int]] = []  # (nice, job ids)

    def queue(self) -> str:
        return self._inner.queue()

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        self.commands.append((nice, len(job_ids)))
        self._inner.renice_jobs(job_ids, nice, cluster=cluster)

    def renice(self, name: str, nice: int) -> None:
        self.commands.append((nice, 1))
        self._inner.renice(name, nice)


def test_a_burst_slightly_out_of_order_is_put_right_with_a_few_renices(slurm_clean: Any) -> None:
    tag = secrets.token_hex(3)
    names = [f"zzzzz-dz642-burst{tag}{i:04d}" for i in range(JOBS)]  # in Arvados's order: want falls with i
    wants = {name: 1_000_000 - i for i, name in enumerate(names)}
    arrival = list(names)
    for i in SWAPPED:
        arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    cli = SlurmCLI(env=slurm_clean.env)
    settings = Settings(crunch_run_command="/bin/true",
                        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--output=/dev/null", "--begin=now+3600"))
    for name in arrival:  # one after the other: slurmctld ranks each below the one before (priority/basic)
        job = job_for(Container.from_api({"uuid": name, "state": "Locked", "priority": 1,
                                          "runtime_constraints": {"ram": 100_000_000, "vcpus": 1}}), settings)
        cli.submit(args=job.args, script=job.script, env=job.env)
    counting = _CountingRenices(cli)
    checker = SqueueChecker(backend=counting, poll_interval_s=10)  # type: ignore[arg-type]

    async def renice_passes() -> list[list[tuple[int, int]]]:
        assert await checker.poll()
        await checker.renice_done()  # no want recorded yet: no renice
        for name, want in wants.items():  # as each container's runner does once its job is in squeue
            await checker.set_want(name, want)
        passes = []
        for _ in range(3):
            before = len(counting.commands)
            assert await checker.poll()
            await checker.renice_done()
            passes.append(counting.commands[before:])
        return passes

    first, second, third = asyncio.run(renice_passes())
    # The three pairs swap places: each upper job one point up, each lower one down, two commands for six jobs
    # (want_nice alone would move every job from the first pair down, each with a command of its own).
    assert sorted(first) == [(9_999, 3), (10_001, 3)], first
    assert [ids for _, ids in second] == [1] and second[0][0] == 0  # in order now: the first job to nice 0
    assert third == []
    lines = slurm_clean.run(["squeue", "--noheader", "--format=%j|%Q", "--name=" + ",".join(names)],
                            check=True).stdout.split()
    priority = dict(line.split("|") for line in lines)
    ranked = [int(priority[name]) for name in names]
    assert all(a > b for a, b in itertools.pairwise(ranked)), ranked  # Slurm's order is Arvados's
