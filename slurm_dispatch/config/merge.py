"""The merge: parsed cluster config + legacy file + slurm-dispatch file + environment -> Settings and warnings.

Owns ``settings_from_documents``, the pure core of ``load_settings``. The order follows Go's loader
(lib/config/load.go: Loader.Load): defaults (Settings' own), then the cluster file, then deprecated keys
(``RequestLimits.MaxItemsPerResponse``, lib/config/deprecated.go: Loader.applyDeprecatedConfig), then the
environment fills empty keys (``environment.env_fill``), then the legacy file overrides (``legacy``), then
``<name>.preemptible`` instance types are added (``cluster.with_preemptible``), then
ARVADOS_SERVICE_INTERNAL_URL picks this process's InternalURLs entry (``environment.service_url_override``).
slurm-dispatch's own file (``dispatch_file``) sets fields no other source touches. Last, Go's warnings for
ARVADOS_API_* variables that are set but not used (``environment.unused_env_warnings``), and warnings for such
variables in SbatchEnvironmentVariables that would give crunch-run another API or token than the dispatcher
(``environment.job_client_warnings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from slurm_dispatch.config.cluster import (
    CLUSTER_ID_RE,
    cluster_fields,
    internal_url_entries,
    select_cluster,
    with_preemptible,
)
from slurm_dispatch.config.dispatch_file import dispatch_fields
from slurm_dispatch.config.document import Doc
from slurm_dispatch.config.environment import (
    env_fill,
    job_client_warnings,
    service_url_override,
    unused_env_warnings,
)
from slurm_dispatch.config.legacy import apply_legacy
from slurm_dispatch.config.redact import printable, show
from slurm_dispatch.config.schema import CLUSTER_SCHEMA, unknown_key_warnings, without_nulls, without_samples
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.decide import SLURM_SIGNAL_EARLY_S


def settings_from_documents(
    cluster_document: object,
    *,
    source: str,
    cluster_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    legacy_document: object = None,
    legacy_source: str = "",
    dispatch_document: object = None,
    dispatch_source: str = "",
) -> tuple[Settings, list[str]]:
    """Returns the Settings and warnings for parsed YAML documents: the core of ``load_settings``.

    Pure: takes what ``yaml.safe_load`` returned, does no I/O and reads no globals.

    Args:
        cluster_document: the parsed cluster config, or None when there is none (then ``cluster_id`` is
            required and every key takes its default).
        source: the cluster config's path, for messages.
        cluster_id: which cluster to use when the file defines several.
        environ: ARVADOS_API_TOKEN / ARVADOS_API_HOST / ARVADOS_API_HOST_INSECURE fill empty keys;
            ARVADOS_SERVICE_INTERNAL_URL picks one of Services.DispatchSLURM.InternalURLs.
        legacy_document: the parsed legacy standalone file, or None.
        legacy_source: the legacy file's path, for messages.
        dispatch_document: the parsed slurm-dispatch file (None when empty or not read: every default).
        dispatch_source: the slurm-dispatch file that was read ("" when none): ``Settings.dispatch_config_path``.

    Raises:
        ConfigError: naming the file, the full key and the bad value (never a secret).
    """
    warnings: list[str] = []
    body: Mapping[str, Any]
    if cluster_document is None:
        if cluster_id is None:
            raise ConfigError("no cluster config to read the cluster ID from; pass --config <cluster config> "
                              "or --cluster-id", path=source)
        if not CLUSTER_ID_RE.fullmatch(cluster_id):
            raise ConfigError("cluster ID should be 5 lowercase alphanumeric characters", path=source,
                              key="--cluster-id", value=show(cluster_id))
        cid, body = cluster_id, {}
    else:
        if isinstance(cluster_document, Mapping):
            for key in cluster_document:
                if key not in ("Clusters", "SourceTimestamp", "SourceSHA256", "AutoReloadConfig"):  # arvados.Config
                    warnings.append(f"deprecated or unknown config entry: {printable(str(key))}")
        cid, body = select_cluster(cluster_document, source=source, cluster_id=cluster_id)
    body = without_samples(body)
    prefix = f"Clusters.{cid}"
    warnings += unknown_key_warnings(body, CLUSTER_SCHEMA, prefix, "")
    doc = Doc(without_nulls(body), source=source, prefix=prefix, warnings=warnings)
    fields = cluster_fields(doc)
    env_fill(fields, environ or {}, warnings)
    if legacy_document is not None:
        if not isinstance(legacy_document, Mapping):
            raise ConfigError(f"expected a map of legacy keys, got {show(legacy_document)}", path=legacy_source)
        target = (f"the cluster configuration file ({source})" if cluster_document is not None else
                  "a cluster configuration file (none was read: Arvados reads $ARVADOS_CONFIG, else "
                  "/etc/arvados/config.yml)")
        warnings.append(f"you should remove the legacy crunch-dispatch-slurm config file ({legacy_source}) "
                        f"after migrating its keys to {target}")
        apply_legacy(fields, without_samples(legacy_document), source=legacy_source, warnings=warnings)
    if fields.get("batch_size") == 0:
        fields["batch_size"] = 100  # Go's dispatcher: 0 means its own default page size
    fields["instance_types"] = with_preemptible(
        fields["instance_types"], fields.get("preemptible_price_factor", 0.0), label=prefix, warnings=warnings)
    chosen = service_url_override(internal_url_entries(doc), environ or {}, warnings)
    if chosen is not None:
        fields["dispatch_internal_urls"] = chosen
    if not fields["dispatch_internal_urls"]:
        warnings.append(f"{prefix}.Services.DispatchSLURM.InternalURLs is empty: the service will refuse to "
                        "start (it needs the address for its health/metrics server)")
    warnings += token_warnings(fields, prefix)
    warnings += plain_http_warnings(fields, prefix)
    own, own_warnings = dispatch_fields(dispatch_document, source=dispatch_source)
    warnings += own_warnings
    settings = Settings(cluster_id=cid, **fields, **own, dispatch_config_path=dispatch_source)
    return settings, (warnings + time_limit_warnings(settings) + unused_env_warnings(settings, environ or {})
                      + job_client_warnings(settings))


def time_limit_warnings(settings: Settings) -> list[str]:
    """Returns a warning when ``TimeLimit.Overhead`` leaves Slurm's stop signal room to come before a container has
    run its max_run_time: sbatch's ``--signal`` may come up to 60 s before the asked ``StopSignalBefore``
    (sbatch(1)), so Overhead should be at least StopSignalBefore + 60 s (the dispatcher's own stop waits for
    max_run_time in any case: ``slurm.decide.Policy.stop_when_left``). Pure."""
    templates = (*settings.sbatch_arguments, *settings.sbatch_gpu_arguments, *settings.supervisor_sbatch_arguments)
    if settings.time_limit_signal <= 0 or not any("%W" in arg for arg in templates):
        return []  # no job gets a time limit from us, nor the signal
    needed = int(settings.time_limit_signal) + SLURM_SIGNAL_EARLY_S
    if settings.max_run_time_overhead >= needed:
        return []
    return [(f"TimeLimit.Overhead ({int(settings.max_run_time_overhead)} s) is less than TimeLimit.StopSignalBefore "
            f"+ 60 s ({needed} s): Slurm may send crunch-run its stop signal (sbatch --signal, up to 60 s early) "
            "before a container has run its max_run_time; raise Overhead to at least that, or set StopSignalBefore "
            "to 0")]


def token_warnings(fields: Mapping[str, Any], prefix: str) -> list[str]:
    """Returns a warning for each of SystemRootToken and ManagementToken that Arvados's own services would refuse
    (characters other than a-z, A-Z, 0-9: lib/config/load.go: checkToken, which takes no v2 token for either). Only
    a warning: the API server may accept it all the same (a v2 token from its database), and this service does not
    need it to be otherwise. Never shows a token. Pure.
    """
    out = []
    for key, label in (("system_root_token", "SystemRootToken"), ("management_token", "ManagementToken")):
        token = str(fields.get(key) or "")
        if token and not (token.isascii() and token.isalnum()):
            out.append(f"{prefix}.{label} has characters other than a-z, A-Z, 0-9: Arvados's own services refuse to "
                       "start with such a token; this dispatcher uses it as it is")
    return out


def plain_http_warnings(fields: Mapping[str, Any], prefix: str) -> list[str]:
    """Returns a warning when the API is reached over plain HTTP. The dispatcher then sends the SystemRootToken
    unencrypted, where Go's dispatcher takes only the host of ExternalURL and always speaks HTTPS; and crunch-run,
    given that host, always speaks HTTPS (sdk/go/arvados/client.go: NewClientFromEnv), so real jobs fail unless the
    host answers HTTPS too (a local test API with a crunch-run stand-in works). Pure."""
    url = str(fields.get("controller_url") or "")
    if not url.lower().startswith("http://"):
        return []
    where = printable((urlsplit(url).hostname or "").lower())
    return [(f"{prefix}.Services.Controller.ExternalURL (or the ARVADOS_API_HOST / legacy Client setting that filled it) "
             f"is plain HTTP (http://{where}...): the SystemRootToken goes unencrypted, where the Go dispatcher would "
             "use HTTPS, and crunch-run always uses HTTPS to that host (use https://)")]
