"""``slurm-dispatch config check``: whole outputs, redaction, and exit 2 on bad configs."""

from __future__ import annotations

import json
from typing import Any

SECRETS = ("systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy", "mgmttoken123456789", "dbsecretpassword",
           "envsecret")


def secret_cluster(cli: Any) -> dict[str, Any]:
    body = cli.cluster(SLURM={"SbatchEnvironmentVariables": {"MY_TOKEN": "envsecret", "SITE": "here"}},
                       Bogus=1)
    body["ManagementToken"] = "mgmttoken123456789"
    body["PostgreSQL"] = {"Connection": {"host": "db.example", "password": "dbsecretpassword"}}
    return body


EXPECTED_SETTINGS = """\
Effective settings (secrets redacted):
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


def test_config_check_prints_redacted_settings_and_warnings(cli: Any) -> None:
    path = cli.write_config(secret_cluster(cli))
    result = cli("config", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Config file: {path} (from $ARVADOS_CONFIG)\n"
        "Cluster: zzzzz\n"
        "\n"
        + EXPECTED_SETTINGS
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
    result = cli("config", "check", "--json", "--config", str(path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {k: v for k, v in data.items() if k != "settings"} == {
        "ok": True,
        "config_file": str(path),
        "config_file_source": "--config",
        "legacy_file": None,
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
