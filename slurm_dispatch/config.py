"""Reads the Arvados cluster config (and the legacy standalone file) once, validates it, returns Settings.

Port of the parts of Arvados's ``lib/config`` (load.go, deprecated.go) and ``sdk/go/arvados`` (Duration,
ByteSize, InstanceTypeMap) that crunch-dispatch-slurm depends on; arvados-reference.md §4 is the contract.

Shape: ``load_settings`` is the only function here that does I/O (it reads at most three files and never
writes). Everything else is pure and takes already-parsed YAML, so the tests are tables:

* ``resolve_config_path``: which file, and why (``--config``, ``$ARVADOS_CONFIG`` or the default).
* ``settings_from_documents``: parsed cluster config + parsed legacy file + environment -> Settings, warnings.
* ``parse_duration`` / ``parse_byte_size``: Go ``Duration`` and Arvados ``ByteSize`` spellings.
* ``template_problems`` / ``startup_problems``: what the service refuses to start with.
* ``redacted``: the effective settings for ``config check``, with secrets hidden.

Merge order follows Go's loader: defaults, then the cluster file, then deprecated keys
(``RequestLimits.MaxItemsPerResponse``), then the environment fills empty keys, then the legacy file
overrides, then ``<name>.preemptible`` instance types are added.

Deliberate differences from Go, all in the direction of refusing a config Go would misread:

* A quoted byte size with no unit (``ReserveExtraRAM: "1024"``) is a ``ConfigError`` here; Go silently reads
  it as 0. ``"0"`` is accepted (both readings agree). Write ``1024`` unquoted or ``"1024B"``.
* Negative durations and sizes, ``Containers.CloudVMs.PollInterval <= 0`` (Go's ticker would panic) and a
  negative ``API.MaxItemsPerResponse`` are errors.
* ``PostgreSQL.Connection`` values may be integers (``port: 5432``); they become strings. Empty values are
  dropped, so an unset connection is ``{}``.
* When ``Services.DispatchSLURM.InternalURLs.<url>.ListenURL`` is set, that is the address recorded in
  ``dispatch_internal_urls`` (it is where Go's service listens); otherwise the ``<url>`` key itself.

Error messages never contain a secret: SystemRootToken, ManagementToken, the PostgreSQL password and the
legacy ``Client.AuthToken`` are shown as ``<redacted>``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml

from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import InstanceType, InstanceTypeGPU, Settings

DEFAULT_CONFIG_PATH = Path("/etc/arvados/config.yml")
"""Where Arvados services look for the cluster config unless told otherwise."""
DEFAULT_LEGACY_PATH = Path("/etc/arvados/crunch-dispatch-slurm/crunch-dispatch-slurm.yml")
"""The pre-2.0 standalone crunch-dispatch-slurm config; skipped when missing."""
REDACTED = "<redacted>"
"""What a secret looks like in errors and in ``redacted()``."""

RUNTIME_ENGINES = ("docker", "singularity")
LOG_LEVELS = ("error", "warn", "warning", "info", "debug", "trace")
LOG_FORMATS = ("json", "text")
TEMPLATE_TOKENS = "UCMTGWPI%"
"""Characters allowed after ``%`` in the sbatch templates (arvados-reference.md §4.3)."""

_CLUSTER_ID_RE = re.compile(r"^[a-z0-9]{5}$")
# Go's time.ParseDuration grammar: one or more <decimal><unit>, with an optional sign in front.
_DURATION_PART_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_SIZE_RE = re.compile(r"^\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([KMGTPE]i?)?B?\s*$")
_SIZE_PREFIX = {
    "": 1,
    "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}
_INT64_MAX = (1 << 63) - 1

# Keys (relative to the cluster) whose values are secrets and never appear in messages.
_SECRET_KEYS = frozenset({"SystemRootToken", "ManagementToken", "Client.AuthToken",
                          # a connection written as one string ("postgres://u:pw@h/db") would hold a password
                          "PostgreSQL", "PostgreSQL.Connection", "PostgreSQL.Connection.password"})
_SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")


class PathSource(str, Enum):
    """Why a config path was chosen, so the CLI can say so."""

    ARGUMENT = "--config"
    ENVIRONMENT = "$ARVADOS_CONFIG"
    DEFAULT = "default"


@dataclass(frozen=True)
class LoadedConfig:
    """The result of ``load_settings``: settings plus everything worth telling the operator."""

    settings: Settings
    warnings: list[str] = field(default_factory=list)
    """Unknown or deprecated keys, legacy-mapping caveats, environment fill-ins: log each at startup."""
    path: Path = DEFAULT_CONFIG_PATH
    """The file named by --config / $ARVADOS_CONFIG / the default."""
    path_source: PathSource = PathSource.DEFAULT
    """Why ``path`` was chosen."""
    legacy_path: Path | None = None
    """The legacy standalone file that was actually read, if any."""
    cluster_path: Path | None = None
    """The cluster config that was actually read: ``path``, or (when ``path`` was a legacy file) the
    $ARVADOS_CONFIG/default file, or None when there was none and ``cluster_id`` supplied the id."""


# ---------------------------------------------------------------------------------------------------------
# Value parsers


def _show(value: object, *, secret: bool = False) -> str:
    """Renders a config value for an error message (short, never a secret)."""
    if secret:
        return REDACTED
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_SECRET_CONNECTION_KEYS = frozenset({"password", "sslpassword"})
"""libpq keywords that hold a secret; libpq (and our lock) read keywords in any case."""


def _is_secret(rel_key: str) -> bool:
    if rel_key in _SECRET_KEYS:
        return True
    prefix, _, last = rel_key.rpartition(".")
    return prefix == "PostgreSQL.Connection" and last.lower() in _SECRET_CONNECTION_KEYS


def parse_duration(value: object, *, key: str = "", path: str = "") -> float:
    """Returns a Go duration (``"1m30s"``, ``"300ms"``, ``0``, ``"0"``) in seconds.

    Port of sdk/go/arvados/duration.go: Duration.UnmarshalJSON (time.ParseDuration plus unitless zero).
    Pure.

    Raises:
        ConfigError: a bare number other than 0, an unknown unit, a negative duration, or a non-string.
    """
    shown = _show(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"expected a duration like \"10s\", got {shown}", path=path, key=key, value=shown)
    if not isinstance(value, str):
        if value == 0:
            return 0.0
        raise ConfigError(f"missing unit in duration {shown} (write e.g. \"{value}s\")",
                          path=path, key=key, value=shown)
    text = value.strip()
    negative = text.startswith("-")
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if not body:
        raise ConfigError(f"invalid duration {shown}", path=path, key=key, value=shown)
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART_RE.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            hint = " (missing unit)" if re.fullmatch(r"[0-9.]+", body) else ""
            raise ConfigError(f"invalid duration {shown}{hint}; use e.g. \"10s\", \"1m30s\", \"300ms\"",
                              path=path, key=key, value=shown)
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if negative and total > 0:
        raise ConfigError(f"negative duration {shown} is not allowed", path=path, key=key, value=shown)
    return total


def parse_byte_size(value: object, *, key: str = "", path: str = "") -> int:
    """Returns a byte size in bytes: an integer, or a string like ``"550MiB"``, ``"16GB"``, ``"1.5Ki"``.

    Port of sdk/go/arvados/byte_size.go: ByteSize.UnmarshalJSON. K M G T P E are powers of 1000,
    Ki Mi Gi Ti Pi Ei powers of 1024, a trailing ``B`` is optional, decimals are truncated to whole bytes.
    Unlike Go, a quoted number with no unit other than ``"0"`` is refused (Go reads it as 0). Pure.

    Raises:
        ConfigError: an unparsable or negative size, a unitless quoted number, or a non-integral float.
    """
    shown = _show(value)
    if isinstance(value, bool):
        raise ConfigError(f"expected a byte size like 1024 or \"550MiB\", got {shown}",
                          path=path, key=key, value=shown)
    if isinstance(value, int):
        number: float | int = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"byte size {shown} is not a whole number of bytes", path=path, key=key,
                              value=shown)
        number = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ConfigError(f"invalid byte size {shown}; use e.g. 1024, \"64KiB\", \"550MiB\", \"16GB\"",
                              path=path, key=key, value=shown)
        digits, prefix = match.group(1), match.group(2) or ""
        unitless = prefix == "" and not value.strip().endswith("B")
        if unitless and float(digits) != 0:
            raise ConfigError(
                f"byte size {shown} is a quoted number with no unit (Arvados's Go loader would silently "
                f"read it as 0); write it unquoted, or with a unit such as \"{digits}B\"",
                path=path, key=key, value=shown)
        scale = _SIZE_PREFIX[prefix]
        if re.fullmatch(r"[+-]?[0-9]+", digits):
            number = int(digits) * scale
        else:
            number = int(float(digits) * scale)
    else:
        raise ConfigError(f"expected a byte size like 1024 or \"550MiB\", got {shown}",
                          path=path, key=key, value=shown)
    if number < 0:
        raise ConfigError(f"byte size {shown} must not be negative", path=path, key=key, value=shown)
    if number > _INT64_MAX:
        raise ConfigError(f"byte size {shown} is too large", path=path, key=key, value=shown)
    return int(number)


# ---------------------------------------------------------------------------------------------------------
# Typed access to one parsed document


_MISSING: Any = object()
T = TypeVar("T")


class _Doc:
    """One parsed YAML mapping plus how to name its keys in errors and warnings."""

    def __init__(self, data: Mapping[str, Any], *, source: str, prefix: str, warnings: list[str]):
        self.data = data
        self.source = source
        self.prefix = prefix
        self.warnings = warnings

    def full(self, rel: str) -> str:
        return f"{self.prefix}.{rel}" if self.prefix else rel

    def error(self, rel: str, message: str, value: object) -> ConfigError:
        return ConfigError(message, path=self.source, key=self.full(rel),
                           value=_show(value, secret=_is_secret(rel)))

    def get(self, rel: str) -> Any:
        """Returns the value at dotted ``rel``, or _MISSING when absent or null (null keeps the default)."""
        node: Any = self.data
        walked: list[str] = []
        for part in rel.split("."):
            if not isinstance(node, Mapping):
                here = ".".join(walked)
                raise self.error(here, f"expected a map, got {_show(node, secret=_is_secret(here))}", node)
            walked.append(part)
            node = node.get(part)
            if node is None:
                return _MISSING
        return node

    def typed(self, rel: str, convert: Callable[[_Doc, str, Any], T]) -> T | Any:
        value = self.get(rel)
        return _MISSING if value is _MISSING else convert(self, rel, value)


def _str(doc: _Doc, rel: str, value: Any) -> str:
    if not isinstance(value, str):
        raise doc.error(rel, f"expected a string, got {_show(value, secret=_is_secret(rel))}"
                        + ("" if _is_secret(rel) else " (quote it)"), value)
    return value


def _bool(doc: _Doc, rel: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise doc.error(rel, f"expected true or false, got {_show(value)}", value)
    return value


def _int(doc: _Doc, rel: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(rel, f"expected an integer, got {_show(value)}", value)
    return value


def _nonneg_int(doc: _Doc, rel: str, value: Any) -> int:
    number = _int(doc, rel, value)
    if number < 0:
        raise doc.error(rel, f"must not be negative, got {_show(value)}", value)
    return number


def _nonneg_float(doc: _Doc, rel: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise doc.error(rel, f"expected a number, got {_show(value)}", value)
    if value < 0:
        raise doc.error(rel, f"must not be negative, got {_show(value)}", value)
    return float(value)


def _duration(doc: _Doc, rel: str, value: Any) -> float:
    return parse_duration(value, key=doc.full(rel), path=doc.source)


def _size(doc: _Doc, rel: str, value: Any) -> int:
    return parse_byte_size(value, key=doc.full(rel), path=doc.source)


def _str_list(doc: _Doc, rel: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise doc.error(rel, f"expected a list of strings, got {_show(value)}", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise doc.error(f"{rel}[{i}]", f"expected a string, got {_show(item)} (quote it)", item)
    return tuple(value)


def _map(doc: _Doc, rel: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise doc.error(rel, f"expected a map, got {_show(value, secret=_is_secret(rel))}", value)
    return value


def _str_map(doc: _Doc, rel: str, value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _map(doc, rel, value).items():
        # Go decodes a null in a map[string]string as "": the variable is set, empty (e.g. to clear a proxy).
        out[k] = "" if v is None else _str(doc, f"{rel}.{k}", v)
    return out


# ---------------------------------------------------------------------------------------------------------
# Unknown-key warnings


class _EachKey:
    """Schema node for a map whose keys are names (InstanceTypes, InternalURLs): each value has ``schema``."""

    def __init__(self, schema: _Schema) -> None:
        self.schema = schema


# None: a leaf, or a section this dispatcher does not read (its contents are not checked).
_Schema = dict[str, "_Schema | _EachKey | None"] | _EachKey | None

_API_KEYS = ("AsyncPermissionsUpdateInterval DisabledAPIs FreezeProjectRequiresDescription "
             "FreezeProjectRequiresProperties KeepServiceRequestTimeout LockBeforeUpdate MaxConcurrentRailsRequests "
             "MaxConcurrentRequests MaxGatewayTunnels MaxIndexDatabaseRead MaxItemsPerResponse MaxKeepBlobBuffers "
             "MaxQueueTimeForLockRequests MaxQueuedRequests MaxRequestAmplification MaxRequestSize "
             "MaxTokenLifetime RequestTimeout SendTimeout UnfreezeProjectRequiresAdmin VocabularyPath "
             "WebsocketClientEventQueue WebsocketServerEventQueue")
_CONTAINERS_KEYS = ("AlwaysUsePreemptibleInstances CrunchRunArgumentsList CrunchRunCommand DefaultKeepCacheRAM "
                    "DispatchPrivateKey LSF LocalKeepBlobBuffersPerVCPU LocalKeepLogsToContainerLog "
                    "LogReuseDecisions Logging MaxDispatchAttempts MaxRetryAttempts MaximumPriceFactor "
                    "MinRetryPeriod PreemptiblePriceFactor ReserveExtraRAM RuntimeEngine ShellAccess "
                    "StaleLockTimeout SupportedDockerImageFormats")
_SERVICES = ("Composer ContainerWebServices Controller DispatchCloud DispatchLSF Health Keepbalance "
             "Keepproxy Keepstore RailsAPI WebDAV WebDAVDownload WebShell Websocket Workbench1 Workbench2")
_OTHER_SECTIONS = "AuditLogs Collections Login RemoteClusters StorageClasses Users Volumes Workbench"


def _leaves(names: str) -> dict[str, _Schema | _EachKey | None]:
    return dict.fromkeys(names.split())


_CLUSTER_SCHEMA: dict[str, _Schema | _EachKey | None] = {
    **_leaves(_OTHER_SECTIONS),
    "SystemRootToken": None,
    "ManagementToken": None,
    "API": _leaves(_API_KEYS),
    "TLS": {"Certificate": None, "Key": None, "Insecure": None, "ACME": None},
    "PostgreSQL": {"Connection": None, "ConnectionPool": None},
    "SystemLogs": _leaves("LogLevel Format MaxRequestLogParamsSize RequestQueueDumpDirectory"),
    "Services": {**_leaves(_SERVICES),
                 "DispatchSLURM": {"InternalURLs": _EachKey({"ListenURL": None}), "ExternalURL": None}},
    "Containers": {**_leaves(_CONTAINERS_KEYS),
                   "CloudVMs": None,
                   "SLURM": _leaves("PrioritySpread SbatchArgumentsList SbatchEnvironmentVariables "
                                    "SbatchGPUArgumentsList")},
    "InstanceTypes": _EachKey({
        **_leaves("ProviderType VCPUs RAM IncludedScratch AddedScratch Price Preemptible"),
        "GPU": _leaves("Stack DriverVersion HardwareTarget DeviceCount VRAM"),
    }),
}

_SPECIAL_HINTS = {
    "Containers.PollInterval": "is ignored: the documentation's name is wrong, the poll period is "
                               "Containers.CloudVMs.PollInterval",
    "RequestLimits": "is deprecated: use API.MaxItemsPerResponse",
    "InstanceTypes.*.Scratch": "is ignored: Scratch is computed as IncludedScratch + AddedScratch",
}


def _unknown_key_warnings(data: Mapping[str, Any], schema: _Schema, prefix: str, rel: str) -> list[str]:
    """Lists keys in ``data`` that ``schema`` does not know (Go's logExtraKeys, with a case hint)."""
    if schema is None or not isinstance(data, Mapping):
        return []
    out: list[str] = []
    if isinstance(schema, _EachKey):
        for name, value in data.items():
            star = f"{rel}.*" if rel else "*"
            out += _unknown_key_warnings(value, schema.schema, f"{prefix}.{name}", star)
        return out
    for key, value in data.items():
        child_rel = f"{rel}.{key}" if rel else key
        if key in schema:
            out += _unknown_key_warnings(value, schema[key], f"{prefix}.{key}", child_rel)
            continue
        hint = _SPECIAL_HINTS.get(child_rel)
        if hint:
            out.append(f"config entry {prefix}.{key} {hint}")
            continue
        similar = [k for k in schema if k.lower() == key.lower()]
        maybe = f" (perhaps you meant {similar[0]}?)" if similar else ""
        out.append(f"deprecated or unknown config entry: {prefix}.{key}{maybe}")
    return out


# ---------------------------------------------------------------------------------------------------------
# Cluster config -> fields


def _without_samples(node: Any) -> Any:
    """Returns ``node`` with every ``SAMPLE`` key removed and every map key made a string."""
    if isinstance(node, Mapping):
        return {str(k): _without_samples(v) for k, v in node.items() if k != "SAMPLE"}
    if isinstance(node, list):
        return [_without_samples(v) for v in node]
    return node


def select_cluster(document: object, *, source: str, cluster_id: str | None = None) -> tuple[str, Mapping[str, Any]]:
    """Returns ``(cluster_id, cluster_map)`` picked from a parsed cluster config.

    Pure.

    Raises:
        ConfigError: no ``Clusters`` map, several clusters and no ``cluster_id``, an unknown ``cluster_id``,
            or a cluster id that is not 5 lowercase alphanumerics.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("Clusters"), Mapping):
        raise ConfigError("expected a map with a Clusters key (Clusters: {<ClusterID>: {...}})", path=source,
                          key="Clusters")
    clusters = {str(k): v for k, v in document["Clusters"].items()}
    if not clusters:
        raise ConfigError("Clusters is empty: the config does not define any clusters", path=source,
                          key="Clusters")
    ids = ", ".join(sorted(clusters))
    if cluster_id is None:
        if len(clusters) > 1:
            raise ConfigError(f"the file defines several clusters ({ids}); choose one with --cluster-id",
                              path=source, key="Clusters")
        cluster_id = next(iter(clusters))
    elif cluster_id not in clusters:
        raise ConfigError(f"cluster {cluster_id!r} is not defined here (clusters: {ids})", path=source,
                          key=f"Clusters.{cluster_id}")
    if not _CLUSTER_ID_RE.match(cluster_id):
        raise ConfigError("cluster ID should be 5 lowercase alphanumeric characters", path=source,
                          key=f"Clusters.{cluster_id}", value=_show(cluster_id))
    body = clusters[cluster_id]
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"expected a map, got {_show(body)}", path=source, key=f"Clusters.{cluster_id}",
                          value=_show(body))
    return cluster_id, body


def _check_url(doc: _Doc, rel: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # requests would turn user:password into Basic auth in place of our Bearer token, and the URL is logged
        # and handed to every job as ARVADOS_API_HOST: refuse it, without echoing it.
        raise doc.error(rel, "a URL with user:password@ is not supported (the API token is SystemRootToken)", "<redacted>")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise doc.error(rel, f"expected a URL like https://host[:port]/, got {_show(url)}", url)
    return url


def _internal_urls(doc: _Doc) -> tuple[str, ...]:
    rel = "Services.DispatchSLURM.InternalURLs"
    raw = doc.typed(rel, _map)
    if raw is _MISSING:
        return ()
    urls: set[str] = set()
    for key, value in raw.items():
        _check_url(doc, f"{rel}.{key}", key)
        listen = ""
        if value is not None:
            entry = _map(doc, f"{rel}.{key}", value)
            if entry.get("ListenURL") not in (None, ""):
                listen = _check_url(doc, f"{rel}.{key}.ListenURL",
                                    _str(doc, f"{rel}.{key}.ListenURL", entry["ListenURL"]))
        urls.add(listen or key)
    return tuple(sorted(urls))


def _postgresql(doc: _Doc) -> dict[str, str]:
    rel = "PostgreSQL.Connection"
    raw = doc.typed(rel, _map)
    if raw is _MISSING:
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `port: 5432` is common; Go would refuse it, libpq wants text anyway.
        out[key] = _str(doc, f"{rel}.{key}", value)
    return out


def _instance_types(doc: _Doc) -> dict[str, InstanceType]:
    raw = doc.get("InstanceTypes")
    if raw is _MISSING:
        return {}
    if isinstance(raw, list):
        raise doc.error("InstanceTypes", "InstanceTypes must be a map of name to type, not a list", "[...]")
    types: dict[str, InstanceType] = {}
    for name, body in _map(doc, "InstanceTypes", raw).items():
        rel = f"InstanceTypes.{name}"
        sub = _Doc(_map(doc, rel, body if body is not None else {}), source=doc.source,
                   prefix=doc.full(rel), warnings=doc.warnings)

        def opt(key: str, convert: Callable[[_Doc, str, Any], T], default: T, sub: _Doc = sub) -> T:
            value = sub.typed(key, convert)
            return default if value is _MISSING else value

        gpu = InstanceTypeGPU(
            stack=opt("GPU.Stack", _str, ""),
            driver_version=opt("GPU.DriverVersion", _str, ""),
            hardware_target=opt("GPU.HardwareTarget", _str, ""),
            device_count=opt("GPU.DeviceCount", _nonneg_int, 0),
            vram=opt("GPU.VRAM", _size, 0),
        )
        types[name] = InstanceType(
            name=name,
            provider_type=opt("ProviderType", _str, "") or name,
            vcpus=opt("VCPUs", _nonneg_int, 0),
            ram=opt("RAM", _size, 0),
            included_scratch=opt("IncludedScratch", _size, 0),
            added_scratch=opt("AddedScratch", _size, 0),
            price=opt("Price", _nonneg_float, 0.0),
            preemptible=opt("Preemptible", _bool, False),
            gpu=gpu,
        )
    return types


def _enum(allowed: Sequence[str]) -> Callable[[_Doc, str, Any], str]:
    def convert(d: _Doc, r: str, value: Any) -> str:
        text = _str(d, r, value)
        if text not in allowed:
            raise d.error(r, f"{_show(text)} is not one of {', '.join(a for a in allowed if a)}", text)
        return text
    return convert


def _cluster_fields(doc: _Doc) -> dict[str, Any]:
    """Reads every key of §4.1 that is present; absent keys are left to Settings' defaults."""
    f: dict[str, Any] = {}

    def put(name: str, rel: str, convert: Callable[[_Doc, str, Any], Any]) -> None:
        value = doc.typed(rel, convert)
        if value is not _MISSING:
            f[name] = value

    put("system_root_token", "SystemRootToken", _str)
    put("management_token", "ManagementToken", _str)
    if doc.typed("Services.Controller.ExternalURL", _str) not in (_MISSING, ""):
        f["controller_url"] = _check_url(doc, "Services.Controller.ExternalURL",
                                         doc.get("Services.Controller.ExternalURL"))
    put("tls_insecure", "TLS.Insecure", _bool)
    f["dispatch_internal_urls"] = _internal_urls(doc)
    f["postgresql_connection"] = _postgresql(doc)
    doc.typed("PostgreSQL.ConnectionPool", _nonneg_int)  # validated; the dispatcher uses one connection
    put("batch_size", "API.MaxItemsPerResponse", _nonneg_int)
    old_batch = doc.typed("RequestLimits.MaxItemsPerResponse", _nonneg_int)
    if old_batch is not _MISSING:
        f["batch_size"] = old_batch
        doc.warnings.append(f"{doc.full('RequestLimits.MaxItemsPerResponse')} is deprecated; using its value "
                            f"{old_batch} for API.MaxItemsPerResponse (rename the key)")
    put("poll_interval", "Containers.CloudVMs.PollInterval", _duration)
    if f.get("poll_interval", 1.0) <= 0:
        bad = doc.get("Containers.CloudVMs.PollInterval")
        raise doc.error("Containers.CloudVMs.PollInterval",
                        f"must be greater than 0, got {_show(bad)} (e.g. \"10s\")", bad)
    put("min_retry_period", "Containers.MinRetryPeriod", _duration)
    put("reserve_extra_ram", "Containers.ReserveExtraRAM", _size)
    put("crunch_run_command", "Containers.CrunchRunCommand", _str)
    if f.get("crunch_run_command") == "":
        raise doc.error("Containers.CrunchRunCommand", "must not be empty, got ''", "")
    put("crunch_run_arguments", "Containers.CrunchRunArgumentsList", _str_list)
    put("runtime_engine", "Containers.RuntimeEngine", _enum(RUNTIME_ENGINES))
    put("priority_spread", "Containers.SLURM.PrioritySpread", _int)
    put("sbatch_arguments", "Containers.SLURM.SbatchArgumentsList", _str_list)
    put("sbatch_gpu_arguments", "Containers.SLURM.SbatchGPUArgumentsList", _str_list)
    put("sbatch_environment", "Containers.SLURM.SbatchEnvironmentVariables", _str_map)
    f["instance_types"] = _instance_types(doc)
    put("maximum_price_factor", "Containers.MaximumPriceFactor", _nonneg_float)
    put("local_keep_blob_buffers_per_vcpu", "Containers.LocalKeepBlobBuffersPerVCPU", _nonneg_int)
    put("preemptible_price_factor", "Containers.PreemptiblePriceFactor", _nonneg_float)
    put("log_level", "SystemLogs.LogLevel", _enum(LOG_LEVELS + ("",)))
    put("log_format", "SystemLogs.Format", _enum(LOG_FORMATS + ("",)))
    for name in ("log_level", "log_format"):
        if f.get(name) == "":
            del f[name]  # Go treats an empty level/format as the default
    # Server-side keys the emulator needs; validated so a typo is caught here rather than there.
    doc.typed("Containers.MaxDispatchAttempts", _nonneg_int)
    doc.typed("Containers.DefaultKeepCacheRAM", _size)
    return f


# ---------------------------------------------------------------------------------------------------------
# Environment and legacy file


def _env_fill(f: dict[str, Any], environ: Mapping[str, str], warnings: list[str]) -> None:
    """Fills an empty token/controller URL from ARVADOS_API_* (Go: loadOldEnvironmentVariables)."""
    token = environ.get("ARVADOS_API_TOKEN", "")
    if token and not f.get("system_root_token"):
        f["system_root_token"] = token
        warnings.append("SystemRootToken missing from cluster config, using the ARVADOS_API_TOKEN "
                        "environment variable")
    host = environ.get("ARVADOS_API_HOST", "").strip().rstrip("/")
    if host and not f.get("controller_url"):
        url = f"https://{host}/"
        if "/" in host or not urlsplit(url).hostname:
            raise ConfigError(f"cannot parse ARVADOS_API_HOST {_show(host)}: expected host[:port]",
                              key="ARVADOS_API_HOST", value=_show(host))
        f["controller_url"] = url
        warnings.append("Services.Controller.ExternalURL missing from cluster config, using the "
                        "ARVADOS_API_HOST(_INSECURE) environment variables")
        insecure = environ.get("ARVADOS_API_HOST_INSECURE", "")
        if insecure not in ("", "0"):
            f["tls_insecure"] = True


_LEGACY_KEYS = ("Client", "SbatchArguments", "PollPeriod", "PrioritySpread", "CrunchRunCommand",
                "ReserveExtraRAM", "MinRetryPeriod", "BatchSize")
_LEGACY_CLIENT_KEYS = ("APIHost", "AuthToken", "Insecure", "KeepServiceURIs", "Scheme", "Timeout")
_REQUIRED_SBATCH = (("--job-name", "-J"), ("--mem",), ("--cpus-per-task", "-c"), ("--tmp",))


def _mentions(args: Sequence[str], options: Sequence[str]) -> bool:
    return any(a == o or a.startswith(o + "=") or (o.startswith("-") and len(o) == 2 and a.startswith(o))
               for a in args for o in options)


def _apply_legacy(f: dict[str, Any], data: Mapping[str, Any], *, source: str, warnings: list[str]) -> None:
    """Applies the legacy standalone file over ``f`` (Go: loadOldCrunchDispatchSlurmConfig)."""
    doc = _Doc(data, source=source, prefix="", warnings=warnings)
    for key in data:
        if key not in _LEGACY_KEYS:
            warnings.append(f"{source}: unknown legacy config entry {key} (ignored)")
    client = doc.typed("Client", _map)
    if client is not _MISSING:
        for key in client:
            if key not in _LEGACY_CLIENT_KEYS:
                warnings.append(f"{source}: unknown legacy config entry Client.{key} (ignored)")
        host = doc.typed("Client.APIHost", _str)
        scheme = doc.typed("Client.Scheme", _str)
        scheme = "https" if scheme in (_MISSING, "") else scheme
        if host not in (_MISSING, ""):
            f["controller_url"] = _check_url(doc, "Client.APIHost", f"{scheme}://{host}/")
        elif f.get("controller_url"):
            f["controller_url"] = urlunsplit(urlsplit(f["controller_url"])._replace(scheme=scheme))
        token = doc.typed("Client.AuthToken", _str)
        if token not in (_MISSING, ""):
            f["system_root_token"] = token
        insecure = doc.typed("Client.Insecure", _bool)
        f["tls_insecure"] = False if insecure is _MISSING else insecure
        uris = doc.typed("Client.KeepServiceURIs", _str_list)
        old_env = f.get("sbatch_environment") or {}
        if old_env and set(old_env) != {"ARVADOS_KEEP_SERVICES"}:
            warnings.append(f"{source}: the legacy Client section replaces the whole "
                            "Containers.SLURM.SbatchEnvironmentVariables map; dropped: "
                            + ", ".join(sorted(k for k in old_env if k != "ARVADOS_KEEP_SERVICES")))
        # As in Go, any Client section sets ARVADOS_KEEP_SERVICES, even to "" (crunch-run then discovers).
        f["sbatch_environment"] = {"ARVADOS_KEEP_SERVICES": " ".join(() if uris is _MISSING else uris)}
    sbatch = doc.typed("SbatchArguments", _str_list)
    if sbatch is not _MISSING:
        f["sbatch_arguments"] = sbatch
        missing = [opts[0] for opts in _REQUIRED_SBATCH if not _mentions(sbatch, opts)]
        if missing:
            warnings.append(
                f"{source}: SbatchArguments replaces the whole Containers.SLURM.SbatchArgumentsList template "
                f"verbatim and lacks {', '.join(missing)}; the default template starts "
                "--job-name=%U --mem=%M --cpus-per-task=%C --tmp=%T (without --job-name=%U every job looks "
                "gone); move SbatchArguments into the cluster config and add them")
    poll = doc.typed("PollPeriod", _duration)
    if poll is not _MISSING:
        if poll <= 0:
            raise doc.error("PollPeriod", f"must be greater than 0, got {_show(data['PollPeriod'])}",
                            data["PollPeriod"])
        f["poll_interval"] = poll
    spread = doc.typed("PrioritySpread", _int)
    if spread is not _MISSING:
        f["priority_spread"] = spread
    command = doc.typed("CrunchRunCommand", _str_list)
    if command is not _MISSING:
        if len(command) >= 1:
            f["crunch_run_command"] = command[0]
        if len(command) >= 2:
            f["crunch_run_arguments"] = command[1:]
    extra = doc.typed("ReserveExtraRAM", _nonneg_int)
    if extra is not _MISSING:
        f["reserve_extra_ram"] = extra
    retry = doc.typed("MinRetryPeriod", _duration)
    if retry is not _MISSING:
        f["min_retry_period"] = retry
    batch = doc.typed("BatchSize", _nonneg_int)
    if batch is not _MISSING:
        f["batch_size"] = batch


def _with_preemptible(types: Mapping[str, InstanceType], factor: float, *, label: str,
                      warnings: list[str]) -> dict[str, InstanceType]:
    """Adds ``<name>.preemptible`` variants priced ``price × factor`` (Go: autofillPreemptible)."""
    out = dict(types)
    if factor <= 0:
        return out
    for name, it in types.items():
        if it.preemptible:
            continue
        variant = InstanceType(name=f"{name}.preemptible", provider_type=it.provider_type, vcpus=it.vcpus,
                               ram=it.ram, included_scratch=it.included_scratch,
                               added_scratch=it.added_scratch, price=it.price * factor, preemptible=True,
                               gpu=it.gpu)
        existing = out.get(variant.name)
        if existing is not None and existing != variant:
            warnings.append(f"{label}.InstanceTypes.{variant.name} already exists, so no preemptible variant "
                            f"of {name} was added automatically")
            continue
        out[variant.name] = variant
    return out


def settings_from_documents(
    cluster_document: object,
    *,
    source: str,
    cluster_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    legacy_document: object = None,
    legacy_source: str = "",
) -> tuple[Settings, list[str]]:
    """Returns the Settings and warnings for parsed YAML documents: the core of ``load_settings``.

    Pure: takes what ``yaml.safe_load`` returned, does no I/O and reads no globals.

    Args:
        cluster_document: the parsed cluster config, or None when there is none (then ``cluster_id`` is
            required and every key takes its default).
        source: the cluster config's path, for messages.
        cluster_id: which cluster to use when the file defines several.
        environ: ARVADOS_API_TOKEN / ARVADOS_API_HOST / ARVADOS_API_HOST_INSECURE fill empty keys.
        legacy_document: the parsed legacy standalone file, or None.
        legacy_source: the legacy file's path, for messages.

    Raises:
        ConfigError: naming the file, the full key and the bad value (never a secret).
    """
    warnings: list[str] = []
    body: Mapping[str, Any]
    if cluster_document is None:
        if cluster_id is None:
            raise ConfigError("no cluster config to read the cluster ID from; pass --config <cluster config> "
                              "or --cluster-id", path=source)
        if not _CLUSTER_ID_RE.match(cluster_id):
            raise ConfigError("cluster ID should be 5 lowercase alphanumeric characters", path=source,
                              key="--cluster-id", value=_show(cluster_id))
        cid, body = cluster_id, {}
    else:
        if isinstance(cluster_document, Mapping):
            for key in cluster_document:
                if key not in ("Clusters", "SourceTimestamp", "SourceSHA256"):
                    warnings.append(f"deprecated or unknown config entry: {key}")
        cid, body = select_cluster(cluster_document, source=source, cluster_id=cluster_id)
    body = _without_samples(body)
    prefix = f"Clusters.{cid}"
    warnings += _unknown_key_warnings(body, _CLUSTER_SCHEMA, prefix, "")
    doc = _Doc(body, source=source, prefix=prefix, warnings=warnings)
    fields = _cluster_fields(doc)
    _env_fill(fields, environ or {}, warnings)
    if legacy_document is not None:
        if not isinstance(legacy_document, Mapping):
            raise ConfigError(f"expected a map of legacy keys, got {_show(legacy_document)}", path=legacy_source)
        warnings.append(f"you should remove the legacy crunch-dispatch-slurm config file ({legacy_source}) "
                        f"after migrating its keys to the cluster configuration file ({source})")
        _apply_legacy(fields, _without_samples(legacy_document), source=legacy_source, warnings=warnings)
    if fields.get("batch_size") == 0:
        fields["batch_size"] = 100  # Go's dispatcher: 0 means its own default page size
    fields["instance_types"] = _with_preemptible(
        fields["instance_types"], fields.get("preemptible_price_factor", 0.0), label=prefix, warnings=warnings)
    if not fields["dispatch_internal_urls"]:
        warnings.append(f"{prefix}.Services.DispatchSLURM.InternalURLs is empty: the service will refuse to "
                        "start (it needs the address for its health/metrics server)")
    return Settings(cluster_id=cid, **fields), warnings


# ---------------------------------------------------------------------------------------------------------
# Checks and display


def _template_arg_problem(arg: str) -> str | None:
    """Returns the first unknown ``%x`` in one argument, or None (Go's regexp ``%.``: ``.`` skips newline)."""
    i = 0
    while i < len(arg):
        if arg[i] == "%" and i + 1 < len(arg) and arg[i + 1] != "\n":
            if arg[i + 1] not in TEMPLATE_TOKENS:
                return "%" + arg[i + 1]
            i += 2
        else:
            i += 1
    return None


def _has_job_name(args: Sequence[str]) -> bool:
    pairs = zip(args, list(args[1:]) + [""], strict=True)
    return any(a in ("--job-name=%U", "-J%U") or (a in ("--job-name", "-J") and b == "%U") for a, b in pairs)


def template_problems(settings: Settings) -> list[str]:
    """Returns human messages for sbatch templates the service must refuse (gotchas 21 and 23).

    Checks SbatchArgumentsList and SbatchGPUArgumentsList for an unknown ``%x`` (anything but
    ``%U %C %M %T %G %W %P %I %%``; a lone trailing ``%`` is fine) and SbatchArgumentsList for
    ``--job-name=%U``, without which every job looks gone and containers are unlocked and relocked forever.
    Pure.
    """
    prefix = f"Clusters.{settings.cluster_id}.Containers.SLURM"
    problems: list[str] = []
    for key, args in (("SbatchArgumentsList", settings.sbatch_arguments),
                      ("SbatchGPUArgumentsList", settings.sbatch_gpu_arguments)):
        for i, arg in enumerate(args):
            bad = _template_arg_problem(arg)
            if bad is not None:
                problems.append(f"{prefix}.{key}[{i}] {arg!r}: unknown substitution parameter {bad!r} "
                                "(known: %U %C %M %T %G %W %P %I %%); every sbatch would fail")
    if not _has_job_name(settings.sbatch_arguments):
        problems.append(f"{prefix}.SbatchArgumentsList lacks --job-name=%U: squeue finds jobs by that name, "
                        "so every job would look gone and its container would be unlocked and relocked "
                        "endlessly")
    return problems


def startup_problems(settings: Settings) -> list[str]:
    """Returns every reason the service must refuse to start: ``template_problems`` plus missing InternalURLs.

    Pure.
    """
    problems = template_problems(settings)
    key = f"Clusters.{settings.cluster_id}.Services.DispatchSLURM.InternalURLs"
    if not settings.dispatch_internal_urls:
        problems.append(f"{key} is empty: could "
                        "not enable the \"crunch-dispatch-slurm\" service (add e.g. "
                        "\"http://localhost:9006\": {})")
    for url in settings.dispatch_internal_urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "http" or port is None:
            problems.append(f"{key}: {url!r} cannot serve the health and metrics endpoint: it must be "
                            "http:// with an explicit port (e.g. \"http://localhost:9006\")")
    return problems


def _secret(value: str) -> str:
    return REDACTED if value else ""


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{REDACTED}@{netloc}"))


def _env_value(name: str, value: str) -> str:
    return REDACTED if value and any(w in name.upper() for w in _SECRET_ENV_WORDS) else value


def redacted(settings: Settings) -> dict[str, Any]:
    """Returns the effective settings as a JSON-able dict, secrets replaced by ``<redacted>``.

    Hidden: SystemRootToken, ManagementToken, the PostgreSQL password, a password inside the controller URL,
    and SbatchEnvironmentVariables values whose name contains TOKEN, SECRET, PASSWORD, PASSWD or KEY.
    An empty secret shows as ``""`` so "not set" stays visible. Pure.
    """
    def it_dict(it: InstanceType) -> dict[str, Any]:
        return {"name": it.name, "provider_type": it.provider_type, "vcpus": it.vcpus, "ram": it.ram,
                "included_scratch": it.included_scratch, "added_scratch": it.added_scratch,
                "scratch": it.scratch, "price": it.price, "preemptible": it.preemptible,
                "gpu": {"stack": it.gpu.stack, "driver_version": it.gpu.driver_version,
                        "hardware_target": it.gpu.hardware_target, "device_count": it.gpu.device_count,
                        "vram": it.gpu.vram}}

    s = settings
    return {
        "cluster_id": s.cluster_id,
        "system_root_token": _secret(s.system_root_token),
        "controller_url": _redact_url(s.controller_url),
        "tls_insecure": s.tls_insecure,
        "dispatch_internal_urls": list(s.dispatch_internal_urls),
        "management_token": _secret(s.management_token),
        "postgresql_connection": {k: (_secret(v) if k.lower() in _SECRET_CONNECTION_KEYS else v)
                                  for k, v in sorted(s.postgresql_connection.items())},
        "batch_size": s.batch_size,
        "poll_interval": s.poll_interval,
        "min_retry_period": s.min_retry_period,
        "reserve_extra_ram": s.reserve_extra_ram,
        "crunch_run_command": s.crunch_run_command,
        "crunch_run_arguments": list(s.crunch_run_arguments),
        "runtime_engine": s.runtime_engine,
        "priority_spread": s.priority_spread,
        "sbatch_arguments": list(s.sbatch_arguments),
        "sbatch_gpu_arguments": list(s.sbatch_gpu_arguments),
        "sbatch_environment": {k: _env_value(k, v) for k, v in sorted(s.sbatch_environment.items())},
        "instance_types": {name: it_dict(it) for name, it in sorted(s.instance_types.items())},
        "maximum_price_factor": s.maximum_price_factor,
        "local_keep_blob_buffers_per_vcpu": s.local_keep_blob_buffers_per_vcpu,
        "preemptible_price_factor": s.preemptible_price_factor,
        "log_level": s.log_level,
        "log_format": s.log_format,
        # slurm-dispatch's own settings (none of them is a secret)
        "dispatch_config_path": s.dispatch_config_path,
        "never_runnable_reasons": list(s.never_runnable_reasons),
        "never_runnable_grace": s.never_runnable_grace,
        "max_run_time_overhead": s.max_run_time_overhead,
        "default_max_run_time": s.default_max_run_time,
        "time_limit_signal": s.time_limit_signal,
        "max_containers_in_slurm": s.max_containers_in_slurm,
        "max_submits_per_minute": s.max_submits_per_minute,
        "supervisor_fraction": s.supervisor_fraction,
        "max_supervisors": s.max_supervisors,
        "supervisor_sbatch_arguments": list(s.supervisor_sbatch_arguments),
        "broken_node_action": s.broken_node_action,
        "broken_node_hold": s.broken_node_hold,
        "state_directory": s.state_directory,
    }


# ---------------------------------------------------------------------------------------------------------
# I/O


def resolve_config_path(path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, PathSource]:
    """Returns the cluster config path and why: an explicit path, else $ARVADOS_CONFIG, else the default.

    Pure.
    """
    if path is not None and str(path) != "":
        return Path(path), PathSource.ARGUMENT
    if environ.get("ARVADOS_CONFIG"):
        return Path(environ["ARVADOS_CONFIG"]), PathSource.ENVIRONMENT
    return DEFAULT_CONFIG_PATH, PathSource.DEFAULT


def _read_yaml(path: Path, *, what: str, hint: str) -> object:
    """Returns the parsed YAML in ``path``. Reads the file.

    Raises:
        ConfigError: missing or unreadable file, or a YAML syntax error (with line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found; {hint}", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {what}: {reason}", path=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {where}{problem}", path=str(path)) from None


def load_settings(
    *,
    path: str | Path | None = None,
    cluster_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    legacy_path: str | Path | None = None,
    skip_legacy: bool = False,
) -> LoadedConfig:
    """Returns the validated settings of one cluster, read once from the config file(s).

    Reads (never writes) the cluster config, and the legacy standalone file when present; otherwise pure.

    Args:
        path: the cluster config (``--config``). None means ``$ARVADOS_CONFIG``, else /etc/arvados/config.yml.
            A file with no ``Clusters`` key is read as the legacy file (with a warning), and the cluster
            config then comes from ``$ARVADOS_CONFIG`` or the default path if that exists.
        cluster_id: which cluster, when the file defines several.
        environ: the environment (default ``os.environ``) for ARVADOS_CONFIG and ARVADOS_API_*.
        legacy_path: the legacy file; None means DEFAULT_LEGACY_PATH, skipped when missing. A path given
            here must exist.
        skip_legacy: do not look for the legacy file at all (Go's ``-skip-legacy``).

    Raises:
        ConfigError: missing/unreadable file, bad YAML, or any invalid key (naming file, key and value).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    main_path, main_source = resolve_config_path(path, env)
    document = _read_yaml(main_path, what="config file",
                          hint="pass --config <file> or set ARVADOS_CONFIG to the cluster config")
    if document is None:
        raise ConfigError("the config file is empty; expected Clusters: {<ClusterID>: {...}}",
                          path=str(main_path))
    warnings: list[str] = []
    cluster_doc: object = document
    cluster_path = main_path
    legacy_doc: object = None
    legacy_read: Path | None = None
    if isinstance(document, Mapping) and "Clusters" not in document:
        if legacy_path is not None:
            raise ConfigError("this is not a cluster config file (no Clusters key), and a legacy file was "
                              f"also given ({legacy_path}); pass the cluster config as --config",
                              path=str(main_path))
        warnings.append(f"{main_path} is not a cluster config file (no Clusters key): reading it as the legacy "
                        "crunch-dispatch-slurm config (please migrate your config!)")
        legacy_doc, legacy_read = document, main_path
        fallback, _ = resolve_config_path(None, env)
        cluster_doc = None
        if fallback != main_path and fallback.exists():
            cluster_path = fallback
            cluster_doc = _read_yaml(fallback, what="config file", hint="")
    elif not skip_legacy:
        candidate = DEFAULT_LEGACY_PATH if legacy_path is None else Path(legacy_path)
        if legacy_path is not None or candidate.exists():
            legacy_doc = _read_yaml(candidate, what="legacy crunch-dispatch-slurm config file",
                                    hint="check --legacy-crunch-dispatch-slurm-config")
            legacy_read = candidate
            if legacy_doc is None:
                legacy_doc = {}
    settings, more = settings_from_documents(
        cluster_doc, source=str(cluster_path), cluster_id=cluster_id, environ=env,
        legacy_document=legacy_doc, legacy_source=str(legacy_read or ""))
    return LoadedConfig(settings=settings, warnings=warnings + more, path=main_path, path_source=main_source,
                        legacy_path=legacy_read, cluster_path=cluster_path if cluster_doc is not None else None)
