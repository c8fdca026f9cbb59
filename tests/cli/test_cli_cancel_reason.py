"""``cancel --reason`` goes to runtime_status.error, which Workbench shows, and to the terminal: it must be one
printable line of at most 500 characters, as a drain reason (``admission.drain_reason_problem``). It is checked
before anything is asked of Slurm or the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


@pytest.mark.parametrize(("reason", "problem"), [
    pytest.param("bad\ninput", "the reason holds a control character (a newline, a tab...); write it on one line",
                 id="newline"),
    pytest.param("\x1b[2J\x1b[31mall fine", "the reason holds a control character (a newline, a tab...); write it on "
                 "one line", id="escape-sequence"),
    pytest.param("x" * 501, "the reason is 501 characters long; at most 500", id="too-long"),
])
def test_a_reason_that_cannot_go_on_the_container_is_refused(
    cli: Any, tmp_path: Path, reason: str, problem: str,
) -> None:
    result = cli("cancel", "--yes", "--reason", reason, UUID, env={"PATH": str(tmp_path / "no-slurm-here")})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: Invalid value for '--reason': {problem} (see 'slurm-dispatch cancel --help')\n"


def test_a_reason_of_500_characters_is_accepted(cli: Any, tmp_path: Path) -> None:
    # past the check: the next step is squeue, which is not there (exit 3)
    result = cli("cancel", "--yes", "--reason", " " + "x" * 500 + " ", UUID,
                 env={"PATH": str(tmp_path / "no-slurm-here")})
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: squeue "), result.stderr
