"""Hostile config files through the whole loader: a ConfigError or usable Settings, never anything else.

Hypothesis writes documents with random YAML-able values (nested maps and lists, strings with NUL, newlines
and odd Unicode, huge and non-finite numbers, wrong types) at every key the dispatcher reads, in the cluster
config, the legacy file, slurm-dispatch's own file and the environment fill-ins, plus raw YAML-ish text and
alias structures. For each, ``load_settings`` must return Settings or raise ConfigError (one line, no
secret), quickly; and when ``startup_problems`` then finds nothing, everything ``run`` builds from the
settings must work: the API client, the health server's addresses, the libpq connection string, the log
level, the per-container policy, and the sbatch arguments (a supervisor's too, still named by its uuid), job
script and environment of a container (so no accepted config fails every container).

``check_case`` and ``cases`` are shared with benchmarks/fuzz_config.py, which runs thousands of cases and
prints figures (docs/robustness.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.config import KEYS, load_settings, redacted, startup_problems
from slurm_dispatch.errors import ConfigError, UnsatisfiableContainer
from slurm_dispatch.model import Container
from slurm_dispatch.service.http import parse_internal_url
from slurm_dispatch.service.locks import conninfo
from slurm_dispatch.service.logging_setup import FORMATS, LEVELS
from slurm_dispatch.settings import BROKEN_NODE_ACTIONS, Settings
from slurm_dispatch.slurm.decide import Policy
from slurm_dispatch.slurm.sbatch import batch_script, crunch_run_argv, sbatch_args, sbatch_environment

TOKEN = "fuzzRootToken0123456789abcdefghijklmnopqrstuvw"
"""The base document's SystemRootToken: it must never appear in a message."""
MAX_CASE_S = 2.0
"""The longest one case may take (the loader's own bounds keep real cases far below)."""

CLUSTER_KEYS = [
    "SystemRootToken", "ManagementToken", "Services.Controller.ExternalURL", "TLS.Insecure",
    "Services.DispatchSLURM.InternalURLs", "Services.DispatchSLURM.InternalURLs.http://localhost:9006",
    "Services.DispatchSLURM.InternalURLs.http://localhost:9006.ListenURL",
    "PostgreSQL.Connection", "PostgreSQL.Connection.host", "PostgreSQL.Connection.password",
    "PostgreSQL.ConnectionPool", "API.MaxItemsPerResponse", "RequestLimits.MaxItemsPerResponse",
    "Containers.CloudVMs.PollInterval", "Containers.MinRetryPeriod", "Containers.ReserveExtraRAM",
    "Containers.CrunchRunCommand", "Containers.CrunchRunArgumentsList", "Containers.RuntimeEngine",
    "Containers.SLURM.PrioritySpread", "Containers.SLURM.SbatchArgumentsList",
    "Containers.SLURM.SbatchArgumentsList.1", "Containers.SLURM.SbatchGPUArgumentsList",
    "Containers.SLURM.SbatchEnvironmentVariables", "Containers.SLURM.SbatchEnvironmentVariables.SITE",
    "InstanceTypes", "InstanceTypes.a1", "InstanceTypes.a1.VCPUs", "InstanceTypes.a1.RAM",
    "InstanceTypes.a1.IncludedScratch", "InstanceTypes.a1.AddedScratch", "InstanceTypes.a1.Price",
    "InstanceTypes.a1.Preemptible", "InstanceTypes.a1.ProviderType", "InstanceTypes.a1.GPU",
    "InstanceTypes.a1.GPU.DeviceCount", "InstanceTypes.a1.GPU.VRAM", "InstanceTypes.a1.GPU.Stack",
    "Containers.MaximumPriceFactor", "Containers.LocalKeepBlobBuffersPerVCPU", "Containers.PreemptiblePriceFactor",
    "SystemLogs.LogLevel", "SystemLogs.Format", "Containers.MaxDispatchAttempts", "Containers.DefaultKeepCacheRAM",
    "Containers", "Services", "Containers.SLURM", "Unknown.Key", "SAMPLE",
]
"""Every key the loader reads (and some containers of them), dotted from the cluster; a number is a list index."""
LEGACY_KEYS = [
    "Client", "Client.APIHost", "Client.AuthToken", "Client.Insecure", "Client.KeepServiceURIs", "Client.Scheme",
    "SbatchArguments", "PollPeriod", "PrioritySpread", "CrunchRunCommand", "ReserveExtraRAM", "MinRetryPeriod",
    "BatchSize", "Bogus",
]
OWN_KEYS = [k.key for k in KEYS] + [
    "FailureReasons", "TimeLimit", "Limits", "BrokenNodes", "Service", "FailureReasons.NeverRunnableReasons.1",
    "Limits.SupervisorSbatchArguments.0", "Limits.SupervisorSbatchArguments.1", "Limits.Bogus", "Clusters",
]
"""Every key of slurm-dispatch's own file (and its sections, items and unknown keys)."""
ENV_KEYS = ["ARVADOS_API_TOKEN", "ARVADOS_API_HOST", "ARVADOS_API_HOST_INSECURE"]

