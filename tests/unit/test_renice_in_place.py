"""plan_nice: a burst whose jobs came out of order is put right among its own priorities, not re-spread.

Jobs submitted together have neighbouring Slurm priorities (priority/basic: one point less per submission), so
``want_nice`` finds no room between two of them and moves every job below a pair that is out of order. The
simulator and the helpers are test_want_nice.py's.
"""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.slurm_basic import J, SlurmBasic, applied, drain_1000

from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.priority import (
    KEEP_NICE_LIMIT,
    MAX_NICE,
    nice_in_place,
    plan_nice,
    renice_commands,
    renice_cost,
    renice_plan,
    want_nice,
)
from slurm_dispatch.slurm.sbatch import INITIAL_NICE

BASE = 4294901759
"""priority/basic's first job priority on the test cluster (at nice 0)."""


def fresh_burst(n: int) -> list[J]:
    """``n`` jobs as sbatch leaves them, in submission order: consecutive priorities, all at the submission nice."""
    return [J(slurm_priority=BASE - i - INITIAL_NICE, nice=INITIAL_NICE) for i in range(n)]


def changed(jobs: list[J], nices: list[int]) -> int:
    return sum(1 for job, nice in zip(jobs, nices, strict=True) if nice != job.nice)


def strictly_decreasing(jobs: list[J]) -> bool:
    return all(a.slurm_priority > b.slurm_priority for a, b in itertools.pairwise(jobs))


def test_one_swapped_pair_in_a_1000_job_burst_costs_two_renices_not_500() -> None:
    jobs = fresh_burst(1000)
    jobs[500], jobs[501] = jobs[501], jobs[500]  # the want order: 501 was submitted before 500
    placed = want_nice(jobs, 10)
    # The premise: the first job, and every job from the pair down, each to a nice of its own (a command each).
    assert len({nice for job, nice in zip(jobs, placed, strict=True) if nice != job.nice}) == 500
    first = plan_nice(jobs, 10)
    assert changed(jobs, first) == 2
    after = applied(jobs, first)
    assert strictly_decreasing(after)
    second = plan_nice(after, 10)  # in order now: want_nice's rule, which puts the first job at nice 0
    assert changed(after, second) == 1 and second[0] == 0
    settled = applied(after, second)
    assert changed(settled, plan_nice(settled, 10)) == 0


def test_a_late_job_moves_the_tail_by_one_slot_with_one_command() -> None:
    """A job that reached sbatch after the tail of the burst it belongs above: the tail moves down one slot,
    all of it to the same nice, so ``renice_commands`` needs two commands where want_nice needed one per job."""
    names = [f"zzzzz-dz642-{i:015d}" for i in range(200)]
    jobs = {name: SlurmJob(name=name, nice=INITIAL_NICE, slurm_priority=BASE - i - INITIAL_NICE, state="PENDING",
                           reason="BeginTime", job_id=str(1000 + i)) for i, name in enumerate(names)}
    wants = {name: 10_000 - i for i, name in enumerate(names)}
    wants[names[-1]] = 10_000 - 150  # the last submitted: the want of the 150th, and a name after it, so just above
    plan = renice_plan(wants, jobs, 10)
    commands = renice_commands(plan, jobs)
    assert len(commands) == 2, commands
    assert sorted(len(c.job_ids) for c in commands) == [1, 49]  # it, and the 150th to the 198th one slot down
    placed = renice_plan(wants, jobs, 10, nice_fn=want_nice)
    assert len(renice_commands(placed, jobs)) > 40


def test_in_place_is_refused_when_the_jobs_share_a_priority_or_a_job_cannot_reach_its_slot() -> None:
    assert nice_in_place([J(100, 10), J(100, 10)]) is None
    assert nice_in_place([J(100, 0), J(101, 0)]) is None  # the first would need nice -1
    assert nice_in_place([J(100, 10), J(101, 10)]) == [9, 11]
    assert nice_in_place([J(100, KEEP_NICE_LIMIT + 10), J(105, 0)]) is None  # a nice kept only up to KEEP_NICE_LIMIT
    assert nice_in_place([J(100, KEEP_NICE_LIMIT + 5), J(105, 0)]) == [KEEP_NICE_LIMIT, 5]


def test_jobs_in_order_get_want_nice_s_values_unchanged() -> None:
    jobs = [J(BASE - 3 * i, INITIAL_NICE) for i in range(50)]
    assert plan_nice(jobs, 10) == want_nice(jobs, 10)


# Jobs as a renice pass can see them: priority/basic values, nice from submission or an earlier pass.
job_st = st.builds(J, slurm_priority=st.integers(4_294_000_000, 4_294_967_295), nice=st.integers(0, 50_000))


