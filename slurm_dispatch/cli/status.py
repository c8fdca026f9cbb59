"""``slurm-dispatch status``: our containers as Arvados sees them and their jobs as Slurm sees them, side by side.

"Our containers" are those locked by our token plus every container named by a job in squeue with our
cluster's prefix. The comparison is the pure ``slurm_dispatch.slurm.status.status_rows``; this module fetches
the two snapshots and prints them. Exit 1 when any mismatch is flagged.

The snapshots are taken one after the other (API list, squeue, then a GET of the containers only squeue
named), so a container that changes in between may be flagged once; run it again before acting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import typer
from rich import box
from rich.table import Table

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    api_client,
    errors_to_exit,
    load,
    one_line,
    print_json,
    slurm_backend,
    table_text,
)
from slurm_dispatch.model import UUID_BATCH, Container, format_timestamp
from slurm_dispatch.service.state import StateStore
from slurm_dispatch.slurm.decide import our_job_names
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all
from slurm_dispatch.slurm.status import StatusRow, status_rows


def containers_by_uuid(client: ArvadosClient, uuids: Sequence[str], *, batch_size: int,
                       on_malformed: Callable[[str, str], None] | None = None) -> list[Container]:
    """Return the containers among ``uuids`` that the API knows, with ``uuid in [...]`` lists of ≤ 20.

    Blocks on one or more list calls per batch. ``on_malformed`` as ``ArvadosClient.list_all``'s.

    Raises:
        ArvadosAPIError: a list call failed.
    """
    found: list[Container] = []
    for start in range(0, len(uuids), UUID_BATCH):
        batch = list(uuids[start : start + UUID_BATCH])
        for page in client.list_all(filters=[["uuid", "in", batch]], batch_size=batch_size,
                                    on_malformed=on_malformed):
            found.extend(page)
    return found


def _when(epoch: float) -> str:
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


def _minutes(seconds: object) -> str:
    return f"{float(seconds or 0) / 60:.0f} min" if isinstance(seconds, (int, float)) else "?"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _table(rows: list[StatusRow]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for header, justify in (("container", "left"), ("state", "left"), ("priority", "right"), ("job", "right"),
                            ("slurm state", "left"), ("nice", "right"), ("slurm prio", "right"),
                            ("reason", "left"), ("!", "left")):
        table.add_column(header, justify=justify, no_wrap=header == "container",  # type: ignore[arg-type]
                         overflow="fold")
    for row in rows:
        table.add_row(row.uuid, _text(row.state) or "(unknown)", _text(row.priority), _text(row.job_id),
                      _text(row.slurm_state) or "-", _text(row.nice), _text(row.slurm_priority),
                      _text(row.reason), "!" if row.problems else "")
    return table


def status(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Show our containers and their Slurm jobs side by side, and flag mismatches (exit 1 if any)."""
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        client = api_client(settings)
        # A record the service cannot read is one it ignores: shown here, not allowed to hide the others.
        malformed: dict[str, str] = {}
        try:
            me = client.current_token_uuid()
            mine = [c for page in client.list_all(filters=[["locked_by_uuid", "=", me]],
                                                  batch_size=settings.batch_size, on_malformed=malformed.__setitem__)
                    for c in page]
            jobs, skipped = parse_squeue_all(slurm_backend(settings=settings).queue())
            known = {c.uuid for c in mine} | malformed.keys()
            named = [u for u in our_job_names((j.name for j in jobs), settings.cluster_id) if u not in known]
            others = containers_by_uuid(client, named, batch_size=settings.batch_size,
                                        on_malformed=malformed.__setitem__)
        finally:
            client.close()
    for err in skipped:
        typer.echo(f"warning: {one_line(str(err))}", err=True)
    jobs_of = {uuid: [j for j in jobs if j.name == uuid] for uuid in malformed}
    for uuid, problem in malformed.items():
        held = "".join(f"; its Slurm job {j.job_id} is {j.state}" for j in jobs_of[uuid])
        typer.echo(f"warning: container {uuid}: not a valid container record ({one_line(problem)}): the service "
                   f"ignores it; check the API server's answer for it{held}", err=True)
    state = StateStore(settings.state_directory).read()
    now = time.time()
    # The state file keeps what the service last wrote: a stopped service leaves nodes whose hold has ended.
    broken = {n: b.shown(settings.broken_node_hold, now) for n, b in sorted(state.broken.items())
              if b.held(settings.broken_node_hold, now)}
    # a malformed record's job is reported with the record (above), not as a job of a container the API lacks
    rows = status_rows([*mine, *others], [j for j in jobs if j.name not in malformed], me, settings.cluster_id)
    flagged = [row for row in rows if row.problems]
    if json_:
        print_json({"token_uuid": me, "cluster_id": settings.cluster_id,
                    "drained": state.drain is not None,
                    "drain_reason": state.drain.reason if state.drain else "",
                    "drained_since": state.drain.since if state.drain else "",
                    "drained_by": state.drained_by if state.drain else "",
                    "broken_nodes": broken,
                    "containers": [asdict(row) for row in rows],
                    "malformed_records": [{"uuid": u, "problem": p,
                                           "jobs": [{"job_id": j.job_id, "state": j.state} for j in jobs_of[u]]}
                                          for u, p in malformed.items()],
                    "problems": len(flagged) + len(malformed)})
    else:
        typer.echo(f"Cluster {settings.cluster_id}, token {me}: {len(rows)} row(s), {len(flagged)} with problems")
        if state.drain is not None:
            by = f" by {state.drained_by}" if state.drained_by else ""
            typer.echo(f"Drained since {state.drain.since}{by} ({state.drain.reason}): no new container is locked "
                       "until `slurm-dispatch resume`.")
        for node, shown in broken.items():
            until = shown["until"]
            held = ("held off for good: BrokenNodes.Hold is 0" if not isinstance(until, float)
                    else f"held off until {_when(until)}, {_minutes(shown['hold_left_s'])} left")
            typer.echo(f"Broken node {node} (since {_when(float(shown['since'] or 0))}, {held}): {shown['reason']}")
        if rows:
            typer.echo("")
            typer.echo(table_text(_table(rows)))
        if flagged:
            typer.echo("")
        for row in flagged:
            for problem in row.problems:
                typer.echo(f"! {row.uuid}{f' (job {row.job_id})' if row.job_id else ''}: {problem}")
        described = [row for row in rows if row.scheduling_status]
        if described:
            typer.echo("")
            typer.echo("Scheduling status:")
        for row in described:
            typer.echo(f"  {row.uuid}: {row.scheduling_status}")
    if flagged or malformed:
        raise typer.Exit(ExitCode.PROBLEM)
