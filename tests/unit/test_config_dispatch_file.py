"""slurm-dispatch's own file (config/dispatch_file.py): every key, every refusal, unknown keys, which file.

The file holds the settings Arvados does not define, so that config.yml keeps only Arvados's keys
(docs/configuration.md, "slurm-dispatch's own file").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch.config import (
    DEFAULT_DISPATCH_CONFIG_PATH,
    DEFAULT_LEGACY_PATH,
    KEYS,
    OWN_FIELDS,
    DispatchPathSource,
    dispatch_fields,
    load_settings,
    redacted,
    resolve_dispatch_config_path,
    settings_from_documents,
)
from slurm_dispatch.config.files import MAX_CONFIG_BYTES
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import BROKEN_NODE_ACTIONS, DEFAULT_NEVER_RUNNABLE_REASONS, Settings

SOURCE = "/etc/arvados/slurm-dispatch/slurm-dispatch.yml"
NO_DEFAULT_FILE = pytest.mark.skipif(DEFAULT_DISPATCH_CONFIG_PATH.exists(),
                                     reason=f"this machine has {DEFAULT_DISPATCH_CONFIG_PATH}")


def own(document: object) -> Settings:
    """The Settings of an empty cluster with ``document`` as the slurm-dispatch file."""
    settings, _ = settings_from_documents({"Clusters": {"zzzzz": {}}}, source="c.yml", dispatch_document=document,
                                          dispatch_source=SOURCE)
    return settings


def refused(document: object) -> str:
    with pytest.raises(ConfigError) as info:
        dispatch_fields(document, source=SOURCE)
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    return text


@pytest.fixture
def files(tmp_path: Path) -> Callable[[str, str], Path]:
    """Writes text to ``tmp_path/<name>`` and returns the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


# --- the table -----------------------------------------------------------------------------------------------


def test_the_table_covers_every_setting_of_the_own_file() -> None:
    names = [f.name for f in fields(Settings)]
    own_fields = names[names.index("dispatch_config_path"):]
    assert list(OWN_FIELDS) == own_fields, "a Settings field after dispatch_config_path needs a line in KEYS"
    assert len({k.key for k in KEYS}) == len(KEYS)


@pytest.mark.parametrize("own_key", KEYS, ids=[k.key for k in KEYS])
def test_each_key_is_named_in_its_settings_docstring(own_key: Any) -> None:
    source = Path(__file__).resolve().parents[2] / "slurm_dispatch" / "settings.py"
    text = source.read_text(encoding="utf-8")
    at = text.index(f"    {own_key.field}: ")
    assert f"``{own_key.key}``" in text[at:at + 400], own_key


def test_redacted_shows_every_setting() -> None:
    assert set(redacted(Settings())) == {f.name for f in fields(Settings)}


# --- values --------------------------------------------------------------------------------------------------

FILE = {
    "FailureReasons": {"NeverRunnableReasons": ["BadConstraints", "QOSMaxWallDurationPerJobLimit"],
                       "NeverRunnableGracePeriod": "10m"},
    "TimeLimit": {"Overhead": "2m", "DefaultMaxRunTime": "24h", "StopSignalBefore": "65535s"},
    "Limits": {"MaxContainersInSlurm": 500, "MaxSubmitsPerMinute": 12.5, "SupervisorFraction": 0.25,
               "MaxSupervisors": 20, "SupervisorSbatchArguments": ["--partition=workflows", "--comment=%U"]},
    "BrokenNodes": {"Action": "drain", "Hold": "2h"},
    "Service": {"StateDirectory": "/srv/slurm-dispatch"},
}
EXPECTED = {
    "never_runnable_reasons": ("BadConstraints", "QOSMaxWallDurationPerJobLimit"),
    "never_runnable_grace": 600.0,
    "max_run_time_overhead": 120.0,
    "default_max_run_time": 86400.0,
    "time_limit_signal": 65535.0,
    "max_containers_in_slurm": 500,
    "max_submits_per_minute": 12.5,
    "supervisor_fraction": 0.25,
    "max_supervisors": 20,
    "supervisor_sbatch_arguments": ("--partition=workflows", "--comment=%U"),
    "broken_node_action": "drain",
    "broken_node_hold": 7200.0,
    "state_directory": "/srv/slurm-dispatch",
}


def test_every_key_is_read() -> None:
    settings = own(FILE)
    assert {name: getattr(settings, name) for name in EXPECTED} == EXPECTED
    assert settings.dispatch_config_path == SOURCE
    assert set(EXPECTED) == {k.field for k in KEYS}


