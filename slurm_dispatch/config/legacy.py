"""The legacy standalone file /etc/arvados/crunch-dispatch-slurm/crunch-dispatch-slurm.yml.

Owns ``apply_legacy``: the pre-2.0 keys (``Client``, ``SbatchArguments``, ``PollPeriod``, ``PrioritySpread``,
``CrunchRunCommand``, ``ReserveExtraRAM``, ``MinRetryPeriod``, ``BatchSize``) applied over the cluster
config's values, as lib/config/deprecated.go: Loader.loadOldCrunchDispatchSlurmConfig does (keys matched
regardless of case, as Go's encoding/json matches them), with warnings where Go's mapping silently loses
something (``SbatchArguments`` replaces the whole template; a ``Client`` section replaces the whole
SbatchEnvironmentVariables map). Pure: takes the parsed file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from slurm_dispatch.config.checks import job_names
from slurm_dispatch.config.cluster import as_page_size, as_spread, host_port_url
from slurm_dispatch.config.document import (
    MISSING,
    Doc,
    as_bool,
    as_enum,
    as_map,
    as_nonneg_int,
    as_str,
)
from slurm_dispatch.config.limits import as_poll_interval, as_retry_period, as_text_list, as_token
from slurm_dispatch.config.redact import printable
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.slurm.sbatch_options import read_args

_LEGACY_KEYS = ("Client", "SbatchArguments", "PollPeriod", "PrioritySpread", "CrunchRunCommand",
                "ReserveExtraRAM", "MinRetryPeriod", "BatchSize")
_LEGACY_CLIENT_KEYS = ("APIHost", "AuthToken", "Insecure", "KeepServiceURIs", "Scheme", "Timeout")
_REQUIRED_SBATCH = ("mem", "cpus-per-task", "tmp")
"""The default template's options other than the job name (``checks.job_names`` finds that one in any form)."""


def _canonical(data: Mapping[str, Any], known: Sequence[str], where: str, *, source: str,
               warnings: list[str]) -> dict[str, Any]:
    """Returns ``data`` with each key spelled as in ``known``, matched regardless of case; drops unknown keys. Pure.

    Go decodes the legacy file with encoding/json (lib/config/deprecated.go: loadOldConfigHelper, through
    ghodss/yaml), which matches field names regardless of case, so ``pollPeriod`` is PollPeriod there and must be
    here too. A key spelled otherwise gets a warning naming its usual spelling; an unknown one gets Go's
    "unknown" warning and is ignored.

    Raises:
        ConfigError: the same key twice in different cases (Go would silently use one of them).
    """
    by_fold = {name.casefold(): name for name in known}
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in data.items():
        name = by_fold.get(str(key).casefold())
        if name is None:
            warnings.append(f"{source}: unknown legacy config entry {where}{printable(str(key))} (ignored)")
            continue
        if name in written:
            raise ConfigError(f"given twice, as {printable(written[name])} and {printable(str(key))} (keys are matched "
                              "regardless of case); keep one", path=source, key=f"{where}{name}")
        if key != name:
            warnings.append(f"{source}: legacy config entry {where}{printable(str(key))} is read as {where}{name} "
                            f"(Arvados matches these keys regardless of case); spell it {name}")
        written[name] = str(key)
        out[name] = value
    return out


def apply_legacy(f: dict[str, Any], data: Mapping[str, Any], *, source: str, warnings: list[str]) -> None:
    """Applies the legacy standalone file over ``f``; appends a warning per caveat. Pure.

    Port of lib/config/deprecated.go: Loader.loadOldCrunchDispatchSlurmConfig (and loadOldClientConfig for
    the ``Client`` section).

    Raises:
        ConfigError: naming the legacy file, the key and the bad value (never the token).
    """
    data = _canonical(data, _LEGACY_KEYS, "", source=source, warnings=warnings)
    if isinstance(data.get("Client"), Mapping):
        data["Client"] = _canonical(data["Client"], _LEGACY_CLIENT_KEYS, "Client.", source=source, warnings=warnings)
    doc = Doc(data, source=source, prefix="", warnings=warnings)
    client = doc.typed("Client", as_map)
    if client is not MISSING:
        host = doc.typed("Client.APIHost", as_str)
        scheme = doc.typed("Client.Scheme", as_enum(("http", "https", "")))
        scheme = "https" if scheme in (MISSING, "") else scheme
        if host not in (MISSING, ""):
            f["controller_url"] = host_port_url(doc, "Client.APIHost", host, scheme)
        elif f.get("controller_url"):
            f["controller_url"] = urlunsplit(urlsplit(f["controller_url"])._replace(scheme=scheme))
        token = doc.typed("Client.AuthToken", as_token)
        if token not in (MISSING, ""):
            f["system_root_token"] = token
        insecure = doc.typed("Client.Insecure", as_bool)
        f["tls_insecure"] = False if insecure is MISSING else insecure
        uris = doc.typed("Client.KeepServiceURIs", as_text_list)
        old_env = f.get("sbatch_environment") or {}
        if old_env and set(old_env) != {"ARVADOS_KEEP_SERVICES"}:
            warnings.append(f"{source}: the legacy Client section replaces the whole "
                            "Containers.SLURM.SbatchEnvironmentVariables map; dropped: "
                            + ", ".join(sorted(k for k in old_env if k != "ARVADOS_KEEP_SERVICES")))
        # As in Go, any Client section sets ARVADOS_KEEP_SERVICES, even to "" (crunch-run then discovers).
        f["sbatch_environment"] = {"ARVADOS_KEEP_SERVICES": " ".join(() if uris is MISSING else uris)}
    sbatch = doc.typed("SbatchArguments", as_text_list)
    if sbatch is not MISSING:
        f["sbatch_arguments"] = sbatch
        given = {opt.name for opt in read_args(sbatch, past_operands=True) if opt.kind == "option"}
        missing = ([] if job_names(sbatch) else ["--job-name"]) + [
            f"--{name}" for name in _REQUIRED_SBATCH if name not in given]
        if missing:
            warnings.append(
                f"{source}: SbatchArguments replaces the whole Containers.SLURM.SbatchArgumentsList template "
                f"verbatim and lacks {', '.join(missing)}; the default template starts "
                "--job-name=%U --mem=%M --cpus-per-task=%C --tmp=%T (without --job-name=%U every job looks "
                "gone); move SbatchArguments into the cluster config and add them")
    poll = doc.typed("PollPeriod", as_poll_interval)
    if poll is not MISSING:
        f["poll_interval"] = poll
    spread = doc.typed("PrioritySpread", as_spread)
    if spread is not MISSING:
        f["priority_spread"] = spread
    command = doc.typed("CrunchRunCommand", as_text_list)
    if command is not MISSING:
        if command[:1] == ("",):
            raise doc.error("CrunchRunCommand[0]", "the command must not be empty, got ''", "")
        if len(command) >= 1:
            f["crunch_run_command"] = command[0]
        if len(command) >= 2:
            f["crunch_run_arguments"] = command[1:]
    extra = doc.typed("ReserveExtraRAM", as_nonneg_int)
    if extra is not MISSING:
        f["reserve_extra_ram"] = extra
    retry = doc.typed("MinRetryPeriod", as_retry_period)
    if retry is not MISSING:
        f["min_retry_period"] = retry
    batch = doc.typed("BatchSize", as_page_size)
    if batch is not MISSING:
        f["batch_size"] = batch
