"""The shape of the cluster config: which keys exist, for the unknown-key warnings.

Owns ``CLUSTER_SCHEMA`` (every key of a cluster that Arvados defines and this dispatcher may meet; sections
it does not read are listed without their contents), ``unknown_key_warnings`` (a warning per key the schema
does not know, with a "perhaps you meant" hint for a case slip, as lib/config/load.go: Loader.logExtraKeys
logs) and ``without_samples`` (the ``SAMPLE`` entries that lib/config/config.default.yml uses as templates
are dropped before reading). Unknown keys are warnings, never errors: Go carries on too. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slurm_dispatch.config.redact import printable


class _EachKey:
    """Schema node for a map whose keys are names (InstanceTypes, InternalURLs): each value has ``schema``."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema


# None: a leaf, or a section this dispatcher does not read (its contents are not checked).
Schema = dict[str, "Schema | _EachKey | None"] | _EachKey | None

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


def _leaves(names: str) -> dict[str, Schema | _EachKey | None]:
    return dict.fromkeys(names.split())


def _service() -> dict[str, Schema | _EachKey | None]:
    """Each service's keys (arvados.Service: InternalURLs of ServiceInstance, and ExternalURL)."""
    return {"InternalURLs": _EachKey(_leaves("ListenURL Rendezvous")), "ExternalURL": None}


_CLOUD_VMS_KEYS = ("Enable SSHPort PollInterval BootProbeCommand ProbeInterval MaxProbesPerSecond TimeoutSignal "
                   "TimeoutStaleRunLock TimeoutTERM MaxCloudOpsPerSecond MaxConcurrentInstanceCreateOps MaxInstances "
                   "MaxRunningContainersPerInstance InitialQuotaEstimate SupervisorFraction SyncInterval TimeoutIdle "
                   "TimeoutBooting TimeoutProbe TimeoutShutdown ImageID InstanceInitCommand DeployRunnerBinary "
                   "DeployRunnerDirectory DeployPublicKey ResourceTags TagKeyPrefix Driver DriverParameters")
"""Containers.CloudVMs in lib/config/config.default.yml (3.2 and later): only PollInterval is read here, but a typo in
any of them is warned about, as Arvados's loader does (lib/config/load.go: logExtraKeys)."""


CLUSTER_SCHEMA: dict[str, Schema | _EachKey | None] = {
    **_leaves(_OTHER_SECTIONS),
    "SystemRootToken": None,
    "ManagementToken": None,
    "API": _leaves(_API_KEYS),
    "TLS": {"Certificate": None, "Key": None, "Insecure": None, "ACME": None},
    "PostgreSQL": {"Connection": None, "ConnectionPool": None},
    "SystemLogs": _leaves("LogLevel Format MaxRequestLogParamsSize RequestQueueDumpDirectory"),
    "Services": {**{name: _service() for name in _SERVICES.split()},
                 "ContainerWebServices": {**_service(), **_leaves("ExternalPortMin ExternalPortMax")},
                 "DispatchSLURM": _service()},
    "Containers": {**_leaves(_CONTAINERS_KEYS),
                   "CloudVMs": _leaves(_CLOUD_VMS_KEYS),
                   "SLURM": _leaves("PrioritySpread SbatchArgumentsList SbatchEnvironmentVariables "
                                    "SbatchGPUArgumentsList")},
    "InstanceTypes": _EachKey({
        **_leaves("ProviderType VCPUs RAM IncludedScratch AddedScratch Price Preemptible"),
        "GPU": _leaves("Stack DriverVersion HardwareTarget DeviceCount VRAM"),
        "CUDA": _leaves("DriverVersion HardwareCapability DeviceCount"),  # before Arvados 3.3: read as GPU
    }),
}

_SPECIAL_HINTS = {
    "Containers.PollInterval": "is ignored: the documentation's name is wrong, the poll period is "
                               "Containers.CloudVMs.PollInterval",
    "RequestLimits": "is deprecated: use API.MaxItemsPerResponse",
    "InstanceTypes.*.Scratch": "is ignored: Scratch is computed as IncludedScratch + AddedScratch",
}


def unknown_key_warnings(data: Mapping[str, Any], schema: Schema, prefix: str, rel: str, *,
                         unknown: str = "deprecated or unknown config entry",
                         hints: Mapping[str, str] | None = None) -> list[str]:
    """Returns a warning for each key in ``data`` that ``schema`` does not know, with a case hint. Pure.

    Each warning is ``<unknown>: <prefix>.<key>`` (plus `` (perhaps you meant X?)``), or ``config entry <key>
    <hint>`` for a key in ``hints`` (by default the cluster config's special cases); an empty ``prefix`` names
    keys from the top of the document. Port of lib/config/load.go: Loader.logExtraKeys.
    """
    if schema is None or not isinstance(data, Mapping):
        return []
    special = _SPECIAL_HINTS if hints is None else hints
    out: list[str] = []

    def below(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    if isinstance(schema, _EachKey):
        for name, value in data.items():
            star = f"{rel}.*" if rel else "*"
            out += unknown_key_warnings(value, schema.schema, below(name), star, unknown=unknown, hints=hints)
        return out
    for key, value in data.items():
        child_rel = f"{rel}.{key}" if rel else key
        if key in schema:
            out += unknown_key_warnings(value, schema[key], below(key), child_rel, unknown=unknown, hints=hints)
            continue
        hint = special.get(child_rel)
        if hint:
            out.append(f"config entry {printable(below(key))} {hint}")
            continue
        similar = [k for k in schema if k.lower() == key.lower()]
        maybe = f" (perhaps you meant {similar[0]}?)" if similar else ""
        out.append(f"{unknown}: {printable(below(key))}{maybe}")
    return out


def without_nulls(node: Any) -> Any:
    """Returns ``node`` with every null map value removed, at any depth of maps (not inside lists). Pure.

    Port of lib/config/load.go: removeNullKeys, which Arvados runs on the file before merging it over the defaults:
    a key left empty (``InstanceTypes: {m5large: }``, every line of its body commented out) is no key at all, not a
    zero value.
    """
    if isinstance(node, Mapping):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    return node


def key_text(key: Any) -> str:
    """Returns a map key as the text Arvados's loader makes of it (ghodss/yaml writes YAML keys as JSON strings):
    ``true`` for the boolean an unquoted ``y`` or ``on`` is, ``1000`` for the number ``1e3``. Pure."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer() and abs(key) < 1e21:
        return str(int(key))
    if key is None:
        return "null"
    return str(key)


def without_samples(node: Any) -> Any:
    """Returns ``node`` with every ``SAMPLE`` key removed and every map key made a string (``key_text``). Pure.

    Port of lib/config/load.go: removeSampleKeys.
    """
    if isinstance(node, Mapping):
        return {key_text(k): without_samples(v) for k, v in node.items() if k != "SAMPLE"}
    if isinstance(node, list):
        return [without_samples(v) for v in node]
    return node