@pytest.mark.parametrize("document", [None, {}, {"Limits": None}, {"Limits": {"MaxSupervisors": None}}],
                         ids=["empty-file", "empty-map", "null-section", "null-key"])
def test_absent_and_null_keep_the_defaults(document: object) -> None:
    settings = own(document)
    assert {name: getattr(settings, name) for name in EXPECTED} == {
        name: getattr(Settings(), name) for name in EXPECTED}
    assert settings.never_runnable_reasons == DEFAULT_NEVER_RUNNABLE_REASONS


@pytest.mark.parametrize(("document", "field_name", "expected"), [
    pytest.param({"FailureReasons": {"NeverRunnableReasons": []}}, "never_runnable_reasons", (), id="no-reasons"),
    pytest.param({"FailureReasons": {"NeverRunnableGracePeriod": 0}}, "never_runnable_grace", 0.0, id="grace-0"),
    pytest.param({"TimeLimit": {"StopSignalBefore": "0s"}}, "time_limit_signal", 0.0, id="no-signal"),
    pytest.param({"TimeLimit": {"Overhead": "0"}}, "max_run_time_overhead", 0.0, id="no-overhead"),
    pytest.param({"Limits": {"SupervisorFraction": 1}}, "supervisor_fraction", 1.0, id="fraction-1"),
    pytest.param({"Limits": {"SupervisorFraction": 0}}, "supervisor_fraction", 0.0, id="fraction-0"),
    pytest.param({"Limits": {"MaxContainersInSlurm": 8.0}}, "max_containers_in_slurm", 8, id="whole-float"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--job-name=%U", "-J", "%U", "-J%U", "--x=%%"]}},
                 "supervisor_sbatch_arguments", ("--job-name=%U", "-J", "%U", "-J%U", "--x=%%"), id="job-name-%U"),
    *(pytest.param({"BrokenNodes": {"Action": a}}, "broken_node_action", a, id=f"action-{a}")
      for a in BROKEN_NODE_ACTIONS),
])
def test_edge_values_are_accepted(document: object, field_name: str, expected: object) -> None:
    assert getattr(own(document), field_name) == expected


# --- refusals ------------------------------------------------------------------------------------------------

