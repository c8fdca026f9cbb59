"""What the admin commands share: options, exit codes, ``abort``, settings loading and adapter building.

The commands (``config check``, ``explain``, ``status``, ``cancel``, ``adopt``) stay thin: load the settings,
build the adapters here, call the pure core, print. Errors raised on purpose are ``DispatchError``
subclasses; ``errors_to_exit`` turns each into ONE line on stderr and an exit code from ``ExitCode``.
Anything else is a bug and shows typer's traceback (without locals, which may hold tokens).

The library's own log lines are written for the service's log, and say before the error what its message says
again (the transport's "giving up on GET ... after N attempts", a Slurm command's exit code and stderr). An admin
command shows only those at ERROR and above (``admin_log_lines``), so a failure prints one line: the command's.

Exit codes (also in docs/admin-commands.md):

====  ============================================================================
0     OK (for ``status``: no mismatch; for ``explain``: the container is submittable)
1     a problem was found, or the operation failed
2     configuration or usage error (bad config file, template problems, bad argument, token refused)
3     the Arvados API or Slurm could not be reached
====  ============================================================================
"""

from __future__ import annotations

import contextlib
import enum
import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.config import LoadedConfig, load_settings
from slurm_dispatch.errors import (
    ArvadosAuthError,
    ArvadosUnavailable,
    ConfigError,
    DispatchError,
    SbatchTemplateError,
    SlurmCommandError,
    SlurmUnavailable,
)
from slurm_dispatch.model import CONTAINER_UUID_RE
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.clusters import clusters_of
from slurm_dispatch.slurm.decide import is_our_job_name
from slurm_dispatch.slurm.sbatch import slurm_command_env


class ExitCode(enum.IntEnum):
    """The exit status of every admin command."""

    OK = 0
    PROBLEM = 1
    """A problem was found (a mismatch, an unsatisfiable container) or an operation failed."""
    CONFIG = 2
    """The configuration or the command line is wrong, or the API refused our token."""
    UNREACHABLE = 3
    """The Arvados API or Slurm did not answer."""


API_DEADLINE_S = 10.0
"""How long an API call of an admin command may take: it stops retrying after this many seconds, and one attempt
gets no longer either, to connect, for each read, and in all (the service's client retries for 60 s and waits up to
120 s for an answer). So a hung API fails a command in about 10 s, 20 at most (an attempt that starts just before
the retry deadline)."""

SLURM_TIMEOUT_S = 30.0
"""Per-command timeout of Slurm commands run by admin commands."""

SLURM_ENV_KEYS = ("PATH", "SLURM_CONF")
"""What Slurm commands inherit from the admin command's environment; nothing else (never a token)."""

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="The Arvados cluster config (default: $ARVADOS_CONFIG, else /etc/arvados/config.yml).",
        show_default=False,
    ),
]
ClusterIdOption = Annotated[
    str | None,
    typer.Option("--cluster-id", metavar="ID", help="Which cluster of the config file (when it has several)."),
]
LegacyConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--legacy-crunch-dispatch-slurm-config",
        metavar="PATH",
        help="The legacy standalone crunch-dispatch-slurm config, read over the cluster config as the Go "
        "dispatcher does (default: /etc/arvados/crunch-dispatch-slurm/crunch-dispatch-slurm.yml when it exists).",
        show_default=False,
    ),
]
SkipLegacyOption = Annotated[
    bool,
    typer.Option("--skip-legacy", help="Do not read the legacy standalone config file at all (as Go's -skip-legacy)."),
]
DispatchConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--dispatch-config",
        metavar="PATH",
        help="slurm-dispatch's own settings file (default: $SLURM_DISPATCH_CONFIG, else "
        "/etc/arvados/slurm-dispatch/slurm-dispatch.yml when it exists).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]

LIBRARY_LOGGER = "slurm_dispatch"
"""The logger every module of the package logs under (the service's log)."""

ADMIN_LOG_LEVEL = logging.ERROR
"""The least level of the library's log records an admin command shows; warnings repeat the error it prints."""


def one_line(message: str) -> str:
    """Return ``message`` with its lines joined by "; " (stderr gets exactly one line per error). Pure."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def exit_code_for(exc: DispatchError) -> ExitCode:
    """Return the exit code for an error: config/usage 2, unreachable 3, anything else 1. Pure.

    A Slurm command that could not even start (``returncode`` None: not installed, or timed out) counts
    as Slurm unreachable. A refused token is a configuration error (check SystemRootToken).
    """
    if isinstance(exc, ConfigError | SbatchTemplateError | ArvadosAuthError):
        return ExitCode.CONFIG
    if isinstance(exc, ArvadosUnavailable | SlurmUnavailable):
        return ExitCode.UNREACHABLE
    if isinstance(exc, SlurmCommandError) and exc.returncode is None:
        return ExitCode.UNREACHABLE
    return ExitCode.PROBLEM


def abort(message: str, code: int = ExitCode.PROBLEM) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``code``.

    Raises:
        typer.Exit: always.
    """
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(int(code))


