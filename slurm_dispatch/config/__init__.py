"""Reads the Arvados cluster config (and the legacy standalone file) once, validates it, returns Settings.

A port of the parts of Arvados's Go config loader that crunch-dispatch-slurm depends on: lib/config/load.go
(Loader.Load), lib/config/deprecated.go (the legacy file and the environment fill-ins) and the unit types of
sdk/go/arvados (duration.go, byte_size.go, config.go). docs/configuration.md is the admin's reference.

Modules, one concern each:

* ``files``: ``load_settings``, the only I/O (which files, reading each at most 4 MiB); ``LoadedConfig``.
* ``dispatch_file``: slurm-dispatch's own file (/etc/arvados/slurm-dispatch/slurm-dispatch.yml), the settings
  Arvados does not define; ``KEYS``, its one table of keys.
* ``merge``: ``settings_from_documents``, the pure core: parsed documents + environment -> Settings.
* ``cluster``: ``select_cluster`` and the cluster's keys read into Settings fields.
* ``legacy``: the pre-2.0 crunch-dispatch-slurm.yml keys applied over the cluster config.
* ``environment``: ARVADOS_API_TOKEN / ARVADOS_API_HOST fill empty keys; Go's warnings when they go unused.
* ``schema``: the known keys, for unknown-key warnings.
* ``safe_yaml``: YAML parsing bounded in depth and alias expansion.
* ``document``: typed access to one parsed document, errors naming file and key.
* ``limits``: the ranges and character rules added to Go's types (tokens, argv, durations, names).
* ``units``: ``parse_duration`` / ``parse_byte_size``, Go's unit grammars.
* ``checks``: ``template_problems`` / ``startup_problems``, what ``run`` and ``config check`` refuse.
* ``redact``: which values are secrets; ``redacted`` for ``config check``.

Every failure is a ``ConfigError`` naming the file and the key, on one line; none contains a secret
(SystemRootToken, ManagementToken, the PostgreSQL password and the legacy ``Client.AuthToken`` are shown as
``<redacted>``). ``startup_problems`` is the one list of what ``run`` and ``config check`` refuse.
"""

from __future__ import annotations

from slurm_dispatch.config.checks import startup_problems, template_problems
from slurm_dispatch.config.cluster import (
    LIBPQ_KEYWORD_RE,
    LOG_FORMATS,
    LOG_LEVELS,
    RUNTIME_ENGINES,
    select_cluster,
)
from slurm_dispatch.config.dispatch_file import (
    DEFAULT_DISPATCH_CONFIG_PATH,
    DISPATCH_CONFIG_ENV,
    KEYS,
    OWN_FIELDS,
    DispatchPathSource,
    OwnKey,
    dispatch_fields,
    resolve_dispatch_config_path,
)
from slurm_dispatch.config.files import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_LEGACY_PATH,
    LoadedConfig,
    PathSource,
    load_settings,
    resolve_config_path,
)
from slurm_dispatch.config.merge import settings_from_documents
from slurm_dispatch.config.redact import REDACTED, redacted
from slurm_dispatch.config.units import parse_byte_size, parse_duration

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DISPATCH_CONFIG_PATH",
    "DEFAULT_LEGACY_PATH",
    "DISPATCH_CONFIG_ENV",
    "KEYS",
    "LIBPQ_KEYWORD_RE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OWN_FIELDS",
    "REDACTED",
    "RUNTIME_ENGINES",
    "DispatchPathSource",
    "LoadedConfig",
    "OwnKey",
    "PathSource",
    "dispatch_fields",
    "load_settings",
    "parse_byte_size",
    "parse_duration",
    "redacted",
    "resolve_config_path",
    "resolve_dispatch_config_path",
    "select_cluster",
    "settings_from_documents",
    "startup_problems",
    "template_problems",
]
