"""``version``, ``--version``, ``run``'s refusals, and the ``sandbox`` demo, through CliRunner."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch import __version__


def test_version_command_and_option(cli: Any) -> None:
    for args in (["version"], ["--version"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"slurm-dispatch {__version__}\n"


def test_run_refuses_a_missing_config_naming_it(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = cli("run", "--config", str(missing))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert str(missing) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_a_template_without_job_name(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--mem=%M", "--cpus-per-task=%C"]}))
    result = cli("run", "--lock-file", str(cli.config_path.with_name("lock")))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert any("--job-name=%U" in line and "SbatchArgumentsList" in line for line in lines), result.stderr
    assert lines[-1] == "slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)"
    assert cli.root_token not in result.output


def test_run_refuses_an_unknown_substitution(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--job-name=%U", "--comment=%X"]}))
    result = cli("run", "--lock-file", str(cli.config_path.with_name("lock")))
    assert result.exit_code == 2, result.output
    assert "%X" in result.stderr


@pytest.mark.slurm
def test_sandbox_demo_runs_every_sample_to_a_final_state(cli: Any, slurm_cluster: Any) -> None:
    result = cli("sandbox", "--cluster-dir", str(slurm_cluster.conf_dir), "--poll-interval", "0.5")
    assert result.exit_code == 0, result.output
    out = result.stdout
    table = out[out.index("\ncontainer ") + 1 :].splitlines()
    assert re.fullmatch(r"container +what +prio +state +exit +job +node +ran +note", table[0]), table[0]
    rows = {line[29:61].strip(): line for line in table[2:]}
    expected = {
        "small, urgent": ("Complete", "0"),
        "large memory": ("Complete", "0"),
        "two cores": ("Complete", "0"),
        "command fails (exit 1)": ("Complete", "1"),
        "crunch-run dies while Running": ("Cancelled", "-"),
        "asks for 64 GB: no node has it": ("Cancelled", "-"),
        "low priority": ("Complete", "0"),
    }
    assert set(rows) == set(expected), table
    for label, (state, exit_code) in expected.items():
        words = rows[label][61:].split()
        assert words[1:3] == [state, exit_code], rows[label]
    assert "sbatch refused the job" in rows["asks for 64 GB: no node has it"]
    assert "Queued → Locked" in out and "Running → Complete" in out
