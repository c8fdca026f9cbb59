"""An admin command that fails prints ONE line: its own ``error:`` line, not the library's log line before it.

The library logs for the service (the transport's "giving up on GET ... after N attempts", a Slurm command's exit
code); in an admin command those repeat what its error line says. They are asserted on a real process (``python -m
slurm_dispatch``): in-process, pytest's log capture takes the records that Python's last-resort handler would print
on an admin's terminal, so only a process of its own shows what the admin sees.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.cli.common import LIBRARY_LOGGER, AdminLogLines
from slurm_dispatch.service.state import STATE_FILE

UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


class _TooBusy(BaseHTTPRequestHandler):
    """Answers every request 503 with a Retry-After longer than an admin command's retry deadline."""

    def do_GET(self) -> None:
        body = b'{"errors": ["too busy"]}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the client's side."""


@pytest.fixture
def busy_api() -> Iterator[str]:
    """The URL of an API that answers everything 503, Retry-After one hour."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TooBusy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def run_cli(cli: Any, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    """``slurm-dispatch *args`` in a process of its own, with the fixture's environment and ``PATH``. Blocks."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "SLURM_"))}
    environ.update({k: v for k, v in cli.env.items() if v is not None})
    environ["PATH"] = path
    return subprocess.run([sys.executable, "-m", "slurm_dispatch", *args], env=environ, capture_output=True,
                          text=True, timeout=60, check=False)


def test_status_with_the_api_too_busy_prints_one_line(cli: Any, busy_api: str) -> None:
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = busy_api
    cli.write_config(body)
    done = run_cli(cli, "status", path=os.environ.get("PATH", "/usr/bin:/bin"))
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: "), done.stderr
    assert "503" in done.stderr and "giving up" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert cli.root_token not in done.stderr


def test_cancel_without_slurm_prints_one_line(cli: Any, tmp_path: Path) -> None:
    done = run_cli(cli, "cancel", "--yes", "--slurm-only", UUID, path=str(tmp_path / "no-slurm-here"))
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: squeue "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_library_errors_still_show_as_one_line_each(cli: Any) -> None:
    """An ERROR is news the command's own output does not repeat (here: the state file it replaced was corrupt)."""
    assert cli.state_dir is not None
    cli.state_dir.mkdir(parents=True, exist_ok=True)
    (cli.state_dir / STATE_FILE).write_text("{not json", encoding="utf-8")
    result = cli("drain", "--reason", "upgrade")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {cli.state_dir / STATE_FILE}: "), lines
    assert lines[0].endswith("; treating the dispatcher as drained until it can be read"), lines
    assert result.stdout.startswith("Drained (upgrade): "), result.stdout
    # a second command in the same process (a test's) adds no second handler: still one line per record
    (cli.state_dir / STATE_FILE).write_text("{not json", encoding="utf-8")
    again = cli("drain", "--reason", "upgrade")
    assert len(again.stderr.splitlines()) == 1, again.stderr
    assert len([h for h in logging.getLogger(LIBRARY_LOGGER).handlers if isinstance(h, AdminLogLines)]) == 1
