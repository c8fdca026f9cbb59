"""A private PostgreSQL server for tests, as a session fixture.

``initdb -A trust`` into a temporary directory, on a port of its own, listening on 127.0.0.1 and a Unix socket in
that directory; it never touches a packaged cluster. Started once per session on first use, stopped (``pg_ctl
stop -m fast``) and deleted at the end. As root, the server runs as the ``postgres`` user (initdb refuses root).

Where PostgreSQL is not installed, tests that need it are skipped with the reason, except under ``CI=true``, where
they fail loudly: CI must never pass without having run against a real PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 60.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL here: {reason}")


def _find_bindir() -> Path | None:
    """The newest installed server bindir holding initdb and pg_ctl (Debian layout first, then PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running private server: where it listens and how to connect to it as its superuser."""

    host: str
    port: int
    user: str
    data_dir: Path
    log_path: Path

    @property
    def connection(self) -> dict[str, str]:
        """``PostgreSQL.Connection`` as the Arvados config spells it (mixed-case keys on purpose)."""
        return {"Host": self.host, "Port": str(self.port), "User": self.user, "DBName": "postgres"}

    def connect(self) -> Any:
        """A new autocommit psycopg connection (a separate session) for a test to poke the server with."""
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True, connect_timeout=5
        )

    def log_tail(self) -> str:
        """The end of the server log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _run_as(user: str | None, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    full = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL for the session; skip (fail under CI=true) when PostgreSQL is not installed."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the psycopg package is not installed in this environment (pip install 'psycopg[binary]')")
    bindir = _find_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        _unavailable("initdb/pg_ctl not found (apt-get install postgresql)")
        raise AssertionError("unreachable")
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            _unavailable("running as root and runuser is not available to drop to the 'postgres' user")
        run_as = "postgres"
    base = Path(tempfile.mkdtemp(prefix="slurm-dispatch-pg-"))
    if run_as:
        shutil.chown(base, user=run_as)
    data, logfile, port = base / "data", base / "log", _free_port()
    server = PostgresServer(host="127.0.0.1", port=port, user=run_as or pwd.getpwuid(os.geteuid()).pw_name,
                            data_dir=data, log_path=logfile)
    started = False
    try:
        init = _run_as(run_as, [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", server.user], 120)
        if init.returncode != 0:
            pytest.fail(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}", pytrace=False)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = _run_as(run_as, [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(logfile), "-w", "start"], 120)
        started = True
        if start.returncode != 0:
            pytest.fail(f"pg_ctl start failed ({start.returncode}): {start.stderr}\n{server.log_tail()}", pytrace=False)
        _wait_accepting(server)
        yield server
    finally:
        if started:
            _run_as(run_as, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], 60)
        shutil.rmtree(base, ignore_errors=True)


def _wait_accepting(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            server.connect().close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not accept connections on port {server.port}: {exc}\n{server.log_tail()}",
                            pytrace=False)
            time.sleep(0.1)
