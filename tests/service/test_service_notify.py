"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_dispatch.service.notify import Notifier, keep_alive


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_stopping_watchdog_status_arrive(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == "READY=1"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.status("waiting for dispatch lock\nheld by 10.0.0.1:5432")
    assert received(sock) == "STATUS=waiting for dispatch lock held by 10.0.0.1:5432"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_abstract_socket() -> None:
    name = f"slurm-dispatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"


@pytest.mark.parametrize("value", ["", "vsock:2:1234", "@"])
def test_no_usable_socket_is_a_no_op(value: str) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": value} if value else {})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval() is None


def test_send_failure_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.ready() is False
    assert notifier.ready() is False
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"WATCHDOG_USEC": "30000000"}, 30.0, id="no-pid"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0, id="our-pid"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, id="someone-elses"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "x"}, None, id="garbage"),
        pytest.param({}, None, id="unset"),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242).watchdog_interval() == expected


def test_keep_alive_pings_until_stopped(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())})

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keep_alive(notifier, stop))
        for _ in range(3):
            assert await asyncio.to_thread(received, sock) == "WATCHDOG=1"
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())


def test_keep_alive_withholds_pings_while_unhealthy(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    asked = 0

    def healthy() -> bool:
        nonlocal asked
        asked += 1
        return False

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keep_alive(notifier, stop, healthy=healthy))
        while asked < 3:
            await asyncio.sleep(0.005)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
