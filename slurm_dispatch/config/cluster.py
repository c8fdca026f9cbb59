"""The cluster section of the config: which cluster, and its keys read into Settings fields.

Owns ``select_cluster`` (the ``Clusters.<id>`` to use), ``cluster_fields`` (every key the dispatcher reads,
typed and range-checked through ``document``'s and ``limits``'s converters), the URL check shared with the legacy file, and
``with_preemptible`` (the ``<name>.preemptible`` instance types Go's loader adds). Pure: takes parsed YAML.

Deliberate differences from Go, all refusing a config Go would misread or that would fail later:

* The ranges and character rules of ``limits`` (a PollInterval from 100ms to 24h, where Go's ticker panics
  on 0; tokens of printable ASCII; no control characters in what becomes argv or an environment; instance
  type names usable as Slurm features; PrioritySpread and API.MaxItemsPerResponse bounded).
* ``PostgreSQL.Connection`` keys must be libpq keywords, each once in any case (Go's checkKeyConflict).
* ``PostgreSQL.Connection``'s ``port`` may be an integer (``port: 5432``); it becomes a string (other keys must be
  quoted: an unquoted ``0755`` would be 493), and must be a port number from 1 to 65535. Empty values are
  dropped, so an unset connection is ``{}``.
* When ``Services.DispatchSLURM.InternalURLs.<url>.ListenURL`` is set, that is the address recorded in
  ``dispatch_internal_urls`` (it is where Go's service listens); otherwise the ``<url>`` key itself
  (``internal_url_entries``; ``environment.service_url_override`` narrows it to one entry when
  ARVADOS_SERVICE_INTERNAL_URL is set).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from slurm_dispatch.config.document import (
    MISSING,
    Doc,
    T,
    as_bool,
    as_enum,
    as_map,
    as_nonneg_float,
    as_nonneg_int,
    as_size,
    as_str,
)
from slurm_dispatch.config.limits import (
    MAX_ITEMS_PER_RESPONSE,
    MAX_PRICE_FACTOR,
    MAX_PRIORITY_SPREAD,
    as_command,
    as_env_map,
    as_feature_name,
    as_int_in,
    as_poll_interval,
    as_retry_period,
    as_text,
    as_text_list,
    as_token,
)
from slurm_dispatch.config.redact import SECRET_CONNECTION_KEYS, printable, show
from slurm_dispatch.config.schema import key_text
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import InstanceType, InstanceTypeGPU
from slurm_dispatch.slurm.instance_types import parse_version

RUNTIME_ENGINES = ("docker", "singularity")
LOG_LEVELS: Mapping[str, int] = {
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,  # logrus has a level below debug; Python's logging does not
}
"""SystemLogs.LogLevel: the names Go accepts (sdk/go/ctxlog: setLevel calls logrus.ParseLevel, in any case) and
the Python level each becomes. The one list: service.logging_setup uses it too."""
LOG_FORMATS = ("json", "text", "plain")
"""SystemLogs.Format: the names Go accepts (sdk/go/ctxlog/log.go: setFormat; ``plain`` is text without the time)."""
CLUSTER_ID_RE = re.compile(r"\A[a-z0-9]{5}\Z")
"""lib/config/load.go: Loader.checkClusterID. Anchored with \\A and \\Z, not ^ and $: Python's $ also matches
before a final newline (Go's does not), and "zzzzz\\n" would pass. Use ``fullmatch``."""
LIBPQ_KEYWORD_RE = re.compile(r"\A[a-z_][a-z0-9_]*\Z")
"""A libpq connection keyword (lower-cased). The one definition: the loader refuses other
PostgreSQL.Connection keys, and service.locks.conninfo refuses them too, since anything else in a conninfo
string could inject other settings."""

as_spread = as_int_in(low=None, high=MAX_PRIORITY_SPREAD,
                      reason="larger spreads push a long queue's nice values past Slurm's limit")
"""PrioritySpread: any integer up to MAX_PRIORITY_SPREAD (0 or less means 10)."""
as_page_size = as_int_in(low=0, high=MAX_ITEMS_PER_RESPONSE, reason="no Arvados server returns pages that large")
"""API.MaxItemsPerResponse and its old names: 0 (meaning 100) to MAX_ITEMS_PER_RESPONSE."""


def as_log_level(doc: Doc, rel: str, value: Any) -> str:
    """Returns SystemLogs.LogLevel lower-cased: one of LOG_LEVELS in any case, or ``""``. Raises ConfigError."""
    text = as_str(doc, rel, value)
    if text != "" and text.lower() not in LOG_LEVELS:
        raise doc.error(rel, f"{show(text)} is not one of {', '.join(LOG_LEVELS)}", text)
    return text.lower()


def as_price_factor(doc: Doc, rel: str, value: Any) -> float:
    """Returns MaximumPriceFactor / PreemptiblePriceFactor: a number from 0 to 1000. Raises ConfigError."""
    factor = as_nonneg_float(doc, rel, value)
    if factor > MAX_PRICE_FACTOR:
        raise doc.error(rel, f"must be at most {MAX_PRICE_FACTOR:g}, got {show(value)}", value)
    return factor


def clusters_case_hint(document: object) -> str:
    """Returns ``"; found 'clusters': keys are case-sensitive, write Clusters"`` when ``document`` has no ``Clusters``
    key but one that differs only in case, else ``""``. Pure."""
    if not isinstance(document, Mapping) or "Clusters" in document:
        return ""
    for key in document:
        if isinstance(key, str) and key.casefold() == "clusters":
            return f"; found {printable(key)!r}: keys are case-sensitive, write Clusters"
    return ""


def select_cluster(document: object, *, source: str, cluster_id: str | None = None) -> tuple[str, Mapping[str, Any]]:
    """Returns ``(cluster_id, cluster_map)`` picked from a parsed cluster config.

    Pure.

    Raises:
        ConfigError: no ``Clusters`` map, a cluster ID (of any cluster) that is not 5 lowercase alphanumerics,
            several clusters and no ``cluster_id``, or an unknown ``cluster_id``.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("Clusters"), Mapping):
        raise ConfigError("expected a map with a Clusters key (Clusters: {<ClusterID>: {...}})"
                          + clusters_case_hint(document), path=source, key="Clusters")
    # SAMPLE entries go first, as lib/config/load.go: Loader.Load calls removeSampleKeys before it checks the IDs
    clusters = {key_text(k): v for k, v in document["Clusters"].items() if key_text(k) != "SAMPLE"}
    if not clusters:
        raise ConfigError("Clusters is empty: the config does not define any clusters", path=source,
                          key="Clusters")
    for other in clusters:  # every cluster, as lib/config/load.go: Loader.Load checks them (checkClusterID)
        if not CLUSTER_ID_RE.fullmatch(other):
            raise ConfigError("cluster ID should be 5 lowercase alphanumeric characters", path=source,
                              key=printable(f"Clusters.{other}"), value=show(other))
    ids = ", ".join(sorted(clusters))
    if cluster_id is None:
        if len(clusters) > 1:
            raise ConfigError(f"the file defines several clusters ({printable(ids)}); choose one with --cluster-id",
                              path=source, key="Clusters")
        cluster_id = next(iter(clusters))
    elif cluster_id not in clusters:
        raise ConfigError(f"cluster {cluster_id!r} is not defined here (clusters: {printable(ids)})",
                          path=source, key=printable(f"Clusters.{cluster_id}"))
    body = clusters[cluster_id]
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"expected a map, got {show(body)}", path=source, key=f"Clusters.{cluster_id}",
                          value=show(body))
    return cluster_id, body


def has_userinfo(url: str) -> bool:
    """Returns whether ``url`` has a ``user[:password]@`` part, found in the text alone (before any parsing, which
    may fail and then quote the URL)."""
    authority = url.split("://", 1)[-1]
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return "@" in authority


def check_url(doc: Doc, rel: str, url: str) -> str:
    """Returns ``url`` if it is ``http(s)://host[:port]...`` with no ``user:password@``. Pure.

    Raises:
        ConfigError: naming ``rel``: unparsable, no scheme or host, a port out of range, whitespace or a
            control character; a URL with ``user:password@`` is refused first, and never shown.
    """
    if has_userinfo(url):
        # requests would turn user:password into Basic auth in place of our Bearer token, and the URL is logged
        # and handed to every job as ARVADOS_API_HOST: refuse it, without echoing it.
        raise doc.error(rel, "a URL with user:password@ is not supported (the API token is SystemRootToken)", "<redacted>")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port raises ValueError when it is not 0-65535
    except ValueError as exc:
        raise doc.error(rel, f"expected a URL like https://host[:port]/, got {show(url)} ({exc})", url) from None
    if any(ch.isspace() for ch in url) or not url.isprintable():
        raise doc.error(rel, f"a URL must not contain whitespace or control characters, got {show(url)}", url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise doc.error(rel, f"expected a URL like https://host[:port]/, got {show(url)}", url)
    return url


def host_port_url(doc: Doc, rel: str, host: str, scheme: str) -> str:
    """Returns ``<scheme>://<host>/`` for a ``host[:port]`` (ARVADOS_API_HOST, the legacy ``Client.APIHost``). Pure.

    Go takes the text as the URL's host as it is: lib/config/deprecated.go: loadOldEnvironmentVariables parses
    ``"https://" + ARVADOS_API_HOST``, loadOldClientConfig sets ``ExternalURL.Host = APIHost``, and the dispatcher
    then uses only the host. So a scheme (``https://h`` became ``https://https://h/``), a path or a
    ``user:password@`` (which would reach log lines and every job's ARVADOS_API_HOST) is refused here, on one
    line that never shows a password.

    A trailing ``/`` is dropped (``h.example/`` works in Go: the URL it makes has that host and the path ``/``).

    Raises:
        ConfigError: naming ``rel``, when ``host`` is not ``host[:port]``.
    """
    host = host.rstrip("/")
    if "@" in host:
        raise doc.error(rel, "expected host[:port]; user:password@ is not supported (the API token is "
                        "SystemRootToken, or ARVADOS_API_TOKEN)", "<redacted>")
    if "://" in host:
        bare = host.split("://", 1)[1]
        raise doc.error(rel, f"expected host[:port] without a scheme, got {show(host)} (write {show(bare)})", host)
    url = f"{scheme}://{host}/"
    if "/" in host or "?" in host or "#" in host or not host.isprintable() or any(ch.isspace() for ch in host):
        raise doc.error(rel, f"expected host[:port], got {show(host)}", host)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when the port is not 0-65535
    except ValueError as exc:
        raise doc.error(rel, f"expected host[:port], got {show(host)} ({exc})", host) from None
    if not parts.hostname:
        raise doc.error(rel, f"expected host[:port], got {show(host)}", host)
    return check_url(doc, rel, url)


def internal_url_entries(doc: Doc) -> dict[str, str]:
    """Returns each ``Services.DispatchSLURM.InternalURLs`` key with the URL its process listens on: its
    ``ListenURL`` when set, else the key itself. Pure.

    Raises:
        ConfigError: a key or a ListenURL is not a usable URL (``check_url``), or an entry is not a map.
    """
    rel = "Services.DispatchSLURM.InternalURLs"
    raw = doc.typed(rel, as_map)
    if raw is MISSING:
        return {}
    entries: dict[str, str] = {}
    for key, value in raw.items():
        check_url(doc, f"{rel}.{key}", key)
        listen = ""
        if value is not None:
            entry = as_map(doc, f"{rel}.{key}", value)
            if entry.get("ListenURL") not in (None, ""):
                listen = check_url(doc, f"{rel}.{key}.ListenURL",
                                   as_str(doc, f"{rel}.{key}.ListenURL", entry["ListenURL"]))
        entries[key] = listen or key
    return entries


def _internal_urls(doc: Doc) -> tuple[str, ...]:
    return tuple(sorted(set(internal_url_entries(doc).values())))


def _postgresql(doc: Doc) -> dict[str, str]:
    rel = "PostgreSQL.Connection"
    raw = doc.typed(rel, as_map)
    if raw is MISSING:
        return {}
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in raw.items():
        if not LIBPQ_KEYWORD_RE.fullmatch(key.lower()):
            raise doc.error(f"{rel}.{key}", "not a libpq connection keyword (letters, digits and _)", key)
        if key.lower() in seen:
            # lib/config/load.go: checkKeyConflict; libpq would take one of them, unpredictably.
            raise doc.error(rel, f"multiple entries for {key.lower()!r} (keywords are case-insensitive)", key)
        seen.add(key.lower())
        if value is None or value == "":
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            if key.lower() != "port":  # an unquoted password 0755 would be the number 493: quote it, as Go requires
                raise doc.error(f"{rel}.{key}", "must be a quoted string (Arvados reads these values as text, and an "
                                "unquoted number may not be what was written: 0755 is 493)", "<number>")
            value = str(value)  # `port: 5432` is common; Go would refuse it, libpq wants text anyway.
        out[key] = text = as_text(doc, f"{rel}.{key}", value, secret=key.lower() in SECRET_CONNECTION_KEYS)
        if key.lower() == "port" and not (text.isascii() and text.isdigit() and len(text) <= 5
                                          and 1 <= int(text) <= 65535):
            raise doc.error(f"{rel}.{key}", f"must be a TCP port number from 1 to 65535, got {show(text)}", text)
    return out


def _instance_types(doc: Doc) -> dict[str, InstanceType]:
    raw = doc.get("InstanceTypes")
    if raw is MISSING:
        return {}
    if isinstance(raw, list):
        raise doc.error("InstanceTypes", "InstanceTypes must be a map of name to type, not a list", "[...]")
    types: dict[str, InstanceType] = {}
    for name, body in as_map(doc, "InstanceTypes", raw).items():
        rel = f"InstanceTypes.{name}"
        as_feature_name(doc, rel, name)
        sub = Doc(as_map(doc, rel, body if body is not None else {}), source=doc.source,
                  prefix=doc.full(rel), warnings=doc.warnings)

        def opt(key: str, convert: Callable[[Doc, str, Any], T], default: T, sub: Doc = sub) -> T:
            value = sub.typed(key, convert)
            return default if value is MISSING else value

        if sub.get("CUDA") is not MISSING:
            # A config written for Arvados 3.1 or 3.2, whose loader turns CUDA into GPU (and it wins over a GPU
            # section): lib/config/deprecated.go: applyDeprecatedConfig, as of 3.2.1.
            doc.warnings.append(f"InstanceType {name!r} has deprecated CUDA section, should be migrated to GPU "
                                "section")
            gpu = InstanceTypeGPU(
                stack="cuda",
                driver_version=opt("CUDA.DriverVersion", as_text, ""),
                hardware_target=opt("CUDA.HardwareCapability", as_text, ""),
                device_count=opt("CUDA.DeviceCount", as_nonneg_int, 0),
                vram=0,
            )
        else:
            gpu = InstanceTypeGPU(
                stack=opt("GPU.Stack", as_text, ""),
                driver_version=opt("GPU.DriverVersion", as_text, ""),
                hardware_target=opt("GPU.HardwareTarget", as_text, ""),
                device_count=opt("GPU.DeviceCount", as_nonneg_int, 0),
                vram=opt("GPU.VRAM", as_size, 0),
            )
        if gpu.device_count and parse_version(gpu.driver_version) is None:
            # lib/config/load.go: checkGPUVersions (instance_types compares driver versions as numbers)
            raise doc.error(f"{rel}.GPU.DriverVersion", f"InstanceType {name!r} has invalid GPU.DriverVersion "
                            f"{gpu.driver_version!r}, expected format X.Y", gpu.driver_version)
        types[name] = InstanceType(
            name=name,
            provider_type=opt("ProviderType", as_text, "") or name,
            vcpus=opt("VCPUs", as_nonneg_int, 0),
            ram=opt("RAM", as_size, 0),
            included_scratch=opt("IncludedScratch", as_size, 0),
            added_scratch=opt("AddedScratch", as_size, 0),
            price=opt("Price", as_nonneg_float, 0.0),
            preemptible=opt("Preemptible", as_bool, False),
            gpu=gpu,
        )
    return types


def cluster_fields(doc: Doc) -> dict[str, Any]:
    """Returns the Settings fields for every key of the cluster that is present; absent keys keep the defaults.

    The keys and their defaults are those of lib/config/config.default.yml that
    services/crunch-dispatch-slurm/crunch-dispatch-slurm.go reads (docs/configuration.md lists them). Pure.

    Raises:
        ConfigError: naming the key and the bad value (never a secret).
    """
    f: dict[str, Any] = {}

    def put(name: str, rel: str, convert: Callable[[Doc, str, Any], Any]) -> None:
        value = doc.typed(rel, convert)
        if value is not MISSING:
            f[name] = value

    put("system_root_token", "SystemRootToken", as_token)
    put("management_token", "ManagementToken", as_token)
    if doc.typed("Services.Controller.ExternalURL", as_str) not in (MISSING, ""):
        f["controller_url"] = check_url(doc, "Services.Controller.ExternalURL",
                                        doc.get("Services.Controller.ExternalURL"))
    put("tls_insecure", "TLS.Insecure", as_bool)
    f["dispatch_internal_urls"] = _internal_urls(doc)
    f["postgresql_connection"] = _postgresql(doc)
    doc.typed("PostgreSQL.ConnectionPool", as_nonneg_int)  # validated; the dispatcher uses one connection
    put("batch_size", "API.MaxItemsPerResponse", as_page_size)
    old_batch = doc.typed("RequestLimits.MaxItemsPerResponse", as_page_size)
    if old_batch is not MISSING:
        f["batch_size"] = old_batch
        doc.warnings.append(f"{doc.full('RequestLimits.MaxItemsPerResponse')} is deprecated; using its value "
                            f"{old_batch} for API.MaxItemsPerResponse (rename the key)")
    put("poll_interval", "Containers.CloudVMs.PollInterval", as_poll_interval)
    put("min_retry_period", "Containers.MinRetryPeriod", as_retry_period)
    put("reserve_extra_ram", "Containers.ReserveExtraRAM", as_size)
    put("crunch_run_command", "Containers.CrunchRunCommand", as_command)
    put("crunch_run_arguments", "Containers.CrunchRunArgumentsList", as_text_list)
    put("runtime_engine", "Containers.RuntimeEngine", as_enum(RUNTIME_ENGINES))
    put("priority_spread", "Containers.SLURM.PrioritySpread", as_spread)
    put("sbatch_arguments", "Containers.SLURM.SbatchArgumentsList", as_text_list)
    put("sbatch_gpu_arguments", "Containers.SLURM.SbatchGPUArgumentsList", as_text_list)
    put("sbatch_environment", "Containers.SLURM.SbatchEnvironmentVariables", as_env_map)
    f["instance_types"] = _instance_types(doc)
    put("maximum_price_factor", "Containers.MaximumPriceFactor", as_price_factor)
    put("local_keep_blob_buffers_per_vcpu", "Containers.LocalKeepBlobBuffersPerVCPU", as_nonneg_int)
    put("preemptible_price_factor", "Containers.PreemptiblePriceFactor", as_price_factor)
    put("log_level", "SystemLogs.LogLevel", as_log_level)
    put("log_format", "SystemLogs.Format", as_enum(LOG_FORMATS + ("",)))
    for name in ("log_level", "log_format"):
        if f.get(name) == "":
            del f[name]  # Go treats an empty level/format as the default
    # Server-side keys the emulator needs; validated so a typo is caught here rather than there.
    doc.typed("Containers.MaxDispatchAttempts", as_nonneg_int)
    doc.typed("Containers.DefaultKeepCacheRAM", as_size)
    return f


def with_preemptible(types: Mapping[str, InstanceType], factor: float, *, label: str,
                     warnings: list[str]) -> dict[str, InstanceType]:
    """Returns ``types`` plus a ``<name>.preemptible`` variant of each, priced ``price × factor``. Pure.

    Port of lib/config/load.go: Loader.autofillPreemptible. Nothing is added when ``factor`` ≤ 0.
    """
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
