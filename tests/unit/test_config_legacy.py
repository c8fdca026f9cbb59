"""The legacy standalone crunch-dispatch-slurm.yml, one row per legacy key.

The mapping is lib/config/deprecated.go: Loader.loadOldCrunchDispatchSlurmConfig.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch.config import load_settings, settings_from_documents
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

TOKEN = "s3cr3tLegacyAuthToken0123456789abcdefghij"
FULL_TEMPLATE = ["--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T"]


def with_legacy(legacy: dict[str, Any], body: dict[str, Any] | None = None) -> tuple[Settings, list[str]]:
    return settings_from_documents({"Clusters": {"zzzzz": body or {}}}, source="config.yml",
                                   legacy_document=legacy, legacy_source="legacy.yml")


ROWS = [
    pytest.param({"Client": {"APIHost": "ctrl.example:443"}}, "controller_url", "https://ctrl.example:443/",
                 id="Client.APIHost"),
    pytest.param({"Client": {"APIHost": "ctrl.example", "Scheme": "http"}}, "controller_url", "http://ctrl.example/",
                 id="Client.Scheme"),
    pytest.param({"Client": {"AuthToken": TOKEN}}, "system_root_token", TOKEN, id="Client.AuthToken"),
    pytest.param({"Client": {"Insecure": True}}, "tls_insecure", True, id="Client.Insecure"),
    pytest.param({"Client": {"KeepServiceURIs": ["http://k0:25107", "http://k1:25107"]}}, "sbatch_environment",
                 {"ARVADOS_KEEP_SERVICES": "http://k0:25107 http://k1:25107"}, id="Client.KeepServiceURIs"),
    pytest.param({"SbatchArguments": FULL_TEMPLATE + ["--partition=big"]}, "sbatch_arguments",
                 tuple(FULL_TEMPLATE + ["--partition=big"]), id="SbatchArguments-verbatim"),
    pytest.param({"PollPeriod": "30s"}, "poll_interval", 30.0, id="PollPeriod"),
    pytest.param({"PrioritySpread": 50}, "priority_spread", 50, id="PrioritySpread"),
    pytest.param({"CrunchRunCommand": ["/opt/crunch-run"]}, "crunch_run_command", "/opt/crunch-run",
                 id="CrunchRunCommand-one-element"),
    pytest.param({"CrunchRunCommand": ["/opt/crunch-run", "--cgroup-parent-subsystem=memory", "-x"]},
                 "crunch_run_arguments", ("--cgroup-parent-subsystem=memory", "-x"), id="CrunchRunCommand-rest"),
    pytest.param({"ReserveExtraRAM": 268435456}, "reserve_extra_ram", 268435456, id="ReserveExtraRAM"),
    pytest.param({"MinRetryPeriod": "1m"}, "min_retry_period", 60.0, id="MinRetryPeriod"),
    pytest.param({"BatchSize": 50}, "batch_size", 50, id="BatchSize"),
    pytest.param({"BatchSize": 0}, "batch_size", 100, id="BatchSize-zero-means-100"),
]


@pytest.mark.parametrize(("legacy", "field_name", "expected"), ROWS)
def test_legacy_key_maps(legacy: dict[str, Any], field_name: str, expected: object) -> None:
    settings, _ = with_legacy(legacy)
    assert getattr(settings, field_name) == expected


def test_legacy_overrides_cluster_config() -> None:
    settings, _ = with_legacy({"PollPeriod": "30s"}, {"Containers": {"CloudVMs": {"PollInterval": "5s"}}})
    assert settings.poll_interval == 30.0


def test_crunch_run_command_with_one_element_keeps_cluster_arguments() -> None:
    settings, _ = with_legacy({"CrunchRunCommand": ["/opt/crunch-run"]},
                              {"Containers": {"CrunchRunArgumentsList": ["--a"]}})
    assert (settings.crunch_run_command, settings.crunch_run_arguments) == ("/opt/crunch-run", ("--a",))


def test_empty_crunch_run_command_changes_nothing() -> None:
    settings, _ = with_legacy({"CrunchRunCommand": []})
    assert (settings.crunch_run_command, settings.crunch_run_arguments) == ("crunch-run", ())


def test_client_insecure_is_always_overwritten_when_client_is_present() -> None:
    settings, _ = with_legacy({"Client": {"APIHost": "h"}}, {"TLS": {"Insecure": True}})
    assert settings.tls_insecure is False


def test_client_section_replaces_the_whole_environment_map_even_with_empty_list() -> None:
    body = {"Containers": {"SLURM": {"SbatchEnvironmentVariables": {"SLURM_CONF": "/x", "OTHER": "y"}}}}
    settings, warnings = with_legacy({"Client": {"KeepServiceURIs": []}}, body)
    assert settings.sbatch_environment == {"ARVADOS_KEEP_SERVICES": ""}
    assert any("dropped: OTHER, SLURM_CONF" in w for w in warnings)


def test_without_client_the_environment_map_is_kept() -> None:
    body = {"Containers": {"SLURM": {"SbatchEnvironmentVariables": {"SLURM_CONF": "/x"}}}}
    settings, _ = with_legacy({"PollPeriod": "5s"}, body)
    assert settings.sbatch_environment == {"SLURM_CONF": "/x"}


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        pytest.param(["--partition=big"], ["--job-name", "--mem", "--cpus-per-task", "--tmp"], id="none"),
        pytest.param(["--job-name=%U", "--mem=%M"], ["--cpus-per-task", "--tmp"], id="some"),
        pytest.param(["-J", "%U", "--mem=%M", "-c", "%C", "--tmp=%T"], [], id="short-forms"),
        pytest.param(FULL_TEMPLATE, [], id="all"),
        # read as sbatch reads them: abbreviations count, another option's value does not
        pytest.param(["--job-name=%U", "--mem=%M", "-Hc%C", "--tm", "%T"], [], id="abbreviated"),  # --me is ambiguous
        pytest.param(["--job-name=%U", "--comment", "--mem=%M", "-c%C", "--tmp=%T"], ["--mem"],
                     id="a-value-that-looks-like-an-option"),
    ],
)
def test_legacy_sbatch_arguments_warn_about_lost_template(args: list[str], missing: list[str]) -> None:
    settings, warnings = with_legacy({"SbatchArguments": args})
    assert settings.sbatch_arguments == tuple(args)
    found = [w for w in warnings if "SbatchArguments replaces" in w]
    if missing:
        [warning] = found
        assert f"lacks {', '.join(missing)};" in warning
    else:
        assert found == []


def test_legacy_warnings_mention_migration_and_unknown_keys() -> None:
    _, warnings = with_legacy({"Bogus": 1, "Client": {"Nope": 2}})
    assert any("you should remove the legacy" in w and "legacy.yml" in w for w in warnings)
    assert any("legacy.yml: unknown legacy config entry Bogus" in w for w in warnings)
    assert any("Client.Nope" in w for w in warnings)


@pytest.mark.parametrize(
    ("legacy", "key"),
    [
        pytest.param({"PollPeriod": 10}, "PollPeriod", id="poll-without-unit"),
        pytest.param({"PollPeriod": "0s"}, "PollPeriod", id="poll-zero"),
        pytest.param({"ReserveExtraRAM": "1GiB"}, "ReserveExtraRAM", id="reserve-must-be-int"),
        pytest.param({"CrunchRunCommand": "crunch-run"}, "CrunchRunCommand", id="command-string"),
        pytest.param({"SbatchArguments": "--mem=%M"}, "SbatchArguments", id="sbatch-string"),
        pytest.param({"Client": {"KeepServiceURIs": "http://k0"}}, "Client.KeepServiceURIs", id="uris-string"),
        pytest.param({"Client": {"Insecure": "no"}}, "Client.Insecure", id="insecure-string"),
        pytest.param({"BatchSize": -1}, "BatchSize", id="negative-batch"),
    ],
)
def test_legacy_errors_name_the_legacy_file_and_key(legacy: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_legacy(legacy)
    assert str(info.value).startswith(f"legacy.yml: {key}: ")


def test_legacy_token_of_wrong_type_is_redacted() -> None:
    with pytest.raises(ConfigError) as info:
        with_legacy({"Client": {"AuthToken": [TOKEN]}})
    assert TOKEN not in str(info.value)
    assert "<redacted>" in str(info.value)


# --- files -------------------------------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path) -> Callable[[object, str], Path]:
    def _write(doc: object, name: str) -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return p

    return _write


def test_legacy_path_is_read(write: Callable[[object, str], Path]) -> None:
    main = write({"Clusters": {"zzzzz": {}}}, "config.yml")
    legacy = write({"PrioritySpread": 7}, "crunch-dispatch-slurm.yml")
    loaded = load_settings(path=main, legacy_path=legacy, environ={})
    assert loaded.settings.priority_spread == 7
    assert loaded.legacy_path == legacy


def test_explicit_legacy_path_must_exist(write: Callable[[object, str], Path], tmp_path: Path) -> None:
    main = write({"Clusters": {"zzzzz": {}}}, "config.yml")
    with pytest.raises(ConfigError) as info:
        load_settings(path=main, legacy_path=tmp_path / "missing.yml", environ={})
    assert "missing.yml" in str(info.value)


def test_skip_legacy_ignores_legacy_path(write: Callable[[object, str], Path]) -> None:
    main = write({"Clusters": {"zzzzz": {}}}, "config.yml")
    legacy = write({"PrioritySpread": 7}, "l.yml")
    loaded = load_settings(path=main, legacy_path=legacy, environ={}, skip_legacy=True)
    assert (loaded.settings.priority_spread, loaded.legacy_path) == (0, None)


def test_config_without_clusters_is_read_as_legacy(write: Callable[[object, str], Path], tmp_path: Path) -> None:
    legacy = write({"Client": {"APIHost": "ctrl.example", "AuthToken": TOKEN}, "PrioritySpread": 3}, "old.yml")
    cluster = write({"Clusters": {"abcde": {"Containers": {"RuntimeEngine": "singularity"}}}}, "cluster.yml")
    loaded = load_settings(path=legacy, environ={"ARVADOS_CONFIG": str(cluster)})
    s = loaded.settings
    assert (s.cluster_id, s.runtime_engine, s.priority_spread) == ("abcde", "singularity", 3)
    assert (s.controller_url, s.system_root_token) == ("https://ctrl.example/", TOKEN)
    assert (loaded.path, loaded.legacy_path, loaded.cluster_path) == (legacy, legacy, cluster)
    assert any("is not a cluster config file" in w for w in loaded.warnings)
    assert all(TOKEN not in w for w in loaded.warnings)


def test_legacy_only_needs_a_cluster_id(write: Callable[[object, str], Path], tmp_path: Path) -> None:
    legacy = write({"PrioritySpread": 3}, "old.yml")
    env = {"ARVADOS_CONFIG": str(tmp_path / "absent.yml")}
    with pytest.raises(ConfigError, match="--cluster-id"):
        load_settings(path=legacy, environ=env)
    loaded = load_settings(path=legacy, environ=env, cluster_id="xyzzy")
    assert (loaded.settings.cluster_id, loaded.settings.priority_spread) == ("xyzzy", 3)
    assert loaded.cluster_path is None


def test_config_without_clusters_and_legacy_path_too_is_an_error(write: Callable[[object, str], Path]) -> None:
    legacy = write({"PrioritySpread": 3}, "old.yml")
    with pytest.raises(ConfigError, match="not a cluster config"):
        load_settings(path=legacy, legacy_path=legacy, environ={})
