"""What the loader and ``startup_problems`` refuse: hostile or mistaken values, each named by its key.

Every row here was found by feeding the service what an attacker (or a tired admin) would: each must end in a
``ConfigError`` naming the file and the key (never showing a secret), or in a startup problem, and never in
a traceback, a hang or a config that passes ``config check`` and then fails every container.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch.config import load_settings, settings_from_documents, startup_problems
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

TOKEN = "s3cr3tRootTokenValue0123456789abcdefghijkl"
CTRL = "https://ctrl.example:8443/"
URLS = {"http://localhost:9006": {}}


def cluster(**body: Any) -> dict[str, Any]:
    """A valid cluster body (token, controller, InternalURLs) with ``body`` merged over it at the top level."""
    base: dict[str, Any] = {
        "SystemRootToken": TOKEN,
        "Services": {"Controller": {"ExternalURL": CTRL}, "DispatchSLURM": {"InternalURLs": URLS}},
    }
    return {**base, **body}


def load(body: dict[str, Any], *, legacy: object = None, environ: dict[str, str] | None = None) -> Settings:
    settings, _ = settings_from_documents({"Clusters": {"zzzzz": body}}, source="/etc/arvados/config.yml",
                                          environ=environ or {}, legacy_document=legacy,
                                          legacy_source="/etc/legacy.yml")
    return settings


def refused(body: dict[str, Any], **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(body, **kwargs)
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    assert TOKEN not in text
    return info.value


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str) -> Path:
        path = tmp_path / "config.yml"
        path.write_text(text, encoding="utf-8")
        return path
    return _write


# ---------------------------------------------------------------------------------------------------------
# SbatchArgumentsList: []


@pytest.mark.parametrize(
    ("body", "legacy"),
    [
        pytest.param(cluster(Containers={"SLURM": {"SbatchArgumentsList": []}}), None, id="cluster-config"),
        pytest.param(cluster(), {"SbatchArguments": []}, id="legacy-file"),
    ],
)
def test_an_empty_sbatch_template_is_a_startup_problem(body: dict[str, Any], legacy: object) -> None:
    settings = load(body, legacy=legacy)
    problems = startup_problems(settings)
    assert problems == [(
        "Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList is empty: sbatch would get no --job-name=%U, so "
        "every job would look gone and its container would be unlocked and relocked endlessly (remove the "
        "key to use the default template)"
    )]


# ---------------------------------------------------------------------------------------------------------
# Control characters in what becomes argv, the job script or an environment


@pytest.mark.parametrize("bad", ["\0", "\n"], ids=["NUL", "newline"])
@pytest.mark.parametrize(
    ("make", "key"),
    [
        pytest.param(lambda v: cluster(Containers={"CrunchRunArgumentsList": ["--x", f"a{v}b"]}),
                     "Clusters.zzzzz.Containers.CrunchRunArgumentsList[1]", id="CrunchRunArgumentsList"),
        pytest.param(lambda v: cluster(Containers={"CrunchRunCommand": f"/usr/bin/crunch-run{v}"}),
                     "Clusters.zzzzz.Containers.CrunchRunCommand", id="CrunchRunCommand"),
        pytest.param(lambda v: cluster(Containers={"SLURM": {"SbatchArgumentsList": ["--job-name=%U", f"-p{v}x"]}}),
                     "Clusters.zzzzz.Containers.SLURM.SbatchArgumentsList[1]", id="SbatchArgumentsList"),
        pytest.param(lambda v: cluster(Containers={"SLURM": {"SbatchGPUArgumentsList": [f"--gpus=%G{v}"]}}),
                     "Clusters.zzzzz.Containers.SLURM.SbatchGPUArgumentsList[0]", id="SbatchGPUArgumentsList"),
        pytest.param(lambda v: cluster(Containers={"SLURM": {"SbatchEnvironmentVariables": {"SITE": f"a{v}"}}}),
                     "Clusters.zzzzz.Containers.SLURM.SbatchEnvironmentVariables.SITE", id="env-value"),
        pytest.param(lambda v: cluster(PostgreSQL={"Connection": {"host": f"db{v}"}}),
                     "Clusters.zzzzz.PostgreSQL.Connection.host", id="PostgreSQL-value"),
        pytest.param(lambda v: cluster(InstanceTypes={"a1": {"ProviderType": f"a{v}"}}),
                     "Clusters.zzzzz.InstanceTypes.a1.ProviderType", id="ProviderType"),
    ],
)
def test_control_characters_are_refused_where_they_enter(make: Callable[[str], dict[str, Any]], key: str,
                                                          bad: str) -> None:
    error = refused(make(bad))
    assert error.key == key
    assert "control character" in str(error)


@pytest.mark.parametrize("bad", ["\0", "\n"], ids=["NUL", "newline"])
@pytest.mark.parametrize(
    ("make", "key"),
    [
        pytest.param(lambda v: {"SbatchArguments": ["--job-name=%U", f"-p{v}"]}, "SbatchArguments[1]",
                     id="SbatchArguments"),
        pytest.param(lambda v: {"CrunchRunCommand": ["crunch-run", f"--x{v}"]}, "CrunchRunCommand[1]",
                     id="CrunchRunCommand"),
        pytest.param(lambda v: {"Client": {"KeepServiceURIs": [f"http://keep{v}"]}}, "Client.KeepServiceURIs[0]",
                     id="KeepServiceURIs"),
    ],
)
def test_control_characters_in_the_legacy_file_are_refused(make: Callable[[str], object], key: str,
                                                            bad: str) -> None:
    error = refused(cluster(), legacy=make(bad))
    assert (error.path, error.key) == ("/etc/legacy.yml", key)
    assert "control character" in str(error)


@pytest.mark.parametrize("name", ["", "A=B", "A\0B", "A\nB"], ids=["empty", "equals", "NUL", "newline"])
def test_unusable_environment_variable_names_are_refused(name: str) -> None:
    error = refused(cluster(Containers={"SLURM": {"SbatchEnvironmentVariables": {name: "x"}}}))
    assert "environment variable name" in str(error)


def test_a_secret_environment_value_with_a_control_character_is_not_shown() -> None:
    error = refused(cluster(Containers={"SLURM": {"SbatchEnvironmentVariables": {"MY_TOKEN": "hunter2\n"}}}))
    assert "hunter2" not in str(error)


@pytest.mark.parametrize("name", ["a b", "a,b", "a|b", "a&b", "a\nb", "[a]", "a*2", ""],
                         ids=["space", "comma", "bar", "amp", "newline", "brackets", "star", "empty"])
def test_instance_type_names_that_break_a_slurm_constraint_are_refused(name: str) -> None:
    error = refused(cluster(InstanceTypes={name: {"VCPUs": 1, "RAM": "1GiB"}}))
    assert "Slurm feature" in str(error)


# ---------------------------------------------------------------------------------------------------------
# SystemRootToken and Services.Controller.ExternalURL


def test_missing_token_and_controller_are_startup_problems() -> None:
    body = cluster()
    del body["SystemRootToken"]
    del body["Services"]["Controller"]
    problems = startup_problems(load(body))
    assert problems == [
        ("Clusters.zzzzz.SystemRootToken is empty: the dispatcher has no Arvados API token (set it, or "
         "ARVADOS_API_TOKEN in the service's environment)"),
        ("Clusters.zzzzz.Services.Controller.ExternalURL is empty: the dispatcher does not know where the "
         "Arvados API is (set it, or ARVADOS_API_HOST in the service's environment)"),
    ]


def test_environment_fill_ins_provide_token_and_controller() -> None:
    body = cluster()
    del body["SystemRootToken"]
    del body["Services"]["Controller"]
    settings = load(body, environ={"ARVADOS_API_TOKEN": TOKEN, "ARVADOS_API_HOST": "ctrl.example"})
    assert startup_problems(settings) == []


@pytest.mark.parametrize(
    ("make", "key"),
    [
        pytest.param(lambda t: cluster(SystemRootToken=t), "Clusters.zzzzz.SystemRootToken", id="SystemRootToken"),
        pytest.param(lambda t: cluster(ManagementToken=t), "Clusters.zzzzz.ManagementToken", id="ManagementToken"),
    ],
)
@pytest.mark.parametrize(
    ("token", "what"),
    [
        pytest.param(TOKEN + "\n", "a newline at the end", id="block-scalar-newline"),
        pytest.param(TOKEN + " ", "a space at the end", id="trailing-space"),
        pytest.param("abc def" + TOKEN, "a space", id="inner-space"),
        pytest.param(TOKEN + "\0", "a NUL at the end", id="NUL"),
        pytest.param(TOKEN[:5] + "\x07" + TOKEN[5:], "contains a control character;", id="bell"),
        pytest.param(TOKEN + "é", "a non-ASCII character at the end", id="non-ASCII"),
    ],
)
def test_tokens_with_whitespace_or_control_characters_are_refused_without_showing_them(
        make: Callable[[str], dict[str, Any]], key: str, token: str, what: str) -> None:
    error = refused(make(token))
    assert error.key == key
    assert what in str(error)
    assert TOKEN not in str(error) and "def" not in str(error)


def test_a_block_scalar_token_in_a_file_is_refused(write: Callable[[str], Path]) -> None:
    path = write("Clusters:\n  zzzzz:\n    SystemRootToken: |\n      " + TOKEN + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path=path, environ={}, skip_legacy=True)
    assert info.value.key == "Clusters.zzzzz.SystemRootToken"
    assert TOKEN not in str(info.value)


def test_a_bad_token_from_the_environment_or_legacy_file_is_refused() -> None:
    body = cluster()
    del body["SystemRootToken"]
    error = refused(body, environ={"ARVADOS_API_TOKEN": TOKEN + "\n"})
    assert error.key == "ARVADOS_API_TOKEN"
    error = refused(cluster(), legacy={"Client": {"AuthToken": TOKEN + "\n"}})
    assert (error.path, error.key) == ("/etc/legacy.yml", "Client.AuthToken")


# ---------------------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("10ns", "at least 100ms", id="10ns"),
        pytest.param("99ms", "at least 100ms", id="99ms"),
        pytest.param("25h", "at most 24h", id="25h"),
        pytest.param("3000000h", "too large", id="beyond-go-int64"),
    ],
)
def test_poll_interval_out_of_range_is_refused(value: str, fragment: str) -> None:
    error = refused(cluster(Containers={"CloudVMs": {"PollInterval": value}}))
    assert error.key == "Clusters.zzzzz.Containers.CloudVMs.PollInterval"
    assert fragment in str(error)
    error = refused(cluster(), legacy={"PollPeriod": value})
    assert error.key == "PollPeriod"


@pytest.mark.parametrize(("value", "seconds"), [("100ms", 0.1), ("24h", 86400.0), ("10s", 10.0)])
def test_poll_interval_in_range_is_accepted(value: str, seconds: float) -> None:
    assert load(cluster(Containers={"CloudVMs": {"PollInterval": value}})).poll_interval == seconds


@pytest.mark.parametrize("value", ["500ms", "1ns", "25h"])
def test_min_retry_period_out_of_range_is_refused(value: str) -> None:
    error = refused(cluster(Containers={"MinRetryPeriod": value}))
    assert error.key == "Clusters.zzzzz.Containers.MinRetryPeriod"
    error = refused(cluster(), legacy={"MinRetryPeriod": value})
    assert error.key == "MinRetryPeriod"


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), ("0s", 0.0), ("1s", 1.0), ("24h", 86400.0)])
def test_min_retry_period_in_range_is_accepted(value: object, seconds: float) -> None:
    assert load(cluster(Containers={"MinRetryPeriod": value})).min_retry_period == seconds


# ---------------------------------------------------------------------------------------------------------
# Types and ranges


@pytest.mark.parametrize(
    ("body", "key"),
    [
        pytest.param(cluster(InstanceTypes={"a1": {"VCPUs": 2**63}}), "InstanceTypes.a1.VCPUs", id="int-over-int64"),
        pytest.param(cluster(InstanceTypes={"a1": {"VCPUs": 1e300}}), "InstanceTypes.a1.VCPUs", id="float-as-int"),
        pytest.param(cluster(InstanceTypes={"a1": {"VCPUs": "2"}}), "InstanceTypes.a1.VCPUs", id="string-count"),
        pytest.param(cluster(InstanceTypes={"a1": {"GPU": {"DeviceCount": -1}}}), "InstanceTypes.a1.GPU.DeviceCount",
                     id="negative-gpus"),
        pytest.param(cluster(InstanceTypes={"a1": {"Price": 1e300}}), "InstanceTypes.a1.Price", id="huge-price"),
        pytest.param(cluster(InstanceTypes={"a1": {"Price": float("nan")}}), "InstanceTypes.a1.Price", id="nan-price"),
        pytest.param(cluster(InstanceTypes={"a1": []}), "InstanceTypes.a1", id="type-not-a-map"),
        pytest.param(cluster(Containers={"SLURM": {"PrioritySpread": 10**6}}), "Containers.SLURM.PrioritySpread",
                     id="huge-spread"),
        pytest.param(cluster(API={"MaxItemsPerResponse": -1}), "API.MaxItemsPerResponse", id="negative-batch"),
        pytest.param(cluster(API={"MaxItemsPerResponse": 10**7}), "API.MaxItemsPerResponse", id="huge-batch"),
        pytest.param(cluster(Containers={"MaximumPriceFactor": float("inf")}), "Containers.MaximumPriceFactor",
                     id="inf-factor"),
        pytest.param(cluster(Containers={"PreemptiblePriceFactor": 1e6}), "Containers.PreemptiblePriceFactor",
                     id="huge-factor"),
        pytest.param(cluster(Containers={"LocalKeepBlobBuffersPerVCPU": 1.5}),
                     "Containers.LocalKeepBlobBuffersPerVCPU", id="fractional-count"),
        pytest.param(cluster(Services={"Controller": {"ExternalURL": "ctrl.example"}}),
                     "Services.Controller.ExternalURL", id="url-without-scheme"),
        pytest.param(cluster(Services={"Controller": {"ExternalURL": "https:///"}}),
                     "Services.Controller.ExternalURL", id="url-without-host"),
        pytest.param(cluster(Services={"Controller": {"ExternalURL": "https://ctrl:99999/"}}),
                     "Services.Controller.ExternalURL", id="url-port-out-of-range"),
        pytest.param(cluster(Services={"Controller": {"ExternalURL": "https://[::1/"}}),
                     "Services.Controller.ExternalURL", id="url-unparsable"),
        pytest.param(cluster(Services={"Controller": {"ExternalURL": "https://ctrl .example/"}}),
                     "Services.Controller.ExternalURL", id="url-with-space"),
        pytest.param(cluster(Services={"DispatchSLURM": {"InternalURLs": {"http://[::1:9006": {}}}}),
                     "Services.DispatchSLURM.InternalURLs.http://[::1:9006", id="internal-url-unparsable"),
        pytest.param(cluster(PostgreSQL={"Connection": {"host x": "db"}}), "PostgreSQL.Connection.host x",
                     id="not-a-libpq-keyword"),
        pytest.param(cluster(PostgreSQL={"Connection": {"host": "a", "Host": "b"}}), "PostgreSQL.Connection",
                     id="libpq-keyword-twice"),
    ],
)
def test_values_of_the_wrong_type_or_range_are_refused(body: dict[str, Any], key: str) -> None:
    assert refused(body).key == "Clusters.zzzzz." + key


def test_legacy_client_scheme_must_be_http_or_https() -> None:
    error = refused(cluster(), legacy={"Client": {"Scheme": "ftp"}})
    assert error.key == "Client.Scheme"


def test_legacy_crunch_run_command_must_not_be_empty() -> None:
    error = refused(cluster(), legacy={"CrunchRunCommand": [""]})
    assert error.key == "CrunchRunCommand[0]"


def test_unknown_keys_with_control_characters_are_shown_escaped_on_one_line() -> None:
    _, warnings = settings_from_documents({"Clusters": {"zzzzz": cluster(**{"Bad\nKey\x1b[2J": 1})}},
                                          source="c.yml", environ={})
    assert warnings == ["deprecated or unknown config entry: Clusters.zzzzz.Bad\\nKey\\x1b[2J"]


# ---------------------------------------------------------------------------------------------------------
# The YAML itself


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("Clusters:\n  zzzzz:\n    X: " + "[" * 5000 + "]" * 5000 + "\n", "nest", id="deep-flow"),
        pytest.param("Clusters:\n  zzzzz:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(200)),
                     "nesting deeper", id="deep-block"),
        pytest.param("a: &a [x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                     + "".join(f"c{i}: &c{i} [" + ", ".join([f"*{'b' if i == 0 else f'c{i - 1}'}"] * 10) + "]\n"
                               for i in range(9))
                     + "Clusters:\n  zzzzz:\n    X: *c8\n", "alias", id="billion-laughs"),
        pytest.param("Clusters: &a\n  zzzzz:\n    X: *a\n", "recursive", id="recursive-alias"),
        pytest.param("Clusters:\n  zzzzz:\n    API:\n      MaxItemsPerResponse: " + "9" * 5000 + "\n",
                     "cannot convert", id="int-too-long"),
        # an unquoted date is text, as in Go; with its tag it is still converted, and an impossible one refused
        pytest.param("Clusters:\n  zzzzz:\n    X: !!timestamp 2001-02-30\n", "cannot convert", id="impossible-date"),
        pytest.param("Clusters:\n  zzzzz:\n    ? [a, b]\n    : c\n", "unhashable", id="unhashable-key"),
        pytest.param("Clusters: !!python/object:os.system {}\n", "python/object", id="python-tag"),
    ],
)
def test_hostile_yaml_is_a_config_error_quickly(write: Callable[[str], Path], text: str, fragment: str) -> None:
    path = write(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_settings(path=path, environ={}, skip_legacy=True)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML: "), message
    assert fragment in message
    assert len(message.splitlines()) == 1 and len(message) < 400


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings(path=fifo, environ={}, skip_legacy=True)


def test_an_oversized_file_is_refused(write: Callable[[str], Path]) -> None:
    path = write("# " + "x" * (4 << 20) + "\n" + yaml.safe_dump({"Clusters": {"zzzzz": cluster()}}))
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_settings(path=path, environ={}, skip_legacy=True)


def test_anchors_and_merge_keys_of_a_real_config_still_work(write: Callable[[str], Path]) -> None:
    path = write(
        "x-type: &type {VCPUs: 2, RAM: 4GiB, Price: 0.1}\n"
        "Clusters:\n  zzzzz:\n"
        f"    SystemRootToken: {TOKEN}\n"
        f"    Services: {{Controller: {{ExternalURL: '{CTRL}'}}, DispatchSLURM: {{InternalURLs: "
        "{'http://localhost:9006': {}}}}\n"
        "    InstanceTypes:\n      a1: *type\n      a2: {<<: *type, VCPUs: 4}\n"
    )
    settings = load_settings(path=path, environ={}, skip_legacy=True).settings
    assert (settings.instance_types["a1"].vcpus, settings.instance_types["a2"].vcpus) == (2, 4)
    assert startup_problems(settings) == []
