"""``--dispatch-config`` on every admin command that loads the config, as on ``run`` and ``config check``.

Each command reads slurm-dispatch's own file from the option (over ``$SLURM_DISPATCH_CONFIG``, which the ``cli``
fixture points at the test's own file): a missing file is refused with ``config check``'s line and exit 2, the
state file goes where the option's ``Service.StateDirectory`` says, and ``explain`` uses the option's settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.service.state import STATE_FILE

UUID = "zzzzz-dz642-queuedcontainer"
CONTAINER: dict[str, Any] = {
    "uuid": UUID, "state": "Queued", "priority": 1, "command": ["echo"],
    "runtime_constraints": {"ram": 1000000, "vcpus": 1}, "scheduling_parameters": {"max_run_time": 0},
}


def missing_file_line(path: Path) -> str:
    return (f"error: {path}: slurm-dispatch config file not found; check --dispatch-config and $SLURM_DISPATCH_CONFIG "
            "(without either, the default /etc/arvados/slurm-dispatch/slurm-dispatch.yml is read if it exists)\n")


@pytest.mark.parametrize("command", [
    pytest.param(["status"], id="status"),
    pytest.param(["explain", "--container-file", "{container}"], id="explain"),
    pytest.param(["cancel", "--yes", UUID], id="cancel"),
    pytest.param(["adopt", "--dry-run"], id="adopt"),
    pytest.param(["drain"], id="drain"),
    pytest.param(["resume"], id="resume"),
    pytest.param(["config", "check"], id="config-check"),
])
def test_a_missing_file_named_by_the_option_is_refused_like_config_check(cli: Any, tmp_path: Path,
                                                                         command: list[str]) -> None:
    container = tmp_path / "container.json"
    container.write_text(json.dumps(CONTAINER), encoding="utf-8")
    missing = tmp_path / "nope.yml"
    args = [a.format(container=container) for a in command]
    result = cli(*args, "--skip-legacy", "--dispatch-config", str(missing))
    assert result.exit_code == 2, result.output
    assert result.stderr == missing_file_line(missing)
    assert not cli.state_dir.exists(), "nothing may be written when the config is refused"


def test_drain_and_resume_use_the_state_directory_of_the_option(cli: Any, tmp_path: Path) -> None:
    other = tmp_path / "other-state"
    own = tmp_path / "other.yml"
    own.write_text(f"Service: {{StateDirectory: {other}}}\n", encoding="utf-8")
    drained = cli("drain", "--reason", "upgrade", "--json", "--dispatch-config", str(own))
    assert drained.exit_code == 0, drained.output
    assert json.loads(drained.stdout)["state_file"] == str(other / STATE_FILE)
    assert json.loads((other / STATE_FILE).read_text())["drain"]["reason"] == "upgrade"
    assert not (cli.state_dir / STATE_FILE).exists(), "the environment's file must not be used"

    # without the option, $SLURM_DISPATCH_CONFIG (the fixture's file) decides: not drained there
    resumed_elsewhere = cli("resume", "--json")
    assert resumed_elsewhere.exit_code == 0, resumed_elsewhere.output
    assert json.loads(resumed_elsewhere.stdout) == {"drained": False, "was_drained": False,
                                                    "state_file": str(cli.state_dir / STATE_FILE)}
    resumed = cli("resume", "--json", "--dispatch-config", str(own))
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout) == {"drained": False, "was_drained": True,
                                          "state_file": str(other / STATE_FILE)}
    assert json.loads((other / STATE_FILE).read_text())["drain"] is None


def test_explain_uses_the_settings_of_the_option(cli: Any, tmp_path: Path) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--job-name=%U", "--time=%W"]}))
    container = tmp_path / "container.json"
    container.write_text(json.dumps(CONTAINER), encoding="utf-8")
    own = tmp_path / "limits.yml"
    own.write_text("TimeLimit: {DefaultMaxRunTime: 2h, Overhead: 0s}\n", encoding="utf-8")

    plain = cli("explain", "--json", "--container-file", str(container))
    assert plain.exit_code == 0, plain.output
    assert not any(a.startswith("--time=") for a in json.loads(plain.stdout)["sbatch_args"])
    limited = cli("explain", "--json", "--container-file", str(container), "--dispatch-config", str(own))
    assert limited.exit_code == 0, limited.output
    assert "--time=120" in json.loads(limited.stdout)["sbatch_args"]


def test_the_fixture_keeps_an_outer_slurm_dispatch_config_out(cli: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outer = tmp_path / "outer.yml"
    outer.write_text("Service: {StateDirectory: /nonexistent/outer}\n", encoding="utf-8")
    monkeypatch.setenv("SLURM_DISPATCH_CONFIG", str(outer))
    result = cli("config", "check", "--json", "--skip-legacy")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dispatch_config_file"] == str(cli.own_path)
    assert data["settings"]["state_directory"] == str(cli.state_dir)
