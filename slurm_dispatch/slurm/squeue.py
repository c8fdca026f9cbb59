"""The SqueueChecker: one squeue per poll for every container.

Port of services/crunch-dispatch-slurm/squeue.go. Its lines are read by ``squeue_lines`` (pure); a bad line about
one of our containers keeps that job as it was (``SqueueParseError.about``): no information, never "gone".

The SqueueChecker is the single observer of Slurm for the asyncio dispatcher:

- ``run()`` polls every ``poll_interval_s``; the first poll comes one interval
  after start, as in Go (squeue.go: SqueueChecker.start), unless ``first_poll_immediately`` is set, as
  the service sets it (``DispatchLoop(start_immediately=True)``). A caller may ask
  for a poll early (``has_uuid(uuid, soon=True)``: a container about to be
  submitted); early polls come at least ``SOON_POLL_GAP_S`` apart (the second poll
  of all is exempt: the first ran before anything was locked).
- Each poll runs the blocking ``backend.queue()`` in an executor, ONE squeue for
  all containers. A failed squeue is "no information" (as in Go): the previous
  snapshot is kept, nobody is woken, and the warning is logged when the error
  changes, not on every poll.
- ``has_uuid`` and ``next_snapshot`` answer from the next successful poll that
  *starts* after the call. Go answers from the next broadcast, which may come from
  a squeue that was already running before sbatch returned, and so can report a
  just-submitted job as gone; waiting for a poll that starts later closes that gap.
- ``set_want`` records the wanted order of a job (squeue.go: SetPriority); wants carry over
  between polls while the job stays in squeue.
- After each successful poll, waiters are woken, then a renice pass starts as a
  task of its own, beside the next polls (Go runs it inside the poll, so a long
  pass delays the squeue that submissions wait for); a pass is not started while
  the previous one runs, nor from a squeue that started before the previous one (if it ran a
  command) ended: its nice values may be half old, and a plan from them would redo the pass,
  or spread a burst out again. It is skipped (at most ``MAX_DEFERRED_RENICE_PASSES``
  polls in a row) while sbatch commands are under way. A pass (squeue.go: SqueueChecker.reniceAll) takes the
  jobs with a known want ≠ 0 (running ones included, held ones with Slurm priority
  0 not: with Slurm 22.05 a renice releases a hold) sorted by want descending,
  ties by name descending, so the order is stable between polls and no renice
  churn comes from equal wants; ``plan_nice`` computes their nice values and only
  the jobs whose value changes are reniced: by job id, one ``backend.renice_jobs``
  per nice value (``priority.renice_commands``), in that order, one command at a
  time (the cap on concurrent scontrol lives in ``SlurmCLI``). Renice errors are
  logged and ignored: the next pass renices what is still wrong.
- Jobs that are not running, have Slurm priority ≤ 20000 and a want > 0 get the
  low-priority warning of squeue.go: SqueueChecker.check, once per change of their state or reason (a held
  job's warning says it is held and what releases it instead).

All methods run on the event loop; none may be called from another thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType

from slurm_dispatch.errors import SlurmCommandError, SqueueParseError
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.priority import Renice, WantNice, plan_nice, renice_commands, renice_plan
from slurm_dispatch.slurm.reasons import is_held
from slurm_dispatch.slurm.squeue_lines import UNKNOWN_STATE, SqueueParser

log = logging.getLogger(__name__)

SOON_POLL_GAP_S = 0.5
"""Least time between two squeue polls when one is asked for early (a container was just locked and waits
to learn whether its job already exists before submitting): a burst of locks costs slurmctld at most two
squeue a second, and a submission no longer waits up to a whole PollInterval. While early polls are followed by
no sbatch (``submissions``), the gap doubles at each one, up to PollInterval."""

MAX_DEFERRED_RENICE_PASSES = 5
"""Renice passes skipped in a row while submissions are under way, before one runs anyway."""


LOW_PRIORITY_THRESHOLD = 20000
"""Slurm priority at or below which a waiting job gets a warning: twice Slurm 15's nice limit of 10000."""

