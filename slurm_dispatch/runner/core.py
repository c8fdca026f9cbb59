"""The Slurm RunContainer (``SlurmRunner``): what the package docstring describes; the failure reasons' I/O is in
``explain``, the neighbours' Protocols in ``ports``."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import ArvadosConflict, DispatchError, SlurmCommandError, SlurmUnavailable
from slurm_dispatch.model import Container, ContainerState, SlurmJob
from slurm_dispatch.runner.explain import CommandFailures, Explainer, runtime_status
from slurm_dispatch.runner.ports import ContainerGetter, Dispatch, Squeue
from slurm_dispatch.runner.turns import SubmitTurns
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.broken_nodes import BrokenNodes
from slurm_dispatch.slurm.cancels import CancelBatcher, CancelMode, cancel_mode
from slurm_dispatch.slurm.decide import (
    GoneKind,
    Policy,
    RunnerView,
    Step,
    StepKind,
    after_sbatch_failure,
    gone_action,
    never_runnable_since,
    next_step,
    our_job_names,
    partition_hold_delay,
    partition_not_available,
    sbatch_said,
    stuck_cancel_warning_due,
)
from slurm_dispatch.slurm.end_reader import JobEndReader, JobEndSource
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.priority import container_want

logger = logging.getLogger("slurm_dispatch.runner")

T = TypeVar("T")

SLURM_WORKERS = 4
"""Threads for blocking Slurm commands. SlurmCLI itself caps sbatch/scancel/scontrol at 3 at once."""

SBATCH_AT_ONCE = 3
"""sbatch commands started at once; the others wait their turn by want (``turns``). As many as SlurmCLI runs
capped commands at once (``slurm_dispatch.slurm.cli_backend.MAX_CONCURRENT``), so the order is chosen here, not by
whichever thread gets SlurmCLI's next slot."""

ADOPT_CONCURRENCY = 8
"""GETs in flight while adopting orphans at startup (the dispatcher's executor bounds them too)."""

JOB_GONE_ATTEMPTS = 6
"""Tries at settling a container whose job has gone (1 s, doubling), before the tracker's fallback takes over (a
Locked container is unlocked; a Running one is handed back to be adopted again: ``dispatch.fallback``)."""

JOB_GONE_BACKOFF_CAP_S = 30.0
"""The longest pause between two tries at settling a container whose job has gone."""

