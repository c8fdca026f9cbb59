"""``slurm-dispatch config check``: whole outputs, redaction, and exit 2 on bad configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.config import DEFAULT_DISPATCH_CONFIG_PATH

SECRETS = ("systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy", "mgmttoken123456789", "dbsecretpassword",
           "envsecret")


def secret_cluster(cli: Any) -> dict[str, Any]:
    body = cli.cluster(SLURM={"SbatchEnvironmentVariables": {"MY_TOKEN": "envsecret", "SITE": "here"}},
                       Bogus=1)
    body["ManagementToken"] = "mgmttoken123456789"
    body["PostgreSQL"] = {"Connection": {"host": "db.example", "password": "dbsecretpassword"}}
    return body


ARVADOS_SETTINGS = """\
  cluster_id: zzzzz
  system_root_token: <redacted>
  controller_url: https://ctrl.example:8443/
  tls_insecure: false
  dispatch_internal_urls:
  - http://localhost:9006
  management_token: <redacted>
  postgresql_connection:
    host: db.example
    password: <redacted>
  batch_size: 1000
  poll_interval: 10.0
  min_retry_period: 0.0
  reserve_extra_ram: 576716800
  crunch_run_command: crunch-run
  crunch_run_arguments: []
  runtime_engine: docker
  priority_spread: 0
  sbatch_arguments:
  - --job-name=%U
  - --mem=%M
  - --cpus-per-task=%C
  - --tmp=%T
  - --partition=%P
  sbatch_gpu_arguments:
  - --gpus=%G
  sbatch_environment:
    MY_TOKEN: <redacted>
    SITE: here
  instance_types: {}
  maximum_price_factor: 1.5
  local_keep_blob_buffers_per_vcpu: 1
  preemptible_price_factor: 0.0
  log_level: info
  log_format: json
"""
OWN_DEFAULTS = """\
  dispatch_config_path: ''
  never_runnable_reasons:
  - BadConstraints
  - PartitionConfig
  - PartitionNodeLimit
  - PartitionTimeLimit
  - InvalidAccount
  - InvalidQOS
  - AccountNotAllowed
  - QOSNotAllowed
  - DependencyNeverSatisfied
  - JobHoldMaxRequeue
  - MaxMemPerLimit
  never_runnable_grace: 300.0
  max_run_time_overhead: 300.0
  default_max_run_time: 0.0
  time_limit_signal: 120.0
  max_containers_in_slurm: 0
  max_submits_per_minute: 0.0
  supervisor_fraction: 0.5
  max_supervisors: 0
  supervisor_sbatch_arguments: []
  broken_node_action: exclude
  broken_node_hold: 3600.0
  state_directory: /var/lib/slurm-dispatch
