"""``slurm-dispatch drain`` and ``slurm-dispatch resume``: stop or resume locking new containers.

Both write the service's state file (``<Service.StateDirectory>/state.json``, with who drained), which the service
reads every tick: a running service stops locking within one tick and logs the change, keeps following everything
already locked or running, and stays drained across restarts until resumed. The service's management API offers
the same (``POST /arvados/v1/dispatch/drain`` and ``.../resume``, behind the ManagementToken).
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import Annotated

import typer

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    abort,
    errors_to_exit,
    load,
    print_json,
)
from slurm_dispatch.dispatch.admission import Drain, drain_reason_problem
from slurm_dispatch.model import format_timestamp
from slurm_dispatch.service.state import StateStore


def who() -> str:
    """Return ``user@host`` of whoever runs the command (for reasons written on the state or a container)."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):
        return "an admin"


def drain(
    reason: Annotated[str, typer.Option("--reason", help="Why (shown by status and the management API).")] = "",
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Stop locking new containers; everything already locked or running is followed to the end.

    Survives restarts until `slurm-dispatch resume`.
    """
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        store = StateStore(settings.state_directory)
        by = who()
        text = reason.strip() or f"drained by {by}"
        problem = drain_reason_problem(text)
        if problem is not None:
            abort(f"--reason: {problem}", ExitCode.CONFIG)
        state = store.set_drain(Drain(reason=text, since=format_timestamp(datetime.now(UTC))), by=by)
    assert state.drain is not None
    if json_:
        print_json({"drained": True, "reason": state.drain.reason, "since": state.drain.since,
                    "state_file": str(store.path)})
        return
    typer.echo(f"Drained ({state.drain.reason}): no new container will be locked; the running service sees this "
               "within one poll, and containers already locked or running are followed to the end.")
    typer.echo(f"State file: {store.path}. Resume with `slurm-dispatch resume`.")


def resume(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Resume locking new containers after `slurm-dispatch drain`."""
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        store = StateStore(settings.state_directory)
        was = store.read().drain
        store.set_drain(None)
    if json_:
        print_json({"drained": False, "was_drained": was is not None, "state_file": str(store.path)})
        return
    if was is None:
        typer.echo("Not drained: nothing to resume.")
    else:
        typer.echo(f"Resumed (was drained since {was.since}: {was.reason}): the service locks new containers again "
                   "from its next poll.")
