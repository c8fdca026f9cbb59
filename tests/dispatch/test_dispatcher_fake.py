"""The Dispatcher against an in-memory FakeArvados: one tick at a time, no sleeping."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dispatch_fakes import ME, OTHER, FakeArvados, Recorder, until
from plugins.fake_time import FakeClock

from slurm_dispatch.dispatch import Dispatcher
from slurm_dispatch.dispatch.fallback import MAX_HAND_BACKS
from slurm_dispatch.errors import (
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosUnavailable,
    UnsatisfiableContainer,
)
from slurm_dispatch.model import ContainerState

Scenario = Callable[[Dispatcher, FakeArvados, Recorder], Awaitable[None]]


def run(
    scenario: Scenario, *, fake: FakeArvados | None = None, **kwargs: Any
) -> tuple[FakeArvados, Recorder]:
    """Run ``scenario`` with a fresh dispatcher on a fresh loop, then abandon its trackers."""
    fake = fake or FakeArvados()
    recorder = Recorder()
    kwargs.setdefault("poll_period", 10.0)

    async def main() -> None:
        d = Dispatcher(fake, recorder, **kwargs)
        try:
            await scenario(d, fake, recorder)
        finally:
            await d.aclose()

    asyncio.run(main())
    return fake, recorder


def unavailable(what: str = "list") -> ArvadosUnavailable:
    return ArvadosUnavailable(500, "GET", "/arvados/v1/containers", f"injected {what} failure")


def test_queued_container_is_locked_and_tracked_as_locked() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        held = fake.add("Queued", priority=0)
        report = await d.tick()
        assert report.locked == 1 and report.started == 1
        await until(lambda: uuid in rec.seen)
        first = rec.seen[uuid][0]
        assert first.state is ContainerState.LOCKED and first.locked_by_uuid == ME
        assert fake.state(uuid) == "Locked"
        assert fake.state(held) == "Queued" and not d.is_tracking(held)

    run(scenario)


def test_requests_per_tick_count_probe_and_pages() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        for _ in range(25):
            fake.add("Running", locked_by=ME)
        await d.tick()
        await until(lambda: len(rec.seen) == 25)
        fake.calls.clear()
        report = await d.tick()
        # query A: a count probe and 3 pages of 10; query B: a count probe only; nothing missing.
        assert fake.count("list") == 1 + 3 + 1
        assert report.woken == 0 and report.records == 25

    run(scenario, batch_size=10)


def test_lock_race_lost_to_another_token_starts_no_tracker(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeArvados()

    def other_dispatcher_wins(uuid: str) -> None:
        fake.set(uuid, state="Locked", locked_by_uuid=OTHER)

    fake.lock_hook = other_dispatcher_wins

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        with caplog.at_level(logging.INFO, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert report.started == 0 and not d.tracked()
        assert f"did not lock container {uuid}" in caplog.text
        fake.lock_hook = None
        await d.tick()  # now Locked by OTHER: ignored, never locked again
        assert fake.count("lock") == 1 and not d.tracked() and rec.started == []

    run(scenario, fake=fake)


def test_container_locked_by_another_token_is_never_tracked() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=OTHER)
        await d.tick()
        await d.track_container(uuid)
        assert not d.tracked() and fake.count("lock") == 0

    run(scenario)


@pytest.mark.parametrize("state", ["Cancelled", "Complete", "Queued"])
def test_tracker_is_closed_when_the_container_leaves(state: str) -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        await d.tick()
        await until(lambda: uuid in rec.seen)
        fake.set(uuid, state="Running")
        await d.tick()
        await until(lambda: len(rec.seen[uuid]) == 2)
        fake.set(uuid, state=state, locked_by_uuid="")
        report = await d.tick()
        assert report.closed == 1 and report.locked == 0  # no re-lock in the same pass
        await until(lambda: uuid in rec.closed and uuid not in d.tracked())
        # A final record (Complete, Cancelled) reaches the RunContainer before the close, unlike Go's
        # checkListForUpdates: the job of a Complete container may end by itself. A requeued one's does not.
        final = [state] if state != "Queued" else []
        assert [c.state.value for c in rec.seen[uuid]] == ["Locked", "Running", *final]
        if state == "Queued":  # the old tracker has finished: the next tick may lock it again
            report = await d.tick()
            assert report.locked == 1 and rec.started == [uuid, uuid]

    run(scenario)


def test_requeued_container_is_not_relocked_while_its_old_tracker_cleans_up() -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def slow_cleanup(d: Dispatcher, c: Any, updates: Any) -> None:
        calls.append(c.uuid)
        while await updates.next() is not None:
            pass
        await release.wait()  # e.g. scancel still waiting for the job to leave squeue

    async def main() -> None:
        fake = FakeArvados()
        d = Dispatcher(fake, slow_cleanup)
        uuid = fake.add("Queued")
        await d.tick()
        fake.set(uuid, state="Queued", locked_by_uuid="")
        await d.tick()
        assert not d.is_tracking(uuid) and uuid in d.tracked()
        report = await d.tick()
        assert report.locked == 0 and fake.count("lock") == 1
        release.set()
        await until(lambda: uuid not in d.tracked())
        report = await d.tick()
        assert report.locked == 1 and calls == [uuid, uuid]
        await d.aclose()

    asyncio.run(main())


def test_tracked_container_locked_by_someone_else_closes_its_tracker() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        await d.tick()
        fake.set(uuid, state="Locked", locked_by_uuid=OTHER)
        report = await d.tick()
        assert report.closed == 1
        await until(lambda: uuid in rec.closed)
        assert [c.locked_by_uuid for c in rec.seen[uuid]] == [ME]  # the foreign record was not delivered
        assert fake.count("update_state") == 0 and fake.count("unlock") == 0

    run(scenario)


def test_only_changed_records_wake_a_tracker() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=ME, priority=3)
        assert (await d.tick()).started == 1
        assert (await d.tick()).woken == 0
        fake.set(uuid, priority=7)
        assert (await d.tick()).woken == 1
        await until(lambda: len(rec.seen[uuid]) == 2)
        assert rec.seen[uuid][1].priority == 7
        assert (await d.tick()).woken == 0

    run(scenario)


def test_container_returned_by_no_query_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=ME)
        await d.tick()
        del fake.records[uuid]
        with caplog.at_level(logging.INFO, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert report.closed == 1
        assert f"container {uuid} not returned by any query, stopping tracking" in caplog.text
        await until(lambda: uuid in rec.closed)

    run(scenario)


@pytest.mark.parametrize(
    ("failures", "message"),
    [
        pytest.param([unavailable("count")], "error getting count of containers", id="count-probe-A"),
        pytest.param([None, unavailable()], "error getting list of containers", id="page-A"),
        pytest.param(
            [None, None, unavailable("count")], "error getting count of containers", id="count-probe-B"
        ),
        pytest.param([None, None, None, unavailable()], "error getting count of containers", id="uuid-query"),
    ],
)
def test_failed_query_closes_no_tracker(
    failures: list[Exception | None], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        gone = fake.add("Running", locked_by=ME)
        stays = fake.add("Running", locked_by=ME)
        await d.tick()
        del fake.records[gone]  # would be closed by a successful tick
        # Calls of a tick now: A count, A page, B count, uuid-in count, uuid-in page.
        wrapped = _FailNth(fake, failures)
        d._client = wrapped  # swap in the failing view for one tick
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert not report.ok and report.closed == 0
        assert d.is_tracking(gone) and d.is_tracking(stays)
        assert message in caplog.text
        assert caplog.text.count("error getting") == 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.dispatch"):
            wrapped.failures = list(failures)
            await d.tick()
        assert "error getting" not in caplog.text  # the same error again is not re-logged at warning
        d._client = fake
        report = await d.tick()
        assert report.ok and report.closed == 1 and not d.is_tracking(gone) and d.is_tracking(stays)

    run(scenario)


class _FailNth:
    """Wraps FakeArvados; the i-th list call of each tick fails when failures[i] is an error."""

    def __init__(self, fake: FakeArvados, failures: list[Exception | None]) -> None:
        self._fake = fake
        self.failures = list(failures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fake, name)

    def list(self, **kwargs: Any) -> Any:
        error = self.failures.pop(0) if self.failures else None
        if error is not None:
            raise error
        return self._fake.list(**kwargs)


def test_auth_error_stops_the_dispatcher() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        fake.fail("list", ArvadosAuthError(401, "GET", "/arvados/v1/containers", "bad token"))
        with pytest.raises(ArvadosAuthError):
            await d.tick()

    run(scenario)


def test_failed_run_container_writes_a_log_and_falls_back_on_the_second_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        rec.fail[uuid] = RuntimeError("sbatch exploded")
        with caplog.at_level(logging.INFO, logger="slurm_dispatch.dispatch"):
            await d.tick()
            await until(lambda: len(fake.logs) == 1)
            assert fake.logs[0] == {
                "object_uuid": uuid,
                "event_type": "dispatch",
                "text": f"Error running container {uuid}: sbatch exploded",
            }
            await d.tick()  # first update after the failure: possibly stale, skipped
            assert fake.count("update_state") == 0
            await d.tick()  # second update, still Locked: fall back to Queued
            await until(lambda: fake.state(uuid) == "Queued")
        assert f"container {uuid} state is still Locked, changing to Queued" in caplog.text
        await d.tick()  # Queued: the tracker is closed and forgotten
        await until(lambda: uuid not in d.tracked())
        assert fake.count("update_state") == 1

    run(scenario)


def test_unsatisfiable_container_is_cancelled_with_the_instance_type_list() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        rec.fail[uuid] = UnsatisfiableContainer(
            uuid,
            "constraints not satisfiable by any configured instance type",
            ['Type "small": 2 VCPUs, 4000000000 RAM, 100000000000 Scratch, 0.020000 Price'],
        )
        await d.tick()
        await until(lambda: len(fake.logs) == 1)
        assert fake.logs[0]["text"] == (
            f"cannot run container {uuid}: constraints not satisfiable by any configured instance type\n"
            "Available instance types:\n"
            'Type "small": 2 VCPUs, 4000000000 RAM, 100000000000 Scratch, 0.020000 Price\n'
        )
        await d.tick()
        await d.tick()
        await until(lambda: fake.state(uuid) == "Cancelled")

    run(scenario)


def test_fallback_failure_is_logged_once_not_every_tick(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Locked", locked_by=ME)
        rec.finish.add(uuid)  # returns while the container is still Locked: the fallback PUTs Queued
        fake.fail("update_state", *(ArvadosUnavailable(503, "PUT", "/x", "down") for _ in range(4)))
        await d.tick()
        await until(lambda: uuid in rec.returned)
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.dispatch"):
            for n in range(4):
                await d.tick()

                def puts_done(want: int = n) -> bool:
                    return fake.count("update_state") == want

                await until(puts_done)
        assert caplog.text.count(f"error updating container {uuid} to state Queued") == 1

    run(scenario)


def test_fallback_hands_a_container_still_running_back_to_be_adopted_afresh() -> None:
    """Go PUTs Queued on a Running container (422 on every tick for ever) and nothing follows its job; we neither
    cancel it (its job may be alive: an sbatch that timed out yet created the job) nor leave it: the tracker ends,
    and the next tick adopts it, so a new RunContainer follows the job or settles the container."""

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=ME)
        rec.fail[uuid] = RuntimeError("the RunContainer failed while the job ran")
        await d.tick()
        await until(lambda: uuid in rec.returned)
        del rec.fail[uuid]
        for _ in range(4):
            await d.tick()
            if rec.started.count(uuid) == 2:
                break
        assert rec.started.count(uuid) == 2, "adopted again by a later tick"
        assert fake.state(uuid) == "Running"
        assert not [args for m, args in fake.calls if m in ("update_state", "update")]

    run(scenario)


def test_a_running_container_whose_runcontainer_fails_every_time_is_cancelled_after_the_hand_backs() -> None:
    """A RunContainer that fails every time (a bug) must not loop for ever: after MAX_HAND_BACKS hand-backs in a row
    the container is cancelled, with the reason."""

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=ME)
        fake.records[uuid]["runtime_status"] = {"activity": "running the workflow"}  # crunch-run's: kept
        rec.fail[uuid] = RuntimeError("fails every time")
        for _ in range(40):
            await d.tick()
            if fake.state(uuid) == "Cancelled":
                break
        assert fake.state(uuid) == "Cancelled"
        assert rec.started.count(uuid) == MAX_HAND_BACKS + 1
        assert [args for m, args in fake.calls if m == "update_state"] == [(uuid, "Cancelled")]
        assert "failed 4 times in a row" in fake.records[uuid]["runtime_status"]["error"]
        assert fake.records[uuid]["runtime_status"]["activity"] == "running the workflow"
        # its job may still run, and a Cancelled container is in no query: once the tick has closed the tracker, a
        # closed tracker follows (as for a leftover job), whose RunContainer scancels the job
        for _ in range(5):
            await d.tick()
            if rec.started.count(uuid) == MAX_HAND_BACKS + 2:
                break
        assert rec.started.count(uuid) == MAX_HAND_BACKS + 2

    run(scenario)


def test_throttle_holds_lock_attempts_per_container() -> None:
    clock = FakeClock()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued")
        fake.fail(
            "lock", ArvadosConflict(422, "POST", "/x", "race"), ArvadosConflict(422, "POST", "/x", "race")
        )
        await d.tick()
        assert fake.count("lock") == 1
        clock.now += 29
        await d.tick()
        assert fake.count("lock") == 1  # held
        clock.now += 1
        await d.tick()
        assert fake.count("lock") == 2  # hold passed: one more attempt (fails again)
        await d.tick()
        assert fake.count("lock") == 2
        clock.now += 30
        await d.tick()
        assert fake.count("lock") == 3 and d.is_tracking(uuid)

    run(scenario, min_retry_period=30.0, clock=clock)


def test_throttle_applies_to_adoption_but_not_to_track_container() -> None:
    clock = FakeClock()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", locked_by=ME)
        rec.finish.add(uuid)
        await d.tick()
        await until(lambda: uuid in rec.returned)
        assert rec.started == [uuid]
        # The tracker finishes; the container is closed and forgotten while still Running.
        await d.tick()
        del fake.records[uuid]
        await d.tick()
        await until(lambda: uuid not in d.tracked())
        fake.add("Running", locked_by=ME, uuid=uuid)
        await d.tick()
        assert rec.started == [uuid]  # adoption held by the throttle
        await d.track_container(uuid)
        await until(lambda: rec.started == [uuid, uuid])

    run(scenario, min_retry_period=30.0, clock=clock)


def test_track_container_adopts_and_cleans_up() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        running = fake.add("Running", locked_by=ME)
        done = fake.add("Complete")
        await d.track_container(running)
        await d.track_container(running)  # already tracked: nothing more
        await d.track_container(done)
        await until(lambda: done in rec.closed)
        assert [c.state.value for c in rec.seen[done]] == ["Complete"]
        assert d.is_tracking(running) and rec.started.count(running) == 1
        assert fake.count("get") == 3

    run(scenario)


def test_shutdown_abandons_trackers_without_closing_or_touching_containers() -> None:
    fake = FakeArvados()
    recorder = Recorder()
    ticks: list[float] = []

    async def fake_sleep(delay: float) -> None:
        ticks.append(delay)
        await asyncio.sleep(0)

    async def main() -> None:
        d = Dispatcher(fake, recorder, sleep=fake_sleep, poll_period=10.0)
        a = fake.add("Queued")
        b = fake.add("Running", locked_by=ME)
        task = asyncio.create_task(d.run())
        await until(lambda: {a, b} <= set(recorder.seen))
        d.shutdown()
        await asyncio.wait_for(task, 5)
        assert recorder.cancelled == {a, b} and recorder.closed == set()
        assert fake.state(a) == "Locked" and fake.state(b) == "Running"
        assert fake.count("update_state") == fake.count("unlock") == fake.count("create_log") == 0

    asyncio.run(main())


def test_a_token_refused_after_the_start_fails_those_polls_only(caplog: pytest.LogCaptureFixture) -> None:
    """Rails answers 401 when it cannot check a token at all (its database down), so a refusal after the token
    worked at the start fails the poll, as Go's checkForUpdates errors do: nothing is closed or locked, the next
    poll tries again, and ``token_refused`` says why until the token is accepted again."""
    caplog.set_level(logging.INFO, logger="slurm_dispatch")
    fake = FakeArvados()
    recorder = Recorder()

    async def fast_sleep(delay: float) -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        d = Dispatcher(fake, recorder, sleep=fast_sleep)
        uuid = fake.add("Running", locked_by=ME)
        task = asyncio.create_task(d.run())
        await until(lambda: uuid in recorder.seen)
        # refused until the test has seen it: polls follow each other without a pause here, and a few refusals
        # could come and go between two looks
        refusals = [ArvadosAuthError(401, "GET", "/arvados/v1/containers", "Not logged in") for _ in range(10_000)]
        fake.fail("list", *refusals)
        queued = fake.add("Queued", priority=5)
        await until(lambda: d.token_refused is not None and fake.count("list") >= 3)
        assert not task.done() and d.is_tracking(uuid) and recorder.cancelled == set()
        fake.clear_failures("list")
        await until(lambda: fake.state(queued) == "Locked" and d.token_refused is None)  # cleared after the tick
        assert not task.done()
        d.shutdown()
        await asyncio.wait_for(task, 5)
        assert fake.state(uuid) == "Running" and recorder.closed == set()

    asyncio.run(main())
    errors = [r for r in caplog.records if "refused our token during a poll" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelname == "ERROR", "said once, not at every poll"
    assert "accepts our token again" in caplog.text


def test_a_token_refused_at_the_start_is_raised_by_run() -> None:
    fake = FakeArvados()
    fake.fail("current_token_uuid", ArvadosAuthError(401, "GET", "/current", "Not logged in"))

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        with pytest.raises(ArvadosAuthError):
            await d.run()

    asyncio.run(main())


def test_token_uuid_failure_is_raised_by_run(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeArvados()
    fake.fail("current_token_uuid", ArvadosUnavailable(0, "GET", "/current", "connection refused"))

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        with pytest.raises(ArvadosUnavailable):
            await d.run()

    asyncio.run(main())
    assert "error getting my token UUID" in caplog.text


def test_many_queued_containers_are_locked_concurrently_within_the_bound() -> None:
    import threading

    fake = FakeArvados()
    active = 0
    peak = 0
    mutex = threading.Lock()
    gate = threading.Event()

    def slow_lock(uuid: str) -> None:
        nonlocal active, peak
        with mutex:
            active += 1
            peak = max(peak, active)
            if active >= 4:
                gate.set()
        gate.wait(5)
        with mutex:
            active -= 1

    fake.lock_hook = slow_lock

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        for _ in range(12):
            fake.add("Queued")
        report = await d.tick()
        assert report.locked == 12
        assert 2 <= peak <= 4  # concurrent, never above the executor's bound

    run(scenario, fake=fake, max_workers=4)


def test_freeze_gc_freezes_after_starting_trackers_and_unfreezes_on_close() -> None:
    import gc

    fake = FakeArvados()
    recorder = Recorder()

    async def main() -> None:
        d = Dispatcher(fake, recorder, freeze_gc=True)
        try:
            assert (await d.tick()).started == 0 and gc.get_freeze_count() == 0
            fake.add("Running", locked_by=ME)
            assert (await d.tick()).started == 1
            assert gc.get_freeze_count() > 0
        finally:
            await d.aclose()
        assert gc.get_freeze_count() == 0

    gc.unfreeze()
    asyncio.run(main())


def test_a_lock_that_keeps_failing_the_same_way_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """An API answering 503 to one container's lock poll after poll: one warning, not one per poll."""

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        fake.fail("lock", *(ArvadosUnavailable(503, "POST", f"/arvados/v1/containers/{uuid}/lock", "busy")
                            for _ in range(3)))
        with caplog.at_level(logging.DEBUG, logger="slurm_dispatch.dispatch"):
            for _ in range(3):
                await d.tick()
            warned = [r for r in caplog.records if "error locking" in r.getMessage()]
            assert [r.levelno for r in warned] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
            report = await d.tick()
            assert report.locked == 1

    run(scenario)


