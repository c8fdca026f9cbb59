"""slurm-dispatch's own settings file: the keys Arvados does not define, in a file Arvados never reads.

Arvados's loader warns about every key it does not know, at every level of config.yml, and
``arvados-server config-check`` then fails (lib/config/load.go: Loader.logExtraKeys); it also reads
/etc/arvados/crunch-dispatch-slurm/crunch-dispatch-slurm.yml as the legacy crunch-dispatch-slurm file
(lib/config/deprecated.go). So these settings live in a file of their own,
``/etc/arvados/slurm-dispatch/slurm-dispatch.yml`` (``--dispatch-config``, ``$SLURM_DISPATCH_CONFIG``),
described in docs/configuration.md.

Owns ``KEYS``, the one table of the file's keys (adding a key is one line there, plus its Settings field),
``resolve_dispatch_config_path`` and ``dispatch_fields`` (a parsed document to Settings fields and
warnings). Unknown keys are warnings; a wrong type or a value out of range is a ``ConfigError`` naming the
file and the key. ``files.load_settings`` reads the file. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from slurm_dispatch.config.checks import template_list_problems
from slurm_dispatch.config.document import (
    MISSING,
    Doc,
    as_duration,
    as_enum,
    as_nonneg_float,
    as_nonneg_int,
)
from slurm_dispatch.config.limits import as_text, as_text_list
from slurm_dispatch.config.redact import show
from slurm_dispatch.config.schema import Schema, unknown_key_warnings, without_samples
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import BROKEN_NODE_ACTIONS

DEFAULT_DISPATCH_CONFIG_PATH = Path("/etc/arvados/slurm-dispatch/slurm-dispatch.yml")
"""Where slurm-dispatch looks for its own settings; a missing file here means every default."""
DISPATCH_CONFIG_ENV = "SLURM_DISPATCH_CONFIG"
"""The environment variable naming the file (``--dispatch-config`` wins over it)."""
MAX_SIGNAL_LEAD_S = 65535
"""sbatch(1) --signal: ``sig_time`` may be at most 65535 seconds."""

_REASON_CODE_RE = re.compile(r"[A-Za-z0-9_]+")
"""A Slurm pending reason code, as squeue prints it (``BadConstraints``, ``QOSMaxCpuPerJobLimit``)."""


class DispatchPathSource(str, Enum):
    """Why the slurm-dispatch file path was chosen, so ``config check`` can say so."""

    ARGUMENT = "--dispatch-config"
    ENVIRONMENT = "$SLURM_DISPATCH_CONFIG"
    DEFAULT = "default"


def resolve_dispatch_config_path(path: str | Path | None,
                                 environ: Mapping[str, str]) -> tuple[Path, DispatchPathSource]:
    """Returns the slurm-dispatch file path and why: ``path``, else $SLURM_DISPATCH_CONFIG, else the default.

    Pure.
    """
    if path is not None and str(path) != "":
        return Path(path), DispatchPathSource.ARGUMENT
    if environ.get(DISPATCH_CONFIG_ENV):
        return Path(environ[DISPATCH_CONFIG_ENV]), DispatchPathSource.ENVIRONMENT
    return DEFAULT_DISPATCH_CONFIG_PATH, DispatchPathSource.DEFAULT


# -- converters: (doc, key, value) -> typed value, or a ConfigError naming the file and the key ---------------


def as_reason_codes(doc: Doc, rel: str, value: Any) -> tuple[str, ...]:
    """Returns a list of Slurm reason codes (letters, digits, ``_``); an empty list is allowed. Pure.

    Raises:
        ConfigError: not a list of strings, or an item that is not a reason code (its index named).
    """
    codes = as_text_list(doc, rel, value)
    for i, code in enumerate(codes):
        if not _REASON_CODE_RE.fullmatch(code):
            raise doc.error(f"{rel}[{i}]", f"{show(code)} is not a Slurm reason code (letters, digits and _, "
                            "as squeue shows them, e.g. BadConstraints)", code)
    return codes


def as_whole_seconds(doc: Doc, rel: str, value: Any) -> float:
    """Returns a duration of whole seconds (Slurm counts seconds). Pure.

    Raises:
        ConfigError: not a duration (``units.parse_duration``), or a fraction of a second.
    """
    seconds = as_duration(doc, rel, value)
    if not seconds.is_integer():
        raise doc.error(rel, f"must be a whole number of seconds (Slurm counts seconds), got {show(value)}", value)
    return seconds


def as_signal_lead(doc: Doc, rel: str, value: Any) -> float:
    """Returns StopSignalBefore: whole seconds from 0 to MAX_SIGNAL_LEAD_S. Pure.

    Raises:
        ConfigError: not a duration, a fraction of a second, or more than 65535 s.
    """
    seconds = as_whole_seconds(doc, rel, value)
    if seconds > MAX_SIGNAL_LEAD_S:
        raise doc.error(rel, f"must be at most {MAX_SIGNAL_LEAD_S}s (18h12m15s: sbatch's --signal takes at most "
                        f"{MAX_SIGNAL_LEAD_S} seconds), got {show(value)}", value)
    return seconds


def as_fraction(doc: Doc, rel: str, value: Any) -> float:
    """Returns a number from 0 to 1. Raises ConfigError otherwise."""
    number = as_nonneg_float(doc, rel, value)
    if number > 1:
        raise doc.error(rel, f"must be from 0 to 1, got {show(value)}", value)
    return number


def as_sbatch_template(doc: Doc, rel: str, value: Any) -> tuple[str, ...]:
    """Returns extra sbatch template arguments, checked as SbatchArgumentsList is. Pure.

    The rules of every template list (``checks.template_list_problems``): an unknown ``%x``, a word sbatch would
    misread, a job name other than ``%U`` (the arguments come after SbatchArgumentsList, and sbatch takes the
    last ``--job-name``).

    Raises:
        ConfigError: not a list of strings, a control character, or the first of those problems.
    """
    args = as_text_list(doc, rel, value)
    problems = template_list_problems(args)
    if problems:
        at, why = problems[0]
        raise doc.error(f"{rel}[{at}]", why, args[at])
    return args


def as_absolute_path(doc: Doc, rel: str, value: Any) -> str:
    """Returns an absolute path without control characters. Raises ConfigError otherwise."""
    text = as_text(doc, rel, value)
    if not PurePosixPath(text).is_absolute():
        raise doc.error(rel, f"must be an absolute path (starting with /), got {show(text)}", text)
    return text


# -- the table ------------------------------------------------------------------------------------------------


class OwnKey(NamedTuple):
    """One key of the file: where it is, the Settings field it sets, and its converter."""

    key: str
    """Dotted: ``Section.Key``."""
    field: str
    """The ``Settings`` field (its default is the key's default)."""
    convert: Callable[[Doc, str, Any], Any]


KEYS: tuple[OwnKey, ...] = (
    OwnKey("FailureReasons.NeverRunnableReasons", "never_runnable_reasons", as_reason_codes),
    OwnKey("FailureReasons.NeverRunnableGracePeriod", "never_runnable_grace", as_duration),
    OwnKey("TimeLimit.Overhead", "max_run_time_overhead", as_whole_seconds),
    OwnKey("TimeLimit.DefaultMaxRunTime", "default_max_run_time", as_whole_seconds),
    OwnKey("TimeLimit.StopSignalBefore", "time_limit_signal", as_signal_lead),
    OwnKey("Limits.MaxContainersInSlurm", "max_containers_in_slurm", as_nonneg_int),
    OwnKey("Limits.MaxSubmitsPerMinute", "max_submits_per_minute", as_nonneg_float),
    OwnKey("Limits.SupervisorFraction", "supervisor_fraction", as_fraction),
    OwnKey("Limits.MaxSupervisors", "max_supervisors", as_nonneg_int),
    OwnKey("Limits.SupervisorSbatchArguments", "supervisor_sbatch_arguments", as_sbatch_template),
    OwnKey("BrokenNodes.Action", "broken_node_action", as_enum(BROKEN_NODE_ACTIONS)),
    OwnKey("BrokenNodes.Hold", "broken_node_hold", as_duration),
    OwnKey("Service.StateDirectory", "state_directory", as_absolute_path),
)
"""Every key of the file. Durations are Go durations (never negative); ``as_duration`` alone means any."""

OWN_FIELDS: tuple[str, ...] = ("dispatch_config_path", *(k.field for k in KEYS))
"""The Settings fields that come from this file (and the file's path), in ``config check``'s order."""


def _schema() -> dict[str, Schema]:
    sections: dict[str, dict[str, Schema]] = {}
    for own in KEYS:
        section, _, key = own.key.partition(".")
        sections.setdefault(section, {})[key] = None
    return dict(sections)


_SCHEMA = _schema()
_HINTS = {"Clusters": "belongs in the Arvados cluster config (this file holds only slurm-dispatch's own settings)"}


def dispatch_fields(document: object, *, source: str) -> tuple[dict[str, Any], list[str]]:
    """Returns the Settings fields set by a parsed slurm-dispatch file, and its warnings.

    ``document`` is what ``safe_yaml.parse_yaml`` returned (None for an empty file: every default). Keys that
    are absent or null keep their defaults. ``dispatch_config_path`` is not set here. Pure.

    Raises:
        ConfigError: the document is not a map, a section is not a map, or a value is refused (naming
            ``source``, the key and the value).
    """
    if document is None:
        return {}, []
    if not isinstance(document, Mapping):
        raise ConfigError(f"expected a map of sections ({', '.join(_SCHEMA)}), got {show(document)}", path=source)
    data = without_samples(document)
    warnings = [f"{source}: {w}" for w in unknown_key_warnings(data, _SCHEMA, "", "", unknown="unknown config entry",
                                                               hints=_HINTS)]
    doc = Doc(data, source=source, prefix="", warnings=warnings)
    fields: dict[str, Any] = {}
    for own in KEYS:
        value = doc.typed(own.key, own.convert)
        if value is not MISSING:
            fields[own.field] = value
    return fields, warnings
