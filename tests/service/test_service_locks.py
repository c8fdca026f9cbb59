"""FileLock across two real processes; AdvisoryLock against a real PostgreSQL (tests/plugins/postgres.py)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from plugins.waiting import wait_until

from slurm_dispatch.errors import ConfigError
from slurm_dispatch.service.locks import (
    DISPATCH_LOCK_KEY,
    AdvisoryLock,
    FileLock,
    LockError,
    LockHeld,
    LockLost,
    LockUnavailable,
    conninfo,
    default_lock_path,
    describe_connection,
)

LOGGER = "slurm_dispatch.service.locks"


LOCK_WAIT_S = 10.0
"""How long a test waits for another thread's lock attempts."""
LOCK_POLL_S = 0.01
"""How often it looks: a lock attempt is counted in memory, so looking is cheap and a short wait stays short."""


# ------------------------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, Path("/run/slurm-dispatch/lock"), id="default"),
        pytest.param({"RUNTIME_DIRECTORY": "/run/x"}, Path("/run/x/lock"), id="systemd"),
        pytest.param({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, Path("/run/a/lock"), id="several-first-wins"),
    ],
)
def test_default_lock_path(environ: dict[str, str], expected: Path) -> None:
    assert default_lock_path(environ) == expected


def test_conninfo_lowercases_sorts_and_escapes() -> None:
    got = conninfo({"Host": "db", "DBName": "arv", "Password": "it's a \\secret"})
    assert got == "dbname='arv' host='db' password='it\\'s a \\\\secret'"


def test_conninfo_refuses_a_key_that_would_inject() -> None:
    with pytest.raises(ConfigError, match=r"PostgreSQL\.Connection\.host='x' port"):
        conninfo({"host='x' port": "1"})


def test_describe_connection_never_shows_the_password() -> None:
    text = describe_connection({"User": "arvados", "Password": "hunter2", "Host": "db", "Port": "5432", "DBName": "a"})
    assert text == "arvados@db:5432/a"


# ---------------------------------------------------------------------------------------------- FileLock

HOLDER = """
import sys
from slurm_dispatch.service.locks import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "run" / "lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        assert path.read_text().strip() == str(holder.pid)

        mine = FileLock(path)
        with pytest.raises(LockHeld) as info:
            mine.acquire()
        assert info.value.holder_pid == holder.pid
        assert str(path) in str(info.value) and f"pid {holder.pid}" in str(info.value)
        assert not mine.held

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        with mine:  # the kernel dropped the dead holder's lock: no stale-lock cleanup needed
            assert mine.held
            assert path.read_text().strip() != str(holder.pid)
        assert path.read_text() == ""
    finally:
        holder.kill()
        holder.wait()


def test_file_lock_in_an_unwritable_place_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(LockError, match=str(blocker / "lock")):
        FileLock(blocker / "lock").acquire()


# ------------------------------------------------------------------------------------------ AdvisoryLock


class CountingLock(AdvisoryLock):
    """An AdvisoryLock that counts its attempts (a subclass, not a mock: the database work is real)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.attempts = 0
        self.checks = 0

    def try_acquire(self) -> bool:
        try:
            return super().try_acquire()
        finally:
            self.attempts += 1

    def check(self) -> None:
        try:
            super().check()
        finally:
            self.checks += 1


def _holder_client(pg: object, key: int) -> tuple[int, str]:
    with pg.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT a.pid, host(a.client_addr) || ':' || a.client_port FROM pg_locks l "
            "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted",
            (key,),
        ).fetchone()
    assert row is not None, "nobody holds the lock"
    return int(row[0]), str(row[1])