HOSTILE_STRINGS = [
    "", " ", "\0", "\n", "a\nb", "x\0y", "\r\n", "\t", "\x1b[2J", "\u202e", "\u2028", "\ufeff", "é", "😀",
    "%", "%X", "%%", "% ", "%U", "--job-name=%U", "-J", "%\n", "0", "-1", "1e400", "nan", "10ns", "1ns", "99ms",
    "100ms", "25h", "3000000h", "-5s", "1m30s", "550MiB", "1024", "16EiB", "9" * 40 + "B", "1.5Ki", "-1KiB",
    "https://", "https:///", "http://localhost:9006", "http://[::1", "https://u:p@h/", "https://h:99999/",
    "ftp://h/", "h:1", "docker", "singularity", "json", "text", "debug", "fatal", "a,b", "a|b", "a b", "A=B",
    "v2/zzzzz-gj3su-000000000000000/secret", "x" * 300,
    "65535s", "65536s", "18h12m15s", "1.5s", "0.5s", "-J", "%U", "--job-name=x", "-Jx", "--signal=B:USR1@60",
    "drain", "exclude", "none", "/var/lib/x", "relative/dir", "/", "BadConstraints", "Bad Constraints", "QOS_1",
    "--jo=x", "--job-na", "-HJx", "-vJ", "-oJob.out", "-o", "--j=%U", "-kJx",
]
SECRET_KEYS = ["SystemRootToken", "ManagementToken", "PostgreSQL.Connection.password"]
SECRETS = st.sampled_from([TOKEN + "\n", TOKEN + " ", " " + TOKEN, TOKEN + "\0", TOKEN + "é", TOKEN[:9] + "\t" + TOKEN,
                           TOKEN + "\r\n", TOKEN])
"""Values for the secret keys: the token with what a paste adds. A message may show any other value, never these."""
LEAVES = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
)
NAMES = st.one_of(st.sampled_from(["a1", "host", "SITE", "SAMPLE", "Price", "", "A=B", "x\ny", "a b"]),
                  st.text(max_size=6))
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=12,
)


def base_cluster() -> dict[str, Any]:
    """A valid cluster body: a token, a controller and an InternalURL."""
    return {
        "SystemRootToken": TOKEN,
        "Services": {"Controller": {"ExternalURL": "https://ctrl.example:8443/"},
                     "DispatchSLURM": {"InternalURLs": {"http://localhost:9006": {}}}},
        "InstanceTypes": {"a1": {"VCPUs": 8, "RAM": "64GiB", "IncludedScratch": "1TB", "Price": 0.1}},
    }


def put(document: Any, dotted: str, value: Any) -> Any:
    """Returns ``document`` with ``value`` at ``dotted`` (maps made as needed; a number indexes a list)."""
    head, _, rest = dotted.partition(".")
    if head.isdigit() and isinstance(document, list):
        index = int(head)
        items = list(document) + [None] * max(0, index + 1 - len(document))
        items[index] = put(items[index], rest, value) if rest else value
        return items
    node = dict(document) if isinstance(document, Mapping) else {}
    node[head] = put(node.get(head), rest, value) if rest else value
    return node


@st.composite
def structured(draw: st.DrawFn) -> dict[str, Any]:
    """A case: a base config with hostile values at known keys, maybe a legacy file, maybe environment."""
    body = base_cluster()
    for _ in range(draw(st.integers(0, 5))):
        body = put(body, draw(st.sampled_from(CLUSTER_KEYS)), draw(VALUES))
    if draw(st.booleans()):
        body = put(body, draw(st.sampled_from(SECRET_KEYS)), draw(SECRETS))
    legacy = None
    if draw(st.booleans()):
        legacy = {}
        for _ in range(draw(st.integers(0, 4))):
            legacy = put(legacy, draw(st.sampled_from(LEGACY_KEYS)), draw(VALUES))
        if draw(st.booleans()):
            legacy = put(legacy, "Client.AuthToken", draw(SECRETS))
    environ = {k: draw(SECRETS if k == "ARVADOS_API_TOKEN" else st.sampled_from(HOSTILE_STRINGS + ["ctrl.example"]))
               for k in draw(st.lists(st.sampled_from(ENV_KEYS), unique=True, max_size=3))}
    environ = {k: v for k, v in environ.items() if "\0" not in v}  # no process environment can hold a NUL
    own: Any = None
    if draw(st.booleans()):
        own = {}
        for _ in range(draw(st.integers(0, 5))):
            own = put(own, draw(st.sampled_from(OWN_KEYS)), draw(VALUES))
    return {"cluster": yaml.safe_dump({"Clusters": {"zzzzz": body}}),
            "legacy": None if legacy is None else yaml.safe_dump(legacy), "environ": environ,
            "dispatch": None if own is None else yaml.safe_dump(own)}