@pytest.mark.parametrize("state", [["Running"], {"Running": 1}, 3])
def test_a_tracked_record_whose_state_is_not_a_string_is_unreadable_not_fatal(
    state: object, caplog: pytest.LogCaptureFixture,
) -> None:
    """The shortcut for unchanged records must not trip over a value it cannot hash: such a record is malformed,
    logged, and its tracker neither offered it nor closed (found by review: a list made the tick raise)."""
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        fake.set(uuid, state=state)
        with caplog.at_level(logging.WARNING):
            report = await d.tick()
        assert report.ok and report.closed == 0
        assert f"ignoring malformed record of container {uuid}" in caplog.text
        assert uuid not in rec.closed

    run(scenario)


def test_track_container_starts_no_tracker_when_its_get_ends_after_shutdown_began() -> None:
    """A clean-up's GET that answers once the dispatcher is stopping must not start a tracker nobody will abandon."""
    entered, release = threading.Event(), threading.Event()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Cancelled")  # a leftover job's container: a closed tracker would be started for it
        original = fake.get

        def slow_get(u: str) -> Any:
            entered.set()
            release.wait(10)
            return original(u)

        fake.get = slow_get  # type: ignore[method-assign]
        task = asyncio.create_task(d.track_container(uuid))
        await until(entered.is_set)
        d.shutdown()
        release.set()
        await task
        assert uuid not in d.tracked() and rec.started == []

    run(scenario)
