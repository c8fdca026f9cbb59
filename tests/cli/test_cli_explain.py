"""``slurm-dispatch explain``: the service's own sbatch arguments and script, or why a container cannot run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.config import load_settings
from slurm_dispatch.model import Container
from slurm_dispatch.slurm.sbatch import gateway_auth_secret, sbatch_args

QUEUED: dict[str, Any] = {
    "kind": "arvados#container", "uuid": "zzzzz-dz642-queuedcontainer", "owner_uuid": "zzzzz-tpzed-000000000000000",
    "state": "Queued", "priority": 1, "locked_by_uuid": "", "auth_uuid": "", "lock_count": 0,
    "created_at": "2016-01-11T11:11:11.111111000Z", "modified_at": "2016-01-11T11:11:11.111111000Z",
    "container_image": "test", "cwd": "/tmp", "output_path": "/tmp", "command": ["echo", "hello"],
    "runtime_constraints": {"ram": 12000000000, "vcpus": 4, "keep_cache_ram": 0, "keep_cache_disk": 0,
                            "API": False, "gpu": {"stack": "", "device_count": 0, "driver_version": "",
                                                  "hardware_target": None, "vram": 0}},
    "scheduling_parameters": {"partitions": None, "preemptible": False, "max_run_time": 0, "supervisor": False},
    "mounts": {"/tmp": {"kind": "tmp", "capacity": 24000000000},
               "/var/spool/cwl": {"kind": "tmp", "capacity": 24000000000}},
    "exit_code": 0, "runtime_status": {}, "started_at": None, "finished_at": None, "log": "", "output": "",
}
"""Arvados's ``queued`` fixture (services/api/test/fixtures/containers.yml), as the controller returns it."""

INSTANCE_TYPES = {
    "a1.small": {"ProviderType": "a1.small", "VCPUs": 2, "RAM": "4GiB", "IncludedScratch": "100GB", "Price": 0.02},
    "a1.large": {"ProviderType": "a1.large", "VCPUs": 8, "RAM": "32GiB", "IncludedScratch": "200GB", "Price": 0.1},
}


@pytest.fixture
def container_file(tmp_path: Path) -> Path:
    path = tmp_path / "container.json"
    path.write_text(json.dumps(QUEUED), encoding="utf-8")
    return path


def write_container(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "changed.json"
    path.write_text(json.dumps({**QUEUED, **changes}), encoding="utf-8")
    return path


def test_explain_prints_the_worked_example(cli: Any, container_file: Path) -> None:
    result = cli("explain", "--container-file", str(container_file))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Container: zzzzz-dz642-queuedcontainer (Queued, priority 1)\n"
        "\n"
        "Command:\n"
        "  sbatch --nice=10000 --no-requeue --job-name=zzzzz-dz642-queuedcontainer --mem=11995 --cpus-per-task=4 "
        "--tmp=45777\n"
        "\n"
        "Job script (sent on sbatch's stdin):\n"
        "  #!/bin/sh\n"
        "  GatewayAuthSecret='<redacted>' exec 'crunch-run' '--runtime-engine=docker' "
        "'zzzzz-dz642-queuedcontainer'\n"
    )
    assert result.stderr == ""
    secret = gateway_auth_secret(cli.root_token, QUEUED["uuid"])
    assert secret not in result.output
    assert cli.root_token not in result.output


def test_explain_json_matches_the_pure_sbatch_args(cli: Any, container_file: Path) -> None:
    body = cli.cluster(
        SLURM={"SbatchArgumentsList": ["--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T",
                                       "--partition=%P", "--time=%W", "--constraint=instancetype=%I"]},
        ReserveExtraRAM="100MiB", CrunchRunCommand="/usr/bin/crunch-run",
        CrunchRunArgumentsList=["--debug"], RuntimeEngine="singularity")
    body["InstanceTypes"] = INSTANCE_TYPES
    cli.write_config(body)
    changed = write_container(cli.config_path.parent, scheduling_parameters={
        "partitions": ["fast", "slow"], "max_run_time": 3601, "preemptible": False})
    result = cli("explain", "--json", "--container-file", str(changed))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    settings = load_settings(path=cli.config_path, environ={}).settings
    container = Container.from_api(json.loads(changed.read_text()))
    assert data["sbatch_args"] == sbatch_args(container, settings)
    assert data == {
        "uuid": "zzzzz-dz642-queuedcontainer",
        "state": "Queued",
        "priority": 1,
        "final": False,
        "runtime_status": {},
        "warnings": [],
        "instance_type": "a1.large",
        "sbatch_args": ["--nice=10000", "--no-requeue", "--job-name=zzzzz-dz642-queuedcontainer", "--mem=11545",
                        "--cpus-per-task=4", "--tmp=45777", "--partition=fast,slow", "--time=66",
                        "--constraint=instancetype=a1.large", "--signal=B:TERM@120"],
        "script": "#!/bin/sh\nGatewayAuthSecret='<redacted>' exec '/usr/bin/crunch-run' '--debug' "
                  "'--runtime-engine=singularity' 'zzzzz-dz642-queuedcontainer'\n",
    }