# -- the checker --------------------------------------------------------------------


def _job_key(job: SlurmJob | None) -> tuple[str, str, str, str] | None:
    """What a waiter compares: a change of any of these is news (nice, priority and time left are not)."""
    return None if job is None else (job.job_id, job.state, job.reason, job.nodes)


_NOT_JUDGED = object()

_GONE_ONLY = ("", "", "", "gone only")
"""The ``seen`` of a ``wait_gone`` watch: only the job's absence is news."""


@dataclass(eq=False)
class _Watch:
    """One ``wait_change`` call: from which poll it waits, what it saw, and its time-left threshold."""

    wanted: int
    seen: tuple[str, str, str, str] | None
    time_left_below: int | None
    future: asyncio.Future[SlurmJob | None]
    judged: object = _NOT_JUDGED
    """The job line (or None) this watch was last found to have no news in."""


class _SameBasis:
    """Whether the wants and our jobs' very lines are those seen last time (the parser reuses the job of an
    unchanged line, so an equal list is the same lines): then a result worked out from them still holds."""

    def __init__(self) -> None:
        self._wants: dict[str, int] | None = None
        self._lines: list[SlurmJob | None] = []

    def same(self, wants: Mapping[str, int], jobs: Mapping[str, SlurmJob]) -> bool:
        """Return True if nothing changed since the last call; remember this basis otherwise. Does not block."""
        lines = list(map(jobs.get, wants))
        if wants == self._wants and lines == self._lines:
            return True
        self._wants, self._lines = dict(wants), lines
        return False


@dataclass(frozen=True)
class SqueueSnapshot:
    """The jobs seen by one successful squeue poll."""

    generation: int
    """How many successful polls produced or preceded this one; 0 means none yet."""
    jobs: Mapping[str, SlurmJob] = field(default_factory=dict)
    """Every job in squeue, ours or not, by name (read-only)."""
    poll_seq: int = 0
    """The sequence number of the poll (successful or not) that produced it, counted from 1."""
    taken_at: float | None = None
    """The injected clock's value when that poll started."""


