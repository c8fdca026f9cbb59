"""The two locks that keep dispatchers from fighting: one per host, one per cluster.

``FileLock`` stops a second slurm-dispatch on the same host (an operator's manual ``run`` next to the systemd
unit). It is an ``flock`` on a file under ``$RUNTIME_DIRECTORY`` (systemd's ``RuntimeDirectory=slurm-dispatch``)
or ``/run/slurm-dispatch``. The kernel drops it when the process dies, however it dies, so there is no stale-lock
cleanup; the pid written in the file is only there for the error message.

``AdvisoryLock`` is the cluster-wide one: PostgreSQL advisory lock 10005, which Arvados's cloud, LSF and Slurm
dispatchers all take ("any dispatcher running"), so this dispatcher also excludes a Go one. It lives as long as
one dedicated database session. Port of lib/controller/dblock/dblock.go (Lock, Unlock), plus ``check()``, which
no Go dispatcher calls: a dispatcher whose session died has silently lost the lock, and another may already be
dispatching (docs/operations.md, "The two locks").

asyncio: ``FileLock.acquire`` is one non-blocking ``flock`` and a small write, fine to call on the event loop; it
fails at once instead of waiting (raising ``LockHeld``); the service catches that, says so in its log and systemd
status, and tries again every 5 s, so a second instance on one host just waits. ``AdvisoryLock`` does blocking database I/O; its blocking methods (``try_acquire``,
``acquire_blocking``, ``check``, ``release``) may be called from any one thread at a time, and its coroutines
(``acquire``, ``check_async``, ``release_async``) run them in the default executor with ``asyncio.to_thread``,
so a shutdown (the stop event) interrupts the waiting between attempts at once and an attempt in flight within
``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from slurm_dispatch.config import LIBPQ_KEYWORD_RE
from slurm_dispatch.errors import ConfigError, DispatchError, TransientError

if TYPE_CHECKING:  # psycopg is the optional ``postgres`` extra: imported lazily at connect time
    import psycopg

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path("/run/slurm-dispatch")
LOCK_FILE_NAME = "lock"

DISPATCH_LOCK_KEY = 10005
"""Advisory lock key shared by every Arvados dispatcher (dblock.Dispatch). 10001-10004 and 10006 are other sweeps."""
RETRY_INTERVAL_S = 5.0
"""Go's dblock retries a refused lock, and a failed connection, every 5 s."""
CHECK_INTERVAL_S = 30.0
"""How often ``monitor`` re-checks the session: a lost lock means at most this long beside another dispatcher."""
CONNECT_TIMEOUT_S = 10
"""libpq ``connect_timeout`` when the config sets none: bounds one attempt, hence how long a shutdown can wait."""

_KEEPALIVE_DEFAULTS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
"""TCP keepalives unless configured, so ``check()`` cannot hang forever on a silently dropped connection."""


class LockError(DispatchError):
    """A lock could not be taken or kept."""


class LockHeld(LockError):
    """Another process holds the lock.

    Attributes:
        path: the lock file.
        holder_pid: the pid written in it (None when unreadable).
    """

    def __init__(self, path: Path, holder_pid: int | None):
        self.path = path
        self.holder_pid = holder_pid
        who = f"pid {holder_pid}" if holder_pid is not None else "a process whose pid is not (yet) written"
        super().__init__(
            f"taking the single-instance lock {path}: already held by {who}; "
            "is another slurm-dispatch running on this host (systemctl status slurm-dispatch)?"
        )


class LockUnavailable(LockError, TransientError):
    """The database could not be reached to take or check the advisory lock; retrying may succeed."""


class LockLost(LockError):
    """The advisory lock is no longer held: the session died or was terminated. Stop dispatching."""


# --------------------------------------------------------------------------------------------------- FileLock


def default_lock_path(environ: Mapping[str, str]) -> Path:
    """Return the lock file path: ``$RUNTIME_DIRECTORY/lock``, else ``/run/slurm-dispatch/lock``. Pure.

    systemd sets RUNTIME_DIRECTORY to a colon-separated list when a unit names several runtime directories;
    the first is ours.
    """
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else DEFAULT_LOCK_DIR) / LOCK_FILE_NAME


