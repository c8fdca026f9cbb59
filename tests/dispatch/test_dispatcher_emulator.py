"""The Dispatcher with the real ArvadosClient, over HTTPS, against the sandbox API emulator.

Each test drives ticks itself (``tick()``) or runs ``run()`` with an instant sleep; the
other actors (a user, crunch-run, a second dispatcher) are plain ArvadosClients with
their own tokens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from dispatch_fakes import Recorder, until
from plugins.fake_time import FakeClock

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch import DispatchClient, Dispatcher
from slurm_dispatch.model import ContainerState
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

LIST = "GET /arvados/v1/containers"
LOCK = "POST /arvados/v1/containers/{uuid}/lock"


def client_for(emulator: EmulatorServer, token: str | None = None) -> ArvadosClient:
    """A client that never retries (a failure shows at once) and trusts the self-signed certificate."""
    return ArvadosClient(
        api_host=emulator.base_url, token=token or emulator.root_token, insecure=True, retry_deadline=0
    )


def protocol_client(emulator: EmulatorServer) -> DispatchClient:
    """The dispatcher's view of the client; mypy checks that ArvadosClient fits the Protocol."""
    return client_for(emulator)


Scenario = Callable[[Dispatcher, Recorder], Awaitable[None]]


def run(emulator: EmulatorServer, scenario: Scenario, client: Any = None, **kwargs: Any) -> Recorder:
    recorder = Recorder()

    async def main() -> None:
        d = Dispatcher(client or protocol_client(emulator), recorder, **kwargs)
        try:
            await scenario(d, recorder)
        finally:
            await d.aclose()

    asyncio.run(main())
    return recorder


def state(ctl: SandboxControl, emulator: EmulatorServer, uuid: str) -> tuple[str, str]:
    c = client_for(emulator).get(uuid)
    return c.state.value, c.locked_by_uuid


@pytest.fixture
def other(emulator: EmulatorServer, emulator_control: SandboxControl) -> ArvadosClient:
    """Another dispatcher: an admin token that is not ours."""
    return client_for(emulator, emulator_control.new_token(admin=True)["api_token"])


@pytest.fixture
def admin(emulator: EmulatorServer) -> ArvadosClient:
    """Our own token used by someone else (a user with root, or crunch-run) to change records."""
    return client_for(emulator)


class LosesLockRace:
    """The real client, except that another dispatcher locks each container just before we do."""

    def __init__(self, real: ArvadosClient, other: ArvadosClient) -> None:
        self._real = real
        self._other = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def lock(self, uuid: str) -> Mapping[str, Any]:
        self._other.lock(uuid)
        return self._real.lock(uuid)