def _alias_text(levels: int, width: int) -> str:
    lines = ["l0: &l0 [x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nClusters:\n  zzzzz:\n    X: *l{levels}\n"


RAW_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#% \n\tabcxyz019?@`.\\")), max_size=80),
    st.builds(lambda n: "Clusters:\n  zzzzz:\n    X: " + "[" * n + "]" * n + "\n", st.integers(1, 3000)),
    st.builds(lambda n: "Clusters:\n  zzzzz:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(n)),
              st.integers(1, 120)),
    st.builds(_alias_text, st.integers(1, 12), st.integers(1, 12)),
    st.builds(lambda n: "Clusters:\n  zzzzz:\n    API: {MaxItemsPerResponse: " + "9" * n + "}\n",
              st.integers(1, 6000)),
)


BASE_TEXT = yaml.safe_dump({"Clusters": {"zzzzz": base_cluster()}})


def cases() -> st.SearchStrategy[dict[str, Any]]:
    """Every kind of case: mostly structured documents, some raw text (as the cluster config or the own file)."""
    return st.one_of(
        structured(), structured(), structured(),
        st.builds(lambda text: {"cluster": text, "legacy": None, "environ": {}, "dispatch": None}, RAW_TEXT),
        st.builds(lambda text: {"cluster": BASE_TEXT, "legacy": None, "environ": {}, "dispatch": text}, RAW_TEXT),
    )


CONTAINER = Container.from_api({
    "uuid": "zzzzz-dz642-queuedcontainer", "state": "Locked", "priority": 1,
    "created_at": "2016-01-11T11:11:11.111111000Z", "container_image": "test",
    "runtime_constraints": {"ram": 1 << 30, "vcpus": 2, "gpu": {"device_count": 1, "stack": "cuda"}},
    "scheduling_parameters": {"partitions": ["a", "b"], "max_run_time": 120},
    "mounts": {"/tmp": {"kind": "tmp", "capacity": 1 << 30}},
})
"""A container that asks for a GPU, partitions and a run time, so every template token has a value."""
SUPERVISOR = Container.from_api({
    "uuid": "zzzzz-dz642-supervisor00001", "state": "Locked", "priority": 1,
    "created_at": "2016-01-11T11:11:11.111111000Z", "container_image": "test",
    "runtime_constraints": {"ram": 1 << 30, "vcpus": 1},
    "scheduling_parameters": {"supervisor": True},
})
"""A workflow runner: Limits.SupervisorSbatchArguments are added to its sbatch arguments."""


SBATCH_TAKES_ARGUMENT = set("ABCDFGJLMNSabcdeimnopqtwx")
"""sbatch's short options that need an argument (``-k`` takes one only in the same word): Slurm's
src/common/slurm_opt.c, written out here again so the oracle does not share the loader's table."""


def job_names(args: list[str]) -> list[str]:
    """Returns every job name an sbatch argv sets (sbatch keeps the last), as sbatch's getopt_long reads it: any
    prefix of ``--job-name`` (sbatch has no other long option starting with ``j``), and ``J`` in a short-option
    word after letters that take no argument."""
    names = []
    i = 0
    while i < len(args):
        arg, following = args[i], args[i + 1] if i + 1 < len(args) else ""
        i += 1
        if arg.startswith("--"):
            option, equals, value = arg[2:].partition("=")
            if option and "job-name".startswith(option):
                names.append(value if equals else following)
                i += 0 if equals else 1
            continue
        letters = arg[1:] if arg.startswith("-") else ""
        for at, letter in enumerate(letters):
            if letter == "J" or letter in SBATCH_TAKES_ARGUMENT or letter == "k":
                rest = letters[at + 1:]
                if letter == "J":
                    names.append(rest or following)
                if not rest and letter != "k":
                    i += 1  # the next word is this option's argument
                break
    return names


def _one_line(text: str) -> None:
    """Asserts that a message is one line and shows no secret (the token at a secret key)."""
    assert len(text.splitlines()) <= 1 and TOKEN not in text, text


