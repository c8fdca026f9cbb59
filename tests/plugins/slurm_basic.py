"""A small simulator of Slurm's priority/basic plugin, to count the renices a nice calculation causes.

Used by the renice tests (tests/unit/test_want_nice.py, test_renice_in_place.py). priority/basic gives each job
a base priority one below the previous submission's, and a job's priority is that base minus its nice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slurm_dispatch.slurm.priority import NicedJob, renice_order
from slurm_dispatch.slurm.sbatch import INITIAL_NICE

NiceFn = Callable[[Sequence[NicedJob], int], list[int]]


@dataclass
class J:
    """A job as want_nice sees it."""

    slurm_priority: int
    nice: int


def applied(jobs: Sequence[NicedJob], nices: Sequence[int]) -> list[J]:
    """Return the jobs as Slurm shows them after setting each nice."""
    return [J(slurm_priority=j.slurm_priority + j.nice - n, nice=n) for j, n in zip(jobs, nices, strict=True)]


@dataclass
class SimJob:
    name: str
    want: int
    base: int
    nice: int
    running: bool = False

    @property
    def slurm_priority(self) -> int:
        # priority/basic: each submission gets a base one below the previous; nice is subtracted.
        return self.base - self.nice


class SlurmBasic:
    """Just enough of Slurm's priority/basic to count renices."""

    def __init__(self, nice_fn: NiceFn, spread: int = 10) -> None:
        self.nice_fn = nice_fn
        self.spread = spread
        self.next_base = 4294900000 + INITIAL_NICE
        self.jobs: dict[str, SimJob] = {}
        self.scontrol_calls = 0
        self.seq = 0

    def submit(self, want: int) -> None:
        self.seq += 1
        name = f"zzzzz-dz642-{self.seq:015d}"
        self.jobs[name] = SimJob(name, want, self.next_base, INITIAL_NICE)
        self.next_base -= 1

    def pending(self) -> list[SimJob]:
        return [j for j in self.jobs.values() if not j.running]

    def start_next(self, *, keep_running: bool = False) -> SimJob:
        # Slurm starts the pending job with the highest priority (ties: earlier submission).
        job = max(self.pending(), key=lambda j: (j.slurm_priority, j.base))
        if keep_running:
            job.running = True
        else:
            del self.jobs[job.name]
        return job

    def finish(self, name: str) -> None:
        del self.jobs[name]

    def renice_pass(self) -> None:
        ordered = renice_order(self.jobs.values())
        out = self.nice_fn(ordered, self.spread)
        for job, nice in zip(ordered, out, strict=True):
            assert nice >= 0
            if nice != job.nice:
                self.scontrol_calls += 1
                job.nice = nice

    def top_pending_has_highest_want(self) -> bool:
        pending = self.pending()
        best = max(pending, key=lambda j: (j.slurm_priority, j.base))
        return best.want == max(j.want for j in pending)


def drain_1000(nice_fn: NiceFn, *, arrive_one_per_tick: bool = False) -> tuple[int, int]:
    """Submit 1000 jobs in want order, then start them one at a time; return (renices, max nice)."""
    slurm = SlurmBasic(nice_fn)
    for i in range(1000):
        slurm.submit(want=10_000 - i)
        if arrive_one_per_tick:
            slurm.renice_pass()
    slurm.renice_pass()
    max_nice = 0
    while slurm.jobs:
        assert slurm.top_pending_has_highest_want()
        slurm.start_next()
        slurm.renice_pass()
        max_nice = max([max_nice] + [j.nice for j in slurm.jobs.values()])
    return slurm.scontrol_calls, max_nice