def test_explain_container_file_needs_no_token_and_no_api(cli: Any, container_file: Path) -> None:
    cli.write_config({"Services": {"DispatchSLURM": {"InternalURLs": {"http://localhost:9006": {}}}}})
    result = cli("explain", "--json", "--container-file", str(container_file))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sbatch_args"][2] == "--job-name=zzzzz-dz642-queuedcontainer"


def test_explain_unsatisfiable_container_lists_the_instance_types(cli: Any, tmp_path: Path) -> None:
    body = cli.cluster()
    body["InstanceTypes"] = INSTANCE_TYPES
    cli.write_config(body)
    big = write_container(tmp_path, runtime_constraints={"ram": 64 << 30, "vcpus": 4})
    result = cli("explain", "--container-file", str(big))
    assert result.exit_code == 1, result.output
    assert result.stdout == (
        "Container: zzzzz-dz642-queuedcontainer (Queued, priority 1)\n"
        "Instance type: (none fits)\n"
        "\n"
        "Cannot submit:\n"
        "  cannot run container zzzzz-dz642-queuedcontainer: constraints not satisfiable by any configured "
        "instance type\n"
        "  Available instance types:\n"
        "  Type \"a1.small\": 2 VCPUs, 4294967296 RAM, 100000000000 Scratch, 0.020000 Price\n"
        "  Type \"a1.large\": 8 VCPUs, 34359738368 RAM, 200000000000 Scratch, 0.100000 Price\n"
    )
    data = json.loads(cli("explain", "--json", "--container-file", str(big)).stdout)
    assert data["instance_type"] is None
    assert "sbatch_args" not in data and "script" not in data
    assert data["error"].startswith("cannot run container zzzzz-dz642-queuedcontainer: constraints not")
    assert data["available_instance_types"] == [
        'Type "a1.small": 2 VCPUs, 4294967296 RAM, 100000000000 Scratch, 0.020000 Price',
        'Type "a1.large": 8 VCPUs, 34359738368 RAM, 200000000000 Scratch, 0.100000 Price',
    ]


def test_explain_of_a_final_container_says_it_is_final_and_why_it_ended(cli: Any, tmp_path: Path) -> None:
    """What users read on the container (runtime_status.error/errorDetail) comes first, control characters
    escaped; a Complete or Cancelled container is never dispatched again, and explain says so."""
    cli.write_config(cli.cluster())
    ended = write_container(tmp_path, state="Cancelled", runtime_status={
        "error": "Slurm job 7 can never start: PartitionTimeLimit", "errorDetail": "JobId=7\nReason=x\x1b[31m",
        "activity": "not shown"})
    result = cli("explain", "--container-file", str(ended))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "Container: zzzzz-dz642-queuedcontainer (Cancelled, priority 1)",
        "It is Cancelled: it is not dispatched again; below is the job it got, as it would be built now.",
        "runtime_status.error: Slurm job 7 can never start: PartitionTimeLimit",
        "runtime_status.errorDetail: JobId=7",
        "  Reason=x\\x1b[31m",
    ]
    data = json.loads(cli("explain", "--json", "--container-file", str(ended)).stdout)
    assert data["final"] is True and set(data["runtime_status"]) == {"error", "errorDetail"}


def test_explain_bad_template_token_cannot_submit(cli: Any, container_file: Path) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--job-name=%U", "--qos=%X"]}))
    result = cli("explain", "--json", "--container-file", str(container_file))
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout) == {
        "uuid": "zzzzz-dz642-queuedcontainer",
        "state": "Queued",
        "priority": 1,
        "final": False,
        "runtime_status": {},
        "warnings": [("Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList[1] '--qos=%X': unknown substitution "
                     "parameter '%X' (known: %U %C %M %T %G %W %P %I %%); every sbatch would fail")],
        "error": "cannot submit container zzzzz-dz642-queuedcontainer: Unknown substitution parameter %X in "
                 "SbatchArgumentsList or SbatchGPUArgumentsList",
    }


