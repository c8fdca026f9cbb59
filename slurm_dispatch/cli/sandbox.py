"""``slurm-dispatch sandbox ...``: the emulated Arvados API and the demo."""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from slurm_dispatch.cli.common import ExitCode, abort
from slurm_dispatch.config.cluster import CLUSTER_ID_RE

sandbox_app = typer.Typer(
    help="The embedded sandbox: the demo (no subcommand), and an emulated Arvados API (sandbox api).",
    invoke_without_command=True,
)


def _checked_poll_interval(value: float) -> float:
    from slurm_dispatch.sandbox.demo import poll_interval_problem

    problem = poll_interval_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


@sandbox_app.callback()
def demo(
    ctx: typer.Context,
    cluster_dir: Annotated[
        Path | None,
        typer.Option(
            help="The Slurm test cluster's directory (started there when it is not running, and stopped again "
            "afterwards). Default: $XDG_STATE_HOME/slurm-dispatch/sandbox-cluster, else "
            "~/.local/state/slurm-dispatch/sandbox-cluster.",
            show_default=False,
        ),
    ] = None,
    poll_interval: Annotated[float, typer.Option(help="PollInterval of the demo's dispatcher, in seconds (0.1 to "
                                                      "86400).", callback=_checked_poll_interval)] = 1.0,
    keep_files: Annotated[bool, typer.Option(
        "--keep-files", help="Keep the demo's temporary directory (the emulator's database, the Slurm jobs' output) "
                             "and print where it is; by default it is removed at the end.")] = False,
) -> None:
    """Run the demo: emulated Arvados + the real Slurm test cluster + the dispatcher, until every container is final."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    from slurm_dispatch.errors import DispatchError
    from slurm_dispatch.sandbox.demo import default_cluster_dir, run_demo, summary_table

    def say(text: str) -> None:
        typer.echo(text)

    try:
        where = (cluster_dir or default_cluster_dir(os.environ)).resolve()
        rows = run_demo(cluster_dir=where, poll_interval=poll_interval, say=say, keep_files=keep_files)
    except DispatchError as exc:
        typer.echo(f"slurm-dispatch sandbox: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("")
    typer.echo(summary_table(rows))


def _split_listen(listen: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``--listen HOST:PORT``. Pure.

    Raises:
        typer.BadParameter: not HOST:PORT with a port from 0 to 65535, or an IPv6 address (the emulator listens
            on IPv4 only).
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not port.isascii():
        raise typer.BadParameter(f"expected HOST:PORT, got {listen!r}")
    if int(port) > 65535:
        raise typer.BadParameter(f"the port must be from 0 to 65535 (0 picks a free one), got {port}")
    if ":" in host or host.startswith("["):
        raise typer.BadParameter(f"the emulator listens on IPv4 only: give an IPv4 address or a host name, not "
                                 f"{host!r}")
    return host or "127.0.0.1", int(port)


def _checked_listen(value: str) -> str:
    _split_listen(value)
    return value


def _checked_cluster_id(value: str) -> str:
    if not CLUSTER_ID_RE.fullmatch(value):
        raise typer.BadParameter(f"a cluster id is five lower-case letters or digits, got {value!r}")
    return value


def _checked_token(value: str | None) -> str | None:
    """Refuse a token that is empty or could not go in an Authorization header (never shown: it is a secret)."""
    if value is not None and (not value or not value.isprintable() or any(c.isspace() for c in value)):
        raise typer.BadParameter("must be non-empty, without spaces or control characters (leave it out for a "
                                 "random one)")
    return value


@sandbox_app.command("api")
def api(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on, IPv4 (port 0 picks a free one).",
                                        callback=_checked_listen)] = "127.0.0.1:0",
    db: Annotated[
        str | None,
        typer.Option(help="SQLite file that keeps the state across restarts (default: memory only)."),
    ] = None,
    cluster_id: Annotated[str, typer.Option(help="Cluster prefix of every uuid (five lower-case letters or digits).",
                                            callback=_checked_cluster_id)] = "zzzzz",
    token: Annotated[
        str | None,
        typer.Option(help="SystemRootToken secret (default: kept from --db, else random and printed on stderr). "
                     "An option is visible to every user in ps: prefer $SANDBOX_ROOT_TOKEN.",
                     envvar="SANDBOX_ROOT_TOKEN", show_envvar=False, callback=_checked_token),
    ] = None,
    http: Annotated[bool, typer.Option("--http", help="Serve plain HTTP instead of HTTPS.")] = False,
    max_dispatch_attempts: Annotated[int, typer.Option(help="Containers.MaxDispatchAttempts.", min=1)] = 10,
) -> None:
    """Serve the emulated Arvados API until SIGTERM/SIGINT; print its base URL on the first line of stdout.

    A bad option is one ``error:`` line (exit 2); so is a server that cannot start (exit 1): the address in use or
    not resolvable, a --db that cannot be opened.
    """
    from slurm_dispatch.sandbox.api import EmulatorServer

    host, port = _split_listen(listen)
    try:
        server = EmulatorServer(host=host, port=port, db_path=db, cluster_id=cluster_id, root_token=token,
                                tls=not http, max_dispatch_attempts=max_dispatch_attempts)
    except (OSError, sqlite3.Error) as exc:
        abort(f"sandbox api: cannot start: --db {db}: {_reason(exc)}", ExitCode.PROBLEM)
    try:
        server.start()
    except (OSError, ValueError) as exc:
        server.stop()
        abort(f"sandbox api: cannot start: --listen {listen}: {_reason(exc)}", ExitCode.PROBLEM)
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    if token is None:
        sys.stderr.write(f"root token: {server.root_token}\n")
        sys.stderr.flush()
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()


def _reason(exc: BaseException) -> str:
    """Return an error's text without Python's ``[Errno N]`` prefix. Pure."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
