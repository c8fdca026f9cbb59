"""``slurm-dispatch run``: the service (what systemd's ExecStart runs).

Before the service starts, ``run`` refuses (exit 2, ``EXIT_CONFIG``, which the systemd unit's
RestartPreventExitStatus stops on) what ``config check`` refuses, loading the config through the same
``cli.common.load``, and then two things only this host can tell, each on one line: PostgreSQL.Connection is
set but psycopg cannot be imported (``database_driver_problem``), and no Services.DispatchSLURM.InternalURLs
entry is an address of this host (``internal_url_problem``, one bind attempt per address, as Go's
lib/service/cmd.go: getListenAddr tries them). Both would otherwise stop ``serve`` with exit 1, and systemd
would restart it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    LegacyConfigOption,
    SkipLegacyOption,
    load,
)
from slurm_dispatch.config import startup_problems
from slurm_dispatch.config.environment import SERVICE_URL_ENV
from slurm_dispatch.config.redact import show
from slurm_dispatch.errors import ConfigError, DispatchError
from slurm_dispatch.settings import Settings

logger = logging.getLogger("slurm_dispatch.cli.run")

EXIT_CONFIG = 2
"""Exit status for a config the service refuses to start with; the systemd unit's RestartPreventExitStatus."""

SERVICE_MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
"""systemd's variables for this process only: never handed on to sbatch and the jobs."""

CONFIGURED_API_VARIABLES = ("ARVADOS_API_HOST", "ARVADOS_API_TOKEN", "ARVADOS_API_HOST_INSECURE")
"""What the config sets for sbatch (and so the jobs): an inherited value must not reach any Slurm command."""

_NOT_HERE_GAI = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)
"""getaddrinfo errors that mean the name has no address at all (a temporary DNS failure is left to serve)."""


def job_base_env(environ: dict[str, str]) -> dict[str, str]:
    """Return the environment sbatch (and so each job) starts from: ours, less the service manager's. Pure.

    The Go dispatcher's jobs inherit its whole environment (sbatch's default ``--export=ALL``), so sites rely
    on it (PATH, SLURM_CONF, proxies, ARVADOS_KEEP_SERVICES). ARVADOS_API_HOST, ARVADOS_API_TOKEN and
    ARVADOS_API_HOST_INSECURE are left out: sbatch gets them from the config (``sbatch_environment``), and the
    other Slurm commands (squeue, scancel, ...), which also start from this environment, need no token.
    """
    return {k: v for k, v in environ.items() if k not in SERVICE_MANAGER_VARIABLES and k not in CONFIGURED_API_VARIABLES}


def database_driver_problem(settings: Settings) -> str | None:
    """Return why the PostgreSQL lock cannot work here (psycopg cannot be imported), or None. Imports psycopg.

    Only when PostgreSQL.Connection is set: without it there is no lock and no need for psycopg.
    """
    if not settings.postgresql_connection:
        return None
    try:
        importlib.import_module("psycopg")
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].strip()
        return (f"Clusters.{settings.cluster_id}.PostgreSQL.Connection is set, but psycopg cannot be imported "
                f"({reason}): install the postgres extra (pip install 'slurm-dispatch[postgres]'), or remove "
                "PostgreSQL.Connection to run without the dispatch lock")
    return None


def _address_is_here(host: str, port: int) -> bool:
    """Return False when ``host`` has no address this host can listen on; True otherwise. Binds, then closes.

    An address in use (another instance, a restart while the old socket lingers) or any other error counts as
    this host's: ``serve`` then waits for the lock or reports the error itself.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc.errno not in _NOT_HERE_GAI
    for family, kind, proto, _, sockaddr in infos:
        with contextlib.closing(socket.socket(family, kind, proto)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue
            return True
    return False


def internal_url_problem(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """Return why no Services.DispatchSLURM.InternalURLs entry can be served on this host, or None.

    Binds each address once and closes it again (as Go's lib/service/cmd.go: getListenAddr does): an entry
    whose address is not this host's (EADDRNOTAVAIL, or a name with no address) is another host's. Blocks on
    name resolution. When ARVADOS_SERVICE_INTERNAL_URL (in ``environ``) picked the one address to listen on, the
    message names the variable: changing InternalURLs alone would not help.

    Raises:
        ConfigError: an entry is not a usable http URL (``startup_problems`` refuses those first).
    """
    from slurm_dispatch.service.http import parse_internal_url  # the service's modules load only for run

    urls = settings.dispatch_internal_urls
    if any(_address_is_here(*parse_internal_url(url)) for url in urls):
        return None
    picked = (environ or {}).get(SERVICE_URL_ENV, "")
    if picked:
        return (f"{SERVICE_URL_ENV} is {show(picked)}, so the service would listen on {', '.join(urls)}, which is not "
                f"an address of this host (set {SERVICE_URL_ENV} to this host's Clusters.{settings.cluster_id}."
                "Services.DispatchSLURM.InternalURLs entry, fix that entry's ListenURL, or unset the variable)")
    return (f"Clusters.{settings.cluster_id}.Services.DispatchSLURM.InternalURLs: configuration does not enable "
            f"the \"crunch-dispatch-slurm\" service on this host: none of {', '.join(urls)} is an address of this "
            "host (add this host's URL, or set ListenURL)")


def host_problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Return what only this host can tell the service will fail on, one line each (see the module); ``environ``
    is the service's environment (ARVADOS_SERVICE_INTERNAL_URL).

    Imports psycopg, binds sockets and resolves names; see ``database_driver_problem`` and
    ``internal_url_problem``.

    Raises:
        ConfigError: from ``internal_url_problem``.
    """
    return [p for p in (database_driver_problem(settings), internal_url_problem(settings, environ)) if p is not None]


def _refuse(problems: list[str]) -> None:
    """Print each problem and ``refusing to start`` on stderr and exit EXIT_CONFIG; return when there are none.

    Raises:
        typer.Exit: with EXIT_CONFIG, when ``problems`` is not empty.
    """
    if not problems:
        return
    for problem in problems:
        typer.echo(f"slurm-dispatch: {problem}", err=True)
    typer.echo("slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)", err=True)
    raise typer.Exit(EXIT_CONFIG)


def run(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    lock_file: Annotated[
        Path | None,
        typer.Option("--lock-file", help="The single-instance lock file (default: $RUNTIME_DIRECTORY/lock, else /run/slurm-dispatch/lock)."),
    ] = None,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Run the dispatcher service until SIGTERM; Slurm jobs keep running for the next start to adopt."""
    from slurm_dispatch.service.logging_setup import configure_from_settings
    from slurm_dispatch.service.serve import serve

    environ = dict(os.environ)
    try:
        loaded = load(config, cluster_id, environ, legacy=legacy, skip_legacy=skip_legacy,
                      dispatch_config=dispatch_config)
        _refuse(startup_problems(loaded.settings))
        configure_from_settings(loaded.settings)
        for warning in loaded.warnings:
            logger.warning("config: %s", warning)
        _refuse(host_problems(loaded.settings, environ))
    except ConfigError as exc:
        typer.echo(f"slurm-dispatch: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    own = loaded.settings.dispatch_config_path or f"no {loaded.dispatch_path}, so its defaults"
    logger.info("starting for cluster %s with %s and %s", loaded.settings.cluster_id, loaded.path, own)
    try:
        code = asyncio.run(
            serve(
                loaded.settings,
                environ=environ,
                base_env=job_base_env(environ),
                lock_path=str(lock_file) if lock_file else None,
            )
        )
    except DispatchError as exc:
        typer.echo(f"slurm-dispatch: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
