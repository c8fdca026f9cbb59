"""ArvadosClient.stop(): retry waits end at once, requests in flight are aborted, no request starts after it.

This is what bounds a service's shutdown when the API answers 500: without it, every executor thread keeps
retrying (and sleeping) until the retry deadline, longer than systemd's TimeoutStopSec.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plugins.fake_http import FakeHttp

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch import Dispatcher
from slurm_dispatch.errors import ArvadosShuttingDown, ArvadosUnavailable
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

UUID = "zzzzz-dz642-queuedcontainer"
STOP_BOUND_S = 5.0
"""A stopped call must return within this (it returns in milliseconds; without stop it takes minutes)."""


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


class Call:
    """A client call running in a thread of its own."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self._fn = fn
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.error = exc

    def join(self, timeout: float) -> float:
        """Wait for the call to end; return how long that took. Fails if it is still running."""
        started = time.monotonic()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the call was still running {timeout} s after stop()"
        return time.monotonic() - started


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[ArvadosClient]:
    c = ArvadosClient(api_host=emulator.api_host, token=emulator.root_token, insecure=True, retry_deadline=600)
    yield c
    c.close()


def count(control: SandboxControl, key: str) -> int:
    return control.stats().get(key, 0)


def test_stop_ends_the_retries_of_a_call_on_an_api_answering_500(
    client: ArvadosClient, emulator_control: SandboxControl
) -> None:
    uuid = emulator_control.create_container()["uuid"]
    emulator_control.faults(mode="status", status=500, path_prefix="/arvados/v1/containers", retry_after=30)
    emulator_control.reset_stats()
    call = Call(lambda: client.get(uuid))
    wait_for(lambda: count(emulator_control, "GET /arvados/v1/containers/{uuid}") >= 1)
    client.stop()
    assert call.join(STOP_BOUND_S) < STOP_BOUND_S
    assert isinstance(call.error, ArvadosShuttingDown), call.error
    assert isinstance(call.error, ArvadosUnavailable), "a stopped call is 'no information', like an outage"
    assert "stopped" in str(call.error)
    with pytest.raises(ArvadosShuttingDown, match="request not sent"):
        client.get(uuid)
    assert count(emulator_control, "GET /arvados/v1/containers/{uuid}") == 1, "no request after stop()"


def test_stop_aborts_a_request_in_flight(client: ArvadosClient, emulator_control: SandboxControl) -> None:
    uuid = emulator_control.create_container()["uuid"]
    emulator_control.faults(mode="hang", seconds=120, path_prefix=f"/arvados/v1/containers/{uuid}/lock")
    emulator_control.reset_stats()
    call = Call(lambda: client.lock(uuid))
    wait_for(lambda: count(emulator_control, "POST /arvados/v1/containers/{uuid}/lock") == 1)
    client.stop()
    call.join(STOP_BOUND_S)
    assert isinstance(call.error, ArvadosShuttingDown), call.error
    assert "stopped during the request (it may have reached the server)" in str(call.error)


def test_nothing_is_sent_after_stop() -> None:
    with FakeHttp() as mock:  # any request would fail: nothing is registered
        client = ArvadosClient(api_host="ctrl.example", token="t0ken-for-stop-test")
        client.stop()
        client.stop()  # idempotent
        assert client.stopped
        calls: list[Callable[[], Any]] = [
            client.current_token_uuid,
            lambda: client.list(filters=[]),
            lambda: list(client.list_all(filters=[])),
            lambda: client.get(UUID),
            lambda: client.lock(UUID),
            lambda: client.unlock(UUID),
            lambda: client.update(UUID, {"priority": 1}),
            lambda: client.container_auth(UUID),
            lambda: client.create_log(object_uuid=UUID, event_type="dispatch", text="x"),
        ]
        for fn in calls:
            with pytest.raises(ArvadosShuttingDown):
                fn()
        assert len(mock.calls) == 0


def test_stop_during_an_injected_sleep_ends_the_call_after_it() -> None:
    with FakeHttp() as mock:
        mock.get(f"https://ctrl.example/arvados/v1/containers/{UUID}", status=503, json={"errors": ["down"]})
        made: list[ArvadosClient] = []
        client = ArvadosClient(  # SIGTERM arrives while it waits
            api_host="ctrl.example", token="t0ken-for-stop-test", retry_deadline=600, sleep=lambda s: made[0].stop()
        )
        made.append(client)
        with pytest.raises(ArvadosShuttingDown, match="while waiting to retry after: down"):
            client.get(UUID)
        assert len(mock.calls) == 1


def test_dispatcher_threads_end_soon_after_shutdown_and_stop(
    client: ArvadosClient, emulator_control: SandboxControl
) -> None:
    """What the service does on SIGTERM: dispatcher.shutdown(), then client.stop(). With the API answering 500,
    the dispatcher's executor threads are retrying; after stop() they all end at once."""
    emulator_control.faults(mode="status", status=500, path_prefix="/arvados/v1/containers")

    async def noop(*args: Any) -> None:
        return None

    async def main() -> list[threading.Thread]:
        dispatcher = Dispatcher(client, noop, poll_period=0.05, start_immediately=True)
        runner = asyncio.create_task(dispatcher.run())
        while count(emulator_control, "GET /arvados/v1/containers") < 1:
            await asyncio.sleep(0.02)
        threads = [t for t in threading.enumerate() if t.name.startswith("dispatch-api")]
        dispatcher.shutdown()
        client.stop()
        await asyncio.wait_for(runner, STOP_BOUND_S)
        return threads

    threads = asyncio.run(main())
    assert threads, "the list query was running in an executor thread"
    for thread in threads:
        thread.join(STOP_BOUND_S)
        assert not thread.is_alive(), "an executor thread outlived the shutdown"
