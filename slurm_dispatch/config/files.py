"""The only I/O of the package: which file to read, reading it, and ``load_settings``.

Owns ``resolve_config_path`` (``--config``, else ``$ARVADOS_CONFIG``, else /etc/arvados/config.yml, as
lib/config/load.go: Loader.SetupFlags), ``read_yaml`` (one file, YAML errors with line and column),
``load_settings`` (the cluster config, the legacy file when present or named, a file with no ``Clusters``
key read as the legacy file as lib/config/load.go: Loader.MungeLegacyConfigArgs does, and slurm-dispatch's
own file, ``dispatch_file``) and its result ``LoadedConfig``. Reads at most four files and never writes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import yaml

from slurm_dispatch.config.cluster import clusters_case_hint
from slurm_dispatch.config.dispatch_file import (
    DEFAULT_DISPATCH_CONFIG_PATH,
    DISPATCH_CONFIG_ENV,
    DispatchPathSource,
    resolve_dispatch_config_path,
)
from slurm_dispatch.config.merge import settings_from_documents
from slurm_dispatch.config.redact import printable
from slurm_dispatch.config.safe_yaml import parse_yaml
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.clusters import cluster_warnings

DEFAULT_CONFIG_PATH = Path("/etc/arvados/config.yml")
"""Where Arvados services look for the cluster config unless told otherwise."""
DEFAULT_LEGACY_PATH = Path("/etc/arvados/crunch-dispatch-slurm/crunch-dispatch-slurm.yml")
"""The pre-2.0 standalone crunch-dispatch-slurm config; skipped when missing."""
MAX_CONFIG_BYTES = 4 << 20
"""Largest config file read. A full cluster config is around 100 KB; a larger file is a mistake or an attack."""


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
    dispatch_path: Path = DEFAULT_DISPATCH_CONFIG_PATH
    """The slurm-dispatch file named by --dispatch-config / $SLURM_DISPATCH_CONFIG / the default."""
    dispatch_path_source: DispatchPathSource = DispatchPathSource.DEFAULT
    """Why ``dispatch_path`` was chosen."""
    dispatch_read: Path | None = None
    """``dispatch_path`` when it was read; None when the default file does not exist (every default)."""


def resolve_config_path(path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, PathSource]:
    """Returns the cluster config path and why: an explicit path, else $ARVADOS_CONFIG, else the default.

    Pure.
    """
    if path is not None and str(path) != "":
        return Path(path), PathSource.ARGUMENT
    if environ.get("ARVADOS_CONFIG"):
        return Path(environ["ARVADOS_CONFIG"]), PathSource.ENVIRONMENT
    return DEFAULT_CONFIG_PATH, PathSource.DEFAULT


def _same_file(a: Path, b: Path) -> bool:
    """Returns whether two paths name the same file (after symlinks). Reads the file system, never blocks."""
    return os.path.realpath(a) == os.path.realpath(b)


def read_dispatch_config(
    path: str | Path | None, environ: Mapping[str, str], *, arvados_files: Sequence[tuple[Path | None, str]],
    warnings: list[str] | None = None,
) -> tuple[object, Path, DispatchPathSource, Path | None]:
    """Returns ``(document, path, why, path read or None)`` for slurm-dispatch's own file. Reads it.

    The default path is skipped, silently, when nothing is there; a path given by ``--dispatch-config`` or
    $SLURM_DISPATCH_CONFIG must exist. It may not be one of ``arvados_files`` (``(path, what it is)``: the
    cluster config, the legacy crunch-dispatch-slurm file): Arvados reads those and warns about, or fails
    on, keys it does not know.

    Raises:
        ConfigError: a named file is missing, the file is one of ``arvados_files``, or ``read_yaml`` refuses it.
    """
    chosen, why = resolve_dispatch_config_path(path, environ)
    if why is DispatchPathSource.DEFAULT and not os.path.lexists(chosen):
        return None, chosen, why, None
    for other, what in arvados_files:
        if other is not None and _same_file(chosen, other):
            raise ConfigError(f"this is {what}, which Arvados reads too (and warns about keys it does not know); "
                              f"put slurm-dispatch's own settings in a file of their own, by default "
                              f"{DEFAULT_DISPATCH_CONFIG_PATH}", path=str(chosen),
                              key="" if why is DispatchPathSource.DEFAULT else why.value)
    document = read_yaml(chosen, what="slurm-dispatch config file",
                         hint=f"check --dispatch-config and ${DISPATCH_CONFIG_ENV} (without either, the default "
                         f"{DEFAULT_DISPATCH_CONFIG_PATH} is read if it exists)", warnings=warnings)
    return document, chosen, why, chosen


def read_yaml(path: Path, *, what: str, hint: str, warnings: list[str] | None = None) -> object:
    """Returns the parsed YAML in ``path`` (``safe_yaml.parse_yaml``). Reads the file, never waits on it.

    The file is opened without blocking and must be a regular file of at most MAX_CONFIG_BYTES: a FIFO or a
    device (``--config /dev/zero``) would otherwise block or never end. A key given twice in one map keeps its
    last value, as in Arvados (lib/config/load.go: Load), with a warning appended to ``warnings`` naming the key
    and both lines.

    Raises:
        ConfigError: missing, unreadable, not a regular file, too large, not UTF-8, or invalid YAML (with
            line and column; see ``parse_yaml`` for the bounds).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found; {hint}", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path=str(path)) from None
    try:
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(f"cannot read {what}: not a regular file", path=str(path))
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"cannot read {what}: larger than {MAX_CONFIG_BYTES >> 20} MiB", path=str(path))
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {what}: {reason}", path=str(path)) from None
    duplicates: list[tuple[str, int, int]] = []
    try:
        document = parse_yaml(text, duplicates=duplicates)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if problem == "but found another document":  # PyYAML's context says the rest
            problem = ("expected a single document, but found another one (a '---' line starts a new document: "
                       "remove it, or merge the documents)")
        raise ConfigError(f"invalid YAML: {where}{problem}", path=str(path)) from None
    except RecursionError:  # not expected past parse_yaml's depth bound; kept so no traceback can escape
        raise ConfigError("invalid YAML: nested too deeply", path=str(path)) from None
    if warnings is not None:
        warnings += [f"{path}: line {later}: {printable(key)} is given again (first on line {first}); the last one "
                     "is used and the first ignored, as Arvados does: merge them into one"
                     for key, first, later in duplicates]
    return document


