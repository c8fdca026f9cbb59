"""``slurm-dispatch cancel``: cancel a container in Arvados and scancel its Slurm jobs, the way the service does.

``cancel UUID`` cancels the container in Arvados (with the reason in its runtime_status, so it is not dispatched
again) and runs the service's own three scancel passes (``SlurmBackend.cancel``) on the jobs named UUID;
``--slurm-only`` only removes the Slurm job, as before (the service then unlocks a Locked container, which is
dispatched again, and crunch-run records Cancelled for a Running one). A Running container is stopped through its
job first, so that crunch-run records its final state and log (``_stop_running``).

The command builds the adapters and hands them to ``cancel_container``, which does the work and says each step
through ``say``: tests run it with ``FakeSlurm`` and the emulated API.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    one_line,
    require_our_container,
    slurm_backend,
)
from slurm_dispatch.cli.control import who
from slurm_dispatch.dispatch.admission import drain_reason_problem
from slurm_dispatch.errors import ArvadosNotFound, ArvadosUnavailable, DispatchError, SlurmCommandError
from slurm_dispatch.model import Container, ContainerState, SlurmJob, with_error
from slurm_dispatch.slurm.backend import SlurmBackend, scancel_argvs
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all

_CANCEL_EFFECT = {
    "PENDING": "removed (it had not started)",
    "RUNNING": "SIGTERM sent to its batch shell (crunch-run stops the container and records the final state)",
    "SUSPENDED": "SIGTERM sent to its batch shell",
}


DEFAULT_WAIT_S = 60.0
"""How long ``cancel`` waits, by default, for crunch-run to record a Running container's final state after the
SIGTERM: it stops the container, saves the log and updates the record, usually within seconds."""

MAX_WAIT_S = 3600.0
"""The longest ``--wait`` accepted."""

WAIT_POLL_S = 1.0
"""How often the wait looks again (one squeue and one GET each time)."""


@dataclass(frozen=True)
class Wait:
    """How ``cancel_container`` waits for crunch-run after a Running container's SIGTERM.

    Attributes:
        seconds: at most this long (``--wait``); 0 does not wait.
        clock: monotonic seconds (tests pass a fake).
        sleep: how to wait between looks (tests pass a fake).
    """

    seconds: float = DEFAULT_WAIT_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def cancel_container(
    uuid: str,
    *,
    reason: str,
    backend: SlurmBackend,
    client: ArvadosClient | None,
    confirm: Callable[[str], None] | None,
    say: Callable[[str], None],
    wait: Wait | None = None,
) -> None:
    """Cancel container ``uuid`` in Arvados (unless ``client`` is None: ``--slurm-only``) and scancel its jobs.

    ``reason`` is written to runtime_status.error ("" for the default, naming who cancelled). ``confirm`` asks
    the question it is given and raises to refuse (None: do not ask). Every step is told through ``say``.

    A Queued or Locked container is cancelled in Arvados first, then its jobs are scancelled: crunch-run has not
    started, or cannot start a cancelled container. A Running container with a job is stopped the other way round
    (``_stop_running``), so that crunch-run can record its final state and log. Blocks on squeue, scancel and API
    calls, and for a Running container up to ``wait.seconds`` more.

    Raises:
        DispatchError: a Slurm command or an API call failed.
    """
    named = _jobs_named(backend, uuid)
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
        if container.state is ContainerState.RUNNING and named:
            _stop_running(container, text=text, others=others, named=named, backend=backend, client=client,
                          say=say, wait=wait or Wait())
            return
        if container.state.is_final:
            say(f"container {uuid} became {container.state.value} meanwhile: nothing to cancel in Arvados")
        elif others:
            _update(client, uuid, {"state": ContainerState.CANCELLED.value})
            say(f"cancelled container {uuid} in Arvados; {_not_written(container)}")
        else:
            _update(client, uuid, {"state": ContainerState.CANCELLED.value,
                                   "runtime_status": with_error(container.runtime_status, {"error": text})})
            say(f"cancelled container {uuid} in Arvados: {text}")
    if named:
        _scancel(uuid, named, backend=backend, say=say)


def _jobs_named(backend: SlurmBackend, uuid: str) -> list[SlurmJob]:
    """Return the jobs named ``uuid`` in one squeue. Blocks on squeue.

    Raises:
        SlurmCommandError: squeue failed.
    """
    return [job for job in parse_squeue_all(backend.queue())[0] if job.name == uuid]


def _not_written(container: Container) -> str:
    return (f"the reason was not written: it is locked by {container.locked_by_uuid}, and Arvados lets only the "
            "lock holder write runtime_status")


def _scancel(uuid: str, named: list[SlurmJob], *, backend: SlurmBackend, say: Callable[[str], None]) -> None:
    """Run the service's three scancel passes on the jobs named ``uuid`` and say what each pass does to them.

    Blocks on scancel.

    Raises:
        SlurmCommandError: a pass failed.
    """
    backend.cancel(uuid)
    for argv in scancel_argvs(uuid):
        say(f"ran: {shlex.join(argv)}")
    for job in named:
        effect = _CANCEL_EFFECT.get(
            job.state, "left as it is (the passes only touch pending, running and suspended jobs)")
        say(f"job {job.job_id} ({job.state}): {effect}")


def _stop_running(
    container: Container,
    *,
    text: str,
    others: bool,
    named: list[SlurmJob],
    backend: SlurmBackend,
    client: ArvadosClient,
    say: Callable[[str], None],
    wait: Wait,
) -> None:
    """Stop a Running container that has a Slurm job: the reason, then SIGTERM, then crunch-run's final update.

    Cancelling it in Arvados first would lose crunch-run's final update (state, log, exit code, cost: Go's
    lib/crunchrun/crunchrun.go: UpdateContainerFinal): from Cancelled, Arvados accepts no change but the state
    (services/api/app/models/container.rb: validate_change), and the container's token expires at once. So: write
    the reason alone (the lock holder may, while it runs), scancel (SIGTERM to the batch shell, which crunch-run
    is), and wait until the job leaves squeue or the container is final. Only a container still not final then is
    set Cancelled here. Blocks: scancel, then one squeue and one GET a second, for up to ``wait.seconds``.

    Raises:
        DispatchError: an API call or scancel failed (a failed squeue while waiting is no information, not "gone").
    """
    uuid = container.uuid
    if others:
        say(f"{_not_written(container)}; it is cancelled after its job, without it")
    else:
        _update(client, uuid, {"runtime_status": with_error(container.runtime_status, {"error": text})})
        say(f"wrote the reason on container {uuid} (runtime_status.error): {text}")
    _scancel(uuid, named, backend=backend, say=say)
    say(f"waiting up to {wait.seconds:g} s for crunch-run to record the final state (until the job leaves squeue or "
        "the container is final)")
    started = wait.clock()
    while True:
        left: list[SlurmJob] | None = None  # None: squeue did not answer, which is not "the job has left"
        try:
            left = _jobs_named(backend, uuid)
        except SlurmCommandError as exc:
            say(f"squeue failed ({one_line(str(exc))}): not taken as the job having left")
        current: Container | None = None  # None: the API did not answer; keep waiting (the deadline holds)
        try:
            current = client.get(uuid)
        except ArvadosUnavailable as exc:
            say(f"reading the container failed ({one_line(str(exc))}): trying again")
        now_state = current.state.value if current is not None else "not known"
        waited = wait.clock() - started
        if current is not None and current.state.is_final:
            say(f"container {uuid} is {now_state} after {waited:.0f} s: crunch-run recorded the final state")
            return
        if left == [] and current is not None:
            why = f"its Slurm job left squeue after {waited:.0f} s, but the container is still {now_state}"
            break
        if waited >= wait.seconds:
            still = (f"job(s) {', '.join(j.job_id for j in left)} still in squeue" if left
                     else "squeue could not be read" if left is None else "its job has left squeue")
            why = (f"after {wait.seconds:g} s, {still} and the container still {now_state} (crunch-run "
                   "cannot record its final state or log any more)")
            break
        wait.sleep(min(WAIT_POLL_S, wait.seconds - waited))
    _update(client, uuid, {"state": ContainerState.CANCELLED.value})
    say(f"cancelled container {uuid} in Arvados: {why}")


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


def _checked_wait(value: float) -> float:
    """Return ``--wait`` if it is a number of seconds from 0 to ``MAX_WAIT_S``. Pure.

    Raises:
        typer.BadParameter: it is not (one ``error:`` line, exit 2).
    """
    if not math.isfinite(value) or not 0 <= value <= MAX_WAIT_S:
        raise typer.BadParameter(f"must be a number of seconds from 0 to {MAX_WAIT_S:g}, not {value}")
    return value


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
    wait: Annotated[float, typer.Option(
        "--wait", metavar="SECONDS", callback=_checked_wait,
        help="For a Running container: how long to wait, after the SIGTERM, for crunch-run to record the final "
             "state before cancelling it in Arvados.")] = DEFAULT_WAIT_S,
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Cancel a container in Arvados (so it is not dispatched again) and scancel its Slurm job(s).

    The reason goes into the container's runtime_status.error. The container request that made it may still make
    a new one (Arvados retries a cancelled container while the request wants it): to stop a workflow for good,
    cancel the request. A Running container gets the reason, then its job SIGTERM, and is cancelled in Arvados only
    if crunch-run has not recorded its final state within --wait seconds. With --slurm-only, only the Slurm job goes
    (the old behaviour). Asks first unless --yes.
    """
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        require_our_container(uuid, settings.cluster_id)  # even with --slurm-only: its jobs are not ours either
        backend = slurm_backend(settings=settings)
        client = None if slurm_only else api_client(settings)
        try:
            cancel_container(uuid, reason=reason, backend=backend, client=client,
                             confirm=None if yes else _ask, say=typer.echo, wait=Wait(seconds=wait))
        finally:
            if client is not None:
                client.close()