def usable(s: Settings) -> None:
    """Builds everything ``run`` builds from ``s``; raises AssertionError or the failure if anything fails."""
    ArvadosClient.from_settings(s).close()
    for url in s.dispatch_internal_urls:
        parse_internal_url(url)
    conninfo(s.postgresql_connection)
    assert s.log_level in LEVELS and s.log_format in FORMATS
    assert 0.1 <= s.poll_interval <= 86400 and 0 <= s.min_retry_period <= 86400
    try:
        args = sbatch_args(CONTAINER, s)
    except UnsatisfiableContainer:
        args = []
    assert all("\0" not in a for a in args), args
    assert not args or job_names(args)[-1] == CONTAINER.uuid, args
    batch_script(crunch_run_argv(CONTAINER.uuid, s), {"GatewayAuthSecret": "x"})
    for name, value in sbatch_environment(s, {"PATH": "/bin"}).items():
        assert name and "=" not in name and "\0" not in name + value, name
    own_file_usable(s)


def own_file_usable(s: Settings) -> None:
    """Checks what slurm-dispatch's own file set: in range, and a supervisor's job still found by its uuid."""
    Policy.from_settings(s)
    assert all(code and code.replace("_", "").isalnum() and code.isascii() for code in s.never_runnable_reasons)
    assert s.never_runnable_grace >= 0 and s.broken_node_hold >= 0
    for seconds in (s.max_run_time_overhead, s.default_max_run_time, s.time_limit_signal):
        assert seconds >= 0 and float(seconds).is_integer(), seconds
    assert s.time_limit_signal <= 65535
    assert s.max_containers_in_slurm >= 0 and s.max_supervisors >= 0
    assert math.isfinite(s.max_submits_per_minute) and s.max_submits_per_minute >= 0
    assert 0 <= s.supervisor_fraction <= 1
    assert s.broken_node_action in BROKEN_NODE_ACTIONS and s.state_directory.startswith("/")
    try:
        args = sbatch_args(SUPERVISOR, s)
    except UnsatisfiableContainer:
        return
    assert all("\0" not in a and "\n" not in a for a in args), args
    assert job_names(args)[-1:] == [SUPERVISOR.uuid], args


def check_case(case: Mapping[str, Any], tmp_path: Path) -> str:
    """Runs one case through ``load_settings`` and ``startup_problems``; returns its outcome.

    The outcome is ``"usable"`` (no problem, and ``usable`` passed), ``"problems"`` (startup problems), or
    ``"ConfigError: <message>"``. Any other exception, or an assertion, propagates.
    """
    config = tmp_path / "config.yml"
    config.write_text(case["cluster"], encoding="utf-8")
    legacy = None
    if case["legacy"] is not None:
        legacy = tmp_path / "legacy.yml"
        legacy.write_text(case["legacy"], encoding="utf-8")
    own = tmp_path / "slurm-dispatch.yml"  # always named, so the machine's default file never counts
    own.write_text(case.get("dispatch") or "", encoding="utf-8")
    try:
        loaded = load_settings(path=config, environ=case["environ"], legacy_path=legacy, skip_legacy=legacy is None,
                               dispatch_config=own)
    except ConfigError as exc:
        _one_line(str(exc))
        return f"ConfigError: {exc}"
    for warning in loaded.warnings:
        _one_line(warning)
    problems = startup_problems(loaded.settings)
    for problem in problems:
        _one_line(problem)
    _one_line(json.dumps(redacted(loaded.settings)))
    if problems:
        return "problems"
    usable(loaded.settings)
    return "usable"


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=int(MAX_CASE_S * 1000), suppress_health_check=[HealthCheck.too_slow,
                                                                                        HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_hostile_configs_load_or_fail_cleanly(case: dict[str, Any], tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = check_case(case, tmp_path)
    assert outcome
    assert time.monotonic() - started < MAX_CASE_S


def test_the_base_document_is_usable(tmp_path: Path) -> None:
    case = {"cluster": BASE_TEXT, "legacy": None, "environ": {}, "dispatch": None}
    assert check_case(case, tmp_path) == "usable"


def test_a_full_own_file_is_usable(tmp_path: Path) -> None:
    own = {"FailureReasons": {"NeverRunnableReasons": ["BadConstraints"], "NeverRunnableGracePeriod": "5m"},
           "TimeLimit": {"Overhead": "5m", "DefaultMaxRunTime": "24h", "StopSignalBefore": "65535s"},
           "Limits": {"MaxContainersInSlurm": 10, "MaxSubmitsPerMinute": 60, "SupervisorFraction": 1,
                      "MaxSupervisors": 2, "SupervisorSbatchArguments": ["--partition=wf", "--job-name=%U"]},
           "BrokenNodes": {"Action": "none", "Hold": "0s"}, "Service": {"StateDirectory": "/"}}
    case = {"cluster": BASE_TEXT, "legacy": None, "environ": {}, "dispatch": yaml.safe_dump(own)}
    assert check_case(case, tmp_path) == "usable"