@settings(max_examples=300, deadline=None)
@given(jobs=st.lists(job_st, max_size=40), spread=st.integers(-2, 50))
def test_plan_nice_orders_the_jobs_changes_no_more_than_want_nice_and_settles_in_two_passes(
    jobs: list[J], spread: int
) -> None:
    out = plan_nice(jobs, spread)
    assert len(out) == len(jobs)
    assert all(0 <= n <= MAX_NICE for n in out)
    assert renice_cost(jobs, out) <= renice_cost(jobs, want_nice(jobs, spread))
    after = applied(jobs, out)
    assert strictly_decreasing(after)
    settled = applied(after, plan_nice(after, spread))
    assert strictly_decreasing(settled)
    assert plan_nice(settled, spread) == [j.nice for j in settled]


def burst(nice_fn: object, *, seed: int) -> tuple[int, int]:
    """1000 jobs reach sbatch in nearly their want order (each may swap with one of its next three, as three
    sbatch at once do), a renice pass after every 100; then passes until nothing changes.
    Return (jobs reniced, renice commands), a command per distinct nice in a pass (``renice_commands``)."""
    rng = random.Random(seed)
    order = list(range(1000))
    for i in range(0, 997, 3):
        window = order[i : i + 3]
        rng.shuffle(window)
        order[i : i + 3] = window
    slurm = SlurmBasic(nice_fn)  # type: ignore[arg-type]
    commands = 0

    def renice_pass() -> int:
        nonlocal commands
        before = {name: job.nice for name, job in slurm.jobs.items()}
        calls = slurm.scontrol_calls
        slurm.renice_pass()
        commands += len({job.nice for name, job in slurm.jobs.items() if job.nice != before[name]})
        return slurm.scontrol_calls - calls

    for k, rank in enumerate(order, start=1):
        slurm.submit(want=10_000 - rank)
        if k % 100 == 0:
            renice_pass()
    for _ in range(5):
        if not renice_pass():
            break
    else:
        raise AssertionError("the renice passes did not settle")
    return slurm.scontrol_calls, commands


def test_a_burst_out_of_order_in_small_windows_costs_a_fraction_of_want_nice_s_renices(capsys: object) -> None:
    ours = [burst(plan_nice, seed=seed) for seed in range(3)]
    placed = [burst(want_nice, seed=seed) for seed in range(3)]
    print(f"\n1000-job burst, neighbours swapped in windows of 3: plan_nice (jobs, commands) {ours}; "
          f"want_nice {placed}")
    for (jobs, commands), (placed_jobs, placed_commands) in zip(ours, placed, strict=True):
        assert jobs < placed_jobs
        assert commands * 10 < placed_commands


def test_draining_an_ordered_queue_costs_what_it_cost_before() -> None:
    assert drain_1000(plan_nice) == drain_1000(want_nice)


def test_each_cluster_s_jobs_are_planned_on_their_own() -> None:
    """Two slurmctld number their priorities from the same base, so two clusters' jobs do not compare: each
    cluster's 200 jobs, in order, only get their first job to nice 0 (planned as one list, they interleave)."""
    jobs: dict[str, SlurmJob] = {}
    wants: dict[str, int] = {}
    for cluster in ("a", "b"):
        for i in range(200):
            name = f"zzzzz-dz642-{cluster}{i:014d}"
            jobs[name] = SlurmJob(name=name, nice=INITIAL_NICE, slurm_priority=BASE - i - INITIAL_NICE,
                                  state="PENDING", reason="BeginTime", job_id=str(1000 + i), cluster=cluster)
            wants[name] = 10_000 - 2 * i - (cluster == "b")  # Arvados's order alternates between the clusters
    plan = renice_plan(wants, jobs, 10)
    assert sorted(plan) == [("zzzzz-dz642-a00000000000000", 0), ("zzzzz-dz642-b00000000000000", 0)]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(112, 400), picks=st.lists(st.integers(1, 10_000), max_size=12), spread=st.integers(1, 20))
def test_a_burst_with_swapped_neighbours_costs_two_renices_a_pair_and_settles(
    n: int, picks: list[int], spread: int
) -> None:
    """Bursts, where plan_nice reorders in place: each swapped pair of neighbours costs exactly its two jobs."""
    jobs = fresh_burst(n)
    swapped: set[int] = set()
    for pick in picks:  # pairs that share no job
        i = 1 + pick % (n - 2)
        if not {i - 1, i, i + 1} & swapped:
            jobs[i], jobs[i + 1] = jobs[i + 1], jobs[i]
            swapped |= {i, i + 1}
    out = plan_nice(jobs, spread)
    if not swapped:
        assert out == want_nice(jobs, spread)
        return
    assert changed(jobs, out) == len(swapped)
    after = applied(jobs, out)
    assert strictly_decreasing(after)
    settled = applied(after, plan_nice(after, spread))
    assert plan_nice(settled, spread) == [j.nice for j in settled]
