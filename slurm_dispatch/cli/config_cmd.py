"""``slurm-dispatch config check``: validate the config and print the effective settings, secrets redacted.

Exit 0 when the service would start with this config; 2 on a ``ConfigError`` (one line naming the file, the
key and the value) or when ``startup_problems`` lists anything the service refuses to start with (a bad sbatch
template, no ``--job-name=%U``, no ``Services.DispatchSLURM.InternalURLs``). Loader warnings (unknown keys,
legacy file, environment fill-ins) are shown but do not fail the check.
"""

from __future__ import annotations

import typer
import yaml

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    errors_to_exit,
    load,
    print_json,
)
from slurm_dispatch.config import LoadedConfig, redacted, startup_problems

config_app = typer.Typer(help="Inspect the dispatcher's configuration.", no_args_is_help=True)


def _warnings(loaded: LoadedConfig, problems: list[str]) -> list[str]:
    # The loader warns about empty InternalURLs and startup_problems reports it too: say it once, as a
    # problem, since the service refuses to start without it.
    if any(".Services.DispatchSLURM.InternalURLs is empty" in p for p in problems):
        return [w for w in loaded.warnings if ".Services.DispatchSLURM.InternalURLs is empty" not in w]
    return list(loaded.warnings)


@config_app.command("check")
def check(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
) -> None:
    """Validate the config and print the effective settings (secrets redacted).

    Exit 2 when the config cannot be read or the service would refuse to start with it.
    """
    with errors_to_exit():
        loaded = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy)
    problems = startup_problems(loaded.settings)
    warnings = _warnings(loaded, problems)
    if json_:
        print_json({
            "ok": not problems,
            "config_file": str(loaded.path),
            "config_file_source": loaded.path_source.value,
            "legacy_file": str(loaded.legacy_path) if loaded.legacy_path else None,
            "warnings": warnings,
            "problems": problems,
            "settings": redacted(loaded.settings),
        })
    else:
        typer.echo(f"Config file: {loaded.path} (from {loaded.path_source.value})")
        if loaded.legacy_path:
            typer.echo(f"Legacy file: {loaded.legacy_path}")
        typer.echo(f"Cluster: {loaded.settings.cluster_id}")
        typer.echo("")
        typer.echo("Effective settings (secrets redacted):")
        text = yaml.safe_dump(redacted(loaded.settings), sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=1000)
        for line in text.splitlines():
            typer.echo(f"  {line}")
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