class SqueueChecker:
    """Polls squeue for every job at once, answers membership questions, and renices.

    Port of services/crunch-dispatch-slurm/squeue.go: SqueueChecker. Create it,
    run ``run()`` as a task, and call ``has_uuid``/``set_want``/``next_snapshot``
    from other tasks (they block until ``run()`` completes its next poll, so they
    wait forever if it is not running). Cancel the ``run()`` task to stop.
    """

    def __init__(
        self,
        *,
        backend: SlurmBackend,
        poll_interval_s: float,
        priority_spread: int = 0,
        first_poll_immediately: bool = False,
        want_nice: WantNice | None = None,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        defer_renice: Callable[[], bool] | None = None,
        submissions: Callable[[], int] | None = None,
    ) -> None:
        """Build the checker. Does no I/O and does not start polling.

        Args:
            backend: where squeue and scontrol run (its blocking calls go to ``executor``).
            poll_interval_s: seconds between polls (Containers.CloudVMs.PollInterval).
            priority_spread: PrioritySpread, passed to the nice calculation (below 1 means 10).
            first_poll_immediately: poll at once in ``run()`` instead of after one interval.
            want_nice: the nice calculation; default ``slurm_dispatch.slurm.priority.plan_nice``.
            executor: where blocking backend calls run; None is the loop's default executor.
            clock: monotonic seconds, injected for tests.
            sleep: the coroutine ``run()`` waits with, injected for tests.
            defer_renice: when it returns True (submissions are under way), a poll skips its renice pass,
                at most ``MAX_DEFERRED_RENICE_PASSES`` polls in a row; the order can wait a few seconds,
                a burst of sbatch should not.
            submissions: how many sbatch commands have started so far; early polls back off while it does not
                grow between polls (see ``SOON_POLL_GAP_S``). None: they never back off.
        """
        self._backend = backend
        self._interval = poll_interval_s
        self._spread = priority_spread
        self._first_poll_immediately = first_poll_immediately
        self._want_nice: WantNice = want_nice or plan_nice
        self._executor = executor
        self._clock = clock
        self._sleep = sleep
        self._snapshot = SqueueSnapshot(generation=0, jobs=MappingProxyType({}))
        self._wants: dict[str, int] = {}
        self._polls_started = 0
        self.polls_done = 0
        """squeue polls finished so far, whether they worked or not (tests wait on it)."""
        self._updated = asyncio.Event()
        self._poll_lock = asyncio.Lock()
        self._last_error: str | None = None
        self._last_bad_lines: frozenset[str] = frozenset()
        self._low_warned: dict[str, tuple[str, str]] = {}
        self._low_basis = _SameBasis()
        self._watches: dict[str, list[_Watch]] = {}
        self._unjudged: set[str] = set()
        """Containers with a watch not judged against a poll yet."""
        self._judged_jobs: Mapping[str, SlurmJob] = {}
        """The jobs of the last poll the watches were judged against."""
        self._renice_task: asyncio.Task[None] | None = None
        self._renice_ended_by = 0
        """Polls started when the latest renice pass that ran a command ended: a later poll's squeue shows what it
        did."""
        self._poll_soon = asyncio.Event()
        self._defer_renice = defer_renice or (lambda: False)
        self._deferred = 0
        self._submissions = submissions
        self._submissions_seen: int | None = None  # read at the first poll: the counter may not exist yet
        self.soon_gap_s = SOON_POLL_GAP_S
        """The least gap before the next early poll (grows while early polls lead to no sbatch)."""
        self._parser = SqueueParser()
        self._plan_inputs: dict[str, tuple[int, int, int]] | None = None
        self._plan_basis = _SameBasis()
        self._plan: list[tuple[str, int]] = []
        self.plans_computed = 0
        """Renice plans worked out so far (``renice_plan`` reuses the last one when nothing changed)."""

    # -- observing -------------------------------------------------------------

    def snapshot(self) -> SqueueSnapshot:
        """Return the latest successful snapshot (generation 0 before the first). Does not block."""
        return self._snapshot

    def want(self, name: str) -> int:
        """Return the want recorded for job ``name`` (0 when unknown). Does not block."""
        return self._wants.get(name, 0)

    async def next_snapshot(self, *, soon: bool = False) -> SqueueSnapshot:
        """Return the snapshot of the next successful poll that starts after this call.

        Blocks until that poll completes; failed polls do not count (no information). With ``soon``,
        ask ``run()`` for that poll early (see ``SOON_POLL_GAP_S``) instead of at the next interval.
        """
        wanted = self._polls_started + 1
        if soon:
            self._poll_soon.set()
        while True:
            event = self._updated
            await event.wait()
            if self._snapshot.poll_seq >= wanted:
                return self._snapshot

    async def has_uuid(self, uuid: str, *, soon: bool = False) -> bool:
        """Return whether job ``uuid`` is in the next successful snapshot.

        Port of squeue.go: HasUUID. Blocks until the next successful poll that
        starts after this call (asked for early with ``soon``: a container about to be submitted).
        """
        return await self.job_after(uuid, soon=soon) is not None

    async def job_after(self, uuid: str, *, soon: bool = False) -> SlurmJob | None:
        """Return job ``uuid``'s line in the next successful snapshot (None: no such job); see ``has_uuid``."""
        return (await self.next_snapshot(soon=soon)).jobs.get(uuid)

    async def wait_change(
        self, uuid: str, seen: SlurmJob | None, *, time_left_below: int | None = None
    ) -> SlurmJob | None:
        """Return job ``uuid``'s line once a successful poll that started after this call shows news about it.

        News: the job has gone (None is returned), appeared (when ``seen`` is None), or its state, reason, nodes
        or id differ from ``seen``'s; or, with ``time_left_below``, it is running with at most that many seconds
        left before its time limit. Blocks until then. Unlike a loop over ``job_after``, a waiting container
        costs no task wake-up per poll: after each poll only the waiters with news are woken.
        """
        return await self._watch(uuid, _Watch(self._polls_started + 1, _job_key(seen), time_left_below,
                                              asyncio.get_running_loop().create_future()))

    async def wait_gone(self, uuid: str) -> None:
        """Return once a successful poll that started after this call no longer shows job ``uuid``. Blocks."""
        await self._watch(uuid, _Watch(self._polls_started + 1, _GONE_ONLY, None,
                                       asyncio.get_running_loop().create_future()))

    async def _watch(self, uuid: str, watch: _Watch) -> SlurmJob | None:
        future = watch.future
        self._watches.setdefault(uuid, []).append(watch)
        self._unjudged.add(uuid)
        try:
            return await future
        finally:
            watches = self._watches.get(uuid)
            if watches is not None and watch in watches:
                watches.remove(watch)
                if not watches:
                    del self._watches[uuid]

    def _wake_watchers(self, jobs: Mapping[str, SlurmJob], seq: int) -> None:
        """Wake the watches that the poll ``seq`` brings news to.

        Only the containers whose job line is not the very object of the last pass (the parser reuses the job of
        a line that did not change), and those with a watch not judged yet, are looked at: a judged watch found no
        news in its line then, and an identical line brings none now. At rest, one identity check per job.
        """
        last = self._judged_jobs
        changed = {name for name, job in jobs.items() if last.get(name) is not job}
        changed.update(last.keys() - jobs.keys())
        candidates = (changed | self._unjudged) & self._watches.keys()
        self._judged_jobs, self._unjudged = jobs, set()
        for uuid in candidates:
            watches = self._watches[uuid]
            job = jobs.get(uuid)
            keep = [watch for watch in watches if not self._wake_if_due(watch, job, seq)]
            if any(watch.judged is not job for watch in keep):
                self._unjudged.add(uuid)  # a watch from after this poll began: judged by the next one
            if len(keep) == len(watches):
                continue
            if keep:
                self._watches[uuid] = keep
            else:
                del self._watches[uuid]

    @staticmethod
    def _wake_if_due(watch: _Watch, job: SlurmJob | None, seq: int) -> bool:
        """Wake ``watch`` with ``job`` if the poll ``seq`` brings it news; return whether it was woken."""
        if watch.wanted > seq or watch.future.done():
            return False
        if watch.seen is _GONE_ONLY:
            due = job is None
        else:
            due = _job_key(job) != watch.seen or (
                watch.time_left_below is not None and job is not None and job.state == "RUNNING"
                and job.time_left_s is not None and job.time_left_s <= watch.time_left_below
            )
        if due:
            watch.future.set_result(job)
            return True
        watch.judged = job
        return False

    async def set_want(self, uuid: str, want: int) -> None:
        """Record the wanted order of job ``uuid``; the renice pass after each poll uses it.

        Port of squeue.go: SqueueChecker.SetPriority. Does not block if the job is in the
        latest snapshot. Otherwise (it may have just been submitted) blocks until the
        next successful poll and tries once more; if the job is still missing, gives
        up silently. ``want == 0`` means "unknown, never renice".
        """
        if uuid not in self._snapshot.jobs:
            snap = await self.next_snapshot()
            if uuid not in snap.jobs:
                return
        self._wants[uuid] = want

    # -- polling ---------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever: first after one interval (or at once), then every interval.

        Blocks until cancelled. A poll that overruns the interval skips the missed
        ticks, like Go's ticker, rather than polling back to back.
        """
        next_at = self._clock() + (0.0 if self._first_poll_immediately else self._interval)
        last_start: float | None = None
        try:
            while True:
                delay = next_at - self._clock()
                if delay > 0:
                    await self._pause(delay)
                early = self._clock() < next_at
                if early and last_start is not None and self._polls_started > 1:
                    # woken early: poll, but never closer than soon_gap_s to the previous poll (the second poll
                    # of all is exempt: at startup the first one ran before anything was locked)
                    gap = min(last_start + self.soon_gap_s, next_at) - self._clock()
                    if gap > 0:
                        await self._sleep(gap)
                self._poll_soon.clear()
                last_start = self._clock()
                self._note_submissions(early=early)
                await self.poll()
                next_at = max(next_at, last_start)
                while next_at <= self._clock():
                    next_at += self._interval
        finally:
            if self._renice_task is not None:
                self._renice_task.cancel()

    def _note_submissions(self, *, early: bool) -> None:
        """Before a poll: back early polls off while none of them is followed by an sbatch, reset otherwise."""
        if self._submissions is None:
            return
        count, seen = self._submissions(), self._submissions_seen
        self._submissions_seen = count
        if seen is None:  # the first poll
            return
        if count != seen:
            self.soon_gap_s = SOON_POLL_GAP_S
        elif early:
            self.soon_gap_s = min(self.soon_gap_s * 2, max(self._interval, SOON_POLL_GAP_S))

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if someone asked for a poll soon."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._poll_soon.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def renice_done(self) -> None:
        """Wait until the renice pass started by the latest poll (if any) has finished. For tests and tools."""
        task = self._renice_task
        if task is not None:
            await asyncio.shield(task)

    async def poll(self) -> bool:
        """Run squeue once; on success publish the snapshot, wake waiters and renice.

        Port of squeue.go: check and reniceAll. Blocks for squeue only (in the
        executor); the renice pass it starts runs as a task of its own. Returns False when squeue
        failed: the previous snapshot is kept and nobody is woken.
        """
        async with self._poll_lock:
            self._polls_started += 1
            seq = self._polls_started
            started = self._clock()
            loop = asyncio.get_running_loop()
            try:
                text = await loop.run_in_executor(self._executor, self._backend.queue)
                jobs, errors = self._parser.parse(text)
            except SlurmCommandError as exc:
                self._note_failure(str(exc))
                return False
            except Exception as exc:  # a poller that died would leave every container waiting for ever
                log.exception("squeue poll failed unexpectedly; treating it as no information")
                self._note_failure(f"{type(exc).__name__}: {exc}")
                return False
            finally:
                self.polls_done += 1
            self._note_success(errors)
            self._keep_unreadable(jobs, errors)
            if self._wants.keys() - jobs.keys():
                self._wants = {name: want for name, want in self._wants.items() if name in jobs}
            self._snapshot = SqueueSnapshot(
                generation=self._snapshot.generation + 1,
                jobs=MappingProxyType(jobs),
                poll_seq=seq,
                taken_at=started,
            )
            self._warn_low_priority(jobs)
            event, self._updated = self._updated, asyncio.Event()
            event.set()
            self._wake_watchers(jobs, seq)
        # The renice pass runs outside the poll lock and beside the next polls: a long pass (many scontrol
        # calls) must not delay the squeue that submissions and cancellations wait for. A pass still running
        # when the next snapshot comes is not doubled; the first poll that starts after it ended plans afresh.
        if self._renice_task is None or self._renice_task.done():
            if seq <= self._renice_ended_by:
                pass  # this squeue began while the last pass ran: some nice values may be old; the next poll plans
            elif self._defer_renice() and self._deferred < MAX_DEFERRED_RENICE_PASSES:
                self._deferred += 1  # submissions first: they share SlurmCLI's three command slots
            else:
                self._deferred = 0
                self._renice_task = asyncio.create_task(self._renice_all(jobs), name="renice pass")
        return True

    def _keep_unreadable(self, jobs: dict[str, SlurmJob], errors: Sequence[SqueueParseError]) -> None:
        """Keep a job whose line could not be read: an unreadable line is no information about it, never "gone".

        The job keeps its previous line if it had one; otherwise it stands in as state UNKNOWN with Slurm
        priority 0 (so it is not reniced, and is not submitted again).
        """
        for error in errors:
            name = error.about
            if name is None or name in jobs:
                continue
            jobs[name] = self._snapshot.jobs.get(name) or SlurmJob(
                name=name, nice=0, slurm_priority=0, state=UNKNOWN_STATE, reason="squeue line could not be read"
            )

    def _note_failure(self, message: str) -> None:
        if message != self._last_error:
            log.warning(
                "squeue failed; keeping the previous snapshot (generation %d), no information: %s",
                self._snapshot.generation,
                message,
            )
        self._last_error = message

    def _note_success(self, errors: Sequence[SqueueParseError]) -> None:
        if self._last_error is not None:
            log.info("squeue works again after: %s", self._last_error)
            self._last_error = None
        bad_lines = frozenset(e.line for e in errors)
        for e in errors:
            if e.line not in self._last_bad_lines:
                log.warning("%s", e)
        self._last_bad_lines = bad_lines

    def _warn_low_priority(self, jobs: Mapping[str, SlurmJob]) -> None:
        if self._low_basis.same(self._wants, jobs):
            return  # the very jobs and wants of the last check: the same warnings, already given
        warned: dict[str, tuple[str, str]] = {}
        for name, want in self._wants.items():
            job = jobs[name]
            if job.state == "RUNNING" or job.slurm_priority > LOW_PRIORITY_THRESHOLD or want <= 0:
                continue
            key = (job.state, job.reason)
            if self._low_warned.get(name) != key and is_held(job.reason):
                # a held job's priority is 0 by design: say what releases it, not that its priority is low
                log.warning('job "%s" is held (reason "%s"): `scontrol release %s` releases it', name, job.reason,
                            job.job_id or f"Name={name}")
            elif self._low_warned.get(name) != key:
                log.warning(
                    'job "%s" has low priority %d, nice %d, state "%s", reason "%s"',
                    name,
                    job.slurm_priority,
                    job.nice,
                    job.state,
                    job.reason,
                )
            warned[name] = key
        self._low_warned = warned

    def renice_plan(self, jobs: Mapping[str, SlurmJob]) -> list[tuple[str, int]]:
        """Return ``(name, nice)`` for every job whose nice should change, in the order to apply them.

        ``slurm_dispatch.slurm.priority.renice_plan`` with the wants recorded so far. That plan depends only on
        each of our jobs' want, nice and Slurm priority: when none of them changed since the last plan, the last
        plan is the answer (at rest, an empty one), without its two sorts of every job; first checked by the job
        lines themselves, which are the very same objects when squeue printed the same lines (``SqueueParser``).
        Does not block.
        """
        if self._plan_basis.same(self._wants, jobs):  # the very jobs of the last plan
            return list(self._plan)
        inputs = {name: (want, jobs[name].nice, jobs[name].slurm_priority)
                  for name, want in self._wants.items() if name in jobs}
        if inputs != self._plan_inputs:
            self._plan = renice_plan(self._wants, jobs, self._spread, nice_fn=self._want_nice)
            self._plan_inputs = inputs
            self.plans_computed += 1
        return list(self._plan)

    async def _renice_all(self, jobs: Mapping[str, SlurmJob]) -> None:
        commands = renice_commands(self.renice_plan(jobs), jobs)
        if not commands:
            return  # nothing changed: a squeue that ran meanwhile shows the same nice values
        try:
            await self._renice(commands)
        finally:
            self._renice_ended_by = self._polls_started

    async def _renice(self, commands: Sequence[Renice]) -> None:
        """Run ``commands`` one after the other; a failed one is logged and the rest still run."""
        loop = asyncio.get_running_loop()
        for command in commands:
            if command.job_ids:
                call = functools.partial(self._backend.renice_jobs, command.job_ids, command.nice,
                                         cluster=command.cluster)
                what = "jobs " + ",".join(command.job_ids)
            else:
                call = functools.partial(self._backend.renice, command.name, command.nice)
                what = "job " + command.name
            try:
                await loop.run_in_executor(self._executor, call)
            except SlurmCommandError as exc:  # a job that just ended; the others were reniced
                log.info("renice of %s to %d failed (ignored): %s", what, command.nice, exc)
