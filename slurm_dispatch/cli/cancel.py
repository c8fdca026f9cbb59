"""``slurm-dispatch cancel``: cancel a container in Arvados and scancel its Slurm jobs, the way the service does.

``cancel UUID`` cancels the container in Arvados (with the reason in its runtime_status, so it is not dispatched
again) and runs the service's own three scancel passes (``SlurmBackend.cancel``) on the jobs named UUID;
``--slurm-only`` only removes the Slurm job, as before (the service then unlocks a Locked container, which is
dispatched again, and crunch-run records Cancelled for a Running one).

The command builds the adapters and hands them to ``cancel_container``, which does the work and says each step
through ``say``: tests run it with ``FakeSlurm`` and the emulated API.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Annotated

import typer

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    LegacyConfigOption,
    SkipLegacyOption,
    api_client,
    container_uuid,
    errors_to_exit,
    load,
    require_our_container,
    slurm_backend,
)
from slurm_dispatch.cli.control import who
from slurm_dispatch.dispatch.admission import drain_reason_problem
from slurm_dispatch.errors import ArvadosNotFound, ArvadosUnavailable, DispatchError
from slurm_dispatch.model import Container, ContainerState, SlurmJob, with_error
from slurm_dispatch.slurm.backend import SlurmBackend, scancel_argvs
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all

_CANCEL_EFFECT = {
    "PENDING": "removed (it had not started)",
    "RUNNING": "SIGTERM sent to its batch shell (crunch-run stops the container and records the final state)",
    "SUSPENDED": "SIGTERM sent to its batch shell",
}


def cancel_container(
    uuid: str,
    *,
    reason: str,
    backend: SlurmBackend,
    client: ArvadosClient | None,
    confirm: Callable[[str], None] | None,
    say: Callable[[str], None],
) -> None:
    """Cancel container ``uuid`` in Arvados (unless ``client`` is None: ``--slurm-only``) and scancel its jobs.

    ``reason`` is written to runtime_status.error ("" for the default, naming who cancelled). ``confirm`` asks
    the question it is given and raises to refuse (None: do not ask). Every step is told through ``say``.
    Blocks on squeue, scancel and API calls.

    Raises:
        DispatchError: a Slurm command or an API call failed.
    """
    jobs, _ = parse_squeue_all(backend.queue())
    named = [j for j in jobs if j.name == uuid]
    container = None if client is None else _get(client, uuid, named)
    if named:
        say(f"Slurm jobs named {uuid}: " + ", ".join(f"{j.job_id} ({j.state})" for j in named))
    else:
        say(f"No Slurm job is named {uuid}.")
    cancel_in_arvados = container is not None and not container.state.is_final
    if container is not None:
        say(f"Container {uuid}: {container.state.value}, priority {container.priority}"
            + ("" if cancel_in_arvados else " (already final: nothing to cancel in Arvados)"))
    if not named and not cancel_in_arvados:
        say("Nothing to cancel.")
        return
    if confirm is not None:
        what = " and ".join(w for w in ("cancel the container in Arvados" if cancel_in_arvados else "",
                                         "scancel the jobs" if named else "") if w)
        confirm(f"{what[0].upper()}{what[1:]}?")
    if cancel_in_arvados and client is not None:
        text = reason.strip() or f"cancelled by {who()} with `slurm-dispatch cancel`"
        # Only the lock holder may write runtime_status (services/api/app/models/container.rb: validate_change): a
        # container another dispatcher holds is cancelled without the reason. The hash is replaced whole, so the
        # keys already there (a warning, crunch-run's activity) are kept.
        container = client.get(uuid)  # again: the prompt may have taken a while
        others = bool(container.locked_by_uuid) and container.locked_by_uuid != client.current_token_uuid()
        change: dict[str, object] = {"state": ContainerState.CANCELLED.value}
        if not others:
            change["runtime_status"] = with_error(container.runtime_status, {"error": text})
        if not container.state.is_final:
            _update(client, uuid, change)
        if container.state.is_final:
            say(f"container {uuid} became {container.state.value} meanwhile: nothing to cancel in Arvados")
        elif others:
            say(f"cancelled container {uuid} in Arvados; the reason was not written: it is locked by "
                f"{container.locked_by_uuid}, and Arvados lets only the lock holder write runtime_status")
        else:
            say(f"cancelled container {uuid} in Arvados: {text}")
    if not named:
        return
    backend.cancel(uuid)
    for argv in scancel_argvs(uuid):
        say(f"ran: {shlex.join(argv)}")
    for job in named:
        effect = _CANCEL_EFFECT.get(
            job.state, "left as it is (the passes only touch pending, running and suspended jobs)")
        say(f"job {job.job_id} ({job.state}): {effect}")


def _checked_reason(value: str) -> str:
    """Return ``--reason`` without its surrounding blanks if it can go on the container, as a drain reason can. Pure.

    It is written to runtime_status.error, which Workbench shows, and printed here: one printable line of at most
    500 characters (``drain_reason_problem``), so no newline or escape sequence reaches either.

    Raises:
        typer.BadParameter: it cannot (one ``error:`` line, exit 2).
    """
    text = value.strip()
    problem = drain_reason_problem(text)
    if problem is not None:
        raise typer.BadParameter(problem.replace("the drain reason", "the reason"))
    return text


def _get(client: ArvadosClient, uuid: str, named: list[SlurmJob]) -> Container:
    """Return the container; blocks on one GET.

    Raises:
        DispatchError: the API does not know it (404), with what to do about its jobs if squeue has any.
        ArvadosAPIError: the GET failed otherwise.
    """
    try:
        return client.get(uuid)
    except ArvadosNotFound:
        hint = ""
        if named:
            hint = (f"; its Slurm job(s) {', '.join(j.job_id for j in named)} are in squeue: "
                    f"`slurm-dispatch cancel --slurm-only {uuid}` removes them")
        raise DispatchError(f"no container {uuid} in Arvados (or not readable by this token){hint}") from None


def _update(client: ArvadosClient, uuid: str, change: dict[str, object]) -> None:
    """Change ``change`` on the container; blocks on one PUT.

    Raises:
        ArvadosUnavailable: no answer, or 5xx: the message says the change may have been made all the same (the
            request may have reached the API server before the failure).
        ArvadosAPIError: the PUT was refused.
    """
    try:
        client.update(uuid, change)
    except ArvadosUnavailable as exc:
        raise ArvadosUnavailable(
            exc.status, exc.method, exc.path,
            f"{exc.message}; the change may or may not have been made: check with `slurm-dispatch explain {uuid}`",
        ) from exc


def _ask(question: str) -> None:
    typer.confirm(question, abort=True)


def cancel(
    uuid: Annotated[str, typer.Argument(help="The container uuid: the name of its Slurm job(s).",
                                        callback=container_uuid, show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    slurm_only: Annotated[bool, typer.Option(
        "--slurm-only", help="Only scancel the Slurm job(s): the service then unlocks a Locked container, which is "
                             "dispatched again, and crunch-run marks a Running one Cancelled.")] = False,
    reason: Annotated[str, typer.Option(
        "--reason", help="Why, written on the container (runtime_status.error): one line, at most 500 characters.",
        callback=_checked_reason)] = "",
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
        require_our_container(uuid, settings.cluster_id)  # even with --slurm-only: its jobs are not ours either
        backend = slurm_backend(settings=settings)
        client = None if slurm_only else api_client(settings)
        try:
            cancel_container(uuid, reason=reason, backend=backend, client=client,
                             confirm=None if yes else _ask, say=typer.echo)
        finally:
            if client is not None:
                client.close()
