"""``config check`` on configs whose message used to mislead: one line, exit 2, saying what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slurm_dispatch.cli.run import EXIT_CONFIG


def test_an_empty_config_option_says_the_path_is_empty(cli: Any) -> None:
    result = cli("config", "check", "--skip-legacy", "--config", "")
    assert result.exit_code == EXIT_CONFIG, result.output
    assert result.stderr.strip().splitlines() == [
        "error: --config: the path is empty (or '.', a directory): name a file, or leave --config out"]


def test_a_state_directory_that_is_a_file_fails_the_check(cli: Any, tmp_path: Path) -> None:
    state = tmp_path / "state-file"
    state.write_text("", encoding="utf-8")
    cli.write_own(f"Service:\n  StateDirectory: {state}\n")
    result = cli("config", "check", "--skip-legacy")
    assert result.exit_code == EXIT_CONFIG, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Service.StateDirectory" in lines[0] and "is not a directory" in lines[0], lines


def test_a_duplicate_key_is_a_warning_of_config_check(cli: Any) -> None:
    cli.config_path.write_text(cli.config_path.read_text(encoding="utf-8") + "Clusters: {zzzzz: {}}\n",
                               encoding="utf-8")
    result = cli("config", "check", "--skip-legacy")
    assert "Clusters is given again (first on line 1)" in result.stdout, result.output
