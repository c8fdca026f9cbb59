"""``slurm-dispatch sandbox api``: a bad option is one ``error:`` line (exit 2), and so is an emulator that cannot
start (exit 1); never a traceback, and never a token nobody is told."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HELP = " (see 'slurm-dispatch sandbox api --help')"


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--listen", "127.0.0.1:99999"],
                 "Invalid value for '--listen': the port must be from 0 to 65535 (0 picks a free one), got 99999",
                 id="port-too-big"),
    pytest.param(["--listen", "127.0.0.1:"], "Invalid value for '--listen': expected HOST:PORT, got '127.0.0.1:'",
                 id="no-port"),
    pytest.param(["--listen", "[::1]:0"], "Invalid value for '--listen': the emulator listens on IPv4 only: give an "
                 "IPv4 address or a host name, not '[::1]'", id="ipv6"),
    pytest.param(["--cluster-id", "ZZ!"],
                 "Invalid value for '--cluster-id': a cluster id is five lower-case letters or digits, got 'ZZ!'",
                 id="cluster-id"),
    pytest.param(["--cluster-id", "zzzzzz"],
                 "Invalid value for '--cluster-id': a cluster id is five lower-case letters or digits, got 'zzzzzz'",
                 id="cluster-id-long"),
    pytest.param(["--token", ""], "Invalid value for '--token': must be non-empty, without spaces or control "
                 "characters (leave it out for a random one)", id="empty-token"),
    pytest.param(["--token", "two words"], "Invalid value for '--token': must be non-empty, without spaces or "
                 "control characters (leave it out for a random one)", id="token-with-space"),
    pytest.param(["--max-dispatch-attempts", "-5"],
                 "Invalid value for '--max-dispatch-attempts': Input should be greater than or equal to 1",
                 id="attempts"),
    pytest.param(["--max-dispatch-attempts", "0"],
                 "Invalid value for '--max-dispatch-attempts': Input should be greater than or equal to 1",
                 id="attempts-zero"),
])
def test_a_bad_option_is_one_line(cli: Any, args: list[str], message: str) -> None:
    result = cli("sandbox", "api", *args)
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", f"error: {message}{HELP}\n")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_one_line(cli: Any, busy_port: int) -> None:
    result = cli("sandbox", "api", "--listen", f"127.0.0.1:{busy_port}")
    assert result.exit_code == 1, result.output
    assert (result.stdout, result.stderr) == (
        "", f"error: sandbox api: cannot start: --listen 127.0.0.1:{busy_port}: Address already in use\n")


def test_an_unresolvable_host_is_one_line(cli: Any) -> None:
    result = cli("sandbox", "api", "--listen", "no-such-host.invalid:0")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: sandbox api: cannot start: --listen no-such-host.invalid:0: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(("make", "reason"), [
    pytest.param(lambda tmp: tmp / "missing" / "arvados.sqlite", "No such file or directory", id="missing-directory"),
    pytest.param(lambda tmp: (tmp / "x").write_text("not a database" * 100) and tmp / "x", "file is not a database",
                 id="not-a-database"),
])
def test_a_db_that_cannot_be_opened_is_one_line(cli: Any, tmp_path: Path, make: Any, reason: str) -> None:
    db = make(tmp_path)
    result = cli("sandbox", "api", "--db", str(db))
    assert result.exit_code == 1, result.output
    assert (result.stdout, result.stderr) == ("", f"error: sandbox api: cannot start: --db {db}: {reason}\n")
