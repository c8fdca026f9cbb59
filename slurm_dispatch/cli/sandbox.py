"""``slurm-dispatch sandbox ...``: the emulated Arvados API and the demo."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

sandbox_app = typer.Typer(
    help="The embedded sandbox: the demo (no subcommand), and an emulated Arvados API (sandbox api).",
    invoke_without_command=True,
)


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
    poll_interval: Annotated[float, typer.Option(help="PollInterval of the demo's dispatcher, in seconds.")] = 1.0,
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
        rows = run_demo(cluster_dir=where, poll_interval=poll_interval, say=say)
    except DispatchError as exc:
        typer.echo(f"slurm-dispatch sandbox: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("")
    typer.echo(summary_table(rows))


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"expected HOST:PORT, got {listen!r}", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


@sandbox_app.command("api")
def api(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (port 0 picks a free one).")] = "127.0.0.1:0",
    db: Annotated[
        str | None,
        typer.Option(help="SQLite file that keeps the state across restarts (default: memory only)."),
    ] = None,
    cluster_id: Annotated[str, typer.Option(help="Cluster prefix of every uuid.")] = "zzzzz",
    token: Annotated[
        str | None,
        typer.Option(help="SystemRootToken secret (default: kept from --db, else random and printed on stderr). "
                     "An option is visible to every user in ps: prefer $SANDBOX_ROOT_TOKEN.",
                     envvar="SANDBOX_ROOT_TOKEN", show_envvar=False),
    ] = None,
    http: Annotated[bool, typer.Option("--http", help="Serve plain HTTP instead of HTTPS.")] = False,
    max_dispatch_attempts: Annotated[int, typer.Option(help="Containers.MaxDispatchAttempts.")] = 10,
) -> None:
    """Serve the emulated Arvados API until SIGTERM/SIGINT; print its base URL on the first line of stdout."""
    from slurm_dispatch.sandbox.api import EmulatorServer

    host, port = _split_listen(listen)
    server = EmulatorServer(host=host, port=port, db_path=db, cluster_id=cluster_id, root_token=token,
                            tls=not http, max_dispatch_attempts=max_dispatch_attempts)
    server.start()
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