def state_directory_problem(directory: str) -> str | None:
    """Returns why ``directory`` (Service.StateDirectory) cannot hold the state file, or None. Reads the file system.

    Refused: the path, or the nearest part of it that exists, is not a directory (a regular file there leaves the
    state file unreadable, and the service then treats itself as drained for ever). A path that cannot be looked
    at (no permission) is left to ``run``, which says so when it reads the state.
    """
    here = Path(directory)
    while True:
        try:
            mode = os.stat(here).st_mode
        except (FileNotFoundError, NotADirectoryError):  # look at the part above
            if here.parent == here:
                return None
            here = here.parent
            continue
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(mode):
            return None
        what = "it" if str(here) == directory else f"{str(here)!r} in it"
        return (f"{directory!r} cannot be the state directory: {what} is not a directory (the service keeps its "
                "state file there, and would start drained until it could read it)")


def load_settings(
    *,
    path: str | Path | None = None,
    cluster_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    legacy_path: str | Path | None = None,
    skip_legacy: bool = False,
    dispatch_config: str | Path | None = None,
) -> LoadedConfig:
    """Returns the validated settings of one cluster, read once from the config file(s).

    Reads (never writes) the cluster config, the legacy standalone file when present, and slurm-dispatch's
    own file when present or named; otherwise pure.

    Args:
        path: the cluster config (``--config``). None means ``$ARVADOS_CONFIG``, else /etc/arvados/config.yml.
            A file with no ``Clusters`` key is read as the legacy file (with a warning), and the cluster
            config then comes from ``$ARVADOS_CONFIG`` or the default path if that exists.
        cluster_id: which cluster, when the file defines several.
        environ: the environment (default ``os.environ``) for ARVADOS_CONFIG and ARVADOS_API_*.
        legacy_path: the legacy file; None means DEFAULT_LEGACY_PATH, skipped when missing. A path given
            here must exist.
        skip_legacy: do not look for the legacy file at all (Go's ``-skip-legacy``).
        dispatch_config: slurm-dispatch's own file (``--dispatch-config``). None means
            ``$SLURM_DISPATCH_CONFIG``, else /etc/arvados/slurm-dispatch/slurm-dispatch.yml, skipped when missing.

    Raises:
        ConfigError: missing/unreadable file, bad YAML, or any invalid key (naming file, key and value).
    """
    for flag, given in (("--config", path), ("--legacy-crunch-dispatch-slurm-config", legacy_path),
                        ("--dispatch-config", dispatch_config)):
        if given is not None and str(given) in ("", "."):  # typer makes an empty argument Path("."), the same
            raise ConfigError(f"the path is empty (or '.', a directory): name a file, or leave {flag} out",
                              key=flag)
    env: Mapping[str, str] = os.environ if environ is None else environ
    main_path, main_source = resolve_config_path(path, env)
    warnings: list[str] = []
    document = read_yaml(main_path, what="config file",
                          hint="pass --config <file> or set ARVADOS_CONFIG to the cluster config", warnings=warnings)
    if document is None:
        raise ConfigError("the config file is empty; expected Clusters: {<ClusterID>: {...}}",
                          path=str(main_path))
    cluster_doc: object = document
    cluster_path = main_path
    legacy_doc: object = None
    legacy_read: Path | None = None
    if isinstance(document, Mapping) and "Clusters" not in document:
        if hint := clusters_case_hint(document):  # Go would read it, but without any default: refuse, saying why
            raise ConfigError(f"no Clusters key{hint}", path=str(main_path), key="Clusters")
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
            cluster_doc = read_yaml(fallback, what="config file", hint="", warnings=warnings)
    elif not skip_legacy:
        candidate = DEFAULT_LEGACY_PATH if legacy_path is None else Path(legacy_path)
        if legacy_path is not None or candidate.exists():
            legacy_doc = read_yaml(candidate, what="legacy crunch-dispatch-slurm config file",
                                    hint="check --legacy-crunch-dispatch-slurm-config", warnings=warnings)
            legacy_read = candidate
            if legacy_doc is None:
                legacy_doc = {}
    own_doc, own_path, own_source, own_read = read_dispatch_config(dispatch_config, env, arvados_files=(
        (cluster_path, "the Arvados cluster config"), (main_path, "the file given as the cluster config"),
        (legacy_read, "the legacy crunch-dispatch-slurm config file"),
        (DEFAULT_LEGACY_PATH, "the legacy crunch-dispatch-slurm config file's path")), warnings=warnings)
    settings, more = settings_from_documents(
        cluster_doc, source=str(cluster_path), cluster_id=cluster_id, environ=env,
        legacy_document=legacy_doc, legacy_source=str(legacy_read or ""),
        dispatch_document=own_doc, dispatch_source=str(own_read or ""))
    more += cluster_warnings(settings)
    problem = state_directory_problem(settings.state_directory)
    if problem:
        raise ConfigError(problem, path=str(own_read or ""), key="Service.StateDirectory",
                          value=settings.state_directory)
    return LoadedConfig(settings=settings, warnings=warnings + more, path=main_path, path_source=main_source,
                        legacy_path=legacy_read, cluster_path=cluster_path if cluster_doc is not None else None,
                        dispatch_path=own_path, dispatch_path_source=own_source, dispatch_read=own_read)
