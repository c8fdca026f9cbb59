"""The Slurm RunContainer: one coroutine per container, fed by the dispatch core.

Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go (``run``, ``submit``, ``scancel``,
``checkSqueueForOrphans``), on the shape of the product's design card: the dispatch core feeds this
RunContainer, which submits an sbatch job, reconciles squeue with the tracker's updates, scancels the job
when the update channel closes, and uses ``track_container`` at startup to adopt orphaned jobs.

The runner carries out; it does not decide. Each time something happens to a container (a new record, its
channel closing, its job leaving squeue, a scancel round ending) the runner asks
``slurm_dispatch.slurm.decide.next_step`` what to do next, and does it:

* SUBMIT: sbatch the job (``job_for``), once; an sbatch that timed out is looked for in squeue before it
  counts as failed, since slurmctld may have created the job after sbatch gave up.
* FOLLOW: record the job's want for the renice pass, then wait for the next record or for the job to leave.
* SCANCEL: three scancel passes, then wait for the next squeue poll; again after every poll until the job
  has gone, or (for priority 0) a new record wants it back.
* SETTLE: re-read the container and do what ``gone_action`` says (unlock, set Cancelled, or nothing),
  retrying failed API calls with backoff (``JOB_GONE_ATTEMPTS``) before the tracker's fallback takes over.

Shutdown (task cancellation) returns at once and touches nothing: the job keeps running for the next
process to adopt.

Time is injected (``sleep``), so tests need not wait on the wall clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import ArvadosConflict, DispatchError, SlurmCommandError, SlurmUnavailable
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.decide import (
    GoneKind,
    StepKind,
    after_sbatch_failure,
    gone_action,
    next_step,
    our_job_names,
    stuck_cancel_warning_due,
)
from slurm_dispatch.slurm.jobs import job_for

logger = logging.getLogger("slurm_dispatch.runner")

T = TypeVar("T")

SLURM_WORKERS = 4
"""Threads for blocking Slurm commands. SlurmCLI itself caps sbatch/scancel/scontrol at 3 at once."""

ADOPT_CONCURRENCY = 8
"""GETs in flight while adopting orphans at startup (the dispatcher's executor bounds them too)."""

JOB_GONE_ATTEMPTS = 6
"""Tries at settling a container whose job has gone (1 s, doubling), before the tracker's fallback takes over."""

JOB_GONE_BACKOFF_CAP_S = 30.0
"""The longest pause between two tries at settling a container whose job has gone."""

REFUSALS_REMEMBERED = 10_000
"""Containers whose refusal count is kept (oldest forgotten first): a cancelled container's count is never
cleared otherwise."""


class Squeue(Protocol):
    """What the runner needs of the squeue poller (``slurm_dispatch.slurm.squeue.SqueueChecker``)."""

    async def has_uuid(self, uuid: str, *, soon: bool = False) -> bool:
        """Return whether a job named ``uuid`` is in the next successful squeue snapshot (asked for early)."""
        ...

    async def wait_gone(self, uuid: str) -> None:
        """Return once a successful squeue poll (started after the call) no longer shows job ``uuid``."""
        ...

    async def set_want(self, uuid: str, want: int) -> None:
        """Record the want of job ``uuid`` (may wait one poll); the renice pass applies it."""
        ...


class Dispatch(Protocol):
    """What the runner needs of the dispatch core (``slurm_dispatch.dispatch.Dispatcher``)."""

    @property
    def token_uuid(self) -> str: ...

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def unlock(self, uuid: str) -> None: ...

    async def update_state(self, uuid: str, state: ContainerState) -> None: ...

    async def track_container(self, uuid: str) -> None: ...


class ContainerGetter(Protocol):
    """The one API call the runner makes itself."""

    def get(self, uuid: str) -> Container: ...


@dataclass(frozen=True)
class _View:
    """What one RunContainer knows of its container: the input of ``decide.next_step``."""

    latest: Container
    left: bool = False
    job_present: bool = True
    submitted: bool = False
    want_set: int | None = None
    cancel_rounds: int = 0


class SlurmRunner:
    """Runs containers as Slurm jobs; ``run_container`` is the dispatch core's RunContainer.

    Not thread-safe: use it from the dispatcher's event loop.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        backend: SlurmBackend,
        squeue: Squeue,
        client: ContainerGetter,
        cancel_retry_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        executor: Executor | None = None,
    ) -> None:
        """Create the runner; does no I/O.

        Args:
            settings: the cluster's settings (templates, crunch-run command, token for the job env).
            backend: runs the Slurm commands (blocking; called in ``executor``).
            squeue: the squeue poller shared by every container.
            client: the Arvados client, for the re-read after a job has gone.
            cancel_retry_s: pause after a failed scancel before the next try, and the first pause between
                tries at settling a container whose job has gone (doubling from there).
            sleep: the coroutine that pauses (injected so tests need not wait on the wall clock).
            executor: where blocking Slurm commands run (default: a pool of ``SLURM_WORKERS`` threads,
                shut down by ``close()``).
        """
        self._settings = settings
        self._backend = backend
        self._squeue = squeue
        self._client = client
        self._cancel_retry_s = cancel_retry_s
        self._sleep = sleep
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=SLURM_WORKERS, thread_name_prefix="slurm")
        self.submitting = 0
        """sbatch commands under way (the squeue poller defers renice passes meanwhile)."""
        self.states: dict[str, ContainerState] = {}
        """The latest state seen of every container this runner is running (for the containers gauge)."""
        self._refusals: OrderedDict[str, int] = OrderedDict()
        """Permanent-looking sbatch refusals in a row, by container uuid (see ``decide.after_sbatch_failure``)."""

    def close(self) -> None:
        """Release the thread pool (running commands finish on their own). Does not block."""
        if self._own_executor and isinstance(self._executor, ThreadPoolExecutor):
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _slurm(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- submission ---------------------------------------------------------------------------

    async def submit(self, container: Container) -> int | None:
        """Submit the job of ``container`` with sbatch; return its job id if sbatch printed one.

        Blocks (asynchronously) on sbatch.

        Raises:
            SbatchTemplateError, UnsatisfiableContainer: the container cannot be submitted as configured
                (``UnsatisfiableContainer`` also when sbatch refused it too often in a row).
            SlurmCommandError: sbatch failed (``SlurmUnavailable`` when slurmctld did not answer).
        """
        job = job_for(container, self._settings)
        self.submitting += 1
        try:
            job_id = await self._slurm(self._backend.submit, args=job.args, script=job.script, env=job.env)
        except SlurmCommandError as exc:
            verdict = after_sbatch_failure(
                container.uuid, exc, refusals_before=self._refusals.pop(container.uuid, 0)
            )
            if verdict.give_up is not None:
                raise verdict.give_up from exc
            if verdict.refusals:
                self._refusals[container.uuid] = verdict.refusals
                while len(self._refusals) > REFUSALS_REMEMBERED:
                    self._refusals.popitem(last=False)
            raise
        finally:
            self.submitting -= 1
        self._refusals.pop(container.uuid, None)
        logger.info("submitted container %s as Slurm job %s", container.uuid, job_id)
        return job_id

    async def _submit_once(self, container: Container) -> None:
        """Submit; after an sbatch that timed out, find out from squeue whether it went through.

        Raises:
            as ``submit``, and SlurmUnavailable when the job did not appear in the next two polls.
        """
        try:
            await self.submit(container)
        except SlurmUnavailable:
            # slurmctld may have created the job after sbatch gave up: raising now would unlock a
            # container whose job exists (and a second submission would follow). Ask squeue first.
            for _ in range(2):
                if await self._squeue.has_uuid(container.uuid):
                    logger.info("sbatch for container %s timed out, but its job is in squeue: following it",
                                container.uuid)
                    return
            raise

    # -- RunContainer ---------------------------------------------------------------------------

    async def run_container(self, dispatcher: Dispatch, container: Container, updates: UpdateChannel) -> None:
        """Run ``container`` as a Slurm job until the job has gone (see the module docstring).

        Blocks (asynchronously) for the life of the job. Cancellation (dispatcher shutdown) returns
        at once without touching the job or the container.

        Raises:
            SbatchTemplateError, UnsatisfiableContainer, SlurmCommandError: submission failed; the
                dispatch core logs it and applies the fallback state.
        """
        uuid = container.uuid
        self.states[uuid] = container.state
        try:
            await self._run(dispatcher, container, updates)
        finally:
            self.states.pop(uuid, None)

    async def _run(self, dispatcher: Dispatch, container: Container, updates: UpdateChannel) -> None:
        uuid = container.uuid
        view = _View(latest=container)
        if container.state is ContainerState.LOCKED:
            # Only a squeue poll that starts now can say whether a job exists (a previous process may have
            # submitted one just before it stopped); asked for early, so a burst of locks is not held up.
            view = replace(view, job_present=await self._squeue.has_uuid(uuid, soon=True))
        gone = asyncio.Event()
        monitor: asyncio.Task[None] | None = None
        try:
            while True:
                step = next_step(latest=view.latest, left=view.left, job_present=view.job_present,
                                 submitted=view.submitted)
                if step.kind is StepKind.SETTLE:
                    break
                if step.kind is StepKind.SUBMIT:
                    await self._submit_once(view.latest)
                    view = replace(view, submitted=True, job_present=True)
                    continue
                if monitor is None:
                    monitor = asyncio.create_task(self._watch(uuid, gone), name=f"squeue monitor {uuid}")
                if step.kind is StepKind.SCANCEL:
                    view = await self._scancel_round(uuid, view, gone, updates)
                    continue
                # FOLLOW
                if step.want != view.want_set:
                    await self._squeue.set_want(uuid, step.want)
                    view = replace(view, want_set=step.want)
                event = await _first(updates.next(), gone.wait())
                view = self._apply(uuid, view, event)
        finally:
            if monitor is not None:
                monitor.cancel()
        await self._settle(dispatcher, uuid, updates)

    def _apply(self, uuid: str, view: _View, event: Container | None | _Gone) -> _View:
        """Return the view after one event: a new record, the channel closing, or the job leaving squeue."""
        if isinstance(event, _Gone):
            return replace(view, job_present=False)
        if event is None:
            return replace(view, left=True)
        self.states[uuid] = event.state
        return replace(view, latest=event, cancel_rounds=0 if event.priority else view.cancel_rounds)

    async def _scancel_round(self, uuid: str, view: _View, gone: asyncio.Event, updates: UpdateChannel) -> _View:
        """scancel once, wait for the next poll, and take a record that came meanwhile (without blocking).

        Go scancels once per update; a failed or slow scancel would then never be retried, since an unchanged
        record wakes nobody. Here the job is scancelled again after every poll until it has gone, or (when it
        was for priority 0) a new record wants the job again.
        """
        rounds = view.cancel_rounds + 1
        if stuck_cancel_warning_due(rounds):
            logger.warning("Slurm job of container %s is still in squeue after %d scancel rounds; check it with "
                           "`scontrol show job` (a node down? another user's job?)", uuid, rounds)
        view = replace(view, cancel_rounds=rounds)
        present = await self.cancel(uuid)
        if present is False:
            await gone.wait()  # the poll that showed it gone wakes the monitor too
            return replace(view, job_present=False)
        if not view.left and (updates.pending or updates.closed):
            view = self._apply(uuid, view, await updates.next())
        return view

    async def _watch(self, uuid: str, gone: asyncio.Event) -> None:
        await self._squeue.wait_gone(uuid)
        gone.set()

    async def cancel(self, uuid: str) -> bool | None:
        """scancel the job of ``uuid`` (three passes), then wait for the next squeue poll.

        Port of crunch-dispatch-slurm.go ``scancel``: on error, log and pause ``cancel_retry_s``;
        if the job is still there after the next poll, log it (the caller tries again).
        Blocks (asynchronously) on scancel and one squeue poll.

        Returns:
            Whether the job is still in squeue afterwards; None when scancel itself failed.
        """
        try:
            await self._slurm(self._backend.cancel, uuid)
        except SlurmCommandError as exc:
            logger.warning("scancel of container %s failed: %s", uuid, exc)
            await self._sleep(self._cancel_retry_s)
            return None
        present = await self._squeue.has_uuid(uuid)
        if present:
            logger.info("container %s is still in squeue after scancel", uuid)
        return present

    async def _settle(self, dispatcher: Dispatch, uuid: str, updates: UpdateChannel) -> None:
        """The job left squeue: make the container's state say so, as ``decide.gone_action`` says.

        Re-reads the container first (its state may have moved since the last record). A failed call is
        retried with backoff while the container may still be ours: giving up would leave a Running container
        whose crunch-run is gone Running for ever. Blocks (asynchronously) on the API.
        """
        delay = self._cancel_retry_s
        for attempt in range(1, JOB_GONE_ATTEMPTS + 1):
            try:
                current = await dispatcher.call(self._client.get, uuid)
                action = gone_action(current, dispatcher.token_uuid)
                if action.kind is GoneKind.LEAVE:
                    logger.info("Slurm job of container %s has gone; %s: leaving it alone", uuid, action.reason)
                elif action.kind is GoneKind.UNLOCK:
                    logger.info("Slurm job of container %s has gone while Locked: unlocking it", uuid)
                    await dispatcher.unlock(uuid)
                elif action.kind is GoneKind.CANCEL:
                    logger.info("Slurm job of container %s has gone while Running: cancelling it", uuid)
                    await dispatcher.update_state(uuid, ContainerState.CANCELLED)
                return
            except ArvadosConflict as exc:
                # 422: the state moved under us (crunch-run finished it meanwhile): read it again
                logger.info("container %s changed while we settled its gone job: %s", uuid, exc)
            except DispatchError as exc:
                if attempt == JOB_GONE_ATTEMPTS:
                    logger.warning("Slurm job of container %s has gone, and settling the container failed "
                                   "%d times: %s; the tracker's fallback takes over", uuid, attempt, exc)
                    return
                logger.info("settling container %s after its job has gone failed (%s); retrying in %.0f s",
                            uuid, exc, delay)
            if updates.closed:
                return  # the container has left us (finished, re-queued, or another's): nothing to settle
            await self._sleep(delay)
            delay = min(delay * 2, JOB_GONE_BACKOFF_CAP_S)

    # -- adoption -------------------------------------------------------------------------------

    async def adopt_orphans(self, dispatcher: Dispatch, job_names: Iterable[str]) -> list[str]:
        """Track every job in ``job_names`` that belongs to this cluster; return those now tracked.

        Port of crunch-dispatch-slurm.go ``checkSqueueForOrphans``: ``track_container`` decides per job
        (``slurm_dispatch.dispatch.decide.track_decision``, the rule ``slurm.decide.orphan_action`` shows
        admins). A job of a finished or re-queued container gets a tracker that is closed at once, so its
        RunContainer scancels it. Jobs of other users and clusters are left alone. Blocks (asynchronously)
        on one GET per orphan, ``ADOPT_CONCURRENCY`` at a time (Go makes them one by one).
        """
        gate = asyncio.Semaphore(ADOPT_CONCURRENCY)

        async def adopt(uuid: str) -> str | None:
            async with gate:
                try:
                    await dispatcher.track_container(uuid)
                    return uuid
                except DispatchError as exc:
                    logger.warning("cannot adopt Slurm job %s: %s", uuid, exc)
                    return None

        names = our_job_names(job_names, self._settings.cluster_id)
        return [u for u in await asyncio.gather(*(adopt(n) for n in names)) if u is not None]


class _Gone:
    pass


_GONE = _Gone()


async def _first(next_update: Awaitable[Container | None], gone: Awaitable[Any]) -> Container | None | _Gone:
    """Return the next update, or ``_GONE`` if the job disappears first (the update is then dropped unread)."""
    update_task = asyncio.ensure_future(next_update)
    gone_task = asyncio.ensure_future(gone)
    try:
        done, _ = await asyncio.wait({update_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone_task.cancel()
        if not update_task.done():
            update_task.cancel()  # the channel keeps an unread record when its wait is cancelled
    if update_task in done:
        return update_task.result()
    return _GONE
