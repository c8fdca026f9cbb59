"""``slurm-dispatch cancel`` and ``slurm-dispatch adopt``: act on Slurm jobs the way the service does.

``cancel UUID`` cancels the container in Arvados (with the reason in its runtime_status, so it is not dispatched
again) and runs the service's own three scancel passes (``SlurmCLI.cancel``) on the jobs named UUID;
``--slurm-only`` only removes the Slurm job, as before (the service then unlocks a Locked container, which is
dispatched again, and crunch-run records Cancelled for a Running one).

``adopt`` is the startup orphan scan, once: one squeue, the job names of our cluster's containers
(``our_job_names``), one GET per container, and the service's decision for each (``orphan_action``). With
``--dry-run`` it only prints; otherwise it scancels the leftover jobs, as the service would. "adopt" rows need
nothing from this command: the running service tracks those containers.
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    api_client,
    container_uuid,
    errors_to_exit,
    load,
    one_line,
    print_json,
    slurm_backend,
    table_text,
)
from slurm_dispatch.cli.control import who
from slurm_dispatch.errors import ArvadosNotFound, SlurmCommandError
from slurm_dispatch.model import Container, ContainerState, with_error
from slurm_dispatch.slurm.backend import scancel_argvs
from slurm_dispatch.slurm.decide import OrphanAction, OrphanDecision, orphan_action, our_job_names
from slurm_dispatch.slurm.squeue_lines import parse_squeue, parse_squeue_all

_CANCEL_EFFECT = {
    "PENDING": "removed (it had not started)",
    "RUNNING": "SIGTERM sent to its batch shell (crunch-run stops the container and records the final state)",
    "SUSPENDED": "SIGTERM sent to its batch shell",
}


def cancel(
    uuid: Annotated[str, typer.Argument(help="The container uuid: the name of its Slurm job(s).",
                                        callback=container_uuid, show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    slurm_only: Annotated[bool, typer.Option(
        "--slurm-only", help="Only scancel the Slurm job(s): the service then unlocks a Locked container, which is "
                             "dispatched again, and crunch-run marks a Running one Cancelled.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why, written on the container (runtime_status.error).")
                      ] = "",
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Cancel a container in Arvados (so it is not dispatched again) and scancel its Slurm job(s).

    The reason goes into the container's runtime_status.error. The container request that made it may still make
    a new one (Arvados retries a cancelled container while the request wants it): to stop a workflow for good,
    cancel the request. With --slurm-only, only the Slurm job goes (the old behaviour). Asks first unless --yes.
    """
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        backend = slurm_backend(settings=settings)
        jobs, _ = parse_squeue_all(backend.queue())
    named = [j for j in jobs if j.name == uuid]
    container: Container | None = None
    if not slurm_only:
        with errors_to_exit():
            client = api_client(settings)
            try:
                container = client.get(uuid)
            finally:
                client.close()
    if named:
        typer.echo(f"Slurm jobs named {uuid}: " + ", ".join(f"{j.job_id} ({j.state})" for j in named))
    else:
        typer.echo(f"No Slurm job is named {uuid}.")
    cancel_in_arvados = container is not None and not container.state.is_final
    if container is not None:
        typer.echo(f"Container {uuid}: {container.state.value}, priority {container.priority}"
                   + ("" if cancel_in_arvados else " (already final: nothing to cancel in Arvados)"))
    if not named and not cancel_in_arvados:
        typer.echo("Nothing to cancel.")
        return
    if not yes:
        what = " and ".join(w for w in ("cancel the container in Arvados" if cancel_in_arvados else "",
                                         "scancel the jobs" if named else "") if w)
        typer.confirm(f"{what[0].upper()}{what[1:]}?", abort=True)
    if cancel_in_arvados and container is not None:
        text = reason.strip() or f"cancelled by {who()} with `slurm-dispatch cancel`"
        with errors_to_exit():
            client = api_client(settings)
            try:
                # Only the lock holder may write runtime_status (services/api/app/models/container.rb:
                # validate_change): a container another dispatcher holds is cancelled without the reason. The
                # hash is replaced whole, so the keys already there (a warning, crunch-run's activity) are kept.
                container = client.get(uuid)  # again: the prompt may have taken a while
                others = bool(container.locked_by_uuid) and container.locked_by_uuid != client.current_token_uuid()
                change: dict[str, object] = {"state": ContainerState.CANCELLED.value}
                if not others:
                    change["runtime_status"] = with_error(container.runtime_status, {"error": text})
                if not container.state.is_final:
                    client.update(uuid, change)
            finally:
                client.close()
        if container.state.is_final:
            typer.echo(f"container {uuid} became {container.state.value} meanwhile: nothing to cancel in Arvados")
        elif others:
            typer.echo(f"cancelled container {uuid} in Arvados; the reason was not written: it is locked by "
                       f"{container.locked_by_uuid}, and Arvados lets only the lock holder write runtime_status")
        else:
            typer.echo(f"cancelled container {uuid} in Arvados: {text}")
    if not named:
        return
    with errors_to_exit():
        backend.cancel(uuid)
    for argv in scancel_argvs(uuid):
        typer.echo(f"ran: {shlex.join(argv)}")
    for job in named:
        effect = _CANCEL_EFFECT.get(
            job.state, "left as it is (the passes only touch pending, running and suspended jobs)")
        typer.echo(f"job {job.job_id} ({job.state}): {effect}")


