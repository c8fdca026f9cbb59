"""``slurm-dispatch run``: the service (what systemd's ExecStart runs).

Before the service starts, ``run`` refuses (exit 2, ``EXIT_CONFIG``, which the systemd unit's
RestartPreventExitStatus stops on) what ``config check`` refuses, loading the config through the same
``cli.common.load``.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from slurm_dispatch.errors import ConfigError, DispatchError

logger = logging.getLogger("slurm_dispatch.cli.run")

EXIT_CONFIG = 2
"""Exit status for a config the service refuses to start with; the systemd unit's RestartPreventExitStatus."""

SERVICE_MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
"""systemd's variables for this process only: never handed on to sbatch and the jobs."""

CONFIGURED_API_VARIABLES = ("ARVADOS_API_HOST", "ARVADOS_API_TOKEN", "ARVADOS_API_HOST_INSECURE")
"""What the config sets for sbatch (and so the jobs): an inherited value must not reach any Slurm command."""


def job_base_env(environ: dict[str, str]) -> dict[str, str]:
    """Return the environment sbatch (and so each job) starts from: ours, less the service manager's. Pure.

    The Go dispatcher's jobs inherit its whole environment (sbatch's default ``--export=ALL``), so sites rely
    on it (PATH, SLURM_CONF, proxies, ARVADOS_KEEP_SERVICES). ARVADOS_API_HOST, ARVADOS_API_TOKEN and
    ARVADOS_API_HOST_INSECURE are left out: sbatch gets them from the config (``sbatch_environment``), and the
    other Slurm commands (squeue, scancel, ...), which also start from this environment, need no token.
    """
    return {k: v for k, v in environ.items() if k not in SERVICE_MANAGER_VARIABLES and k not in CONFIGURED_API_VARIABLES}


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
        problems = startup_problems(loaded.settings)
        if problems:
            for problem in problems:
                typer.echo(f"slurm-dispatch: {problem}", err=True)
            typer.echo("slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)", err=True)
            raise typer.Exit(EXIT_CONFIG)
        configure_from_settings(loaded.settings)
    except ConfigError as exc:
        typer.echo(f"slurm-dispatch: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for warning in loaded.warnings:
        logger.warning("config: %s", warning)
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