"""


NO_DISPATCH_FILE = pytest.mark.skipif(DEFAULT_DISPATCH_CONFIG_PATH.exists(),
                                      reason=f"this machine has {DEFAULT_DISPATCH_CONFIG_PATH}")


@NO_DISPATCH_FILE
def test_config_check_prints_redacted_settings_and_warnings(cli: Any) -> None:
    path = cli.write_config(secret_cluster(cli))
    result = cli("config", "check", env={"SLURM_DISPATCH_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Config file: {path} (from $ARVADOS_CONFIG)\n"
        f"slurm-dispatch file: {DEFAULT_DISPATCH_CONFIG_PATH} (default; not there, so its settings take their "
        "defaults)\n"
        "Cluster: zzzzz\n"
        "Slurm cluster: the local one (no --clusters in the sbatch arguments)\n"
        "\n"
        f"Arvados settings, from {path} (secrets redacted):\n"
        + ARVADOS_SETTINGS
        + "\n"
        f"slurm-dispatch settings, all defaults (no file at {DEFAULT_DISPATCH_CONFIG_PATH}):\n"
        + OWN_DEFAULTS
        + "\n"
        "Warnings:\n"
        "  - deprecated or unknown config entry: Clusters.zzzzz.Containers.Bogus\n"
        "\n"
        "OK: the service can start with this config.\n"
    )
    assert result.stderr == ""
    for secret in SECRETS:
        assert secret not in result.output


def test_config_check_json_is_redacted(cli: Any, tmp_path: Any) -> None:
    path = cli.write_config(secret_cluster(cli))
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text("Limits: {MaxContainersInSlurm: 100}\n", encoding="utf-8")
    result = cli("config", "check", "--json", "--config", str(path), "--dispatch-config", str(own))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {k: v for k, v in data.items() if k != "settings"} == {
        "ok": True,
        "config_file": str(path),
        "config_file_source": "--config",
        "legacy_file": None,
        "slurm_clusters": [],
        "dispatch_config_file": str(own),
        "dispatch_config_file_source": "--dispatch-config",
        "sources": {"arvados": [str(path)], "slurm_dispatch": str(own)},
        "warnings": ["deprecated or unknown config entry: Clusters.zzzzz.Containers.Bogus"],
        "problems": [],
    }
    assert data["settings"]["system_root_token"] == "<redacted>"
    assert data["settings"]["postgresql_connection"] == {"host": "db.example", "password": "<redacted>"}
    for secret in SECRETS:
        assert secret not in result.output


def test_config_check_broken_value_exits_2_naming_the_key(cli: Any) -> None:
    path = cli.write_config(cli.cluster(ReserveExtraRAM="lots"))
    result = cli("config", "check")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: Clusters.zzzzz.Containers.ReserveExtraRAM: ")
    assert "lots" in lines[0]


def test_config_check_missing_file_exits_2(cli: Any, tmp_path: Any) -> None:
    missing = tmp_path / "nope.yml"
    result = cli("config", "check", "--config", str(missing))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (f"error: {missing}: config file not found; pass --config <file> or set "
                             "ARVADOS_CONFIG to the cluster config\n")


def test_config_check_template_problems_exit_2(cli: Any) -> None:
    path = cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--mem=%M", "--qos=%X"]}))
    result = cli("config", "check")
    assert result.exit_code == 2, result.output
    tail = result.stdout.split("\n\n")[-1]
    assert tail == (
        "Problems (the service refuses to start):\n"
        "  - Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList[1] '--qos=%X': unknown substitution parameter "
        "'%X' (known: %U %C %M %T %G %W %P %I %%); every sbatch would fail\n"
        "  - Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList lacks --job-name=%U: squeue finds jobs by that "
        "name, so every job would look gone and its container would be unlocked and relocked endlessly\n"
    )
    assert str(path) in result.stdout


def test_config_check_missing_internal_urls_is_one_problem_not_also_a_warning(cli: Any) -> None:
    body = cli.cluster()
    del body["Services"]["DispatchSLURM"]
    cli.write_config(body)
    result = cli("config", "check")
    assert result.exit_code == 2, result.output
    assert "Warnings:" not in result.stdout
    assert result.stdout.endswith(
        "Problems (the service refuses to start):\n"
        "  - Clusters.zzzzz.Services.DispatchSLURM.InternalURLs is empty: could not enable the "
        "\"crunch-dispatch-slurm\" service (add e.g. \"http://localhost:9006\": {})\n"
    )


def test_config_check_reads_a_legacy_file_named_on_the_command_line_unless_skipped(cli: Any, tmp_path: Any) -> None:
    """Go's -legacy-crunch-dispatch-slurm-config and -skip-legacy, under the same names with two dashes."""
    path = cli.write_config(cli.cluster())
    legacy = tmp_path / "crunch-dispatch-slurm.yml"
    legacy.write_text("PollPeriod: 3s\nPrioritySpread: 7\n")
    result = cli("config", "check", "--json", "--config", str(path),
                 "--legacy-crunch-dispatch-slurm-config", str(legacy))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["legacy_file"] == str(legacy)
    assert (data["settings"]["poll_interval"], data["settings"]["priority_spread"]) == (3.0, 7)

    skipped = cli("config", "check", "--json", "--config", str(path),
                  "--legacy-crunch-dispatch-slurm-config", str(legacy), "--skip-legacy")
    assert skipped.exit_code == 0, skipped.output
    data = json.loads(skipped.stdout)
    assert data["legacy_file"] is None
    assert (data["settings"]["poll_interval"], data["settings"]["priority_spread"]) == (10.0, 0)


def test_config_check_missing_legacy_file_named_on_the_command_line_exits_2(cli: Any, tmp_path: Any) -> None:
    path = cli.write_config(cli.cluster())
    missing = tmp_path / "nope.yml"
    result = cli("config", "check", "--config", str(path), "--legacy-crunch-dispatch-slurm-config", str(missing))
    assert result.exit_code == 2
    assert str(missing) in result.output


OWN_FILE = """\
FailureReasons:
  NeverRunnableReasons: [BadConstraints, InvalidQOS]
  NeverRunnableGracePeriod: 10m
TimeLimit: {Overhead: 1m, DefaultMaxRunTime: 12h, StopSignalBefore: 5m}
Limits:
  MaxContainersInSlurm: 200
  MaxSubmitsPerMinute: 60
  SupervisorFraction: 0.25
  MaxSupervisors: 10
  SupervisorSbatchArguments: [--partition=workflows]
  Bogus: 1
BrokenNodes: {Action: drain, Hold: 30m}
Service: {StateDirectory: /srv/slurm-dispatch}
"""