@pytest.mark.postgres
def test_second_lock_waits_logs_once_and_takes_over_within_one_retry(
    postgres_server: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    first = AdvisoryLock(postgres_server.connection)  # type: ignore[attr-defined]
    second = CountingLock(postgres_server.connection, retry_interval=0.05)  # type: ignore[attr-defined]
    try:
        assert first.try_acquire()
        _, first_client = _holder_client(postgres_server, DISPATCH_LOCK_KEY)

        async def scenario() -> None:
            stop = asyncio.Event()
            waiter = asyncio.create_task(second.acquire(stop))
            # let it be refused several times: the waiting line must still appear only once
            while second.attempts < 4:
                await asyncio.sleep(0.01)
            assert not waiter.done()
            attempts_at_release = second.attempts
            await asyncio.to_thread(first.release)
            assert await asyncio.wait_for(waiter, timeout=10)
            # at most the attempt in flight when we released, plus the one that succeeded
            assert second.attempts - attempts_at_release <= 2

        asyncio.run(scenario())
        assert second.held and not first.held
        waiting = [r for r in caplog.records if r.getMessage().startswith("waiting for other process to release lock")]
        assert len(waiting) == 1, [r.getMessage() for r in waiting]
        assert first_client in waiting[0].getMessage()
        assert waiting[0].holder == first_client  # type: ignore[attr-defined]
        second.check()
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_acquire_returns_false_at_once_when_stopped_while_waiting(postgres_server: object) -> None:
    key = 424242
    first = AdvisoryLock(postgres_server.connection, key)  # type: ignore[attr-defined]
    second = CountingLock(postgres_server.connection, key, retry_interval=3600)  # type: ignore[attr-defined]
    try:
        assert first.try_acquire()

        async def scenario() -> bool:
            stop = asyncio.Event()
            waiter = asyncio.create_task(second.acquire(stop))
            while second.attempts < 1:
                await asyncio.sleep(0.01)
            stop.set()
            return await asyncio.wait_for(waiter, timeout=10)  # far less than the hour-long interval

        assert asyncio.run(scenario()) is False
        assert not second.held
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_blocking_acquire_stops_on_event(postgres_server: object) -> None:
    key = 434343
    first = AdvisoryLock(postgres_server.connection, key)  # type: ignore[attr-defined]
    second = CountingLock(postgres_server.connection, key, retry_interval=3600)  # type: ignore[attr-defined]
    stop = threading.Event()
    result: list[bool] = []
    try:
        assert first.try_acquire()
        thread = threading.Thread(target=lambda: result.append(second.acquire_blocking(stop)))
        thread.start()
        wait_until(lambda: second.attempts >= 1, what="the first refused attempt", timeout=LOCK_WAIT_S, every=LOCK_POLL_S)
        stop.set()
        thread.join(timeout=10)
        assert result == [False]
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_check_notices_a_terminated_session(postgres_server: object) -> None:
    key = 454545
    lock = AdvisoryLock(postgres_server.connection, key)  # type: ignore[attr-defined]
    try:
        with pytest.raises(LockLost, match="not held"):
            lock.check()
        assert lock.try_acquire()
        lock.check()  # alive and holding
        pid, _ = _holder_client(postgres_server, key)
        with postgres_server.connect() as admin:  # type: ignore[attr-defined]
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
        with pytest.raises(LockLost):
            lock.check()
        assert not lock.held
        assert lock.try_acquire()  # a fresh session can take it again
    finally:
        lock.release()


@pytest.mark.postgres
def test_monitor_returns_when_the_session_is_terminated_or_stopped(postgres_server: object) -> None:
    key = 474747
    lock = CountingLock(postgres_server.connection, key)  # type: ignore[attr-defined]
    try:
        assert lock.try_acquire()

        async def scenario() -> None:
            stop = asyncio.Event()
            watcher = asyncio.create_task(lock.monitor(stop, interval=0.02))
            while lock.checks < 2:  # it checks, and the lock is fine
                await asyncio.sleep(0.01)
            assert not watcher.done()
            pid, _ = _holder_client(postgres_server, key)
            with postgres_server.connect() as admin:  # type: ignore[attr-defined]
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert isinstance(await asyncio.wait_for(watcher, timeout=10), LockLost)

            assert lock.try_acquire()
            stop.set()
            assert await asyncio.wait_for(lock.monitor(stop, interval=3600), timeout=10) is None

        asyncio.run(scenario())
    finally:
        lock.release()


@pytest.mark.postgres
def test_release_lets_another_session_in(postgres_server: object) -> None:
    key = 464646
    lock = AdvisoryLock(postgres_server.connection, key)  # type: ignore[attr-defined]
    assert lock.try_acquire()
    lock.release()
    lock.release()  # idempotent
    with postgres_server.connect() as other:  # type: ignore[attr-defined]
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is True


def test_unreachable_database_is_retried_and_logged_once_without_the_password(
    caplog: pytest.LogCaptureFixture, unused_tcp_port: int
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    connection = {"host": "127.0.0.1", "port": str(unused_tcp_port), "user": "u", "password": "pw-Zq9-secret"}
    lock = CountingLock(connection, retry_interval=0.01, connect_timeout=2)
    with pytest.raises(LockUnavailable) as info:
        lock.try_acquire()
    assert "pw-Zq9-secret" not in str(info.value)
    assert f"127.0.0.1:{unused_tcp_port}" in str(info.value)

    stop = threading.Event()
    thread = threading.Thread(target=lock.acquire_blocking, args=(stop,))
    thread.start()
    wait_until(lambda: lock.attempts >= 4, what="several failed connection attempts", timeout=LOCK_WAIT_S,
               every=LOCK_POLL_S)
    stop.set()
    thread.join(timeout=10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pw-Zq9-secret" not in caplog.text


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