class AdminLogLines(logging.Handler):
    """Writes a library log record as one ``error: <message>`` line on the current stderr (typer's, when tested)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(f"{record.levelname.lower()}: {one_line(self.format(record))}", err=True)
        except (OSError, ValueError):  # a closed or broken stderr: logging's own contract, a handler never raises
            self.handleError(record)


def admin_log_lines() -> None:
    """Show the library's log records of ``ADMIN_LOG_LEVEL`` and above on stderr, one line each, and no others,
    for the rest of the process (an admin command's process runs one command). Does nothing the second time.

    Without a handler of our own, Python's last-resort handler prints every WARNING bare on stderr: a failed API
    call or Slurm command would print the library's line and then the command's ``error:`` line. The loggers'
    levels are left alone (other handlers, such as pytest's, still get every record), and ``run`` never calls
    this: the service's log is configured from SystemLogs.
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    if not any(isinstance(h, AdminLogLines) for h in logger.handlers):
        logger.addHandler(AdminLogLines(ADMIN_LOG_LEVEL))


@contextlib.contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turn a ``DispatchError`` raised inside the block into ``abort`` with its exit code.

    Other exceptions pass through (a bug: typer prints the traceback, without locals). Sets up the command's
    log lines first (``admin_log_lines``): every admin command enters this block before it does any work.
    """
    admin_log_lines()
    try:
        yield
    except DispatchError as exc:
        abort(str(exc), exit_code_for(exc))


def load(
    config: Path | None,
    cluster_id: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    legacy: Path | None = None,
    skip_legacy: bool = False,
    dispatch_config: Path | None = None,
) -> LoadedConfig:
    """Return the loaded settings of ``--config`` / ``$ARVADOS_CONFIG`` / the default path. Reads files.

    ``legacy`` and ``skip_legacy`` are ``--legacy-crunch-dispatch-slurm-config`` and ``--skip-legacy``;
    ``dispatch_config`` is ``--dispatch-config`` (None: ``$SLURM_DISPATCH_CONFIG``, else the default file when
    it exists). ``run``, ``config check`` and the other admin commands all load through here, so they read the
    same files the same way.

    Raises:
        ConfigError: a file is missing or invalid (naming file, key and value).
    """
    return load_settings(path=config, cluster_id=cluster_id, environ=os.environ if environ is None else environ,
                         legacy_path=legacy, skip_legacy=skip_legacy, dispatch_config=dispatch_config)


def api_client(settings: Settings, *, deadline_s: float = API_DEADLINE_S) -> ArvadosClient:
    """Return an Arvados client for the settings, with short deadlines for interactive use. No I/O.

    ``deadline_s`` bounds the retries, the connect, each read and each whole attempt (``API_DEADLINE_S``): a
    retry deadline alone leaves an attempt to the client's defaults, a minute per read.

    Raises:
        ConfigError: no controller URL or no token configured.
    """
    try:
        return ArvadosClient.from_settings(settings, retry_deadline=deadline_s, connect_timeout=deadline_s,
                                           read_timeout=deadline_s, request_deadline=deadline_s)
    except ValueError as exc:
        raise ConfigError(
            f"cannot reach the Arvados API: {exc} (Clusters.{settings.cluster_id}.Services.Controller."
            "ExternalURL and SystemRootToken, or ARVADOS_API_HOST and ARVADOS_API_TOKEN)"
        ) from None


def slurm_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for Slurm commands: only ``SLURM_ENV_KEYS`` of ``environ`` (default os.environ).

    Reads ``os.environ`` when ``environ`` is None; never changes it.
    """
    env = os.environ if environ is None else environ
    return {key: env[key] for key in SLURM_ENV_KEYS if key in env}


def slurm_backend(environ: Mapping[str, str] | None = None, settings: Settings | None = None) -> SlurmCLI:
    """Return the SlurmCLI the admin commands use. No I/O.

    Its environment is ``slurm_env(environ)`` plus, when ``settings`` are given, SbatchEnvironmentVariables,
    as the service's Slurm commands get them (``slurm_command_env``): a ``SLURM_CONF`` there must point the
    admin commands at the service's cluster too.
    """
    env = slurm_env(environ)
    if settings is None:
        return SlurmCLI(env=env, timeout_s=SLURM_TIMEOUT_S)
    return SlurmCLI(env=slurm_command_env(settings, env), timeout_s=SLURM_TIMEOUT_S, clusters=clusters_of(settings))


def container_uuid(value: str) -> str:
    """Return ``value`` if it looks like a container uuid.

    Raises:
        typer.BadParameter: it does not (typer prints usage and exits 2).
    """
    if not CONTAINER_UUID_RE.match(value):
        raise typer.BadParameter(f"{value!r} is not a container uuid (xxxxx-dz642-xxxxxxxxxxxxxxx)")
    return value


def require_our_container(uuid: str, cluster_id: str) -> None:
    """Abort with exit 2 unless ``uuid`` is a container of cluster ``cluster_id`` (``is_our_job_name``). Pure.

    The service touches only its own cluster's containers and jobs (another cluster's dispatcher may share the
    Slurm cluster: services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: checkSqueueForOrphans), and a GET of
    another cluster's uuid is a federated call, which our controller makes to that cluster on our token's behalf.

    Raises:
        typer.Exit: it is not ours (after the ``error:`` line).
    """
    if not is_our_job_name(uuid, cluster_id):
        abort(f"{uuid}: not a container of cluster {cluster_id}", ExitCode.CONFIG)


UNWRAPPED_WIDTH = 1000
"""The width a table is laid out in when nothing says how wide the output is: wider than any of our tables."""


def table_text(table: Table) -> str:
    """Return ``table`` rendered as plain text, trailing spaces and blank edge lines removed.

    The width is the terminal's, or COLUMNS; in a pipe or a file without COLUMNS, the table's own (rich would
    otherwise squeeze it into 80 columns and break every cell over lines, ``PEND/ING``, which no script or reader
    wants). No colour, so the text is the same on a terminal, in a pipe and in tests, and copies cleanly.
    """
    width = Console().width if sys.stdout.isatty() or os.environ.get("COLUMNS") else UNWRAPPED_WIDTH
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, color_system=None, highlight=False).print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False))
