"""SqueueChecker against FakeSlurm: snapshots, waiting for the next poll, wants and the renice pass.

Polls are driven by the test (``await checker.poll()``), so nothing here sleeps;
``run()``'s timing is tested with an injected clock and sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from plugins.fake_slurm import Call, FakeSlurm
from plugins.fake_time import FakeClock, InlineExecutor

from slurm_dispatch.slurm.squeue import SqueueChecker

T = TypeVar("T")

A, B, C, D = (f"zzzzz-dz642-{c * 15}" for c in "abcd")



async def polled(sq: SqueueChecker) -> bool:
    """One poll, then its renice pass (which runs beside the next polls in the service) to its end."""
    ok = await sq.poll()
    await sq.renice_done()
    return ok


def rank_nice(jobs: Sequence[Any], spread: int) -> list[int]:
    """A stand-in for want_nice: nice = 10 × rank. Same as the real one on short, just-submitted queues."""
    return [10 * i for i in range(len(jobs))]


def run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), timeout=20))


def checker(fake: FakeSlurm, **kw: Any) -> SqueueChecker:
    kw.setdefault("want_nice", rank_nice)
    return SqueueChecker(backend=fake, poll_interval_s=10, **kw)


def submit(fake: FakeSlurm, name: str, *extra: str) -> None:
    fake.submit(args=[f"--job-name={name}", "--nice=10000", *extra], script="#!/bin/sh\n", env={})


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``predicate`` holds (for executor threads to arrive); fail after 5 s."""
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Let every task that is ready run (a woken waiter runs within a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_snapshot_before_and_after_first_poll(fake_slurm: FakeSlurm) -> None:
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        assert sq.snapshot().generation == 0
        assert sq.snapshot().jobs == {}
        assert await polled(sq) is True
        snap = sq.snapshot()
        assert snap.generation == 1
        assert snap.jobs[A].nice == 10000
        assert snap.jobs[A].state == "PENDING"

    run(go)


def test_failed_squeue_keeps_snapshot_and_wakes_nobody(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        before = sq.snapshot()
        waiter = asyncio.create_task(sq.has_uuid(B))
        await settle()
        fake_slurm.queue_unavailable = True
        fake_slurm.finish(A)
        submit(fake_slurm, B)
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.slurm.squeue"):
            assert await polled(sq) is False
            assert await polled(sq) is False
        await settle()
        assert not waiter.done()
        assert sq.snapshot() is before  # A is still "there": no information is not absence
        assert A in sq.snapshot().jobs
        failures = [r for r in caplog.records if "squeue failed" in r.getMessage()]
        assert len(failures) == 1, "a repeating failure is logged once, when it starts"
        fake_slurm.queue_unavailable = False
        assert await polled(sq) is True
        assert await waiter is True  # answered from the successful poll, which sees B
        assert sq.snapshot().generation == before.generation + 1
        assert A not in sq.snapshot().jobs

    run(go)


def test_has_uuid_waits_for_the_next_successful_poll(fake_slurm: FakeSlurm) -> None:
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        assert A in sq.snapshot().jobs
        waiter = asyncio.create_task(sq.has_uuid(A))
        await settle()
        assert not waiter.done()
        fake_slurm.finish(A)
        await polled(sq)
        assert await waiter is False

    run(go)


def test_has_uuid_ignores_a_squeue_that_started_before_the_call(fake_slurm: FakeSlurm) -> None:
    # squeue is running when sbatch returns: its output may lack the new job, so it must not answer.
    sq = checker(fake_slurm)
    gate = fake_slurm.gate("queue")

    async def go() -> None:
        in_flight = asyncio.create_task(polled(sq))
        await until(lambda: fake_slurm.waiting.get("queue") == 1, "squeue to be in flight")
        submit(fake_slurm, A)
        waiter = asyncio.create_task(sq.has_uuid(A))
        await settle()
        gate.set()
        assert await in_flight is True
        await settle()
        assert A not in sq.snapshot().jobs
        assert not waiter.done()
        await polled(sq)
        assert await waiter is True

    run(go)


def test_next_snapshot_returns_the_fresh_one(fake_slurm: FakeSlurm) -> None:
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        nxt = asyncio.create_task(sq.next_snapshot())
        await settle()
        submit(fake_slurm, A)
        await polled(sq)
        snap = await nxt
        assert snap.generation == 2
        assert list(snap.jobs) == [A]

    run(go)


def test_set_priority_on_a_known_job_does_not_wait(fake_slurm: FakeSlurm) -> None:
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        await asyncio.wait_for(sq.set_want(A, 5), timeout=5)
        assert sq.want(A) == 5
        assert fake_slurm.count("queue") == 1

    run(go)


def test_set_priority_waits_one_poll_for_a_just_submitted_job(fake_slurm: FakeSlurm) -> None:
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        submit(fake_slurm, A)
        setter = asyncio.create_task(sq.set_want(A, 5))
        await settle()
        assert not setter.done()
        assert sq.want(A) == 0
        await polled(sq)
        await setter
        assert sq.want(A) == 5
        await polled(sq)  # the renice pass of the next poll uses it
        assert fake_slurm.reniced() == [(A, 0)]

    run(go)


def test_set_priority_gives_up_silently_when_the_job_stays_missing(fake_slurm: FakeSlurm) -> None:
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        setter = asyncio.create_task(sq.set_want(A, 5))
        await settle()
        await polled(sq)
        await setter
        submit(fake_slurm, A)  # arrives too late for that call
        await polled(sq)
        assert sq.want(A) == 0
        assert fake_slurm.reniced() == []

    run(go)


def test_renice_only_where_nice_changes(fake_slurm: FakeSlurm) -> None:
    for name in (A, B, C):
        submit(fake_slurm, name)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        for name, want in ((A, 30), (B, 20), (C, 10)):
            await sq.set_want(name, want)
        await polled(sq)
        assert fake_slurm.reniced() == [(A, 0), (B, 10), (C, 20)]
        await polled(sq)
        assert len(fake_slurm.reniced()) == 3, "nothing changes once applied"
        submit(fake_slurm, D)
        await polled(sq)
        await sq.set_want(D, 40)
        await polled(sq)
        assert fake_slurm.reniced()[3:] == [
            (D, 0),
            (A, 10),
            (B, 20),
            (C, 30),
        ]

    run(go)


def test_no_renice_pass_is_planned_from_a_squeue_that_started_before_the_last_pass_ended(
    fake_slurm: FakeSlurm,
) -> None:
    """A squeue that began while a pass was renicing shows old nice values: planning from it would renice again."""
    for name in (A, B, C):
        submit(fake_slurm, name)
    sq = checker(fake_slurm)
    renices = fake_slurm.gate("renice_jobs")

    async def go() -> None:
        await polled(sq)
        for name, want in ((A, 30), (B, 20), (C, 10)):
            await sq.set_want(name, want)
        assert await sq.poll()  # starts the pass, held at its first renice
        await until(lambda: fake_slurm.waiting.get("renice_jobs") == 1, "the pass to be renicing")
        squeue = fake_slurm.gate("queue")
        stale = asyncio.create_task(sq.poll())  # squeue takes its picture now, before the pass has reniced
        await until(lambda: fake_slurm.waiting.get("queue") == 1, "squeue to be in flight")
        renices.set()
        await sq.renice_done()
        reniced = fake_slurm.reniced()
        assert reniced == [(A, 0), (B, 10), (C, 20)]
        squeue.set()
        assert await stale is True
        await sq.renice_done()
        assert fake_slurm.reniced() == reniced  # the stale picture started no pass
        await polled(sq)
        await sq.renice_done()
        assert fake_slurm.reniced() == reniced  # a fresh one finds nothing to do

    run(go)


def test_the_renice_plan_is_worked_out_again_only_when_a_want_nice_or_priority_changed(
    fake_slurm: FakeSlurm,
) -> None:
    """At rest every poll would sort every job to find nothing to change; an unchanged input reuses the plan."""
    for name in (A, B, C):
        submit(fake_slurm, name)
    calls: list[int] = []

    def counting_nice(jobs: Sequence[Any], spread: int) -> list[int]:
        calls.append(len(jobs))
        return rank_nice(jobs, spread)

    sq = checker(fake_slurm, want_nice=counting_nice)

    async def go() -> None:
        await polled(sq)
        for name, want in ((A, 30), (B, 20), (C, 10)):
            await sq.set_want(name, want)
        await polled(sq)  # plans and renices
        await polled(sq)  # the renices show: a new input, an empty plan
        assert fake_slurm.reniced() == [(A, 0), (B, 10), (C, 20)]
        computed, worked_out = sq.plans_computed, len(calls)
        for _ in range(3):
            await polled(sq)
        assert sq.plans_computed == computed, "nothing changed: the last plan was reused"
        assert len(calls) == worked_out, "want_nice was not run again"
        await sq.set_want(C, 40)  # a want changes
        await polled(sq)
        assert sq.plans_computed == computed + 1
        assert fake_slurm.reniced()[3:] == [(C, 0), (A, 10), (B, 20)]
        fake_slurm.renice(A, 500)  # someone else renices one of our jobs: its nice changes
        await polled(sq)
        assert fake_slurm.reniced()[-1] == (A, 10), "put back"

    run(go)


def test_renice_ties_break_by_uuid_descending(fake_slurm: FakeSlurm) -> None:
    for name in (A, C, B):
        submit(fake_slurm, name)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        for name in (A, B, C):
            await sq.set_want(name, 7)
        await polled(sq)
        assert fake_slurm.reniced() == [(C, 0), (B, 10), (A, 20)]

    run(go)


def test_renice_skips_want_zero_and_unknown_jobs_and_includes_running(fake_slurm: FakeSlurm) -> None:
    for name in (A, B, C):
        submit(fake_slurm, name)
    submit(fake_slurm, "not-arvados")
    fake_slurm.start(A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        await sq.set_want(A, 9)
        await sq.set_want(B, 0)
        await sq.set_want(C, 3)
        await polled(sq)
        assert fake_slurm.reniced() == [(A, 0), (C, 10)]

    run(go)


def test_renice_uses_the_real_want_nice_by_default(fake_slurm: FakeSlurm) -> None:
    # Go's wantNice (services/crunch-dispatch-slurm/priority.go) on three jobs just submitted, except that
    # priority/basic gives each later submission a base one lower, so B and C need 1 and 2 less nice than 10 and 20
    # to land 10 apart.
    for name in (A, B, C):
        submit(fake_slurm, name)
    sq = SqueueChecker(backend=fake_slurm, poll_interval_s=10)

    async def go() -> None:
        await polled(sq)
        for name, want in ((A, 3), (B, 2), (C, 1)):
            await sq.set_want(name, want)
        await polled(sq)
        assert fake_slurm.reniced() == [(A, 0), (B, 9), (C, 18)]
        prios = [fake_slurm.job(n).slurm_priority for n in (A, B, C)]
        assert prios[0] - prios[1] == prios[1] - prios[2] == 10
        await polled(sq)
        assert len(fake_slurm.reniced()) == 3

    run(go)


def test_failed_renice_is_ignored_and_the_pass_goes_on(fake_slurm: FakeSlurm) -> None:
    for name in (A, B):
        submit(fake_slurm, name)
    fake_slurm.fail("renice_jobs", nth=1)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        await sq.set_want(A, 2)
        await sq.set_want(B, 1)
        assert await polled(sq) is True
        assert [name for name, _ in fake_slurm.reniced()] == [A, B]
        assert fake_slurm.job(A).nice == 10000
        assert fake_slurm.job(B).nice == 10
        await polled(sq)  # tried again at the next poll
        assert fake_slurm.job(A).nice == 0

    run(go)


def test_wants_carry_over_and_are_dropped_with_the_job(fake_slurm: FakeSlurm) -> None:
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        await sq.set_want(A, 4)
        await polled(sq)
        await polled(sq)
        assert sq.want(A) == 4
        fake_slurm.queue_unavailable = True
        await polled(sq)
        assert sq.want(A) == 4, "a failed poll forgets nothing"
        fake_slurm.queue_unavailable = False
        fake_slurm.finish(A)
        await polled(sq)
        assert sq.want(A) == 0

    run(go)


def test_low_priority_warning_once_per_state_change(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    submit(fake_slurm, A, "--hold")  # held: Slurm priority 0
    submit(fake_slurm, B, "--hold")  # no want: never warned about
    sq = checker(fake_slurm, want_nice=lambda jobs, spread: [j.nice for j in jobs])

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "low priority" in r.getMessage() or "held" in r.getMessage()]

    async def go() -> None:
        await polled(sq)
        await sq.set_want(A, 1)
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.slurm.squeue"):
            await polled(sq)
            await polled(sq)
            job_id = fake_slurm.job(A).job_id
            assert warnings() == [f'job "{A}" is held (reason "JobHeldUser"): `scontrol release {job_id}` releases it']
            fake_slurm.job(A).reason = "Priority"
            await polled(sq)
            await polled(sq)
            assert len(warnings()) == 2
            fake_slurm.release(A)
            await polled(sq)
            fake_slurm.job(A).held = True
            await polled(sq)
            assert len(warnings()) == 3, "warned again after it recovered and fell back"

    run(go)


def test_unparsable_lines_are_logged_once_while_they_persist(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    submit(fake_slurm, "someone-elses-job")
    fake_slurm.garbled.add("someone-elses-job")
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.slurm.squeue"):
            await polled(sq)
            await polled(sq)
        assert list(sq.snapshot().jobs) == [A]
        logged = [r for r in caplog.records if "ignoring unparsed line" in r.getMessage()]
        assert len(logged) == 1

    run(go)


def run_polls(fake: FakeSlurm, sq_kw: dict[str, Any], *, sleeps: int, squeue_s: float = 0.0) -> list[tuple[str, float]]:
    """Run a checker's ``run()`` on virtual time until it has begun ``sleeps`` sleeps; return polls and sleeps.

    Each squeue takes ``squeue_s`` virtual seconds.
    """
    clock = FakeClock()
    events: list[tuple[str, float]] = []

    def on_call(call: Call) -> None:
        if call.kind == "queue":
            events.append(("poll", clock.now))
            clock.advance(squeue_s)

    async def sleep(seconds: float) -> None:
        events.append(("sleep", seconds))
        await clock.sleep(seconds)

    fake.on_call = on_call
    sq = checker(fake, clock=clock, sleep=sleep, executor=InlineExecutor(), **sq_kw)

    async def go() -> None:
        task = asyncio.create_task(sq.run())
        await clock.run_until(lambda: sum(1 for kind, _ in events if kind == "sleep") >= sleeps, "the sleeps")
        task.cancel()

    asyncio.run(asyncio.wait_for(go(), timeout=20))
    return events


def test_run_first_poll_after_one_interval(fake_slurm: FakeSlurm) -> None:
    events = run_polls(fake_slurm, {}, sleeps=3)
    assert events == [("sleep", 10), ("poll", 1010), ("sleep", 10), ("poll", 1020), ("sleep", 10)]


def test_run_first_poll_immediately_when_asked(fake_slurm: FakeSlurm) -> None:
    events = run_polls(fake_slurm, {"first_poll_immediately": True}, sleeps=2)
    assert events == [("poll", 1000), ("sleep", 10), ("poll", 1010), ("sleep", 10)]


def test_run_skips_ticks_missed_by_a_slow_poll(fake_slurm: FakeSlurm) -> None:
    events = run_polls(fake_slurm, {"first_poll_immediately": True}, sleeps=2, squeue_s=25)  # 2.5 intervals each
    # The poll at 1000 ends at 1025: the ticks at 1010 and 1020 are dropped, the next is 1030.
    assert events == [("poll", 1000), ("sleep", 5), ("poll", 1030), ("sleep", 5)]


def test_held_jobs_are_not_reniced(fake_slurm: FakeSlurm) -> None:
    """With Slurm 22.05 a renice gives a held job a priority again, which releases the hold."""
    submit(fake_slurm, A)
    submit(fake_slurm, B, "--hold")
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        await sq.set_want(A, 100)
        await sq.set_want(B, 200)  # wanted first, but held by someone
        await polled(sq)
        assert fake_slurm.reniced() == [(A, 0)]

    run(go)


def test_a_poll_asked_for_soon_comes_before_the_interval(fake_slurm: FakeSlurm) -> None:
    """A container about to be submitted need not wait a whole PollInterval to learn whether its job exists."""

    clock = FakeClock()

    async def go() -> None:
        sq = SqueueChecker(backend=fake_slurm, poll_interval_s=3600, first_poll_immediately=True,
                           want_nice=rank_nice, clock=clock, sleep=clock.sleep, executor=InlineExecutor())
        poller = asyncio.create_task(sq.run())
        try:
            await clock.run_until(lambda: sq.snapshot().generation == 1, "the first poll")
            submit(fake_slurm, A)
            plain = asyncio.create_task(sq.has_uuid(A))
            await clock.settle()
            assert not plain.done(), "a poll came without being asked for"
            soon = asyncio.create_task(sq.has_uuid(A, soon=True))
            await clock.run_until(soon.done, "the early poll", limit_s=1.0)  # within the early-poll gap
            assert soon.result() is True
            assert fake_slurm.count("queue") == 2
            plain.cancel()
        finally:
            poller.cancel()

    run(go)


def test_early_polls_back_off_while_no_sbatch_follows_them_and_come_back_when_one_does(fake_slurm: FakeSlurm) -> None:
    """Early polls serve submissions: while they lead to none, each comes twice as late (up to PollInterval)."""
    clock = FakeClock()
    submissions = [0]

    async def go() -> None:
        sq = SqueueChecker(backend=fake_slurm, poll_interval_s=3600, first_poll_immediately=True,
                           want_nice=rank_nice, clock=clock, sleep=clock.sleep, executor=InlineExecutor(),
                           submissions=lambda: submissions[0])
        poller = asyncio.create_task(sq.run())
        starts: list[float] = []
        fake_slurm.on_call = lambda call: starts.append(clock()) if call.kind == "queue" else None
        async def early() -> None:
            asked = asyncio.create_task(sq.has_uuid(A, soon=True))
            await clock.run_until(asked.done, "the early poll", limit_s=60)

        try:
            await clock.run_until(lambda: sq.snapshot().generation == 1, "the first poll")
            for _ in range(6):  # a caller asks for an early poll again and again, and nothing is submitted
                await early()
            gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts[1:])]
            assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0]
            assert sq.soon_gap_s == 32
            submissions[0] += 1  # an sbatch came after the last early poll: the gap is short again
            await early()
            assert sq.soon_gap_s == 0.5
            before = len(starts)
            await early()
            assert round(starts[before] - starts[before - 1], 3) == 0.5
        finally:
            poller.cancel()

    run(go)


def test_an_unreadable_line_about_one_of_ours_is_no_information_not_gone(fake_slurm: FakeSlurm) -> None:
    """Go skips a bad squeue line, so its container looks gone and is cancelled; here the job stays as it was."""
    submit(fake_slurm, A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        before = sq.snapshot().jobs[A]
        fake_slurm.garbled.add(A)
        gone = asyncio.create_task(sq.wait_gone(A))
        assert await polled(sq) is True
        await settle()
        assert not gone.done(), "an unreadable line made the job look gone"
        assert sq.snapshot().jobs[A] == before
        present = asyncio.create_task(sq.has_uuid(A))
        await settle()
        await polled(sq)
        assert await asyncio.wait_for(present, 5) is True, "a submission would follow"
        fake_slurm.garbled.clear()
        fake_slurm.finish(A)
        await polled(sq)
        await asyncio.wait_for(gone, 5)

    run(go)


def test_an_unreadable_line_about_a_job_never_seen_stands_in_as_unknown(fake_slurm: FakeSlurm) -> None:
    """A job of ours first seen through a bad line is there (never submitted twice), with no Slurm priority."""
    submit(fake_slurm, A)
    fake_slurm.garbled.add(A)
    sq = checker(fake_slurm)

    async def go() -> None:
        await polled(sq)
        job = sq.snapshot().jobs[A]
        assert (job.state, job.slurm_priority) == ("UNKNOWN", 0)
        await sq.set_want(A, 100)
        await polled(sq)
        assert fake_slurm.reniced() == []

    run(go)


# --- watches: judged once per line, not once per poll ------------------------------------------------------------


class _Lines:
    """A backend whose squeue prints ``text``; with ``gate`` cleared, squeue blocks until it is set."""

    def __init__(self, text: str) -> None:
        import threading

        self.text = text
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def queue(self) -> str:
        self.entered.set()
        assert self.gate.wait(10)
        return self.text


PENDING_A = f"7|10000|100|PENDING|UNLIMITED||{A}|BeginTime\n"
RUNNING_A = f"7|10000|100|RUNNING|UNLIMITED|c1|{A}|None\n"


def test_a_watch_begun_while_a_poll_runs_is_judged_by_the_next_poll_though_its_line_is_unchanged() -> None:
    """The poll under way cannot judge it (it may have started before the caller's news); the next one must,
    even though the parser hands it the very same job object: skipping unchanged lines must not skip it."""
    backend = _Lines(PENDING_A)
    sq = SqueueChecker(backend=backend, poll_interval_s=10)  # type: ignore[arg-type]

    async def go() -> None:
        assert await sq.poll()
        backend.gate.clear()
        backend.entered.clear()
        second = asyncio.create_task(sq.poll())
        await until(backend.entered.is_set, "the second squeue to start")
        watch = asyncio.create_task(sq.wait_change(A, None))  # it has not seen the job: its appearance is news
        await settle()
        backend.gate.set()
        assert await second
        await settle()
        assert not watch.done()
        assert await sq.poll()
        job = await asyncio.wait_for(watch, 1)
        assert job is not None and job.state == "PENDING"

    run(go)


def test_an_unchanged_line_wakes_no_watch_and_a_changed_one_does() -> None:
    backend = _Lines(PENDING_A)
    sq = SqueueChecker(backend=backend, poll_interval_s=10)  # type: ignore[arg-type]

    async def go() -> None:
        assert await sq.poll()
        seen = sq.snapshot().jobs[A]
        watch = asyncio.create_task(sq.wait_change(A, seen))
        gone = asyncio.create_task(sq.wait_gone(A))
        await settle()
        for _ in range(3):
            assert await sq.poll()
            await settle()
            assert not watch.done() and not gone.done()
        backend.text = RUNNING_A
        assert await sq.poll()
        job = await asyncio.wait_for(watch, 1)
        assert job is not None and job.state == "RUNNING" and job.nodes == "c1"
        assert not gone.done()
        backend.text = ""
        assert await sq.poll()
        assert await asyncio.wait_for(gone, 1) is None

    run(go)