def test_explain_template_without_job_name_warns(cli: Any, container_file: Path) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--mem=%M"]}))
    result = cli("explain", "--container-file", str(container_file))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Container: zzzzz-dz642-queuedcontainer (Queued, priority 1)\n"
        "\n"
        "Command:\n"
        "  sbatch --nice=10000 --no-requeue --mem=11995\n"
        "\n"
        "Job script (sent on sbatch's stdin):\n"
        "  #!/bin/sh\n"
        "  GatewayAuthSecret='<redacted>' exec 'crunch-run' '--runtime-engine=docker' "
        "'zzzzz-dz642-queuedcontainer'\n"
        "\n"
        "Warnings (the service refuses to start with this config):\n"
        "  - Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList lacks --job-name=%U: squeue finds jobs by that "
        "name, so every job would look gone and its container would be unlocked and relocked endlessly\n"
    )
    data = json.loads(cli("explain", "--json", "--container-file", str(container_file)).stdout)
    assert data["sbatch_args"] == ["--nice=10000", "--no-requeue", "--mem=11995"]
    assert len(data["warnings"]) == 1 and "lacks --job-name=%U" in data["warnings"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "error: give a container UUID or --container-file FILE (exactly one)\n", id="neither"),
        pytest.param(["zzzzz-dz642-queuedcontainer", "--container-file", "x.json"],
                     "error: give a container UUID or --container-file FILE (exactly one)\n", id="both"),
    ],
)
def test_explain_usage_errors_exit_2(cli: Any, args: list[str], message: str) -> None:
    result = cli("explain", *args)
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", message)


def test_explain_rejects_a_bad_uuid(cli: Any) -> None:
    result = cli("explain", "not-a-uuid")
    assert result.exit_code == 2, result.output
    assert "'not-a-uuid' is not a container uuid" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{", "not a JSON container record: Expecting property name enclosed in double quotes: "
                     "line 1 column 2 (char 1)", id="bad-json"),
        pytest.param("[1]", "not a JSON container record: expected an object", id="not-object"),
        pytest.param('{"uuid": "zzzzz-dz642-queuedcontainer", "state": "Waiting"}',
                     "not a valid container record: state: must be one of Queued, Locked, Running, Complete, "
                     "Cancelled, not 'Waiting'", id="bad-state"),
    ],
)
def test_explain_bad_container_file_exits_2(cli: Any, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8")
    result = cli("explain", "--container-file", str(path))
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", f"error: {path}: {message}\n")


def test_explain_without_api_settings_is_a_config_error(cli: Any) -> None:
    cli.write_config({"Services": {"DispatchSLURM": {"InternalURLs": {"http://localhost:9006": {}}}}})
    result = cli("explain", "zzzzz-dz642-queuedcontainer")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot reach the Arvados API: ")
    assert len(result.stderr.splitlines()) == 1


def test_explain_uuid_reads_the_container_from_the_api(cli: Any, emulator: Any, emulator_control: Any) -> None:
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = emulator.base_url
    body["TLS"] = {"Insecure": True}
    body["SystemRootToken"] = emulator.root_token
    cli.write_config(body)
    record = emulator_control.create_container(
        runtime_constraints={"ram": 250000000, "vcpus": 2}, mounts={"/tmp": {"kind": "tmp", "capacity": 1000}},
        container_image="test")
    result = cli("explain", "--json", record["uuid"])
    assert result.exit_code == 0, result.output
    settings = load_settings(path=cli.config_path, environ={}).settings
    data = json.loads(result.stdout)
    assert data["sbatch_args"] == sbatch_args(Container.from_api(record), settings)
    assert data["sbatch_args"][3:5] == ["--mem=789", "--cpus-per-task=2"]
    assert emulator.root_token not in result.output


def test_explain_unknown_uuid_exits_1(cli: Any, emulator: Any) -> None:
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = emulator.base_url
    body["TLS"] = {"Insecure": True}
    body["SystemRootToken"] = emulator.root_token
    cli.write_config(body)
    result = cli("explain", "zzzzz-dz642-000000000000000")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: GET /arvados/v1/containers/zzzzz-dz642-000000000000000: HTTP 404")
    assert len(result.stderr.splitlines()) == 1


def test_explain_refused_token_is_a_config_error(cli: Any, emulator: Any) -> None:
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = emulator.base_url
    body["TLS"] = {"Insecure": True}
    body["SystemRootToken"] = "notthetokenofthisclusterxxxxxxxxxxxxxxxxxxxxxx"
    cli.write_config(body)
    result = cli("explain", "zzzzz-dz642-queuedcontainer")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: GET /arvados/v1/containers/zzzzz-dz642-queuedcontainer: HTTP 401")
    assert len(result.stderr.splitlines()) == 1
    assert "notthetokenofthisclusterxxxxxxxxxxxxxxxxxxxxxx" not in result.output