class FileLock:
    """A local single-instance lock: ``flock(LOCK_EX)`` on a file that holds the holder's pid.

    The descriptor is close-on-exec (Python's default), so sbatch/scancel children never inherit the lock and
    cannot keep it after we die. The file is truncated but never unlinked on release: unlinking a lock file
    races with a process that has just opened it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock. Does no I/O."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid into the file. Does not block (one flock, one small write).

        Raises:
            LockHeld: another process holds it; the message names the path and that process's pid.
            LockError: the file or its directory cannot be created or opened (permissions, missing
                RuntimeDirectory): the message names the path.
        """
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockError(
                f"opening the single-instance lock file {self.path}: {exc.strerror}; "
                "check the directory exists and is writable by this user (systemd: RuntimeDirectory=slurm-dispatch)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(self.path, holder) from exc
            raise LockError(f"locking {self.path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise LockError(f"writing our pid into the lock file {self.path}: {exc.strerror}") from exc
        self._fd = fd

    def release(self) -> None:
        """Empty the file and drop the lock. Does not block; idempotent; never raises."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock still goes with the close below; the stale pid is harmless
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------- AdvisoryLock


def conninfo(connection: Mapping[str, str]) -> str:
    """Return the libpq ``key='value' ...`` string for ``PostgreSQL.Connection``. Pure.

    Keys are lower-cased (the config spells them ``Host``, ``DBName``...) and sorted; in values ``\\`` and ``'``
    are backslash-escaped, as libpq's parser expects. Port of lib/ctrlctx PostgreSQLConnection.String.

    Raises:
        ConfigError: a key is not a plain libpq keyword (it would otherwise inject other settings).
    """
    parts = []
    for key in sorted(connection, key=str.lower):
        name = key.lower()
        if not LIBPQ_KEYWORD_RE.fullmatch(name):  # the loader's rule: it refuses these keys first
            raise ConfigError("not a libpq connection keyword", key=f"PostgreSQL.Connection.{key}")
        value = str(connection[key]).replace("\\", "\\\\").replace("'", "\\'")
        parts.append(f"{name}='{value}'")
    return " ".join(parts)


def describe_connection(connection: Mapping[str, str]) -> str:
    """Return ``user@host:port/dbname`` for log lines: never the password. Pure."""
    low = {k.lower(): str(v) for k, v in connection.items()}
    user = low.get("user", "")
    host = low.get("host", "") or "(local socket)"
    port = low.get("port", "")
    return f"{user + '@' if user else ''}{host}{':' + port if port else ''}/{low.get('dbname', '')}"


_HOLDER_SQL = """
SELECT a.pid, host(a.client_addr), a.client_port
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.classid = %(hi)s AND l.objid = %(lo)s AND l.objsubid = 1
"""
# An int8 advisory key shows in pg_locks as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
# ``granted`` leaves out sessions that are themselves waiting in pg_advisory_lock.

_HELD_SQL = """
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
   AND classid = %(hi)s AND objid = %(lo)s AND objsubid = 1
"""


class AdvisoryLock:
    """PostgreSQL advisory lock ``key`` (10005: "a dispatcher is running") held on a dedicated session.

    Port of lib/controller/dblock/dblock.go Lock/Unlock, plus ``check`` (which Go never calls).

    Args:
        connection: ``PostgreSQL.Connection`` (libpq keywords). The password is used, never logged.
        key: the advisory lock key.
        retry_interval: seconds between attempts while another process holds the lock or the database is down.
        connect_timeout: seconds for one connection attempt, unless the connection sets ``connect_timeout``.

    Construction does no I/O.

    Raises:
        ConfigError: a ``PostgreSQL.Connection`` key is not a libpq keyword.
        LockError: psycopg is not installed (the ``postgres`` extra).
    """

    def __init__(
        self,
        connection: Mapping[str, str],
        key: int = DISPATCH_LOCK_KEY,
        *,
        retry_interval: float = RETRY_INTERVAL_S,
        connect_timeout: int = CONNECT_TIMEOUT_S,
    ) -> None:
        _db_errors()  # fail at startup, not at the first attempt, when psycopg is missing
        configured = {k.lower() for k in connection}
        defaults = {k: v for k, v in _KEEPALIVE_DEFAULTS.items() if k not in configured}
        if "connect_timeout" not in configured:
            defaults["connect_timeout"] = str(connect_timeout)
        self._conninfo = " ".join(filter(None, (conninfo(connection), conninfo(defaults))))  # validates keys now
        self._password = next((str(v) for k, v in connection.items() if k.lower() == "password"), "")
        self._target = describe_connection(connection)
        self.key = key
        self.retry_interval = retry_interval
        self._params = {"key": key, "hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._mutex = threading.Lock()
        self._last_holder: str | None = None
        self._last_error: str | None = None

    @property
    def held(self) -> bool:
        """Whether we believe we hold the lock (``check`` verifies it). Does no I/O."""
        return self._held

    @property
    def holder(self) -> str | None:
        """The other holder (``addr:port`` or ``pid N``) last seen while waiting, for a STATUS line. No I/O."""
        return self._last_holder

    # -- blocking API ---------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Try once to take the lock: ``SELECT pg_try_advisory_lock(key)`` on our session. Blocks on database I/O.

        Connects first when there is no session. When another session holds the lock, looks its client up in
        pg_locks/pg_stat_activity and logs ``waiting for other process to release lock`` when it changed since
        the last attempt.

        Returns:
            True when we hold the lock (also when we already did), False when another process holds it.

        Raises:
            LockUnavailable: the database could not be reached or the query failed; the session is closed and
                the next attempt reconnects. The message never contains the password.
        """
        with self._mutex:
            if self._held:
                return True
            try:
                conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%(key)s)", self._params)
                    row = cur.fetchone()
                    if row is not None and row[0]:
                        self._held = True
                        self._last_holder = None
                        self._last_error = None
                        log.info("acquired dispatch lock %d on %s", self.key, self._target)
                        return True
                    cur.execute(_HOLDER_SQL, self._params)
                    holders = cur.fetchall()
            except _db_errors() as exc:
                self._close()
                raise LockUnavailable(self._error_text("taking the dispatch lock", exc)) from exc
            self._last_error = None
            if holders:  # empty: the holder went away between our two queries; the next try will tell
                holder = ", ".join(_format_holder(pid, addr, port) for pid, addr, port in holders)
                if holder != self._last_holder:
                    log.info(
                        "waiting for other process to release lock %d (held by %s)",
                        self.key,
                        holder,
                        extra={"holder": holder, "lock_key": self.key},
                    )
                    self._last_holder = holder
            return False

    def acquire_blocking(self, stop: threading.Event) -> bool:
        """Take the lock, retrying every ``retry_interval`` until it is ours or ``stop`` is set. Blocks.

        Connection errors are logged when their text changes and retried like a refusal.

        Returns:
            True when we hold the lock, False when ``stop`` was set first.
        """
        while not stop.is_set():
            if self._attempt():
                return True
            stop.wait(self.retry_interval)
        return False

    def check(self) -> None:
        """Verify that our session is alive and still holds the lock. Blocks on one database round trip.

        Call it periodically while dispatching: Go never does, so a Go dispatcher whose session died goes on
        dispatching next to the one that took the lock over. What to do on ``LockLost`` is the caller's call
        (stop dispatching, release, exit non-zero and let systemd restart us).

        Raises:
            LockLost: we never took it, the session is gone (terminated, database restarted, network lost), or
                the lock is no longer held by it. The session is closed.
        """
        with self._mutex:
            if not self._held or self._conn is None:
                raise LockLost(f"dispatch lock {self.key} on {self._target}: not held")
            try:
                with self._conn.cursor() as cur:
                    cur.execute(_HELD_SQL, self._params)
                    row = cur.fetchone()
            except _db_errors() as exc:
                self._close()
                raise LockLost(self._error_text(f"checking dispatch lock {self.key}: session lost", exc)) from exc
            if row is None or row[0] != 1:
                self._close()
                raise LockLost(f"dispatch lock {self.key} on {self._target}: no longer held by our session")

    def release(self) -> None:
        """``SELECT pg_advisory_unlock(key)`` and close the session. Blocks on database I/O; never raises.

        Closing the session would release the lock anyway; unlocking first makes it explicit, as Go does.
        """
        with self._mutex:
            if self._held and self._conn is not None:
                try:
                    with self._conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_unlock(%(key)s)", self._params)
                    log.info("released dispatch lock %d", self.key)
                except _db_errors() as exc:
                    log.warning("%s", self._error_text("releasing the dispatch lock (closing the session)", exc))
            self._close()

    # -- asyncio API ----------------------------------------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Take the lock, retrying every ``retry_interval``, until it is ours or ``stop`` is set.

        Each attempt runs in a worker thread; waiting between attempts ends as soon as ``stop`` is set. If the
        task is cancelled during an attempt, that attempt (bounded by ``connect_timeout``) is awaited and any
        lock it took is released before the cancellation propagates.

        Returns:
            True when we hold the lock, False when ``stop`` was set first (nothing is then held).
        """
        while not stop.is_set():
            attempt = asyncio.ensure_future(asyncio.to_thread(self._attempt))
            try:
                got = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                await asyncio.wait([attempt])
                await asyncio.to_thread(self.release)
                raise
            if got:
                if stop.is_set():
                    await asyncio.to_thread(self.release)
                    return False
                return True
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.retry_interval)
            except TimeoutError:
                pass
        return False

    async def monitor(self, stop: asyncio.Event, *, interval: float = CHECK_INTERVAL_S) -> LockLost | None:
        """Run ``check()`` every ``interval`` seconds (in a worker thread) until the lock is lost or ``stop`` is set.

        The daemon runs this beside the dispatch loop and stops dispatching when it returns a ``LockLost``.

        Returns:
            The ``LockLost`` when the lock was lost (not logged: the caller says what it does about it), None when
            ``stop`` was set.
        """
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return None
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.check)
            except LockLost as lost:
                return lost

    async def check_async(self) -> None:
        """``check()`` in a worker thread. Raises LockLost like ``check``."""
        await asyncio.to_thread(self.check)

    async def release_async(self) -> None:
        """``release()`` in a worker thread. Never raises."""
        await asyncio.to_thread(self.release)

    # -- internals ------------------------------------------------------------------------------------

    def _attempt(self) -> bool:
        """One ``try_acquire``, with connection errors logged (when their text changes) and reported as False."""
        try:
            return self.try_acquire()
        except LockUnavailable as exc:
            text = str(exc)
            if text != self._last_error:
                log.warning("%s; retrying every %gs", text, self.retry_interval)
                self._last_error = text
            return False

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            import psycopg  # lazily: the ``postgres`` extra

            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._held = False
        if conn is not None:
            with contextlib.suppress(*_db_errors()):  # closing a broken connection: nothing left to do
                conn.close()

    def _error_text(self, doing: str, exc: BaseException) -> str:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            detail = detail.replace(self._password, "<redacted>")
        return f"{doing} on {self._target}: {detail}"


def _db_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the database failed": psycopg's and OS-level ones. Imports psycopg lazily.

    Raises:
        LockError: psycopg is not installed (install the ``postgres`` extra).
    """
    try:
        import psycopg
    except ImportError as exc:
        raise LockError(
            "PostgreSQL.Connection is set but psycopg is not installed: pip install 'slurm-dispatch[postgres]'"
        ) from exc
    return (psycopg.Error, OSError)


def _format_holder(pid: int, addr: str | None, port: int | None) -> str:
    # client_addr is NULL for a Unix-socket client, and for sessions of other roles unless we may read all stats.
    if addr is None:
        return f"pid {pid} (local socket or not visible to this role)"
    return f"{addr}:{port}" if ":" not in addr else f"[{addr}]:{port}"