REFUSALS_REMEMBERED = 10_000
"""Containers whose refusal count is kept (oldest forgotten first): a cancelled container's count is never
cleared otherwise."""




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
        ends: JobEndSource | None = None,
        broken: BrokenNodes | None = None,
        on_submitted: Callable[[Container], None] | None = None,
        cancel_retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        executor: Executor | None = None,
    ) -> None:
        """Create the runner; does no I/O.

        Args:
            settings: the cluster's settings (templates, crunch-run command, token for the job env, and the
                failure-reason and time-limit settings, through ``decide.Policy``).
            backend: runs the Slurm commands (blocking; called in ``executor``).
            squeue: the squeue poller shared by every container.
            client: the Arvados client, for the re-read after a job has gone.
            ends: where to ask how a vanished job ended (default: ``backend``, when it can).
            broken: the nodes crunch-run reported broken (their jobs' Comment); new jobs avoid them.
            on_submitted: called after each successful sbatch (metrics: the time from queue to sbatch).
            cancel_retry_s: pause after a failed scancel before the next try, and the first pause between
                tries at settling a container whose job has gone (doubling from there).
            clock: monotonic seconds (injected so tests run on virtual time).
            wall_clock: seconds since the epoch (when a container was first seen).
            sleep: the coroutine that pauses (likewise).
            executor: where blocking Slurm commands run (default: a pool of ``SLURM_WORKERS`` threads,
                shut down by ``close()``).
        """
        self._settings = settings
        self._policy = Policy.from_settings(settings)
        self._backend = backend
        self._squeue = squeue
        self._client = client
        self._cancel_retry_s = cancel_retry_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._broken = broken
        self._on_submitted = on_submitted
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=SLURM_WORKERS, thread_name_prefix="slurm")
        source = ends if ends is not None else backend
        self._ends = (JobEndReader(source, run=self._slurm, clock=clock, sleep=sleep)  # type: ignore[arg-type]
                      if hasattr(source, "job_ends") else None)
        self._cancels = CancelBatcher(backend, run=self._slurm)
        self._explain = Explainer(settings=settings, backend=backend, ends=self._ends, broken=broken, slurm=self._slurm,
                                  clock=clock, get=self._client.get)
        self.submitting = 0
        """Submissions under way: waiting for their turn, or in sbatch (the squeue poller defers renice passes
        meanwhile)."""
        self.submissions = 0
        """Submissions begun so far (the squeue poller backs its early polls off while it does not grow)."""
        self.views: dict[str, RunnerView] = {}
        """What each RunContainer knows of its container (for status, metrics and the management endpoint)."""
        self.first_seen: dict[str, float] = {}
        """Wall-clock seconds when each RunContainer started."""
        self._turns = SubmitTurns(SBATCH_AT_ONCE)
        self._command_failures = CommandFailures()
        """Jobs in a row whose command could not be run (logged at ERROR once it repeats)."""
        self._refusals: OrderedDict[str, int] = OrderedDict()
        """Permanent-looking sbatch refusals in a row, by container uuid (see ``decide.after_sbatch_failure``)."""

    @property
    def states(self) -> dict[str, ContainerState]:
        """The latest state seen of every container this runner is running (for the containers gauge)."""
        return {uuid: view.latest.state for uuid, view in self.views.items()}

    def close(self) -> None:
        """Release the thread pool (running commands finish on their own). Does not block."""
        if self._own_executor and isinstance(self._executor, ThreadPoolExecutor):
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _slurm(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- submission ---------------------------------------------------------------------------

    async def submit(self, container: Container, *, superseded: Callable[[], bool] | None = None) -> int | None:
        """Submit the job of ``container`` with sbatch; return its job id if sbatch printed one.

        Blocks (asynchronously) for its turn (``SBATCH_AT_ONCE`` at a time, the waiting ones by want: see
        ``turns``), then on sbatch. ``superseded``, asked once the turn has come: True means a newer record of the
        container arrived meanwhile (its priority went to 0, it was cancelled), and nothing is submitted.

        Raises:
            Superseded: ``superseded()`` said so.
            SbatchTemplateError, UnsatisfiableContainer: the container cannot be submitted as configured
                (``UnsatisfiableContainer`` also when sbatch refused it too often in a row).
            SlurmCommandError: sbatch failed (``SlurmUnavailable`` when slurmctld did not answer).
        """
        self.submitting += 1
        self.submissions += 1
        try:
            async with self._turns.turn((container_want(container), container.uuid)):
                if superseded is not None and superseded():
                    raise Superseded(container.uuid)
                job = job_for(container, self._settings, exclude=self._broken.excluded() if self._broken else ())
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
        if self._on_submitted is not None:
            self._on_submitted(container)
        return job_id

    async def _submit_once(self, container: Container, *, superseded: Callable[[], bool]) -> int | None:
        """Submit; after an sbatch that timed out, find out from squeue whether it went through.

        Returns:
            The job id, when known.

        Raises:
            as ``submit``, and SlurmUnavailable when the job did not appear in the next two polls.
        """
        try:
            return await self.submit(container, superseded=superseded)
        except SlurmUnavailable:
            # slurmctld may have created the job after sbatch gave up: raising now would unlock a
            # container whose job exists (and a second submission would follow). Ask squeue first.
            for _ in range(2):
                if await self._squeue.has_uuid(container.uuid):
                    logger.info("sbatch for container %s timed out, but its job is in squeue: following it",
                                container.uuid)
                    return None
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
        self.views[uuid] = RunnerView(latest=container)
        self.first_seen[uuid] = self._wall_clock()
        # Go's operator lines (crunch-dispatch-slurm.go: runContainer), kept word for word for existing log searches
        logger.info('Start monitoring container %s in state "%s"', uuid, container.state.value)
        try:
            await self._run(dispatcher, container, updates)
            logger.info("Done monitoring container %s", uuid)
        finally:
            self.views.pop(uuid, None)
            self.first_seen.pop(uuid, None)

    def _set(self, uuid: str, view: RunnerView) -> RunnerView:
        self.views[uuid] = view
        return view

    async def _run(self, dispatcher: Dispatch, container: Container, updates: UpdateChannel) -> None:
        uuid = container.uuid
        # Only a squeue poll that starts now can say whether a job exists (a previous process may have submitted
        # one just before it stopped); asked for early when a submission may follow, so a burst is not held up.
        seen_before = self._squeue.snapshot().jobs.get(uuid)  # if the job is gone by the next poll: which it was
        job = await self._squeue.job_after(uuid, soon=container.state is ContainerState.LOCKED)
        view = self._set(uuid, self._with_job(RunnerView(latest=container, last_job=seen_before), job))
        partition_refusals = 0
        while True:
            step = next_step(view, self._policy, self._clock())
            if step.kind is StepKind.SETTLE:
                break
            if step.kind is StepKind.SUBMIT:
                logger.info("Submitting container %s to slurm", uuid)
                try:
                    latest = view.latest
                    job_id = await self._submit_once(latest, superseded=functools.partial(_superseded, latest, updates))
                except SlurmCommandError as exc:
                    if not partition_not_available(exc):
                        raise
                    partition_refusals += 1
                    view = self._set(uuid, await self._hold_for_partition(uuid, view, updates, exc, partition_refusals))
                    continue
                except Superseded:
                    # a record came while it waited for its turn (priority 0, cancelled): decide again with it
                    logger.info("container %s changed while it waited for its turn at sbatch: not submitted", uuid)
                    newer = await updates.next()  # at once: a record is unread, or the channel is closed
                    view = self._apply(view, _Update(newer))
                    if newer is not None and updates.closed and not updates.pending:
                        view = self._apply(view, _Update(None))  # and it has left: no second turn to find out
                    view = self._set(uuid, view)
                    continue
                if job_id is not None:  # which job to ask Slurm about, even if it ends before the next poll
                    view = replace(view, last_job=SlurmJob(name=uuid, nice=0, slurm_priority=0, state="PENDING",
                                                           reason="submitted", job_id=str(job_id)))
                view = self._set(uuid, replace(view, submitted=True))
                view = self._set(uuid, self._with_job(view, await self._squeue.job_after(uuid)))
                if view.job is None:
                    # sbatch said yes, yet the next poll shows no job: it has ended already (or was scancelled)
                    logger.info("Slurm job of container %s is not in squeue right after its submission", uuid)
                continue
            if step.kind is StepKind.SCANCEL:
                view = self._set(uuid, await self._scancel_round(uuid, view, updates))
                continue
            if step.kind is StepKind.GIVE_UP:
                view = self._set(uuid, await self._explain.give_up(dispatcher, uuid, view))
                continue
            if step.kind is StepKind.STOP_AT_LIMIT:
                view = self._set(uuid, await self._stop_at_limit(dispatcher, uuid, view))
                continue
            # FOLLOW
            if step.want != view.want_set:
                await self._squeue.set_want(uuid, step.want)
                view = self._set(uuid, replace(view, want_set=step.want))
            event = await self._next_event(uuid, view, step, updates)
            view = self._set(uuid, self._apply(view, event))
        await self._settle(dispatcher, uuid, view, updates)

    async def _hold_for_partition(
        self, uuid: str, view: RunnerView, updates: UpdateChannel, exc: SlurmCommandError, refusals: int
    ) -> RunnerView:
        """Keep a container whose partition is inactive or draining Locked, and return the view after the wait
        before its next sbatch (``decide.partition_not_available``): a new record (priority 0, cancelled), its job
        appearing, or the wait ending, whichever comes first. Blocks (asynchronously) up to the wait."""
        delay = partition_hold_delay(refusals)
        said = sbatch_said(exc)
        level = logging.WARNING if refusals == 1 else logging.INFO
        logger.log(level, "container %s: sbatch refused it: %s: its partition is inactive or draining; keeping the "
                   "container locked and trying again in %.0f s (refusal %d in a row)", uuid, said, delay, refusals)
        wait = Step(StepKind.FOLLOW, "its partition is not available", wake_at=self._clock() + delay)
        view = self._set(uuid, replace(view, partition_refused=said))  # the management API's scheduling status
        while True:
            event = await self._next_event(uuid, view, wait, updates)
            view = self._apply(view, event)
            still_waiting = (isinstance(event, _Update) and not view.left and view.latest.priority > 0
                             and view.latest.state is ContainerState.LOCKED)
            if not still_waiting:  # the wait is over, the job appeared, or the record asks for another step
                return view

    async def _next_event(self, uuid: str, view: RunnerView, step: Step, updates: UpdateChannel) -> _Event:
        """Wait for the first of: a new record (or the channel closing), news of the job, the step's wake-up."""
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self._squeue.wait_change(uuid, view.job,
                                                           time_left_below=step.time_left_below)): "job",
        }
        if not view.left:  # a closed channel answers at once, for ever
            waits[asyncio.ensure_future(updates.next())] = "update"
        if step.wake_at is not None:
            waits[asyncio.ensure_future(self._sleep(max(0.0, step.wake_at - self._clock())))] = "timer"
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                if not future.done():
                    future.cancel()  # the channel keeps an unread record when its wait is cancelled
        by_kind = {waits[f]: f for f in done}
        if "update" in by_kind:
            return _Update(by_kind["update"].result())
        if "job" in by_kind:
            return _JobNews(by_kind["job"].result())
        return _Tick()

    def _apply(self, view: RunnerView, event: _Event) -> RunnerView:
        """Return the view after one event: a new record, the channel closing, news of the job, or a wake-up."""
        if isinstance(event, _JobNews):
            return self._with_job(view, event.job)
        if isinstance(event, _Update):
            if event.container is None:
                return replace(view, left=True, left_at=self._clock())
            if event.container.state is ContainerState.RUNNING:
                self._command_failures.reset()  # crunch-run started a container: the command can be run
            return replace(view, latest=event.container,
                           cancel_rounds=0 if event.container.priority else view.cancel_rounds)
        return view

    def _with_job(self, view: RunnerView, job: SlurmJob | None) -> RunnerView:
        return replace(view, job=job, last_job=job or view.last_job,
                       never_since=never_runnable_since(view, job, self._policy, self._clock()))

    async def _scancel_round(self, uuid: str, view: RunnerView, updates: UpdateChannel) -> RunnerView:
        """scancel once, wait for the next poll, and take a record that came meanwhile (without blocking).

        Go scancels once per update; a failed or slow scancel would then never be retried, since an unchanged
        record wakes nobody. Here the job is scancelled again after every poll until it has gone, or (when it
        was for priority 0) a new record wants the job again.
        """
        rounds = view.cancel_rounds + 1
        if rounds == 1:  # Go's words (crunch-dispatch-slurm.go: runContainer)
            if view.left:
                logger.info("container %s is done: cancel slurm job", uuid)
            elif not view.latest.priority:
                logger.info('container %s has state "%s", priority %d: cancel slurm job', uuid,
                            view.latest.state.value, view.latest.priority)
            else:
                logger.info("container %s can never run here: cancel slurm job", uuid)
        if stuck_cancel_warning_due(rounds):
            logger.warning("Slurm job of container %s is still in squeue after %d scancel rounds; check it with "
                           "`scontrol show job` (a node down? another user's job?)", uuid, rounds)
        view = replace(view, cancel_rounds=rounds)
        present = await self.cancel(uuid)
        if present is not None:
            view = self._with_job(view, await self._squeue.job_after(uuid) if present else None)
        if not view.left and (updates.pending or updates.closed):
            view = self._apply(view, _Update(await updates.next()))
        return view

    async def cancel(self, uuid: str) -> bool | None:
        """scancel the job of ``uuid`` (``_scancel``), then wait for the next squeue poll.

        Port of crunch-dispatch-slurm.go ``scancel``: on error, log and pause ``cancel_retry_s``;
        if the job is still there after the next poll, log it (the caller tries again). A scancel by id
        that exits non-zero (a job that ended meanwhile, with ``--state=pending``) is only noted: the poll
        tells whether the job has gone. Blocks (asynchronously) on scancel and one squeue poll.

        Returns:
            Whether the job is still in squeue afterwards; None when scancel itself failed.
        """
        try:
            refused = await self._scancel(uuid)
        except SlurmCommandError as exc:
            logger.warning("scancel of container %s failed: %s", uuid, exc)
            await self._sleep(self._cancel_retry_s)
            return None
        if refused is not None:
            logger.info("scancel of container %s by job id said: %s; the next squeue tells whether it has gone",
                        uuid, refused)
        present = await self._squeue.has_uuid(uuid)
        if present:
            logger.info("container %s is still in squeue after scancel", uuid)
        return present

    async def _scancel(self, uuid: str) -> SlurmCommandError | None:
        """scancel the job of ``uuid``: by its id when the latest squeue snapshot shows it (``cancels``, batched
        with other runners'), otherwise Go's three passes by name. Blocks (asynchronously) on the command.

        Returns:
            The error of a scancel by id that exited non-zero (not a failure to reach slurmctld), else None.

        Raises:
            SlurmCommandError: the scancel passes by name failed, or slurmctld did not answer.
        """
        job = self._squeue.snapshot().jobs.get(uuid)
        mode = cancel_mode(job)
        if job is None or mode is CancelMode.BY_NAME:
            await self._slurm(self._backend.cancel, uuid)
            return None
        try:
            await self._cancels.cancel(job.job_id, running=mode is CancelMode.RUNNING, cluster=job.cluster)
        except SlurmUnavailable:
            raise
        except SlurmCommandError as exc:
            return exc
        except ValueError:  # the backend cannot tell which cluster the id is on: Go's passes by name
            await self._slurm(self._backend.cancel, uuid)
        return None


    async def _stop_at_limit(self, dispatcher: Dispatch, uuid: str, view: RunnerView) -> RunnerView:
        """Write why on the container, then SIGTERM crunch-run (the batch shell) before Slurm's hard kill."""
        await self._explain.time_limit(dispatcher, uuid, view)
        try:
            await self._scancel(uuid)
        except SlurmCommandError as exc:
            logger.warning("stopping the job of container %s at its time limit: %s (Slurm's own signal follows)",
                           uuid, exc)
        return replace(view, stop_sent=True)

    async def _say_unlocking(self, dispatcher: Dispatch, uuid: str, view: RunnerView, current: Container) -> None:
        """Say why a Locked container is unlocked: in our log, and, when a job of it ended, in its own log."""
        if view.last_job is None and not view.submitted:
            # nothing was submitted (its priority went to 0, or it left us first): no Slurm job to explain
            logger.info("container %s is Locked with no Slurm job (priority %d): unlocking it", uuid,
                        current.priority)
            return
        if current.priority == 0 and view.cancel_rounds:
            job_id = view.last_job.job_id if view.last_job is not None and view.last_job.job_id else "?"
            text = (f"Slurm job {job_id} was scancelled because the container's priority went to 0 before "
                    "crunch-run started it; unlocking the container")
            logger.info("container %s: %s", uuid, text)
            await dispatcher.log(uuid, text + "\n")
            return
        reason = await self._explain.end_reason(view, current.state)
        logger.info("Slurm job of container %s has gone while Locked (%s): unlocking it", uuid, reason.error)
        in_a_row = self._command_failures.note(reason.command_exit)
        if in_a_row:
            logger.error("the jobs' command could not be run %d times in a row (exit code %s, last on container %s): "
                         "check Containers.CrunchRunCommand (%r) on the compute nodes", in_a_row,
                         reason.command_exit, uuid, self._settings.crunch_run_command)
        await dispatcher.log(uuid, f"{reason.error}; unlocking the container so that it can be dispatched again\n"
                                   f"{reason.detail}\n")

    async def _settle(self, dispatcher: Dispatch, uuid: str, view: RunnerView, updates: UpdateChannel) -> None:
        """The job left squeue: make the container's state say so, as ``decide.gone_action`` says.

        Re-reads the container first (its state may have moved since the last record). A container cancelled
        here gets the reason in ``runtime_status`` (error, errorDetail) and a ``dispatch`` log record; one that is
        unlocked gets the log record (the unlock clears ``runtime_status``). A failed call is retried with
        backoff while the container may still be ours: giving up would leave a Running container whose
        crunch-run is gone Running for ever. Blocks (asynchronously) on the API and, for the reason, on one
        batched Slurm query.
        """
        delay = self._cancel_retry_s
        said = False
        for attempt in range(1, JOB_GONE_ATTEMPTS + 1):
            try:
                current = await dispatcher.call(self._client.get, uuid)
                action = gone_action(current, dispatcher.token_uuid, gave_up=view.give_up is not None)
                if action.kind is GoneKind.LEAVE:
                    logger.info("Slurm job of container %s has gone; %s: leaving it alone", uuid, action.reason)
                elif action.kind is GoneKind.UNLOCK:
                    if not said:
                        await self._say_unlocking(dispatcher, uuid, view, current)
                        said = True
                    await dispatcher.unlock(uuid)
                elif action.kind is GoneKind.NOTHING and current.state is ContainerState.QUEUED and not said:
                    # crunch-run put it back in the queue itself: a broken node is the usual cause (its hook
                    # marked the job); one batched question to Slurm tells.
                    said = True
                    await self._explain.job_end(view)
                elif (action.kind is GoneKind.NOTHING and current.state is ContainerState.CANCELLED and not said
                      and view.give_up is None and not view.stop_sent):
                    # crunch-run recorded Cancelled itself: if Slurm ended the job (an admin's scancel, the time
                    # limit, a node failure), say so in the container's log; its runtime_status is final now.
                    said = True
                    await self._explain.log_slurm_end(dispatcher, uuid, view, scancelled=_why_scancelled(view))
                elif action.kind is GoneKind.CANCEL:
                    reason = view.give_up or await self._explain.end_reason(view, current.state)
                    if not said:
                        logger.info("Slurm job of container %s has gone while %s: cancelling it (%s)", uuid,
                                    current.state.value, reason.error)
                        if view.give_up is None:  # a given-up container's log got the reason when it was given up
                            await dispatcher.log(uuid, f"{reason.error}\n{reason.detail}\n")
                        said = True
                    await dispatcher.update(uuid, {"state": ContainerState.CANCELLED.value,
                                                   "runtime_status": runtime_status(current, reason)})
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


