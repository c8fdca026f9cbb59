"""``slurm-dispatch drain``: what its help promises, and who drained, recorded for the running service's log line.

How the service logs the change: tests/service/test_service_state_watch.py and test_service_dispatching.py.
"""

from __future__ import annotations

import json
from typing import Any

from slurm_dispatch.cli.control import who
from slurm_dispatch.service.state import STATE_FILE, StateStore


def test_the_reason_s_help_names_only_what_shows_it(cli: Any) -> None:
    result = cli("drain", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "Why (shown by status and the management API)." in text
    assert "metrics" not in text, "no metric carries the reason"


def test_drain_records_who_drained(cli: Any) -> None:
    result = cli("drain", "--reason", "kernel upgrade")
    assert result.exit_code == 0, result.output
    assert cli.state_dir is not None
    drain = json.loads((cli.state_dir / STATE_FILE).read_text())["drain"]
    assert (drain["reason"], drain["by"]) == ("kernel upgrade", who())
    state = StateStore(cli.state_dir).read()
    assert (state.drain.reason if state.drain else None, state.drained_by) == ("kernel upgrade", who())


def test_a_reason_on_several_lines_or_too_long_is_refused_and_nothing_changes(cli: Any) -> None:
    """The reason goes into the state file, the log and every status line: one line, at most 500 characters."""
    for reason, words in (("kernel\nupgrade", "control character"), ("kernel\u2028upgrade", "control character"),
                          ("x" * 501, "at most 500")):
        result = cli("drain", "--reason", reason)
        assert result.exit_code == 2, result.output
        assert words in result.stderr and len(result.stderr.splitlines()) == 1
        assert cli.state_dir is None or not (cli.state_dir / STATE_FILE).exists()
