"""Shell completion: the options are offered, the script names ``slurm-dispatch``, and completing works.

The console script and ``python -m slurm_dispatch`` both go through ``main()``, which fixes the program name, so
these tests run ``python -m slurm_dispatch`` in a subprocess: completion is driven by environment variables that
click reads before parsing, which CliRunner does not reproduce.

typer detects the user's shell from the process tree; ``_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION`` (typer's
own switch for its tests) turns detection off so that the shell is given as a value and the result does not depend
on what started pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

NO_DETECTION = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def slurm_dispatch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m slurm_dispatch ARGS`` with ``env`` added to a minimal environment; blocks until it exits."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL")}
    return subprocess.run(
        [sys.executable, "-m", "slurm_dispatch", *args],
        env={**base, "HOME": str(cwd), "NO_COLOR": "1", "COLUMNS": "120", **env},
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def test_help_offers_the_completion_options(cli: Any) -> None:
    result = cli("--help")
    assert result.exit_code == 0, result.output
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


def test_show_completion_prints_a_bash_script_for_the_console_script(tmp_path: Path) -> None:
    result = slurm_dispatch("--show-completion", "bash", env=NO_DETECTION, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "_SLURM_DISPATCH_COMPLETE=complete_bash" in result.stdout
    assert result.stdout.rstrip().endswith("complete -o default -F _slurm_dispatch_completion slurm-dispatch")


def test_install_completion_writes_into_the_users_home_only(tmp_path: Path) -> None:
    result = slurm_dispatch("--install-completion", "bash", env=NO_DETECTION, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "slurm-dispatch.sh"
    assert f"bash completion installed in {script}" in result.stdout
    assert "_SLURM_DISPATCH_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bash_completions", ".bashrc"]


def test_the_installed_script_completes_commands_and_options(tmp_path: Path) -> None:
    # what the bash function of the completion script runs on <TAB>
    def complete(words: str, cword: int) -> list[str]:
        env = {"_SLURM_DISPATCH_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        result = slurm_dispatch(env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("slurm-dispatch sta", 1) == ["status"]
    assert complete("slurm-dispatch sandbox --", 2) == ["--cluster-dir", "--poll-interval", "--keep-files", "--help"]
