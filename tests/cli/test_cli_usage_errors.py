"""A bad command line is ONE line on stderr starting ``error: ``, exit 2 (docs/admin-commands.md), not typer's usage
line, hint and boxed message; ``--help`` and the help shown for a bare group are typer's, unchanged."""

from __future__ import annotations

from typing import Any

import pytest

UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


@pytest.mark.parametrize(("args", "line"), [
    pytest.param(["explain", "zzzzz-xvhdz-aaaaaaaaaaaaaaa"],
                 "error: Invalid value: 'zzzzz-xvhdz-aaaaaaaaaaaaaaa' is not a container uuid "
                 "(xxxxx-dz642-xxxxxxxxxxxxxxx) (see 'slurm-dispatch explain --help')", id="bad-uuid"),
    pytest.param(["cancel", "--bogus", UUID],
                 "error: No such option: --bogus (see 'slurm-dispatch cancel --help')", id="unknown-option"),
    pytest.param(["cancel"], "error: Missing argument 'uuid'. (see 'slurm-dispatch cancel --help')",
                 id="missing-argument"),
    pytest.param(["nonexistent"], "error: No such command 'nonexistent'. (see 'slurm-dispatch --help')",
                 id="unknown-command"),
    pytest.param(["config", "check", "--bogus"],
                 "error: No such option: --bogus (see 'slurm-dispatch config check --help')", id="subgroup-option"),
    pytest.param(["drain", "--reason"], "error: Option '--reason' requires an argument.", id="option-no-value"),
])
def test_a_bad_command_line_is_one_error_line(cli: Any, args: list[str], line: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == line + "\n"


def test_a_refused_value_of_a_typed_option_is_one_line(cli: Any) -> None:
    result = cli("sandbox", "api", "--max-dispatch-attempts", "many")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--max-dispatch-attempts': "), lines
    assert lines[0].endswith("(see 'slurm-dispatch sandbox api --help')"), lines


def test_help_is_unchanged(cli: Any) -> None:
    result = cli("cancel", "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: slurm-dispatch cancel [OPTIONS]" in result.stdout
    assert "--slurm-only" in result.stdout
    assert result.stderr == ""


def test_a_group_without_its_command_shows_its_help(cli: Any) -> None:
    result = cli("config")
    assert result.exit_code == 2, result.output
    assert "Usage: slurm-dispatch config [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "check" in result.output
    assert "error:" not in result.output
