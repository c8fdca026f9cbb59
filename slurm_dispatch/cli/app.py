"""The ``slurm-dispatch`` typer application: wires the command groups together.

A bad command line (an unknown option, a missing argument, a value a parameter refuses) is one line on stderr,
``error: <what was wrong> (see 'slurm-dispatch <command> --help')``, exit 2, as docs/admin-commands.md promises
for every error; typer's default is the usage line, a hint and the message in a box (``OneLineUsageErrors``).
``--help`` is typer's, unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from slurm_dispatch import __version__
from slurm_dispatch.cli import cancel, control, explain, jobs, status
from slurm_dispatch.cli.common import one_line
from slurm_dispatch.cli.config_cmd import config_app
from slurm_dispatch.cli.run import run
from slurm_dispatch.cli.sandbox import sandbox_app

CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
"""click's ClickException, the base of every usage error. Found from typer's public ``BadParameter``: typer 0.2x
raises its own copy of click's exceptions, older releases click's own, and ``BadParameter`` is one in both."""


def usage_error_line(exc: Exception) -> str:
    """Return the one line printed for a click error: its message, and the command's ``--help`` when known. Pure."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    path = getattr(getattr(exc, "ctx", None), "command_path", None)
    hint = f" (see '{path} --help')" if isinstance(path, str) and path else ""
    return f"error: {one_line(str(message))}{hint}"


class OneLineUsageErrors(TyperGroup):
    """The root command: click's errors (usage errors, parameters refused) become one ``error:`` line on stderr.

    Runs the command line with click's ``standalone_mode=False`` (errors come back as exceptions rather than being
    printed) and does the standalone part itself: exit with the command's code, ``Aborted.`` on a refused prompt
    (exit 1). ``no_args_is_help`` keeps printing the help (typer prints it when it makes that error). Any other
    exception is a bug and passes through to typer's traceback (without locals).
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; with ``standalone_mode`` (the console script, CliRunner) exit, else return.

        Raises:
            SystemExit: always, in standalone mode.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except CLICK_ERROR as exc:
            # NoArgsIsHelpError (matched by name, as typer does): the help is the message, which typer has printed
            # already when it renders help with rich
            if type(exc).__name__ == "NoArgsIsHelpError":
                if getattr(exc, "message", ""):
                    exc.show()  # type: ignore[attr-defined]
            else:
                typer.echo(usage_error_line(exc), err=True)
            _exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            _exit(1)
        _exit(code if isinstance(code, int) else 0)


def _exit(code: object) -> NoReturn:
    sys.exit(code if isinstance(code, int) else 1)


app = typer.Typer(
    cls=OneLineUsageErrors,
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
app.command("cancel")(cancel.cancel)
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