def test_config_check_shows_the_own_file_and_where_each_group_came_from(cli: Any, tmp_path: Path) -> None:
    path = cli.write_config(cli.cluster())
    legacy = tmp_path / "crunch-dispatch-slurm.yml"
    legacy.write_text("PrioritySpread: 7\n", encoding="utf-8")
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text(OWN_FILE, encoding="utf-8")
    result = cli("config", "check", "--legacy-crunch-dispatch-slurm-config", str(legacy),
                 env={"SLURM_DISPATCH_CONFIG": str(own), "ARVADOS_API_HOST": "elsewhere.example",
                      "ARVADOS_API_TOKEN": "someOtherToken"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(
        f"Config file: {path} (from $ARVADOS_CONFIG)\n"
        f"Legacy file: {legacy}\n"
        f"slurm-dispatch file: {own} (from $SLURM_DISPATCH_CONFIG)\n"
        "Cluster: zzzzz\n"
        "Slurm cluster: the local one (no --clusters in the sbatch arguments)\n"
        "\n"
        f"Arvados settings, from {path}, with the legacy file {legacy} over it (secrets redacted):\n"
        "  cluster_id: zzzzz\n"
    ), out
    assert "  priority_spread: 7\n" in out
    assert (
        "  log_format: json\n"
        "\n"
        f"slurm-dispatch settings, from {own}:\n"
        f"  dispatch_config_path: {own}\n"
        "  never_runnable_reasons:\n"
        "  - BadConstraints\n"
        "  - InvalidQOS\n"
        "  never_runnable_grace: 600.0\n"
        "  max_run_time_overhead: 60.0\n"
        "  default_max_run_time: 43200.0\n"
        "  time_limit_signal: 300.0\n"
        "  max_containers_in_slurm: 200\n"
        "  max_submits_per_minute: 60.0\n"
        "  supervisor_fraction: 0.25\n"
        "  max_supervisors: 10\n"
        "  supervisor_sbatch_arguments:\n"
        "  - --partition=workflows\n"
        "  broken_node_action: drain\n"
        "  broken_node_hold: 1800.0\n"
        "  state_directory: /srv/slurm-dispatch\n"
        "\n"
        "Warnings:\n"
        f"  - you should remove the legacy crunch-dispatch-slurm config file ({legacy}) after migrating its keys "
        f"to the cluster configuration file ({path})\n"
        f"  - {own}: unknown config entry: Limits.Bogus\n"
        "  - ARVADOS_API_HOST environment variable is present, but will not be used\n"
        "  - ARVADOS_API_TOKEN environment variable is present, but will not be used\n"
        "\n"
        "OK: the service can start with this config.\n"
    ) in out, out
    assert "someOtherToken" not in result.output and cli.root_token not in result.output


def test_config_check_json_groups_the_settings_by_file(cli: Any, tmp_path: Path) -> None:
    path = cli.write_config(cli.cluster())
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text(OWN_FILE, encoding="utf-8")
    result = cli("config", "check", "--json", "--skip-legacy", env={"SLURM_DISPATCH_CONFIG": str(own)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dispatch_config_file"], data["dispatch_config_file_source"]) == (str(own), "$SLURM_DISPATCH_CONFIG")
    assert data["sources"] == {"arvados": [str(path)], "slurm_dispatch": str(own)}
    assert data["settings"]["dispatch_config_path"] == str(own)
    assert data["settings"]["broken_node_action"] == "drain"
    assert data["warnings"] == [f"{own}: unknown config entry: Limits.Bogus"]


@NO_DISPATCH_FILE
def test_config_check_json_without_an_own_file(cli: Any) -> None:
    cli.write_config(cli.cluster())
    result = cli("config", "check", "--json", "--skip-legacy", env={"SLURM_DISPATCH_CONFIG": None})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dispatch_config_file"], data["dispatch_config_file_source"]) == (None, "default")
    assert data["sources"]["slurm_dispatch"] is None
    assert data["settings"]["dispatch_config_path"] == ""


def test_config_check_says_which_slurm_clusters_and_what_cannot_work_across_them(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--job-name=%U", "--mem=%M", "--clusters=alpha,beta"]}))
    cli.write_own("BrokenNodes: {Action: drain}\n")
    result = cli("config", "check")
    assert result.exit_code == 0, result.output
    assert ("Slurm clusters: alpha,beta (named in the sbatch arguments): every squeue, scancel and sinfo carries "
            "--clusters=alpha,beta, and scontrol the cluster of the job it acts on") in result.stdout
    assert "BrokenNodes.Action drain cannot tell which cluster a broken node is in" in result.stdout
    data = json.loads(cli("config", "check", "--json").stdout)
    assert data["slurm_clusters"] == ["alpha", "beta"]
