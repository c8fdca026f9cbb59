"""``slurm-dispatch config check``: validate the config and print the effective settings, secrets redacted.

Reads what ``run`` reads, through the same ``cli.common.load``: the Arvados cluster config (and the legacy
file), and slurm-dispatch's own file (``--dispatch-config``, ``$SLURM_DISPATCH_CONFIG``, or the default path
when it exists). The settings are printed in two groups, each saying which file it came from.

Exit 0 when the service would start with this config; 2 on a ``ConfigError`` (one line naming the file, the
key and the value) or when ``startup_problems`` lists anything the service refuses to start with (a bad sbatch
template, no ``--job-name=%U``, no ``Services.DispatchSLURM.InternalURLs``). Loader warnings (unknown keys,
legacy file, environment fill-ins, ARVADOS_API_* variables that go unused) are shown but do not fail the check.
"""

from __future__ import annotations

from typing import Any

import typer
import yaml

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    errors_to_exit,
    load,
    print_json,
)
from slurm_dispatch.config import OWN_FIELDS, LoadedConfig, redacted, startup_problems
from slurm_dispatch.slurm.clusters import clusters_of, describe

config_app = typer.Typer(help="Inspect the dispatcher's configuration.", no_args_is_help=True)


def _warnings(loaded: LoadedConfig, problems: list[str]) -> list[str]:
    # The loader warns about empty InternalURLs and startup_problems reports it too: say it once, as a
    # problem, since the service refuses to start without it.
    if any(".Services.DispatchSLURM.InternalURLs is empty" in p for p in problems):
        return [w for w in loaded.warnings if ".Services.DispatchSLURM.InternalURLs is empty" not in w]
    return list(loaded.warnings)


def _arvados_files(loaded: LoadedConfig) -> list[str]:
    files = [str(loaded.cluster_path)] if loaded.cluster_path else []
    return files + ([str(loaded.legacy_path)] if loaded.legacy_path else [])


def _arvados_from(loaded: LoadedConfig) -> str:
    if loaded.cluster_path is None:
        return f"from the legacy file {loaded.legacy_path} only"
    if loaded.legacy_path:
        return f"from {loaded.cluster_path}, with the legacy file {loaded.legacy_path} over it"
    return f"from {loaded.cluster_path}"


def _dispatch_file_line(loaded: LoadedConfig) -> str:
    if loaded.dispatch_read is None:
        return f"{loaded.dispatch_path} (default; not there, so its settings take their defaults)"
    return f"{loaded.dispatch_path} (from {loaded.dispatch_path_source.value})"


def _print_settings(title: str, settings: dict[str, Any]) -> None:
    typer.echo(title)
    text = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    for line in text.splitlines():
        typer.echo(f"  {line}")


@config_app.command("check")
def check(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Validate the config and print the effective settings (secrets redacted).

    Exit 2 when the config cannot be read or the service would refuse to start with it.
    """
    with errors_to_exit():
        loaded = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy, dispatch_config=dispatch_config)
    problems = startup_problems(loaded.settings)
    warnings = _warnings(loaded, problems)
    every = redacted(loaded.settings)
    if json_:
        print_json({
            "ok": not problems,
            "config_file": str(loaded.path),
            "config_file_source": loaded.path_source.value,
            "legacy_file": str(loaded.legacy_path) if loaded.legacy_path else None,
            "slurm_clusters": list(clusters_of(loaded.settings)),
            "dispatch_config_file": str(loaded.dispatch_read) if loaded.dispatch_read else None,
            "dispatch_config_file_source": loaded.dispatch_path_source.value,
            "sources": {"arvados": _arvados_files(loaded),
                        "slurm_dispatch": str(loaded.dispatch_read) if loaded.dispatch_read else None},
            "warnings": warnings,
            "problems": problems,
            "settings": every,
        })
    else:
        typer.echo(f"Config file: {loaded.path} (from {loaded.path_source.value})")
        if loaded.legacy_path:
            typer.echo(f"Legacy file: {loaded.legacy_path}")
        typer.echo(f"slurm-dispatch file: {_dispatch_file_line(loaded)}")
        typer.echo(f"Cluster: {loaded.settings.cluster_id}")
        typer.echo(describe(clusters_of(loaded.settings)))
        typer.echo("")
        _print_settings(f"Arvados settings, {_arvados_from(loaded)} (secrets redacted):",
                        {k: v for k, v in every.items() if k not in OWN_FIELDS})
        typer.echo("")
        own_from = (f"from {loaded.dispatch_read}" if loaded.dispatch_read
                    else f"all defaults (no file at {loaded.dispatch_path})")
        _print_settings(f"slurm-dispatch settings, {own_from}:", {k: every[k] for k in OWN_FIELDS})
        if warnings:
            typer.echo("")
            typer.echo("Warnings:")
            for warning in warnings:
                typer.echo(f"  - {warning}")
        typer.echo("")
        if problems:
            typer.echo("Problems (the service refuses to start):")
            for problem in problems:
                typer.echo(f"  - {problem}")
        else:
            typer.echo("OK: the service can start with this config.")
    if problems:
        raise typer.Exit(ExitCode.CONFIG)
