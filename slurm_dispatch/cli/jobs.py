"""``slurm-dispatch adopt``: act on leftover Slurm jobs the way the service does at startup (``cancel`` is in
``cancel.py``).

``adopt`` is the startup orphan scan, once: one squeue, the job names of our cluster's containers
(``our_job_names``), one GET per container, and the service's decision for each (``orphan_action``). With
``--dry-run`` it only prints; otherwise it scancels the leftover jobs by the ids squeue showed, as the service
would (never by name: a job of that name submitted since squeue ran is not a leftover). "adopt" rows need nothing
from this command: the running service tracks those containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

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
from slurm_dispatch.errors import ArvadosNotFound, SlurmCommandError, SqueueParseError
from slurm_dispatch.model import Container, SlurmJob
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.cancels import CancelMode, cancel_mode
from slurm_dispatch.slurm.decide import OrphanAction, OrphanDecision, orphan_action, our_job_names
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all


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


@dataclass(frozen=True)
class Scan:
    """What one ``adopt`` did.

    Attributes:
        token_uuid: our token's uuid (the lock holder the decisions compare with).
        records: one ``_decision_json`` per job name of ours, in name order.
        skipped: the squeue lines that could not be read.
    """

    token_uuid: str
    records: list[dict[str, Any]]
    skipped: list[SqueueParseError]

    @property
    def failed(self) -> int:
        """How many scancels failed."""
        return sum(1 for r in self.records if r["error"])


def adopt_leftovers(cluster_id: str, *, backend: SlurmBackend, client: ArvadosClient, dry_run: bool) -> Scan:
    """Make the service's startup orphan scan once, and scancel the leftovers unless ``dry_run``; return what it did.

    One squeue, one GET per job name of ours (``our_job_names``), the service's decision for each
    (``orphan_action``); nothing is scancelled until every GET has answered. Blocks on squeue, the GETs and scancel.

    Raises:
        DispatchError: squeue or a GET failed (a container the API does not know is "leave alone", not an error); a
            failed scancel is recorded in its row instead.
    """
    me = client.current_token_uuid()
    jobs, skipped = parse_squeue_all(backend.queue())
    now = datetime.now(UTC)
    found: list[tuple[str, Container | None]] = []
    for uuid in our_job_names((j.name for j in jobs), cluster_id):
        try:
            found.append((uuid, client.get(uuid)))
        except ArvadosNotFound:
            found.append((uuid, None))
    records: list[dict[str, Any]] = []
    for uuid, container in found:
        decision = orphan_action(uuid, container, my_token_uuid=me, now=now)
        result, error = "-", None
        if decision.action is OrphanAction.ADOPT:
            result = "tracked by the service"
        elif decision.action is OrphanAction.SCANCEL:
            if dry_run:
                result = "would scancel (dry run)"
            else:
                result, error = _scancel_snapshot([j for j in jobs if j.name == uuid], backend=backend)
        records.append(_decision_json(decision, container, result, error))
    return Scan(token_uuid=me, records=records, skipped=skipped)


def _scancel_snapshot(named: list[SlurmJob], *, backend: SlurmBackend) -> tuple[str, str | None]:
    """scancel the jobs of the squeue snapshot by id, as the service does (``cancels.cancel_mode``); return the
    row's result and error (None when every scancel ran).

    By name, scancel would also kill a job of that name submitted since the snapshot (the service may have locked
    the Queued container again and submitted a new job meanwhile). A pending job gets ``--state=pending``, so one
    that has started since is left alone, for the next scan; a job in another state (completing, say) is left to
    Slurm. Blocks on scancel.
    """
    by_mode: dict[tuple[CancelMode, str], list[str]] = {}
    for job in named:
        by_mode.setdefault((cancel_mode(job), job.cluster), []).append(job.job_id)
    errors: list[str] = []
    done: list[str] = []
    for (mode, cluster), ids in by_mode.items():
        if mode is CancelMode.BY_NAME:
            continue
        try:
            backend.cancel_jobs(ids, running=mode is CancelMode.RUNNING, cluster=cluster)
            done.extend(ids)
        except (SlurmCommandError, ValueError) as exc:
            errors.append(one_line(str(exc)))
    if errors:
        return "scancel failed", "; ".join(errors)
    if not done:
        return "left to Slurm (" + ", ".join(sorted({j.state for j in named})) + ")", None
    return "scancelled", None


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
            scan = adopt_leftovers(settings.cluster_id, backend=backend, client=client, dry_run=dry_run)
        finally:
            client.close()
    for err in scan.skipped:
        typer.echo(f"warning: {one_line(str(err))}", err=True)
    records = scan.records
    if json_:
        print_json({"cluster_id": settings.cluster_id, "token_uuid": scan.token_uuid, "dry_run": dry_run,
                    "jobs": records})
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
    if scan.failed:
        raise typer.Exit(ExitCode.PROBLEM)