def test_lock_race_lost_to_another_token(
    emulator: EmulatorServer,
    emulator_control: SandboxControl,
    other: ArvadosClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = emulator_control.create_container(priority=3)["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        with caplog.at_level(logging.INFO, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert report.started == 0 and not d.tracked()
        assert f"did not lock container {uuid}" in caplog.text
        assert client_for(emulator).get(uuid).locked_by_uuid == other.current_token_uuid()
        report = await d.tick()  # now locked by the other token: ignored
        assert report.started == 0 and emulator_control.stats().get(LOCK) == 2  # theirs and ours
        assert rec.started == []

    run(emulator, scenario, client=LosesLockRace(client_for(emulator), other))


def test_queued_containers_are_locked_and_each_gets_one_tracker(
    emulator: EmulatorServer, emulator_control: SandboxControl
) -> None:
    uuids = [emulator_control.create_container(priority=p)["uuid"] for p in (1, 2, 3, 4, 5)]
    held = emulator_control.create_container(priority=0)["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        report = await d.tick()
        assert report.locked == 5
        await until(lambda: set(rec.seen) == set(uuids))
        assert all(rec.seen[u][0].state is ContainerState.LOCKED for u in uuids)
        await d.tick()
        await d.tick()
        assert sorted(rec.started) == sorted(uuids)  # exactly one tracker each
        assert client_for(emulator).get(held).state is ContainerState.QUEUED

    run(emulator, scenario, batch_size=2)


def test_requests_per_tick_stay_within_the_budget(
    emulator: EmulatorServer, emulator_control: SandboxControl
) -> None:
    batch = 4
    for _ in range(10):
        emulator_control.create_container(state="Running")

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.tick()
        await until(lambda: len(rec.seen) == 10)
        emulator_control.reset_stats()
        report = await d.tick()
        assert report.woken == 0
        stats = emulator_control.stats()
        assert sum(stats.values()) == stats[LIST] == 2 + 3  # A: probe + 3 pages; B: probe only
        assert sum(stats.values()) <= 3 + 2 * -(-10 // batch)

    run(emulator, scenario, batch_size=batch)


@pytest.mark.parametrize("outcome", ["cancelled", "completed", "requeued", "locked-by-other"])
def test_tracked_container_leaving_closes_its_tracker(
    outcome: str,
    emulator: EmulatorServer,
    emulator_control: SandboxControl,
    admin: ArvadosClient,
    other: ArvadosClient,
) -> None:
    uuid = emulator_control.create_container(priority=2)["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.tick()
        await until(lambda: uuid in rec.seen)
        expected = [ContainerState.LOCKED]
        if outcome in ("cancelled", "completed"):
            admin.update_state(uuid, "Running")  # crunch-run started it
            assert (await d.tick()).woken == 1
            await until(lambda: len(rec.seen[uuid]) == 2)
            expected.append(ContainerState.RUNNING)
        if outcome == "cancelled":
            admin.update_state(uuid, "Cancelled")
        elif outcome == "completed":
            admin.update(uuid, {"exit_code": 0})
            admin.update_state(uuid, "Complete")
        else:
            admin.update_state(uuid, "Queued")  # crunch-run failed before the container ran
            if outcome == "locked-by-other":
                other.lock(uuid)
        report = await d.tick()
        assert report.closed == 1 and report.locked == 0
        await until(lambda: uuid in rec.closed and uuid not in d.tracked())
        if outcome in ("cancelled", "completed"):  # the final record comes before the close (unlike Go)
            expected.append(ContainerState.CANCELLED if outcome == "cancelled" else ContainerState.COMPLETE)
        assert [c.state for c in rec.seen[uuid]] == expected
        report = await d.tick()
        if outcome == "requeued":
            assert report.locked == 1  # a new attempt, now that the old tracker has finished
        else:
            assert report.locked == 0 and not d.tracked()

    rec = run(emulator, scenario)
    assert rec.started.count(uuid) == (2 if outcome == "requeued" else 1)


def test_failed_run_container_logs_and_falls_back_on_the_second_update(
    emulator: EmulatorServer, emulator_control: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    uuid = emulator_control.create_container(priority=2)["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        rec.fail[uuid] = RuntimeError("sbatch: error: invalid partition")
        await d.tick()
        await until(lambda: len(emulator_control.logs(uuid)) == 1)
        log = emulator_control.logs(uuid)[0]
        assert log["event_type"] == "dispatch"
        assert (
            log["properties"]["text"] == f"Error running container {uuid}: sbatch: error: invalid partition"
        )
        emulator_control.reset_stats()
        await d.tick()  # first further update: may be stale, left alone
        assert client_for(emulator).get(uuid).state is ContainerState.LOCKED
        await d.tick()  # second: still Locked, so back to Queued
        await until(lambda: client_for(emulator).get(uuid).state is ContainerState.QUEUED)
        assert emulator_control.stats().get("PUT /arvados/v1/containers/{uuid}") == 1

    run(emulator, scenario)


def test_throttle_holds_a_requeued_container(
    emulator: EmulatorServer, emulator_control: SandboxControl, admin: ArvadosClient
) -> None:
    clock = FakeClock()
    uuid = emulator_control.create_container(priority=2)["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.tick()
        await until(lambda: uuid in rec.seen)
        admin.unlock(uuid)
        await d.tick()
        await until(lambda: uuid not in d.tracked())
        for _ in range(3):
            clock.now += 10
            assert (await d.tick()).locked == 0  # held: MinRetryPeriod is 60 s
        clock.now += 30
        assert (await d.tick()).locked == 1
        assert emulator_control.stats()[LOCK] == 2

    run(emulator, scenario, min_retry_period=60.0, clock=clock)


@pytest.mark.parametrize(
    ("count", "message"),
    [
        pytest.param(1, "error getting count of containers", id="count-probe"),
        pytest.param(None, "error getting count of containers", id="every-list"),
    ],
)
def test_failing_list_query_closes_no_tracker(
    count: int | None,
    message: str,
    emulator: EmulatorServer,
    emulator_control: SandboxControl,
    admin: ArvadosClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = emulator_control.create_container(state="Running")["uuid"]

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.tick()
        await until(lambda: uuid in rec.seen)
        admin.update_state(uuid, "Cancelled")  # gone from query A; only the uuid query would see it
        emulator_control.faults(
            mode="status", status=500, method="GET", path_prefix="/arvados/v1/containers", count=count
        )
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert not report.ok and report.closed == 0 and d.is_tracking(uuid)
        assert message in caplog.text
        emulator_control.clear_faults()
        report = await d.tick()
        assert report.ok and report.closed == 1

    run(emulator, scenario)


def test_failing_page_logs_the_list_error(
    emulator: EmulatorServer, emulator_control: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    emulator_control.create_container(state="Running")

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.tick()
        # Fail the second request of the tick (query A's first page) only.
        emulator_control.faults(
            mode="hang", seconds=0, method="GET", path_prefix="/arvados/v1/containers", count=1
        )
        emulator_control.faults(
            mode="status", status=503, method="GET", path_prefix="/arvados/v1/containers", count=1
        )
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.dispatch"):
            report = await d.tick()
        assert not report.ok and report.closed == 0
        assert "error getting list of containers" in caplog.text

    run(emulator, scenario)


def test_shutdown_leaves_tracked_containers_untouched(
    emulator: EmulatorServer, emulator_control: SandboxControl
) -> None:
    queued = emulator_control.create_container(priority=2)["uuid"]
    running = emulator_control.create_container(state="Running")["uuid"]
    recorder = Recorder()

    async def instant(delay: float) -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        d = Dispatcher(protocol_client(emulator), recorder, sleep=instant, poll_period=0.0)
        task = asyncio.create_task(d.run())
        await until(lambda: {queued, running} <= set(recorder.seen))
        emulator_control.reset_stats()
        d.shutdown()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert recorder.cancelled == {queued, running} and recorder.closed == set()
    stats = emulator_control.stats()
    assert not any(k.startswith(("PUT", "POST")) for k in stats), stats
    me = client_for(emulator).current_token_uuid()
    assert state(emulator_control, emulator, queued) == ("Locked", me)
    assert state(emulator_control, emulator, running) == ("Running", me)


def test_track_container_cleans_up_a_finished_container(
    emulator: EmulatorServer, emulator_control: SandboxControl, other: ArvadosClient
) -> None:
    done = emulator_control.create_container(state="Complete")["uuid"]
    theirs = emulator_control.create_container(priority=1)["uuid"]
    other.lock(theirs)

    async def scenario(d: Dispatcher, rec: Recorder) -> None:
        await d.track_container(done)
        await d.track_container(theirs)
        await until(lambda: done in rec.closed)
        assert [c.state for c in rec.seen[done]] == [ContainerState.COMPLETE]
        assert theirs not in rec.started

    run(emulator, scenario)
