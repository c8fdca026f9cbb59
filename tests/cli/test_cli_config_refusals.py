"""Configs the service must refuse: ``config check`` and ``run`` both exit 2 with clear lines, no traceback.

``run`` is only given configs it must refuse, so it never starts serving here. The ``cli`` fixture runs the
commands with ``catch_exceptions=False``: a traceback fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.cli.run import EXIT_CONFIG

REFUSING = "slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)"


def run(cli: Any) -> Any:
    return cli("run", "--skip-legacy", "--lock-file", str(cli.config_path.with_name("lock")))


def check_and_run_both_refuse(cli: Any, fragment: str) -> None:
    """``config check --json`` reports ``fragment`` as a problem and exits 2; ``run`` exits 2 naming it."""
    checked = cli("config", "check", "--json", "--skip-legacy")
    assert checked.exit_code == EXIT_CONFIG, checked.output
    problems = json.loads(checked.stdout)["problems"]
    assert any(fragment in p for p in problems), problems
    ran = run(cli)
    assert ran.exit_code == EXIT_CONFIG, ran.output
    lines = ran.stderr.strip().splitlines()
    assert lines[-1] == REFUSING
    assert any(fragment in line for line in lines[:-1]), ran.stderr
    assert cli.root_token not in checked.output + ran.output


def check_and_run_both_fail_to_load(cli: Any, fragment: str) -> None:
    """``config check`` and ``run`` both exit 2 with ONE line on stderr containing ``fragment``."""
    checked = cli("config", "check", "--skip-legacy")
    assert checked.exit_code == EXIT_CONFIG, checked.output
    assert checked.stdout == ""
    assert len(checked.stderr.splitlines()) == 1 and fragment in checked.stderr, checked.stderr
    ran = run(cli)
    assert ran.exit_code == EXIT_CONFIG, ran.output
    assert len(ran.stderr.splitlines()) == 1 and fragment in ran.stderr, ran.stderr
    assert cli.root_token not in checked.output + ran.output


def test_an_empty_sbatch_template_is_refused_by_check_and_run(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": []}))
    check_and_run_both_refuse(cli, "SbatchArgumentsList is empty")


def test_explain_shows_an_empty_sbatch_template_as_a_warning(cli: Any, tmp_path: Path) -> None:
    from test_cli_explain import QUEUED  # the same worked-example container

    container = tmp_path / "container.json"
    container.write_text(json.dumps(QUEUED), encoding="utf-8")
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": []}))
    result = cli("explain", "--json", "--skip-legacy", "--container-file", str(container))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sbatch_args"] == ["--nice=10000", "--no-requeue"]
    assert len(data["warnings"]) == 1 and "SbatchArgumentsList is empty" in data["warnings"][0]


def test_a_missing_token_is_refused_by_check_and_run(cli: Any) -> None:
    body = cli.cluster()
    del body["SystemRootToken"]
    cli.write_config(body)
    check_and_run_both_refuse(cli, "SystemRootToken is empty")


def test_a_missing_controller_is_refused_by_check_and_run(cli: Any) -> None:
    body = cli.cluster()
    del body["Services"]["Controller"]
    cli.write_config(body)
    check_and_run_both_refuse(cli, "Services.Controller.ExternalURL is empty")


@pytest.mark.parametrize(
    ("containers", "fragment"),
    [
        pytest.param({"CrunchRunArgumentsList": ["--x\0"]}, "Containers.CrunchRunArgumentsList[0]", id="NUL-arg"),
        pytest.param({"SLURM": {"SbatchEnvironmentVariables": {"A": "x\ny"}}},
                     "SbatchEnvironmentVariables.A", id="newline-env"),
        pytest.param({"CloudVMs": {"PollInterval": "10ns"}}, "at least 100ms", id="poll-10ns"),
    ],
)
def test_bad_values_fail_check_and_run_with_one_line(cli: Any, containers: dict[str, Any], fragment: str) -> None:
    cli.write_config(cli.cluster(**containers))
    check_and_run_both_fail_to_load(cli, fragment)


def test_a_block_scalar_token_fails_check_and_run_without_showing_it(cli: Any) -> None:
    cli.config_path.write_text(
        "Clusters:\n  zzzzz:\n    SystemRootToken: |\n      " + cli.root_token + "\n"
        "    Services:\n      Controller: {ExternalURL: 'https://ctrl.example:8443/'}\n"
        "      DispatchSLURM: {InternalURLs: {'http://localhost:9006': {}}}\n", encoding="utf-8")
    check_and_run_both_fail_to_load(cli, "SystemRootToken: contains a newline at the end")


def test_an_alias_bomb_fails_check_and_run_with_one_line(cli: Any) -> None:
    levels = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10))
    cli.config_path.write_text("l0: &l0 [lol]\n" + levels + "Clusters:\n  zzzzz:\n    X: *l9\n", encoding="utf-8")
    check_and_run_both_fail_to_load(cli, "invalid YAML")


# --- slurm-dispatch's own file: config check and run refuse the same files with the same line ----------------

OWN_FILE_REFUSALS = [
    pytest.param("FailureReasons: {NeverRunnableReasons: [Bad Constraints]}\n",
                 "FailureReasons.NeverRunnableReasons[0]: 'Bad Constraints' is not a Slurm reason code", id="reason"),
    pytest.param("FailureReasons: {NeverRunnableGracePeriod: -1m}\n",
                 "FailureReasons.NeverRunnableGracePeriod: negative duration", id="grace"),
    pytest.param("TimeLimit: {Overhead: 2.5s}\n", "TimeLimit.Overhead: must be a whole number of seconds",
                 id="overhead"),
    pytest.param("TimeLimit: {DefaultMaxRunTime: 3600}\n", "TimeLimit.DefaultMaxRunTime: missing unit",
                 id="default-limit"),
    pytest.param("TimeLimit: {StopSignalBefore: 20h}\n", "TimeLimit.StopSignalBefore: must be at most 65535s",
                 id="signal"),
    pytest.param("Limits: {MaxContainersInSlurm: -5}\n", "Limits.MaxContainersInSlurm: must not be negative",
                 id="cap"),
    pytest.param("Limits: {MaxSubmitsPerMinute: .inf}\n", "Limits.MaxSubmitsPerMinute: expected a number, got inf",
                 id="rate"),
    pytest.param("Limits: {SupervisorFraction: 2}\n", "Limits.SupervisorFraction: must be from 0 to 1", id="fraction"),
    pytest.param("Limits: {MaxSupervisors: many}\n", "Limits.MaxSupervisors: expected an integer", id="supervisors"),
    pytest.param("Limits: {SupervisorSbatchArguments: ['--qos=%q']}\n",
                 "Limits.SupervisorSbatchArguments[0]: '--qos=%q': unknown substitution parameter '%q'", id="template"),
    pytest.param("Limits: {SupervisorSbatchArguments: ['--job-name=wf']}\n",
                 "Limits.SupervisorSbatchArguments[0]: '--job-name=wf' would rename the job", id="job-name"),
    pytest.param("BrokenNodes: {Action: reboot}\n", "BrokenNodes.Action: 'reboot' is not one of exclude, drain, none",
                 id="action"),
    pytest.param("BrokenNodes: {Hold: forever}\n", "BrokenNodes.Hold: invalid duration 'forever'", id="hold"),
    pytest.param("Service: {StateDirectory: relative/dir}\n", "Service.StateDirectory: must be an absolute path",
                 id="state-directory"),
    pytest.param("Limits: [1, 2]\n", "Limits: expected a map, got [1, 2]", id="section"),
    pytest.param("Limits: {MaxSupervisors: 1\n", "invalid YAML: line 2, column 1", id="yaml"),
]


@pytest.mark.parametrize(("text", "fragment"), OWN_FILE_REFUSALS)
def test_own_file_refusals_fail_check_and_run_with_the_same_line(cli: Any, tmp_path: Path, text: str,
                                                                 fragment: str) -> None:
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text(text, encoding="utf-8")
    cli.env["SLURM_DISPATCH_CONFIG"] = str(own)
    check_and_run_both_fail_to_load(cli, f"{own}: {fragment}")
    checked = cli("config", "check", "--skip-legacy")
    ran = run(cli)
    assert checked.stderr == f"error: {own}: " + ran.stderr.removeprefix(f"slurm-dispatch: {own}: ")


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_missing_own_file_named_explicitly_fails_check_and_run(cli: Any, tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.yml"
    args: tuple[str, ...] = ("--dispatch-config", str(missing)) if how == "option" else ()
    if how == "env":
        cli.env["SLURM_DISPATCH_CONFIG"] = str(missing)
    expected = (f"{missing}: slurm-dispatch config file not found; check --dispatch-config and $SLURM_DISPATCH_CONFIG "
                "(without either, the default /etc/arvados/slurm-dispatch/slurm-dispatch.yml is read if it exists)")
    checked = cli("config", "check", "--skip-legacy", *args)
    assert checked.exit_code == EXIT_CONFIG, checked.output
    assert checked.stderr == f"error: {expected}\n"
    ran = cli("run", "--skip-legacy", "--lock-file", str(tmp_path / "lock"), *args)
    assert ran.exit_code == EXIT_CONFIG, ran.output
    assert ran.stderr == f"slurm-dispatch: {expected}\n"


def test_the_option_wins_over_the_environment_in_check_and_run(cli: Any, tmp_path: Path) -> None:
    """The environment names a bad file, the option a good one: both commands read the option's."""
    bad = tmp_path / "bad.yml"
    bad.write_text("BrokenNodes: {Action: reboot}\n", encoding="utf-8")
    good = tmp_path / "good.yml"
    good.write_text("Limits: {SupervisorSbatchArguments: ['--qos=%X']}\n", encoding="utf-8")
    cli.env["SLURM_DISPATCH_CONFIG"] = str(bad)
    checked = cli("config", "check", "--skip-legacy", "--dispatch-config", str(good))
    ran = cli("run", "--skip-legacy", "--lock-file", str(tmp_path / "lock"), "--dispatch-config", str(good))
    for result in (checked, ran):
        assert result.exit_code == EXIT_CONFIG, result.output
        assert f"{good}: Limits.SupervisorSbatchArguments[0]: '--qos=%X': unknown substitution parameter '%X'" in \
            result.stderr
        assert str(bad) not in result.stderr