REFUSALS = [
    pytest.param({"FailureReasons": {"NeverRunnableReasons": "BadConstraints"}},
                 "FailureReasons.NeverRunnableReasons: expected a list of strings, got 'BadConstraints'",
                 id="reasons-not-a-list"),
    pytest.param({"FailureReasons": {"NeverRunnableReasons": ["BadConstraints", "Bad Constraints"]}},
                 "FailureReasons.NeverRunnableReasons[1]: 'Bad Constraints' is not a Slurm reason code",
                 id="reason-with-space"),
    pytest.param({"FailureReasons": {"NeverRunnableReasons": [""]}},
                 "FailureReasons.NeverRunnableReasons[0]: '' is not a Slurm reason code", id="reason-empty"),
    pytest.param({"FailureReasons": {"NeverRunnableReasons": ["Bad\nConstraints"]}},
                 "FailureReasons.NeverRunnableReasons[0]: contains a control character", id="reason-newline"),
    pytest.param({"FailureReasons": {"NeverRunnableReasons": [7]}},
                 "FailureReasons.NeverRunnableReasons[0]: expected a string, got 7", id="reason-number"),
    pytest.param({"FailureReasons": {"NeverRunnableGracePeriod": "-5m"}},
                 "FailureReasons.NeverRunnableGracePeriod: negative duration '-5m' is not allowed", id="grace-negative"),
    pytest.param({"FailureReasons": {"NeverRunnableGracePeriod": 300}},
                 "FailureReasons.NeverRunnableGracePeriod: missing unit in duration 300", id="grace-no-unit"),
    pytest.param({"TimeLimit": {"Overhead": "-1s"}}, "TimeLimit.Overhead: negative duration", id="overhead-negative"),
    pytest.param({"TimeLimit": {"Overhead": "1.5s"}},
                 "TimeLimit.Overhead: must be a whole number of seconds (Slurm counts seconds), got '1.5s'",
                 id="overhead-fraction"),
    pytest.param({"TimeLimit": {"DefaultMaxRunTime": "a day"}},
                 "TimeLimit.DefaultMaxRunTime: invalid duration 'a day'", id="default-limit-garbage"),
    pytest.param({"TimeLimit": {"StopSignalBefore": "65536s"}},
                 "TimeLimit.StopSignalBefore: must be at most 65535s (18h12m15s: sbatch's --signal takes at most "
                 "65535 seconds), got '65536s'", id="signal-too-early"),
    pytest.param({"TimeLimit": {"StopSignalBefore": "500ms"}},
                 "TimeLimit.StopSignalBefore: must be a whole number of seconds", id="signal-fraction"),
    pytest.param({"TimeLimit": {"StopSignalBefore": True}},
                 "TimeLimit.StopSignalBefore: expected a duration like \"10s\", got True", id="signal-bool"),
    pytest.param({"Limits": {"MaxContainersInSlurm": -1}}, "Limits.MaxContainersInSlurm: must not be negative, got -1",
                 id="cap-negative"),
    pytest.param({"Limits": {"MaxContainersInSlurm": 2**63}}, "Limits.MaxContainersInSlurm: out of range",
                 id="cap-int64"),
    pytest.param({"Limits": {"MaxContainersInSlurm": "100"}}, "Limits.MaxContainersInSlurm: expected an integer",
                 id="cap-string"),
    pytest.param({"Limits": {"MaxSubmitsPerMinute": -0.5}}, "Limits.MaxSubmitsPerMinute: must not be negative",
                 id="rate-negative"),
    pytest.param({"Limits": {"MaxSubmitsPerMinute": float("inf")}},
                 "Limits.MaxSubmitsPerMinute: expected a number, got inf", id="rate-inf"),
    pytest.param({"Limits": {"MaxSubmitsPerMinute": float("nan")}},
                 "Limits.MaxSubmitsPerMinute: expected a number, got nan", id="rate-nan"),
    pytest.param({"Limits": {"SupervisorFraction": 1.01}},
                 "Limits.SupervisorFraction: must be from 0 to 1, got 1.01", id="fraction-above-1"),
    pytest.param({"Limits": {"SupervisorFraction": -0.1}}, "Limits.SupervisorFraction: must not be negative",
                 id="fraction-negative"),
    pytest.param({"Limits": {"MaxSupervisors": -3}}, "Limits.MaxSupervisors: must not be negative", id="sup-negative"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": "--partition=x"}},
                 "Limits.SupervisorSbatchArguments: expected a list of strings", id="template-not-a-list"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--partition=x", "--qos=%X"]}},
                 "Limits.SupervisorSbatchArguments[1]: '--qos=%X': unknown substitution parameter '%X' (known: %U "
                 "%C %M %T %G %W %P %I %%); every sbatch would fail", id="template-unknown-token"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--comment=50% "]}},
                 "Limits.SupervisorSbatchArguments[0]: '--comment=50% ': unknown substitution parameter '% '",
                 id="template-percent-space"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--x\0"]}},
                 "Limits.SupervisorSbatchArguments[0]: contains a control character (U+0000 at position 3)",
                 id="template-NUL"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--job-name=workflow"]}},
                 "Limits.SupervisorSbatchArguments[0]: '--job-name=workflow' would rename the job: sbatch takes the "
                 "last --job-name, and squeue finds jobs by --job-name=%U", id="template-job-name"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["--mem=1G", "-J", "wf"]}},
                 "Limits.SupervisorSbatchArguments[1]: '-J wf' would rename the job", id="template-J-pair"),
    pytest.param({"Limits": {"SupervisorSbatchArguments": ["-Jwf"]}},
                 "Limits.SupervisorSbatchArguments[0]: '-Jwf' would rename the job", id="template-J-joined"),
    pytest.param({"BrokenNodes": {"Action": "reboot"}},
                 "BrokenNodes.Action: 'reboot' is not one of exclude, drain, none", id="action-unknown"),
    pytest.param({"BrokenNodes": {"Action": "Drain"}}, "BrokenNodes.Action: 'Drain' is not one of", id="action-case"),
    pytest.param({"BrokenNodes": {"Hold": "-1h"}}, "BrokenNodes.Hold: negative duration", id="hold-negative"),
    pytest.param({"BrokenNodes": {"Hold": [1]}}, "BrokenNodes.Hold: expected a duration", id="hold-list"),
    pytest.param({"Service": {"StateDirectory": "var/lib/slurm-dispatch"}},
                 "Service.StateDirectory: must be an absolute path (starting with /), got 'var/lib/slurm-dispatch'",
                 id="state-relative"),
    pytest.param({"Service": {"StateDirectory": ""}}, "Service.StateDirectory: must be an absolute path",
                 id="state-empty"),
    pytest.param({"Service": {"StateDirectory": "/var/lib/x\n"}},
                 "Service.StateDirectory: contains a control character", id="state-newline"),
    pytest.param({"Service": {"StateDirectory": 3}}, "Service.StateDirectory: expected a string", id="state-number"),
    pytest.param({"Service": ["StateDirectory"]}, "Service: expected a map, got ['StateDirectory']",
                 id="section-list"),
    pytest.param({"Limits": 5}, "Limits: expected a map, got 5", id="section-scalar"),
    pytest.param(["FailureReasons"], "expected a map of sections (FailureReasons, TimeLimit, Limits, BrokenNodes, "
                 "Service), got ['FailureReasons']", id="document-list"),
    pytest.param("FailureReasons", "expected a map of sections", id="document-scalar"),
]


