"""Arvados priority to Slurm order: the "want" of a container, the renice order, and nice values.

Pure functions; the squeue poller calls them after every snapshot and runs
``scontrol update JobId=<ids> Nice=<n>`` for the jobs whose nice changes, one
command per nice value (``renice_commands``). Go runs ``scontrol update
JobName=<uuid> Nice=<n>`` per job (services/crunch-dispatch-slurm/squeue.go:
reniceAll, priority.go).

Why not a straight port of Go's wantNice
-----------------------------------------
services/crunch-dispatch-slurm/priority.go keeps a job's nice only while the gap
above it is under ``(spread - 1) * 10``; a wider gap is closed by lowering the
nice. Closing one gap widens the next, so the whole queue below moves. As a
queue drains, the gap under the top job grows by about ``spread - 1`` per start,
and every ten starts or so the entire queue is reniced: about 57,000 scontrol
calls to drain 1000 jobs (tests/unit/test_want_nice.py measures it).

``want_nice`` here keeps Go's placement rule for jobs that are out of order and
Go's results on small queues, but closes an in-order gap only when it is at
least ``(spread - 1) * 10`` *for every job in the list*: closing one gap can
renice every job below it, so the gap must be worth that. A drain then costs one
renice per start (the new top job going to nice 0) plus rare, geometrically
shrinking compactions: about 1,100 calls for 1000 jobs. New jobs that arrive
below the others (the usual case) keep their submission nice, at no cost.

The price is that jobs deep in a long queue may keep their submission nice
(10000) until the queue is short, instead of being pulled up to ``10 * rank``.
On a Slurm cluster shared with non-Arvados work, those jobs therefore rank up to
10,000 priority points lower against other users' jobs than under Go (the order
among Arvados's own jobs is the same). Where the results differ from Go's
tables, see ``want_nice``.

A job whose want puts it in the middle of the queue would, in Go, take the slot
``spread - 1`` below the job above it: where the next job already is (placed jobs
are ``spread`` apart), so that job moves down, and the whole run below it with
it. ``want_nice`` puts such a job in the middle of the room above the next job
instead, which leaves the run alone: one renice per newcomer while that room
lasts (halved by each newcomer in the same place). On a long random-want history
this makes about 9,500 renices where Go makes about 350,000.

What the renice pass applies is ``plan_nice``: ``want_nice``'s values, except when the
jobs are out of order and giving them their own priorities in the wanted order costs
fewer commands (``nice_in_place``). That is the case after a burst: its jobs have
neighbouring priorities, so a pair out of order leaves ``want_nice`` no room, and it
would move every job below the pair.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from slurm_dispatch.model import Container, SlurmJob, timestamp_ns
from slurm_dispatch.slurm.backend import JOB_ID_RE, MAX_JOB_IDS_PER_COMMAND

DEFAULT_SPREAD = 10
"""PrioritySpread used when the configured one is below 1."""

MAX_NICE = 2147483645
"""The largest nice Slurm accepts (±(NICE_OFFSET − 3), NICE_OFFSET = 2**31, since Slurm 15.08;
sbatch/scontrol reject anything beyond). Slurm ≤ 15.08 allowed only ±10000."""

KEEP_NICE_LIMIT = MAX_NICE // 2
"""A nice above this is never kept as is, only recomputed; this bounds every result by
(span of the jobs' nice-0 priorities) + KEEP_NICE_LIMIT + spread × len(jobs), far below
MAX_NICE for any real queue. Results are capped at MAX_NICE as a last resort."""

_PRIORITY_RAW_MAX = 1000
_INT64 = 1 << 64


def _int64(value: int) -> int:
    """Return ``value`` wrapped to a signed 64-bit integer, as Go's int64 arithmetic would."""
    return (value + (1 << 63)) % _INT64 - (1 << 63)


def container_want(container: Container) -> int:
    """Return the container's "want": the key that orders its job in Slurm, higher first. Pure.

    A priority above 1000 is already what the API computes (request priority × 2**50
    minus the request's creation time in ms) and is used unchanged. A priority of
    1000 or less (raw values, tests) becomes ``(p << 50) − (created_at_ns >> 14)``
    in int64 terms, so that of two equal priorities the older container comes first.
    A missing ``created_at`` counts as the epoch. 0 means "unknown: never renice".
    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: the priority
    mapping before SetPriority.
    """
    p = container.priority
    if p > _PRIORITY_RAW_MAX:
        return p
    ns = timestamp_ns(container.created_at) if container.created_at is not None else 0
    return _int64(_int64(p << 50) - (_int64(ns) >> 14))


class NicedJob(Protocol):
    """What ``want_nice`` reads of a job: its Slurm priority (nice already applied) and its nice."""

    @property
    def slurm_priority(self) -> int: ...

    @property
    def nice(self) -> int: ...


class _Wanted(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def want(self) -> int: ...


W = TypeVar("W", bound=_Wanted)


@dataclass(frozen=True)
class ReniceCandidate:
    """A job seen in squeue together with its container's want (see ``container_want``)."""

    name: str
    """The job name: the container uuid."""
    want: int
    """The container's want; 0 means unknown (never reniced)."""
    nice: int
    """Slurm's current nice."""
    slurm_priority: int
    """Slurm's current priority, nice already applied."""


def renice_order(jobs: Iterable[W]) -> list[W]:
    """Return the jobs whose want is known, in the order Slurm should run them. Pure.

    Jobs with ``want == 0`` are left out. The rest are sorted by want, highest
    first; equal wants are ordered by job name **descending**, so the order is the
    same from one poll to the next and equal jobs are not reniced back and forth.
    Running jobs belong in the input too: they hold the top places.
    Port of services/crunch-dispatch-slurm/squeue.go: reniceAll (its sort).
    """
    wanted = [j for j in jobs if j.want != 0]
    wanted.sort(key=lambda j: j.name, reverse=True)
    wanted.sort(key=lambda j: j.want, reverse=True)  # stable: keeps names descending within a want
    return wanted


def want_nice(jobs: Sequence[NicedJob], spread: int) -> list[int]:
    """Return the nice each job should have so that Slurm runs them in the given order. Pure.

    ``jobs`` is in the desired order (highest want first). The result has one
    value per job, each in [0, MAX_NICE]; the first is 0. Applying it (new
    priority = priority + nice − new nice) makes the Slurm priorities strictly
    decreasing in the given order, and running this again on the result changes
    nothing. ``spread`` < 1 means 10.

    Walking down the list with ``target`` = the highest priority the next job may
    have (one below the previous job's new priority):

    - the first job gets nice 0;
    - a job already below ``target`` keeps its nice, unless the gap is at least
      ``(spread − 1) × 10`` (at least 10) times ``len(jobs)``, or its nice is
      negative or above KEEP_NICE_LIMIT;
    - any other job goes ``spread − 1`` below ``target`` (or, when the next job is
      already below ``target`` but at or above that slot, to the middle of the room
      above the next job, so that it stays where it is), or to nice 0 if even that
      is above its reach.

    Every row of Go's table (priority_test.go) gives Go's result. Results differ
    where Go's slot would push the next job down (a newcomer at the top of three
    just-reniced jobs ``[0, 10, 20]`` gives ``[0, 5, 10, 20]``, two renices,
    where Go gives ``[0, 10, 20, 30]``, four), and where Go closes an in-order gap of at
    least ``(spread − 1) × 10`` that is narrower than that times ``len(jobs)``, which
    this keeps: ``[(4000,0),(3000,999),(2000,1998)]`` gives ``[0,9,18]`` as in Go,
    but the same gaps above 200 more jobs are kept. On a 1000-job queue of
    just-submitted jobs whose base priorities fall one per submission (priority/basic)
    all but the first keep nice 10000 (Go: ``10 × rank``); when they share one base
    priority, the second keeps 10000 and the rest go ``spread`` apart below
    it, up to about 20,000 (Go: about 10,000).
    Port (modified to avoid renice churn) of services/crunch-dispatch-slurm/priority.go: wantNice.
    """
    if spread < 1:
        spread = DEFAULT_SPREAD
    band = max(spread - 1, 1) * 10
    keep_gap = band * len(jobs)
    result: list[int] = []
    target = 0
    for i, job in enumerate(jobs):
        reach = job.slurm_priority + job.nice  # its priority at nice 0
        if i == 0:
            nice = 0
            target = reach
        elif 0 <= target - job.slurm_priority < keep_gap and 0 <= job.nice <= KEEP_NICE_LIMIT:
            nice = job.nice
            target = job.slurm_priority
        else:
            upper = target
            target -= spread - 1
            nxt = jobs[i + 1] if i + 1 < len(jobs) else None
            if nxt is not None and 0 <= nxt.nice <= KEEP_NICE_LIMIT and target <= nxt.slurm_priority < upper:
                # Go's slot would push the next job down, and every job of a tight run below it with it:
                # take the middle of the room above the next job instead, which leaves it (and them) alone.
                target = (upper + nxt.slurm_priority + 1) // 2
            if target > reach:
                target = reach
                nice = 0
            else:
                nice = reach - target
                if nice > MAX_NICE:
                    # Unreachable for real queues (see KEEP_NICE_LIMIT); the job lands
                    # higher than planned and the rest are placed below where it lands.
                    nice = MAX_NICE
                    target = reach - MAX_NICE
        result.append(nice)
        target -= 1
    return result


def nice_in_place(jobs: Sequence[NicedJob]) -> list[int] | None:
    """Return the nice values that put ``jobs`` (in the desired order) in order among their own Slurm priorities:
    the first gets the highest of those priorities, the second the next, and so on. Pure.

    None when that cannot be done: two of the jobs share a priority, or one of them would need a nice below 0 or
    above KEEP_NICE_LIMIT (a priority above its reach at nice 0, or far below it).
    """
    slots = sorted((job.slurm_priority for job in jobs), reverse=True)
    if any(a == b for a, b in itertools.pairwise(slots)):
        return None
    result: list[int] = []
    for job, slot in zip(jobs, slots, strict=True):
        nice = job.slurm_priority + job.nice - slot
        if not 0 <= nice <= KEEP_NICE_LIMIT:
            return None
        result.append(nice)
    return result


COMMAND_WEIGHT = 15
"""What one more renice command costs, in jobs added to a command: on the test cluster ``scontrol update`` with one
job id took 6.6 ms of CPU, with 50 ids 28.3 ms, about 0.44 ms a job (docs/benchmarks.md). slurmctld handles one
update per job either way."""


def renice_cost(jobs: Sequence[NicedJob], nices: Sequence[int]) -> int:
    """Return the cost of applying ``nices``: the jobs that change, plus ``COMMAND_WEIGHT`` for each nice value
    among them (``renice_commands`` makes one command per value). Pure."""
    values = [nice for job, nice in zip(jobs, nices, strict=True) if nice != job.nice]
    return len(values) + COMMAND_WEIGHT * len(set(values))


def plan_nice(jobs: Sequence[NicedJob], spread: int) -> list[int]:
    """Return the nice values the renice pass applies: ``want_nice``'s, or ``nice_in_place``'s when the jobs are
    out of order and that costs less (``renice_cost``). Pure.

    Jobs submitted together have neighbouring priorities: priority/basic gives each new job one point less. When
    two of them are out of order, there is no room between them and their neighbours, and ``want_nice`` moves the
    lower one ``spread − 1`` down and every job under it, each to a nice of its own: 500 renice commands for one
    swapped pair in the middle of a 1000-job burst (tests/unit/test_renice_in_place.py). Swapping their priorities
    takes two. A job that reached sbatch after the ones it belongs above moves them down one slot each, all to the
    same nice: one command for them, one for it. Once the jobs are in order, ``want_nice`` alone decides (the
    first job goes to nice 0 on the next pass), so its results on ordered queues, and the churn figures in its
    docstring, are unchanged.

    Below about 112 jobs that next pass spreads them all anyway (``want_nice`` closes in-order gaps narrower than
    ``(spread − 1) × 10 × len(jobs)``), so reordering first costs a short queue its own few renices more. Not
    looking ahead is what keeps a burst that is still growing cheap: counting the next pass in, the simulated
    burst of the tests took 136 commands instead of 41. Like ``want_nice``, this counts on priority/basic's
    arithmetic (new priority = priority + nice − new nice); under priority/multifactor slurmctld works a reniced
    job's priority out afresh.
    """
    placed = want_nice(jobs, spread)
    if all(a.slurm_priority > b.slurm_priority for a, b in itertools.pairwise(jobs)):
        return placed
    in_place = nice_in_place(jobs)
    if in_place is None or renice_cost(jobs, in_place) >= renice_cost(jobs, placed):
        return placed
    return in_place


WantNice = Callable[[Sequence[NicedJob], int], list[int]]
"""``want_nice(jobs, spread) -> nice values``: jobs in desired order, each with ``slurm_priority`` and ``nice``."""


def renice_plan(
    wants: Mapping[str, int],
    jobs: Mapping[str, SlurmJob],
    spread: int,
    *,
    nice_fn: WantNice = plan_nice,
) -> list[tuple[str, int]]:
    """Return ``(job name, new nice)`` for each job whose nice must change, in the order to apply them. Pure.

    The candidates are the jobs of the squeue snapshot ``jobs`` that have a known want ≠ 0 in ``wants``,
    except held jobs (Slurm priority 0): with Slurm 22.05 ``scontrol update ... Nice=`` gives a held job a
    priority again, which releases the hold, and an admin's ``scontrol hold`` must stick. They go through
    ``renice_order`` and ``nice_fn`` (``plan_nice``), the jobs of each cluster on their own (squeue ``--clusters``:
    each slurmctld ranks only its own jobs); jobs whose nice is already right are left out, so the caller runs
    exactly one ``scontrol update`` per pair.
    Port of services/crunch-dispatch-slurm/squeue.go: reniceAll.
    """
    ordered = renice_order(
        ReniceCandidate(name=name, want=want, nice=jobs[name].nice, slurm_priority=jobs[name].slurm_priority)
        for name, want in wants.items()
        if name in jobs and jobs[name].slurm_priority > 0
    )
    by_cluster: dict[str, list[ReniceCandidate]] = {}
    for job in ordered:  # each slurmctld ranks its own jobs, from the same base: their priorities do not compare
        by_cluster.setdefault(jobs[job.name].cluster, []).append(job)
    plan: list[tuple[str, int]] = []
    for group in by_cluster.values():
        nices = nice_fn(group, spread)
        plan += [(job.name, nice) for job, nice in zip(group, nices, strict=True) if nice != job.nice]
    return plan


@dataclass(frozen=True)
class Renice:
    """One renice command: several jobs by id, or one job by name (when squeue gave no plain job id)."""

    nice: int
    job_ids: tuple[str, ...] = ()
    name: str = ""
    cluster: str = ""
    """The jobs' cluster, as squeue printed it ("" for the local cluster)."""


def renice_commands(
    plan: Sequence[tuple[str, int]], jobs: Mapping[str, SlurmJob], *, per_command: int = MAX_JOB_IDS_PER_COMMAND
) -> list[Renice]:
    """Return the commands that apply ``plan`` (``renice_plan``'s pairs), jobs with the same nice together. Pure.

    Jobs are named by their id from the snapshot ``jobs`` (no job table read by slurmctld, several jobs per
    command); a job whose id is not a plain one keeps a command by name of its own. Commands come in the order of
    the plan's first job of each nice value, at most ``per_command`` ids each.
    """
    by_nice: dict[tuple[int, str], list[str]] = {}
    commands: list[Renice | tuple[int, str]] = []  # a (nice, cluster): the place of those jobs' id commands
    for name, nice in plan:
        job = jobs.get(name)
        job_id = job.job_id if job is not None else ""
        cluster = job.cluster if job is not None else ""
        if not JOB_ID_RE.match(job_id):
            commands.append(Renice(nice=nice, name=name, cluster=cluster))
            continue
        key = (nice, cluster)
        if key not in by_nice:
            by_nice[key] = []
            commands.append(key)
        by_nice[key].append(job_id)
    result: list[Renice] = []
    for command in commands:
        if isinstance(command, Renice):
            result.append(command)
            continue
        ids = by_nice[command]
        result.extend(Renice(nice=command[0], job_ids=tuple(ids[i : i + per_command]), cluster=command[1])
                      for i in range(0, len(ids), per_command))
    return result


__all__ = [
    "COMMAND_WEIGHT",
    "DEFAULT_SPREAD",
    "KEEP_NICE_LIMIT",
    "MAX_NICE",
    "NicedJob",
    "Renice",
    "ReniceCandidate",
    "WantNice",
    "container_want",
    "nice_in_place",
    "plan_nice",
    "renice_commands",
    "renice_cost",
    "renice_order",
    "renice_plan",
    "want_nice",
]