def _decision_json(decision: OrphanDecision, container: Container | None, result: str, error: str | None
                   ) -> dict[str, Any]:
    return {
        "uuid": decision.uuid,
        "state": container.state.value if container else None,
        "locked_by_uuid": container.locked_by_uuid if container else None,
        "action": decision.action.value,
        "reason": decision.reason,
        "result": result,
        "error": error,
    }


def adopt(
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be done.")] = False,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Scan squeue once for our cluster's jobs and do what the service does at startup.

    Prints, for each job named like one of our containers, whether the service adopts it, scancels it
    (its container is Queued, Cancelled or Complete) or leaves it alone (locked by another token); then,
    unless --dry-run, scancels the leftovers. Exit 1 if a scancel failed.
    """
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        backend = slurm_backend(settings=settings)
        client = api_client(settings)
        try:
            me = client.current_token_uuid()
            jobs, skipped = parse_squeue(backend.queue())
            found: list[tuple[str, Container | None]] = []
            for uuid in our_job_names(jobs, settings.cluster_id):
                try:
                    found.append((uuid, client.get(uuid)))
                except ArvadosNotFound:
                    found.append((uuid, None))
        finally:
            client.close()
    for err in skipped:
        typer.echo(f"warning: {one_line(str(err))}", err=True)
    failed = 0
    records: list[dict[str, Any]] = []
    for uuid, container in found:
        decision = orphan_action(uuid, container, my_token_uuid=me)
        result, error = "-", None
        if decision.action is OrphanAction.ADOPT:
            result = "tracked by the service"
        elif decision.action is OrphanAction.SCANCEL:
            if dry_run:
                result = "would scancel (dry run)"
            else:
                try:
                    backend.cancel(uuid)
                    result = "scancelled"
                except SlurmCommandError as exc:
                    failed += 1
                    result, error = "scancel failed", one_line(str(exc))
        records.append(_decision_json(decision, container, result, error))
    if json_:
        print_json({"cluster_id": settings.cluster_id, "token_uuid": me, "dry_run": dry_run, "jobs": records})
    else:
        typer.echo(f"Cluster {settings.cluster_id}: {len(records)} Slurm job(s) named like our containers"
                   + (" (dry run)" if dry_run else ""))
        if records:
            table = Table(box=box.SIMPLE, pad_edge=False)
            for header in ("container", "action", "why", "result"):
                table.add_column(header, no_wrap=header == "container", overflow="fold")
            for r in records:
                table.add_row(r["uuid"], r["action"], r["reason"], r["result"])
            typer.echo("")
            typer.echo(table_text(table))
        for r in records:
            if r["error"]:
                typer.echo(f"error: {r['uuid']}: {r['error']}", err=True)
    if failed:
        raise typer.Exit(ExitCode.PROBLEM)
