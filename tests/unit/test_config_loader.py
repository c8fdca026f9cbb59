"""load_settings / settings_from_documents: defaults, every key, env fill-in, several clusters, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch.config import (
    DEFAULT_CONFIG_PATH,
    LoadedConfig,
    PathSource,
    load_settings,
    redacted,
    resolve_config_path,
    settings_from_documents,
)
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import DEFAULT_NEVER_RUNNABLE_REASONS, InstanceType, InstanceTypeGPU, Settings

TOKEN = "s3cr3tRootTokenValue0123456789abcdefghijkl"
MGMT = "s3cr3tManagementTokenValue0123456789abcdef"
PGPASS = "s3cr3tPostgresPassword42"
MiB = 1 << 20

Load = Callable[..., LoadedConfig]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[object, str], Path]:
    """Writes a YAML document (or raw text) to tmp_path and returns its path."""

    def _write(doc: object, name: str = "config.yml") -> Path:
        p = tmp_path / name
        p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
        return p

    return _write


def cluster(body: dict[str, Any] | None = None, cid: str = "zzzzz") -> dict[str, Any]:
    return {"Clusters": {cid: body or {}}}


def build(body: dict[str, Any], **kwargs: Any) -> Settings:
    settings, _ = settings_from_documents(cluster(body), source="c.yml", **kwargs)
    return settings


def build_error(body: dict[str, Any], **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_from_documents(cluster(body), source="c.yml", **kwargs)
    return info.value


# --- defaults ----------------------------------------------------------------------------------------------

DEFAULTS = [
    pytest.param("cluster_id", "zzzzz", id="cluster_id"),
    pytest.param("system_root_token", "", id="SystemRootToken"),
    pytest.param("controller_url", "", id="Services.Controller.ExternalURL"),
    pytest.param("tls_insecure", False, id="TLS.Insecure"),
    pytest.param("dispatch_internal_urls", (), id="Services.DispatchSLURM.InternalURLs"),
    pytest.param("management_token", "", id="ManagementToken"),
    pytest.param("postgresql_connection", {}, id="PostgreSQL.Connection"),
    pytest.param("batch_size", 1000, id="API.MaxItemsPerResponse"),
    pytest.param("poll_interval", 10.0, id="Containers.CloudVMs.PollInterval"),
    pytest.param("min_retry_period", 0.0, id="Containers.MinRetryPeriod"),
    pytest.param("reserve_extra_ram", 550 * MiB, id="Containers.ReserveExtraRAM"),
    pytest.param("crunch_run_command", "crunch-run", id="Containers.CrunchRunCommand"),
    pytest.param("crunch_run_arguments", (), id="Containers.CrunchRunArgumentsList"),
    pytest.param("runtime_engine", "docker", id="Containers.RuntimeEngine"),
    pytest.param("priority_spread", 0, id="Containers.SLURM.PrioritySpread"),
    pytest.param("sbatch_arguments",
                 ("--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T", "--partition=%P"),
                 id="Containers.SLURM.SbatchArgumentsList"),
    pytest.param("sbatch_gpu_arguments", ("--gpus=%G",), id="Containers.SLURM.SbatchGPUArgumentsList"),
    pytest.param("sbatch_environment", {}, id="Containers.SLURM.SbatchEnvironmentVariables"),
    pytest.param("instance_types", {}, id="InstanceTypes"),
    pytest.param("maximum_price_factor", 1.5, id="Containers.MaximumPriceFactor"),
    pytest.param("local_keep_blob_buffers_per_vcpu", 1, id="Containers.LocalKeepBlobBuffersPerVCPU"),
    pytest.param("preemptible_price_factor", 0.0, id="Containers.PreemptiblePriceFactor"),
    pytest.param("log_level", "info", id="SystemLogs.LogLevel"),
    pytest.param("log_format", "json", id="SystemLogs.Format"),
    # slurm-dispatch's own settings (its own file)
    pytest.param("dispatch_config_path", "", id="own-file"),
    pytest.param("never_runnable_reasons", DEFAULT_NEVER_RUNNABLE_REASONS, id="FailureReasons.NeverRunnableReasons"),
    pytest.param("never_runnable_grace", 300.0, id="FailureReasons.NeverRunnableGracePeriod"),
    pytest.param("max_run_time_overhead", 300.0, id="TimeLimit.Overhead"),
    pytest.param("default_max_run_time", 0.0, id="TimeLimit.DefaultMaxRunTime"),
    pytest.param("time_limit_signal", 120.0, id="TimeLimit.StopSignalBefore"),
    pytest.param("max_containers_in_slurm", 0, id="Limits.MaxContainersInSlurm"),
    pytest.param("max_submits_per_minute", 0.0, id="Limits.MaxSubmitsPerMinute"),
    pytest.param("supervisor_fraction", 0.5, id="Limits.SupervisorFraction"),
    pytest.param("max_supervisors", 0, id="Limits.MaxSupervisors"),
    pytest.param("supervisor_sbatch_arguments", (), id="Limits.SupervisorSbatchArguments"),
    pytest.param("broken_node_action", "exclude", id="BrokenNodes.Action"),
    pytest.param("broken_node_hold", 3600.0, id="BrokenNodes.Hold"),
    pytest.param("state_directory", "/var/lib/slurm-dispatch", id="Service.StateDirectory"),
]


@pytest.mark.parametrize(("field_name", "expected"), DEFAULTS)
def test_minimal_config_gives_reference_defaults(field_name: str, expected: object) -> None:
    settings = build({})
    assert getattr(settings, field_name) == expected


def test_defaults_table_covers_every_settings_field() -> None:
    names = {p.values[0] for p in DEFAULTS}
    assert names == set(Settings.__dataclass_fields__)


def test_sample_keys_are_removed() -> None:
    body = {"InstanceTypes": {"SAMPLE": {"VCPUs": 1, "RAM": "128MiB"}},
            "Containers": {"SLURM": {"SbatchEnvironmentVariables": {"SAMPLE": ""}}},
            "Services": {"DispatchSLURM": {"InternalURLs": {"SAMPLE": {"ListenURL": ""}}}}}
    settings = build(body)
    assert settings.instance_types == {}
    assert settings.sbatch_environment == {}
    assert settings.dispatch_internal_urls == ()


def test_null_values_keep_defaults() -> None:
    settings = build({"Containers": {"ReserveExtraRAM": None, "SLURM": None}, "API": None})
    assert settings.reserve_extra_ram == 550 * MiB
    assert settings.batch_size == 1000


def test_a_null_map_entry_is_no_entry_as_arvados_drops_it() -> None:
    """lib/config/load.go: removeNullKeys deletes every null value of the file before it is merged and decoded. An
    instance type whose body is commented out is none at all: kept, it would be a type with no CPU and no RAM, and
    every container would be cancelled as unsatisfiable."""
    settings = build({"InstanceTypes": {"m5large": None},
                      "Containers": {"SLURM": {"SbatchEnvironmentVariables": {"http_proxy": None, "A": "b"}}},
                      "Services": {"DispatchSLURM": {"InternalURLs": {"http://localhost:9006": None}}}})
    assert settings.instance_types == {}
    assert settings.sbatch_environment == {"A": "b"}
    assert settings.dispatch_internal_urls == ()


# --- every key, set --------------------------------------------------------------------------------------

FULL = {
    "SystemRootToken": TOKEN,
    "ManagementToken": MGMT,
    "Services": {
        "Controller": {"ExternalURL": "https://ctrl.example:8443/"},
        "DispatchSLURM": {"InternalURLs": {"http://localhost:9006": {}, "http://10.0.0.5:9006/": {}}},
    },
    "TLS": {"Insecure": True},
    "PostgreSQL": {"Connection": {"host": "db", "port": 5432, "user": "arvados", "password": PGPASS,
                                  "dbname": "arvados_production", "sslmode": "require", "SAMPLE": ""},
                   "ConnectionPool": 8},
    "API": {"MaxItemsPerResponse": 500},
    "Containers": {
        "CloudVMs": {"PollInterval": "1m30s"},
        "MinRetryPeriod": "30s",
        "ReserveExtraRAM": "1GiB",
        "CrunchRunCommand": "/usr/bin/crunch-run",
        "CrunchRunArgumentsList": ["--cgroup-parent-subsystem=memory"],
        "RuntimeEngine": "singularity",
        "MaximumPriceFactor": 2,
        "LocalKeepBlobBuffersPerVCPU": 0,
        "PreemptiblePriceFactor": 0,
        "MaxDispatchAttempts": 5,
        "DefaultKeepCacheRAM": "256MiB",
        "SLURM": {
            "PrioritySpread": 1000,
            "SbatchArgumentsList": ["--job-name=%U", "--mem=%M", "--partition=%P", "--account=lab"],
            "SbatchGPUArgumentsList": ["--gres=gpu:%G"],
            "SbatchEnvironmentVariables": {"SLURM_CONF": "/etc/slurm/alt.conf"},
        },
    },
    "InstanceTypes": {
        "small": {"VCPUs": 2, "RAM": "4GiB", "IncludedScratch": "10GB", "AddedScratch": "5GB", "Price": 0.1},
        "gpu1": {"ProviderType": "g4dn.xlarge", "VCPUs": 4, "RAM": "16GiB", "IncludedScratch": "100GB",
                 "Price": 0.5, "Preemptible": True,
                 "GPU": {"Stack": "cuda", "DriverVersion": "11.0", "HardwareTarget": "7.5", "DeviceCount": 1,
                         "VRAM": "16GiB"}},
    },
    "SystemLogs": {"LogLevel": "debug", "Format": "text"},
}


@pytest.mark.parametrize(
    ("field_name", "expected"),
    [
        pytest.param("system_root_token", TOKEN, id="SystemRootToken"),
        pytest.param("management_token", MGMT, id="ManagementToken"),
        pytest.param("controller_url", "https://ctrl.example:8443/", id="ExternalURL"),
        pytest.param("tls_insecure", True, id="TLS.Insecure"),
        pytest.param("dispatch_internal_urls", ("http://10.0.0.5:9006/", "http://localhost:9006"),
                     id="InternalURLs-keys-sorted"),
        pytest.param("postgresql_connection",
                     {"host": "db", "port": "5432", "user": "arvados", "password": PGPASS,
                      "dbname": "arvados_production", "sslmode": "require"}, id="PostgreSQL.Connection"),
        pytest.param("batch_size", 500, id="API.MaxItemsPerResponse"),
        pytest.param("poll_interval", 90.0, id="CloudVMs.PollInterval"),
        pytest.param("min_retry_period", 30.0, id="MinRetryPeriod"),
        pytest.param("reserve_extra_ram", 1 << 30, id="ReserveExtraRAM"),
        pytest.param("crunch_run_command", "/usr/bin/crunch-run", id="CrunchRunCommand"),
        pytest.param("crunch_run_arguments", ("--cgroup-parent-subsystem=memory",), id="CrunchRunArgumentsList"),
        pytest.param("runtime_engine", "singularity", id="RuntimeEngine"),
        pytest.param("priority_spread", 1000, id="PrioritySpread"),
        pytest.param("sbatch_arguments", ("--job-name=%U", "--mem=%M", "--partition=%P", "--account=lab"),
                     id="SbatchArgumentsList"),
        pytest.param("sbatch_gpu_arguments", ("--gres=gpu:%G",), id="SbatchGPUArgumentsList"),
        pytest.param("sbatch_environment", {"SLURM_CONF": "/etc/slurm/alt.conf"}, id="SbatchEnvironmentVariables"),
        pytest.param("maximum_price_factor", 2.0, id="MaximumPriceFactor"),
        pytest.param("local_keep_blob_buffers_per_vcpu", 0, id="LocalKeepBlobBuffersPerVCPU"),
        pytest.param("log_level", "debug", id="LogLevel"),
        pytest.param("log_format", "text", id="Format"),
    ],
)
def test_every_key_is_read(field_name: str, expected: object) -> None:
    assert getattr(build(FULL), field_name) == expected


def test_instance_types_are_read_with_scratch_and_gpu() -> None:
    types = build(FULL).instance_types
    assert types["small"] == InstanceType(name="small", provider_type="small", vcpus=2, ram=4 << 30,
                                          included_scratch=10**10, added_scratch=5 * 10**9, price=0.1)
    assert types["small"].scratch == 15 * 10**9
    assert types["gpu1"].provider_type == "g4dn.xlarge"
    assert types["gpu1"].preemptible is True
    assert types["gpu1"].gpu == InstanceTypeGPU(stack="cuda", driver_version="11.0", hardware_target="7.5",
                                                device_count=1, vram=16 << 30)


def test_preemptible_price_factor_adds_variants() -> None:
    body = {"Containers": {"PreemptiblePriceFactor": 0.5},
            "InstanceTypes": {"a": {"VCPUs": 2, "RAM": "1GiB", "Price": 0.2},
                              "b": {"VCPUs": 4, "RAM": "2GiB", "Price": 0.4, "Preemptible": True}}}
    types = build(body).instance_types
    assert sorted(types) == ["a", "a.preemptible", "b"]
    variant = types["a.preemptible"]
    assert variant.preemptible is True
    assert variant.price == pytest.approx(0.1)
    assert (variant.vcpus, variant.ram, variant.provider_type) == (2, 1 << 30, "a")


def test_preemptible_variant_does_not_overwrite_a_different_existing_type() -> None:
    body = {"Containers": {"PreemptiblePriceFactor": 1},
            "InstanceTypes": {"a": {"VCPUs": 2, "Price": 0.2},
                              "a.preemptible": {"VCPUs": 8, "Price": 0.05, "Preemptible": True}}}
    settings, warnings = settings_from_documents(cluster(body), source="c.yml")
    assert settings.instance_types["a.preemptible"].vcpus == 8
    assert any("a.preemptible already exists" in w for w in warnings)


@pytest.mark.parametrize(
    ("api", "old", "expected"),
    [
        pytest.param(0, None, 100, id="zero-means-100"),
        pytest.param(None, 250, 250, id="deprecated-alias"),
        pytest.param(700, 250, 250, id="deprecated-alias-wins-like-go"),
        pytest.param(None, 0, 100, id="deprecated-zero"),
    ],
)
def test_max_items_per_response(api: int | None, old: int | None, expected: int) -> None:
    body: dict[str, Any] = {"API": {"MaxItemsPerResponse": api}}
    if old is not None:
        body["RequestLimits"] = {"MaxItemsPerResponse": old}
    settings, warnings = settings_from_documents(cluster(body), source="c.yml")
    assert settings.batch_size == expected
    if old is not None:
        assert any("RequestLimits.MaxItemsPerResponse is deprecated" in w for w in warnings)


def test_listen_url_is_where_the_service_listens() -> None:
    body = {"Services": {"DispatchSLURM": {"InternalURLs": {
        "http://dispatch.internal:9006": {"ListenURL": "http://0.0.0.0:9006"}}}}}
    assert build(body).dispatch_internal_urls == ("http://0.0.0.0:9006",)


# --- warnings ----------------------------------------------------------------------------------------------


def warnings_for(body: dict[str, Any]) -> list[str]:
    return settings_from_documents(cluster(body), source="c.yml")[1]


def test_containers_poll_interval_is_ignored_with_the_right_key_named() -> None:
    settings, warnings = settings_from_documents(cluster({"Containers": {"PollInterval": "1s"}}),
                                                 source="c.yml")
    assert settings.poll_interval == 10.0
    [warning] = [w for w in warnings if "Containers.PollInterval" in w]
    assert "Clusters.zzzzz.Containers.PollInterval" in warning
    assert "ignored" in warning and "Containers.CloudVMs.PollInterval" in warning


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param({"Bogus": 1}, "unknown config entry: Clusters.zzzzz.Bogus", id="top-level"),
        pytest.param({"Containers": {"SLURM": {"SbatchArgumentList": []}}},
                     "Clusters.zzzzz.Containers.SLURM.SbatchArgumentList", id="typo-in-slurm"),
        pytest.param({"containers": {}}, "(perhaps you meant Containers?)", id="case-hint"),
        pytest.param({"InstanceTypes": {"a": {"Scratch": "1G"}}}, "Scratch is computed", id="scratch-ignored"),
        pytest.param({"InstanceTypes": {"a": {"GPU": {"Count": 1}}}}, "Clusters.zzzzz.InstanceTypes.a.GPU.Count",
                     id="instance-gpu-typo"),
        pytest.param({"RequestLimits": {"MaxItemsPerResponse": 5}}, "deprecated", id="request-limits"),
        # the poll period would stay at 10 s without a word (lib/config/load.go: logExtraKeys warns)
        pytest.param({"Containers": {"CloudVMs": {"PolInterval": "5s"}}},
                     "unknown config entry: Clusters.zzzzz.Containers.CloudVMs.PolInterval", id="cloudvms-typo"),
        pytest.param({"Containers": {"CloudVMs": {"pollinterval": "5s"}}}, "(perhaps you meant PollInterval?)",
                     id="cloudvms-case"),
        pytest.param({"Services": {"Controller": {"ExternalUrl": "https://x"}}},
                     "Clusters.zzzzz.Services.Controller.ExternalUrl", id="service-key-typo"),
        pytest.param({"Services": {"Keepstore": {"InternalURLs": {"http://k:25107": {"Listen": "x"}}}}},
                     "Clusters.zzzzz.Services.Keepstore.InternalURLs.http://k:25107.Listen", id="internal-url-typo"),
    ],
)
def test_unknown_and_deprecated_keys_warn(body: dict[str, Any], fragment: str) -> None:
    assert any(fragment in w for w in warnings_for(body)), warnings_for(body)


def test_known_keys_of_other_services_do_not_warn() -> None:
    body = {"Collections": {"BlobSigningKey": "x"}, "Users": {"AutoAdminFirstUser": True},
            "Containers": {"CloudVMs": {"Driver": "ec2", "PollInterval": "10s"}, "LSF": {}, "Logging": {}},
            "Services": {"Keepstore": {"InternalURLs": {}}, "DispatchSLURM": {
                "InternalURLs": {"http://localhost:9006": {}}}},
            "API": {"MaxRequestSize": 1}}
    assert warnings_for(body) == []


def test_missing_internal_urls_warns() -> None:
    assert any("InternalURLs is empty" in w for w in warnings_for({}))


# --- environment ------------------------------------------------------------------------------------------

ENV_CASES = [
    pytest.param({}, {"ARVADOS_API_TOKEN": "envtoken"}, ("envtoken", "", False), id="token-fills-empty"),
    pytest.param({"SystemRootToken": "cfgtoken"}, {"ARVADOS_API_TOKEN": "envtoken"}, ("cfgtoken", "", False),
                 id="token-does-not-override"),
    pytest.param({}, {"ARVADOS_API_HOST": "ctrl.example:443"}, ("", "https://ctrl.example:443/", False),
                 id="host-fills-empty"),
    pytest.param({}, {"ARVADOS_API_HOST": "ctrl.example", "ARVADOS_API_HOST_INSECURE": "1"},
                 ("", "https://ctrl.example/", True), id="host-and-insecure"),
    pytest.param({}, {"ARVADOS_API_HOST": "ctrl.example", "ARVADOS_API_HOST_INSECURE": "0"},
                 ("", "https://ctrl.example/", False), id="insecure-0-is-false"),
    pytest.param({"Services": {"Controller": {"ExternalURL": "https://cfg.example/"}}},
                 {"ARVADOS_API_HOST": "env.example", "ARVADOS_API_HOST_INSECURE": "1"},
                 ("", "https://cfg.example/", False), id="host-does-not-override-nor-insecure"),
    pytest.param({}, {"ARVADOS_API_HOST_INSECURE": "1"}, ("", "", False), id="insecure-alone-does-nothing"),
]


@pytest.mark.parametrize(("body", "environ", "expected"), ENV_CASES)
def test_environment_fills_only_empty_keys(body: dict[str, Any], environ: dict[str, str],
                                           expected: tuple[str, str, bool]) -> None:
    settings = build(body, environ=environ)
    assert (settings.system_root_token, settings.controller_url, settings.tls_insecure) == expected


def test_bad_arvados_api_host_is_an_error() -> None:
    error = build_error({}, environ={"ARVADOS_API_HOST": "https://ctrl.example/path"})
    assert "ARVADOS_API_HOST" in str(error)


# --- several clusters, cluster id ---------------------------------------------------------------------------


def test_several_clusters_without_id_lists_them() -> None:
    doc = {"Clusters": {"zzzzz": {}, "aaaaa": {}}}
    with pytest.raises(ConfigError) as info:
        settings_from_documents(doc, source="/etc/arvados/config.yml")
    message = str(info.value)
    assert "/etc/arvados/config.yml" in message and "aaaaa, zzzzz" in message


def test_several_clusters_with_id_picks_one() -> None:
    doc = {"Clusters": {"zzzzz": {"Containers": {"RuntimeEngine": "docker"}},
                        "aaaaa": {"Containers": {"RuntimeEngine": "singularity"}}}}
    settings, _ = settings_from_documents(doc, source="c.yml", cluster_id="aaaaa")
    assert (settings.cluster_id, settings.runtime_engine) == ("aaaaa", "singularity")


@pytest.mark.parametrize(
    ("doc", "cluster_id", "fragment"),
    [
        pytest.param({"Clusters": {"zzzzz": {}}}, "bbbbb", "'bbbbb' is not defined here (clusters: zzzzz)",
                     id="unknown-id"),
        pytest.param({"Clusters": {}}, None, "does not define any clusters", id="empty-clusters"),
        pytest.param({"Clusters": {"ZZZ": {}}}, None, "5 lowercase alphanumeric", id="bad-id"),
        pytest.param({"Clusters": ["zzzzz"]}, None, "Clusters", id="clusters-is-a-list"),
        pytest.param({"Clusters": {"zzzzz": ["x"]}}, None, "expected a map", id="cluster-is-a-list"),
    ],
)
def test_cluster_selection_errors(doc: object, cluster_id: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_documents(doc, source="c.yml", cluster_id=cluster_id)
    assert fragment in str(info.value)
    assert str(info.value).startswith("c.yml: ")


# --- validation errors ------------------------------------------------------------------------------------

ERRORS = [
    pytest.param({"Containers": {"ReserveExtraRAM": "lots"}}, "Clusters.zzzzz.Containers.ReserveExtraRAM", "'lots'",
                 id="bad-size"),
    pytest.param({"Containers": {"ReserveExtraRAM": -5}}, "Clusters.zzzzz.Containers.ReserveExtraRAM", "-5",
                 id="negative-size"),
    pytest.param({"Containers": {"ReserveExtraRAM": "1024"}}, "Clusters.zzzzz.Containers.ReserveExtraRAM",
                 "'1024'", id="quoted-unitless-size"),
    pytest.param({"Containers": {"MinRetryPeriod": 30}}, "Clusters.zzzzz.Containers.MinRetryPeriod", "30",
                 id="duration-without-unit"),
    pytest.param({"Containers": {"CloudVMs": {"PollInterval": "0s"}}},
                 "Clusters.zzzzz.Containers.CloudVMs.PollInterval", "'0s'", id="zero-poll-interval"),
    pytest.param({"Containers": {"RuntimeEngine": "podman"}}, "Clusters.zzzzz.Containers.RuntimeEngine",
                 "'podman' is not one of docker, singularity", id="runtime-engine"),
    pytest.param({"SystemLogs": {"LogLevel": "loud"}}, "Clusters.zzzzz.SystemLogs.LogLevel", "'loud'",
                 id="log-level"),
    pytest.param({"SystemLogs": {"Format": "xml"}}, "Clusters.zzzzz.SystemLogs.Format",
                 "'xml' is not one of json, text", id="log-format"),
    pytest.param({"Containers": {"SLURM": {"SbatchArgumentsList": "--mem=%M"}}},
                 "Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList", "'--mem=%M'", id="string-not-list"),
    pytest.param({"Containers": {"SLURM": {"SbatchArgumentsList": ["--a", 5]}}},
                 "Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList[1]", "5", id="list-item-not-string"),
    pytest.param({"Containers": {"SLURM": {"SbatchEnvironmentVariables": ["A=1"]}}},
                 "Clusters.zzzzz.Containers.SLURM.SbatchEnvironmentVariables", "['A=1']", id="list-not-map"),
    pytest.param({"Containers": {"SLURM": {"SbatchEnvironmentVariables": {"N": 1}}}},
                 "Clusters.zzzzz.Containers.SLURM.SbatchEnvironmentVariables.N", "1", id="env-value-not-string"),
    pytest.param({"Containers": {"SLURM": {"PrioritySpread": "10"}}},
                 "Clusters.zzzzz.Containers.SLURM.PrioritySpread", "'10'", id="string-not-int"),
    pytest.param({"Containers": {"SLURM": {"PrioritySpread": True}}},
                 "Clusters.zzzzz.Containers.SLURM.PrioritySpread", "True", id="bool-not-int"),
    pytest.param({"Containers": {"SLURM": ["x"]}}, "Clusters.zzzzz.Containers.SLURM", "['x']",
                 id="list-where-section"),
    pytest.param({"Containers": {"CrunchRunCommand": ["crunch-run"]}}, "Clusters.zzzzz.Containers.CrunchRunCommand",
                 "['crunch-run']", id="command-list-not-string"),
    pytest.param({"Containers": {"CrunchRunCommand": ""}}, "Clusters.zzzzz.Containers.CrunchRunCommand", "''",
                 id="empty-command"),
    pytest.param({"Containers": {"MaximumPriceFactor": -1}}, "Clusters.zzzzz.Containers.MaximumPriceFactor", "-1",
                 id="negative-price-factor"),
    pytest.param({"Containers": {"LocalKeepBlobBuffersPerVCPU": -1}},
                 "Clusters.zzzzz.Containers.LocalKeepBlobBuffersPerVCPU", "-1", id="negative-buffers"),
    pytest.param({"API": {"MaxItemsPerResponse": -1}}, "Clusters.zzzzz.API.MaxItemsPerResponse", "-1",
                 id="negative-batch"),
    pytest.param({"TLS": {"Insecure": "yes please"}}, "Clusters.zzzzz.TLS.Insecure", "'yes please'",
                 id="string-not-bool"),
    pytest.param({"Services": {"Controller": {"ExternalURL": "ctrl.example"}}},
                 "Clusters.zzzzz.Services.Controller.ExternalURL", "'ctrl.example'", id="url-without-scheme"),
    pytest.param({"Services": {"DispatchSLURM": {"InternalURLs": {"localhost:9006": {}}}}},
                 "Clusters.zzzzz.Services.DispatchSLURM.InternalURLs.localhost:9006", "'localhost:9006'",
                 id="internal-url-without-scheme"),
    pytest.param({"InstanceTypes": [{"Name": "a"}]}, "Clusters.zzzzz.InstanceTypes", "must be a map",
                 id="instance-types-list"),
    pytest.param({"InstanceTypes": {"a": {"RAM": "-1GiB"}}}, "Clusters.zzzzz.InstanceTypes.a.RAM", "'-1GiB'",
                 id="instance-negative-ram"),
    pytest.param({"InstanceTypes": {"a": {"VCPUs": "2"}}}, "Clusters.zzzzz.InstanceTypes.a.VCPUs", "'2'",
                 id="instance-vcpus-string"),
    pytest.param({"InstanceTypes": {"a": {"GPU": {"DriverVersion": 11.0}}}},
                 "Clusters.zzzzz.InstanceTypes.a.GPU.DriverVersion", "11.0", id="gpu-version-unquoted"),
    pytest.param({"Containers": {"MaxDispatchAttempts": "ten"}}, "Clusters.zzzzz.Containers.MaxDispatchAttempts",
                 "'ten'", id="server-side-key-checked"),
    pytest.param({"PostgreSQL": {"Connection": {"host": ["a"]}}}, "Clusters.zzzzz.PostgreSQL.Connection.host",
                 "['a']", id="pg-value-list"),
]


@pytest.mark.parametrize(("body", "key", "shown"), ERRORS)
def test_errors_name_file_key_and_value(body: dict[str, Any], key: str, shown: str) -> None:
    error = build_error(body)
    message = str(error)
    assert message.startswith(f"c.yml: {key}: "), message
    assert error.path == "c.yml"
    assert error.key == key
    assert shown in message


SECRET_ERRORS = [
    pytest.param({"SystemRootToken": [TOKEN]}, "Clusters.zzzzz.SystemRootToken", id="root-token-list"),
    pytest.param({"ManagementToken": {"t": MGMT}}, "Clusters.zzzzz.ManagementToken", id="management-token-map"),
    pytest.param({"PostgreSQL": {"Connection": {"password": [PGPASS]}}},
                 "Clusters.zzzzz.PostgreSQL.Connection.password", id="pg-password-list"),
    pytest.param({"PostgreSQL": {"Connection": f"postgres://u:{PGPASS}@db/arvados"}},
                 "Clusters.zzzzz.PostgreSQL.Connection", id="pg-connection-string"),
    pytest.param({"PostgreSQL": f"postgres://u:{PGPASS}@db/arvados"},
                 "Clusters.zzzzz.PostgreSQL", id="pg-section-string"),
]


@pytest.mark.parametrize(("body", "key"), SECRET_ERRORS)
def test_errors_never_show_secret_values(body: dict[str, Any], key: str) -> None:
    error = build_error(body)
    message = str(error)
    assert key in message
    assert "<redacted>" in message
    assert error.value == "<redacted>"
    for secret in (TOKEN, MGMT, PGPASS):
        assert secret not in message
        assert secret not in repr(error.args)


# --- files -------------------------------------------------------------------------------------------------


def test_load_settings_reads_the_file(write: Callable[..., Path]) -> None:
    path = write(cluster(FULL))
    loaded = load_settings(path=path, environ={}, skip_legacy=True)
    assert loaded.settings == build(FULL)
    assert loaded.path == path
    assert loaded.path_source is PathSource.ARGUMENT
    assert (loaded.legacy_path, loaded.cluster_path) == (None, path)


def test_missing_file_names_path_and_suggests_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_settings(path=missing, environ={}, skip_legacy=True)
    assert str(missing) in str(info.value)
    assert "--config" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(path=tmp_path, environ={}, skip_legacy=True)
    assert str(tmp_path) in str(info.value)


def test_yaml_error_has_line_and_column_and_no_secret(write: Callable[..., Path]) -> None:
    text = f"Clusters:\n  zzzzz:\n    SystemRootToken: {TOKEN}\n    Containers: [unclosed\n"
    path = write(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path=path, environ={}, skip_legacy=True)
    message = str(info.value)
    assert str(path) in message and "invalid YAML" in message
    assert "line " in message and "column " in message
    assert TOKEN not in message


def test_empty_file_is_an_error(write: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_settings(path=write(""), environ={}, skip_legacy=True)


def test_arvados_config_env_is_used_only_without_explicit_path(write: Callable[..., Path]) -> None:
    env_file = write(cluster({"Containers": {"RuntimeEngine": "singularity"}}, "aaaaa"), "env.yml")
    arg_file = write(cluster({}), "arg.yml")
    from_env = load_settings(environ={"ARVADOS_CONFIG": str(env_file)}, skip_legacy=True)
    assert (from_env.path, from_env.path_source, from_env.settings.cluster_id) == (
        env_file, PathSource.ENVIRONMENT, "aaaaa")
    from_arg = load_settings(path=arg_file, environ={"ARVADOS_CONFIG": str(env_file)}, skip_legacy=True)
    assert (from_arg.path, from_arg.path_source, from_arg.settings.cluster_id) == (
        arg_file, PathSource.ARGUMENT, "zzzzz")


@pytest.mark.parametrize(
    ("path", "environ", "expected"),
    [
        pytest.param(None, {}, (DEFAULT_CONFIG_PATH, PathSource.DEFAULT), id="default"),
        pytest.param(None, {"ARVADOS_CONFIG": "/a.yml"}, (Path("/a.yml"), PathSource.ENVIRONMENT), id="env"),
        pytest.param("/b.yml", {"ARVADOS_CONFIG": "/a.yml"}, (Path("/b.yml"), PathSource.ARGUMENT), id="argument"),
        pytest.param(str(DEFAULT_CONFIG_PATH), {"ARVADOS_CONFIG": "/a.yml"},
                     (DEFAULT_CONFIG_PATH, PathSource.ARGUMENT), id="explicit-default-beats-env"),
        pytest.param(None, {"ARVADOS_CONFIG": ""}, (DEFAULT_CONFIG_PATH, PathSource.DEFAULT), id="empty-env"),
    ],
)
def test_resolve_config_path(path: str | None, environ: dict[str, str],
                             expected: tuple[Path, PathSource]) -> None:
    assert resolve_config_path(path, environ) == expected


def test_environment_defaults_to_os_environ(write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARVADOS_API_TOKEN", "fromosenviron")
    loaded = load_settings(path=write(cluster({})), skip_legacy=True)
    assert loaded.settings.system_root_token == "fromosenviron"


# --- redaction -------------------------------------------------------------------------------------------


def test_redacted_hides_secrets_and_is_json() -> None:
    body = dict(FULL)
    body["Containers"] = {**FULL["Containers"], "SLURM": {"SbatchEnvironmentVariables": {
        "MY_API_TOKEN": TOKEN, "PLAIN": "visible"}}}
    out = redacted(build(body))
    text = json.dumps(out)
    for secret in (TOKEN, MGMT, PGPASS):
        assert secret not in text
    assert out["system_root_token"] == "<redacted>"
    assert out["management_token"] == "<redacted>"
    assert out["postgresql_connection"]["password"] == "<redacted>"
    assert out["postgresql_connection"]["host"] == "db"
    # a URL with user:password@ is refused at load (tests/unit/test_config_secrets_more.py)
    assert out["sbatch_environment"] == {"MY_API_TOKEN": "<redacted>", "PLAIN": "visible"}
    assert out["instance_types"]["small"]["scratch"] == 15 * 10**9
    assert set(out) == set(Settings.__dataclass_fields__)


def test_redacted_shows_unset_secrets_as_empty() -> None:
    out = redacted(build({}))
    assert out["system_root_token"] == ""
    assert out["management_token"] == ""
    assert out["reserve_extra_ram"] == 550 * MiB


def test_settings_repr_does_not_show_token() -> None:
    assert TOKEN not in repr(build(FULL))


def test_a_token_arvados_would_refuse_is_a_warning_that_never_shows_it() -> None:
    """lib/config/load.go: checkToken takes only a-z, A-Z, 0-9 for SystemRootToken and ManagementToken."""
    v2 = "v2/zzzzz-gj3su-000000000000000/" + "s3cret" * 6
    _, warnings = settings_from_documents(cluster({"SystemRootToken": v2, "ManagementToken": "abc-def"}),
                                          source="c.yml")
    tail = "has characters other than a-z, A-Z, 0-9: Arvados's own services refuse to start with such a token; " \
           "this dispatcher uses it as it is"
    assert [w for w in warnings if "a-z, A-Z, 0-9" in w] == [
        f"Clusters.zzzzz.SystemRootToken {tail}", f"Clusters.zzzzz.ManagementToken {tail}"]
    assert not any("s3cret" in w or "abc-def" in w for w in warnings)
    _, fine = settings_from_documents(cluster({"SystemRootToken": "s3cret" * 6}), source="c.yml")
    assert not [w for w in fine if "a-z, A-Z, 0-9" in w]


def test_a_cuda_section_from_arvados_3_1_or_3_2_is_read_as_gpu_with_a_warning() -> None:
    """lib/config/deprecated.go (3.2.1): CUDA becomes GPU {Stack: cuda, ...}, and wins over a GPU section."""
    body = {"InstanceTypes": {"g4": {"VCPUs": 4, "RAM": "16GiB", "GPU": {"Stack": "rocm", "DeviceCount": 2,
                                                                         "DriverVersion": "6.0"},
                                     "CUDA": {"DriverVersion": "12.4", "HardwareCapability": "8.6",
                                              "DeviceCount": 1}}}}
    settings, warnings = settings_from_documents(cluster(body), source="c.yml")
    assert settings.instance_types["g4"].gpu == InstanceTypeGPU(stack="cuda", driver_version="12.4",
                                                                hardware_target="8.6", device_count=1, vram=0)
    assert "InstanceType 'g4' has deprecated CUDA section, should be migrated to GPU section" in warnings
    assert not [w for w in warnings if "unknown config entry" in w]


@pytest.mark.parametrize("version", ["", "12.x", "v12", " 12.4", "1_2"])
def test_a_gpu_type_needs_a_driver_version_that_reads_as_a_number(version: str) -> None:
    """lib/config/load.go: checkGPUVersions; without it every GPU container would be cancelled as unsatisfiable."""
    body = {"InstanceTypes": {"g4": {"VCPUs": 4, "RAM": "16GiB",
                                     "GPU": {"Stack": "cuda", "DeviceCount": 1, "DriverVersion": version}}}}
    error = build_error(body)
    assert "has invalid GPU.DriverVersion" in str(error) and "expected format X.Y" in str(error)
    body["InstanceTypes"]["g4"]["GPU"]["DriverVersion"] = "12.4"
    assert build(body).instance_types["g4"].gpu.driver_version == "12.4"
    body["InstanceTypes"]["g4"]["GPU"] = {"DeviceCount": 0, "DriverVersion": version}  # no GPU: not checked
    assert build(body).instance_types["g4"].gpu.device_count == 0


def test_plain_http_is_a_warning_saying_what_it_costs() -> None:
    """Go's dispatcher takes only ExternalURL's host and speaks HTTPS, and so does crunch-run: plain HTTP sends the
    token in clear, and real jobs fail unless the host answers HTTPS too."""
    def warned(url: str) -> list[str]:
        body = {"Services": {"Controller": {"ExternalURL": url}}}
        return [w for w in warnings_for(body) if "plain HTTP" in w]

    assert warned("http://api.example:8000/") == [
        ("Clusters.zzzzz.Services.Controller.ExternalURL (or the ARVADOS_API_HOST / legacy Client setting that "
         "filled it) is plain HTTP (http://api.example...): the SystemRootToken goes unencrypted, where the Go "
         "dispatcher would use HTTPS, and crunch-run always uses HTTPS to that host (use https://)")]
    assert len(warned("http://127.0.0.1:8000/")) == 1, "a local API too: crunch-run will not speak HTTP to it"
    assert warned("https://api.example/") == []


def test_a_postgresql_value_that_yaml_reads_as_a_number_must_be_quoted_except_the_port() -> None:
    """YAML reads an unquoted 0755 as 493: a password written so would silently change (Go refuses numbers here)."""
    error = build_error({"PostgreSQL": {"Connection": {"host": "db", "password": 2718281}}})
    assert "Clusters.zzzzz.PostgreSQL.Connection.password" in str(error) and "must be a quoted string" in str(error)
    assert "2718281" not in str(error), "a password is never shown"
    assert build({"PostgreSQL": {"Connection": {"host": "db", "port": 5432}}}).postgresql_connection["port"] == "5432"


@pytest.mark.parametrize(("url", "host"), [
    ("https://api.example:8443/", "api.example:8443"), ("https://api.example/arvados?x=1", "api.example"),
    ("https://api.example#frag", "api.example"), ("api.example:8000", "api.example:8000"),
])
def test_crunch_runs_arvados_api_host_is_the_urls_host_as_go_takes_it(url: str, host: str) -> None:
    """crunch-run gets ARVADOS_API_HOST=host[:port]: no path, query or fragment (Go's URL.Host)."""
    assert Settings(controller_url=url).api_host == host


@pytest.mark.parametrize(
    ("time_limit", "template", "warned"),
    [
        pytest.param({"Overhead": "1m", "StopSignalBefore": "10s"}, ["--time=%W"], True, id="70 s needed, 60 s"),
        pytest.param({"Overhead": "70s", "StopSignalBefore": "10s"}, ["--time=%W"], False, id="just enough"),
        pytest.param({}, ["--time=%W"], False, id="defaults: 5m against 2m + 60 s"),
        pytest.param({"Overhead": "0", "StopSignalBefore": "0"}, ["--time=%W"], False, id="no signal"),
        pytest.param({"Overhead": "0"}, [], False, id="no %W: no limit and no signal from us"),
    ],
)
def test_an_overhead_shorter_than_the_stop_signal_lead_is_a_warning(
    time_limit: dict[str, str], template: list[str], warned: bool,
) -> None:
    """sbatch --signal may come up to 60 s before StopSignalBefore: with less Overhead, Slurm's stop signal can
    reach crunch-run before a container has run its max_run_time."""
    body = cluster({"Containers": {"SLURM": {"SbatchArgumentsList": ["--job-name=%U", *template]}}})
    _, warnings = settings_from_documents(body, source="c.yml", dispatch_document={"TimeLimit": time_limit})
    found = [w for w in warnings if w.startswith("TimeLimit.Overhead")]
    assert bool(found) == warned, warnings
    if warned:
        assert found == [("TimeLimit.Overhead (60 s) is less than TimeLimit.StopSignalBefore + 60 s (70 s): Slurm may "
                         "send crunch-run its stop signal (sbatch --signal, up to 60 s early) before a container has "
                         "run its max_run_time; raise Overhead to at least that, or set StopSignalBefore to 0")]
