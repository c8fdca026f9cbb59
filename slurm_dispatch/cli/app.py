"""The ``slurm-dispatch`` typer application: wires the command groups together."""

from __future__ import annotations

from typing import Annotated

import typer

from slurm_dispatch import __version__
from slurm_dispatch.cli import control, explain, jobs, status
from slurm_dispatch.cli.config_cmd import config_app
from slurm_dispatch.cli.run import run
from slurm_dispatch.cli.sandbox import sandbox_app

app = typer.Typer(
    name="slurm-dispatch",
    help="Run Arvados containers on a Slurm cluster (a drop-in replacement for crunch-dispatch-slurm).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold tokens
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)
app.add_typer(sandbox_app, name="sandbox")
app.command("run")(run)
app.add_typer(config_app, name="config")
app.command("explain")(explain.explain)
app.command("status")(status.status)
app.command("cancel")(jobs.cancel)
app.command("adopt")(jobs.adopt)
app.command("drain")(control.drain)
app.command("resume")(control.resume)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"slurm-dispatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Run Arvados containers on a Slurm cluster."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"slurm-dispatch {__version__}")


def main() -> None:
    """Entry point of the ``slurm-dispatch`` console script (and of ``python -m slurm_dispatch``).

    The program name is fixed so that help texts and the completion script name the console script, whichever
    way it was started.
    """
    app(prog_name="slurm-dispatch")