@pytest.mark.parametrize(("document", "message"), REFUSALS)
def test_refusals_name_the_file_and_the_key(document: object, message: str) -> None:
    text = refused(document)
    assert text.startswith(f"{SOURCE}: {message}"), text


# --- unknown keys --------------------------------------------------------------------------------------------


def test_unknown_keys_are_warnings_with_a_hint() -> None:
    document = {"Limits": {"maxsupervisors": 3, "Bogus": 1}, "Bogus": {"X": 1},
                "Clusters": {"zzzzz": {}}, "Service": {"StateDirectory": "/srv/x"}}
    fields_, warnings = dispatch_fields(document, source=SOURCE)
    assert fields_ == {"state_directory": "/srv/x"}
    assert warnings == [
        f"{SOURCE}: unknown config entry: Limits.maxsupervisors (perhaps you meant MaxSupervisors?)",
        f"{SOURCE}: unknown config entry: Limits.Bogus",
        f"{SOURCE}: unknown config entry: Bogus",
        (f"{SOURCE}: config entry Clusters belongs in the Arvados cluster config (this file holds only "
         "slurm-dispatch's own settings)"),
    ]


def test_unknown_key_names_are_escaped_on_one_line() -> None:
    _, warnings = dispatch_fields({"Limits": {"a\nb\x1b[2J": 1}}, source=SOURCE)
    assert warnings == [f"{SOURCE}: unknown config entry: Limits.a\\nb\\x1b[2J"]


# --- which file ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argument", "environ", "expected"), [
    pytest.param("/a.yml", {"SLURM_DISPATCH_CONFIG": "/b.yml"}, ("/a.yml", DispatchPathSource.ARGUMENT),
                 id="option-wins"),
    pytest.param(None, {"SLURM_DISPATCH_CONFIG": "/b.yml"}, ("/b.yml", DispatchPathSource.ENVIRONMENT), id="env"),
    pytest.param("", {"SLURM_DISPATCH_CONFIG": "/b.yml"}, ("/b.yml", DispatchPathSource.ENVIRONMENT),
                 id="empty-option"),
    pytest.param(None, {"SLURM_DISPATCH_CONFIG": ""}, (str(DEFAULT_DISPATCH_CONFIG_PATH), DispatchPathSource.DEFAULT),
                 id="empty-env"),
    pytest.param(None, {}, (str(DEFAULT_DISPATCH_CONFIG_PATH), DispatchPathSource.DEFAULT), id="default"),
])
def test_which_file(argument: str | None, environ: dict[str, str], expected: tuple[str, DispatchPathSource]) -> None:
    path, why = resolve_dispatch_config_path(argument, environ)
    assert (str(path), why) == expected


def test_the_default_path_is_ours_and_never_the_legacy_one() -> None:
    assert DEFAULT_DISPATCH_CONFIG_PATH == Path("/etc/arvados/slurm-dispatch/slurm-dispatch.yml")
    assert DEFAULT_DISPATCH_CONFIG_PATH.parent != DEFAULT_LEGACY_PATH.parent


def test_option_beats_environment_beats_default(files: Callable[[str, str], Path]) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    by_option = files("option.yml", "Limits: {MaxSupervisors: 1}\n")
    by_env = files("env.yml", "Limits: {MaxSupervisors: 2}\n")
    loaded = load_settings(path=cluster, environ={"SLURM_DISPATCH_CONFIG": str(by_env)}, skip_legacy=True,
                           dispatch_config=by_option)
    assert (loaded.settings.max_supervisors, loaded.dispatch_read, loaded.dispatch_path_source) == (
        1, by_option, DispatchPathSource.ARGUMENT)
    assert loaded.settings.dispatch_config_path == str(by_option)
    loaded = load_settings(path=cluster, environ={"SLURM_DISPATCH_CONFIG": str(by_env)}, skip_legacy=True)
    assert (loaded.settings.max_supervisors, loaded.dispatch_read, loaded.dispatch_path_source) == (
        2, by_env, DispatchPathSource.ENVIRONMENT)