def _why_scancelled(view: RunnerView) -> str:
    """Why the runner scancelled the container's job, in words ("" if it did not). Pure."""
    if not view.cancel_rounds:
        return ""
    if view.latest.state is ContainerState.CANCELLED or view.latest.priority == 0:
        return "the container was cancelled in Arvados"
    return "the container left this dispatcher" if view.left else "the container can never run here"


def _superseded(latest: Container, updates: UpdateChannel) -> bool:
    """Whether the channel says something new about what a submission depends on: the container left, or an unread
    record has another state, priority or lock holder than ``latest`` (the channel starts with the very record the
    RunContainer began with, unread). Does not block."""
    newer = updates.peek()
    return updates.closed or (newer is not None and newer is not latest and (
        newer.state, newer.priority, newer.locked_by_uuid) != (latest.state, latest.priority, latest.locked_by_uuid))


class Superseded(Exception):
    """A newer record of the container arrived while it waited for its turn at sbatch: nothing was submitted."""


@dataclass(frozen=True)
class _Update:
    container: Container | None
    """The new record, or None once the channel has closed."""


@dataclass(frozen=True)
class _JobNews:
    job: SlurmJob | None


@dataclass(frozen=True)
class _Tick:
    pass


_Event = _Update | _JobNews | _Tick
