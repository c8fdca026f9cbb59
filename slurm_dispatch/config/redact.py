"""Secrets in the config: which keys hold one, how a value is shown in a message, and the redacted view.

Owns the one rule every other module of the package follows: SystemRootToken, ManagementToken, the PostgreSQL
password (and any libpq secret keyword) and the legacy ``Client.AuthToken`` never appear in an error, a warning
or ``config check``'s output; they are shown as ``<redacted>``. ``show`` renders any other value short enough
for one error line. ``redacted`` is the effective Settings as ``config check`` prints them. All pure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from slurm_dispatch.settings import InstanceType, Settings

REDACTED = "<redacted>"
"""What a secret looks like in errors and in ``redacted()``."""

# Keys (relative to the cluster) whose values are secrets and never appear in messages.
_SECRET_KEYS = frozenset({"SystemRootToken", "ManagementToken", "Client.AuthToken",
                          # a connection written as one string ("postgres://u:pw@h/db") would hold a password
                          "PostgreSQL", "PostgreSQL.Connection", "PostgreSQL.Connection.password"})
_SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")

SECRET_CONNECTION_KEYS = frozenset({"password", "sslpassword"})
"""libpq keywords that hold a secret; libpq (and our lock) read keywords in any case."""


def show(value: object, *, secret: bool = False) -> str:
    """Returns a config value rendered for an error message: its repr cut to 80 characters, or ``<redacted>``.

    Pure.
    """
    if secret:
        return REDACTED
    try:
        text = repr(value)
    except ValueError:  # an int of more than sys.get_int_max_str_digits() digits
        return "<a number too long to show>"
    return text if len(text) <= 80 else text[:77] + "..."


def printable(name: str) -> str:
    """Returns a key name as it can be shown on one line: control characters escaped, cut to 200 characters.

    Key names come from the file, like values: an escape sequence or a newline in one must not reach a
    terminal or split a log line. Pure.
    """
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= 200 else text[:197] + "..."


def is_secret(rel_key: str) -> bool:
    """Returns whether the value at ``rel_key`` (dotted, relative to the cluster) is a secret. Pure."""
    if rel_key in _SECRET_KEYS:
        return True
    prefix, _, last = rel_key.rpartition(".")
    return prefix == "PostgreSQL.Connection" and last.lower() in SECRET_CONNECTION_KEYS


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
        "postgresql_connection": {k: (_secret(v) if k.lower() in SECRET_CONNECTION_KEYS else v)
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