@NO_DEFAULT_FILE
def test_a_missing_default_file_means_every_default_silently(files: Callable[[str, str], Path]) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    loaded = load_settings(path=cluster, environ={}, skip_legacy=True)
    assert loaded.dispatch_read is None
    assert (loaded.dispatch_path, loaded.dispatch_path_source) == (DEFAULT_DISPATCH_CONFIG_PATH,
                                                                  DispatchPathSource.DEFAULT)
    assert loaded.settings.dispatch_config_path == ""
    assert not any("slurm-dispatch" in w for w in loaded.warnings), loaded.warnings


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_missing_named_file_is_refused(files: Callable[[str, str], Path], tmp_path: Path, how: str) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_settings(path=cluster, skip_legacy=True, dispatch_config=missing if how == "option" else None,
                      environ={"SLURM_DISPATCH_CONFIG": str(missing)} if how == "env" else {})
    assert str(info.value).startswith(f"{missing}: slurm-dispatch config file not found; check --dispatch-config "
                                      "and $SLURM_DISPATCH_CONFIG")


def test_an_empty_file_means_every_default(files: Callable[[str, str], Path]) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    empty = files("empty.yml", "# nothing set yet\n")
    loaded = load_settings(path=cluster, environ={}, skip_legacy=True, dispatch_config=empty)
    assert loaded.settings == Settings(dispatch_config_path=str(empty))


def test_the_cluster_config_is_refused_as_the_own_file(files: Callable[[str, str], Path]) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    os.symlink(cluster, cluster.with_name("link.yml"))
    for name in (cluster, cluster.with_name("link.yml")):
        with pytest.raises(ConfigError) as info:
            load_settings(path=cluster, environ={}, skip_legacy=True, dispatch_config=name)
        assert str(info.value).startswith(f"{name}: --dispatch-config: this is the Arvados cluster config, which "
                                          "Arvados reads too (and warns about keys it does not know)")


def test_the_legacy_file_is_refused_as_the_own_file(files: Callable[[str, str], Path]) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    legacy = files("crunch-dispatch-slurm.yml", "PollPeriod: 3s\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path=cluster, legacy_path=legacy, environ={"SLURM_DISPATCH_CONFIG": str(legacy)})
    assert "$SLURM_DISPATCH_CONFIG: this is the legacy crunch-dispatch-slurm config file" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(path=cluster, skip_legacy=True, dispatch_config=DEFAULT_LEGACY_PATH, environ={})
    assert "this is the legacy crunch-dispatch-slurm config file's path" in str(info.value)


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda p: p.mkdir(), "cannot read slurm-dispatch config file: Is a directory", id="directory"),
    pytest.param(lambda p: p.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1)),
                 "cannot read slurm-dispatch config file: larger than 4 MiB", id="too-large"),
    pytest.param(lambda p: p.write_bytes(b"Limits: {\xff}\n"), "cannot read slurm-dispatch config file: 'utf-8'",
                 id="not-utf8"),
    pytest.param(lambda p: p.write_text("Limits: [\n"), "invalid YAML: line 2, column 1", id="bad-yaml"),
    pytest.param(lambda p: p.write_text("a: &a [*a]\n"), "invalid YAML: line 1, column 8: the alias *a is recursive",
                 id="recursive-alias"),
    pytest.param(lambda p: p.write_text("Limits: !!python/object:os.system {}\n"), "invalid YAML: line 1",
                 id="python-tag"),
    pytest.param(lambda p: os.mkfifo(p), "cannot read slurm-dispatch config file: not a regular file", id="fifo"),
])
def test_the_file_gets_the_same_reading_rules(files: Callable[[str, str], Path], tmp_path: Path,
                                              make: Callable[[Path], object], message: str) -> None:
    cluster = files("config.yml", yaml.safe_dump({"Clusters": {"zzzzz": {}}}))
    path = tmp_path / "slurm-dispatch.yml"
    make(path)
    with pytest.raises(ConfigError) as info:
        load_settings(path=cluster, environ={}, skip_legacy=True, dispatch_config=path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)

