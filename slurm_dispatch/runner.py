"""The Slurm RunContainer: one coroutine per container, fed by the dispatch core.

Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go (``run``, ``submit``, ``scancel``,
``checkSqueueForOrphans``), on the shape of the product's design card: the dispatch core feeds this
RunContainer, which submits an sbatch job, reconciles squeue with the tracker's updates, scancels the job
when the update channel closes, and uses ``track_container`` at startup to adopt orphaned jobs.

For one container (arvados-reference.md §6.4):

1. If the container is Locked and its job is not in the *next* squeue snapshot, submit it.
2. A monitor waits on squeue snapshots and notices when the job has gone.
3. Then, until the job is gone: an update with priority 0 scancels it, again after every squeue poll
   until it is gone or a later update raises the priority; any other update sets the job's wanted Slurm
   priority (the renice pass does the rest); a closed channel (the container left this dispatcher)
   scancels it after every squeue poll until it is gone.
4. When the job is gone, the container is read again: still Locked by us → unlock (back to Queued, or
   Cancelled by the MaxDispatchAttempts rule); still Running by us → Cancelled (crunch-run died without
   saying so); locked by another dispatcher, or anything else → nothing. A failed API call here is retried
   (``JOB_GONE_ATTEMPTS``, 1 s doubling) before the tracker's fallback takes over.

Shutdown (task cancellation) returns at once and touches nothing: the job keeps running for the next
process to adopt.

Beyond Go: an sbatch refusal that looks permanent (unknown feature, partition or a node configuration
that does not exist, as slurm-single-node.md lists) raises ``UnsatisfiableContainer`` once sbatch has
refused the container that way ``PERMANENT_REFUSALS`` times in a row, so the container is cancelled with
the reason in its log instead of being locked and refused up to MaxDispatchAttempts (10) times. The
earlier refusals fail like any sbatch error (unlock, retry on a later tick), as in Go: an
``instancetype=`` feature the node-feature step has not set yet, or a partition during a Slurm
reconfiguration, is refused for a while and then accepted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from slurm_dispatch.errors import (
    ArvadosConflict,
    DispatchError,
    SlurmCommandError,
    SlurmUnavailable,
    UnsatisfiableContainer,
)
from slurm_dispatch.model import CONTAINER_UUID_RE, Container, ContainerState
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.priority import container_want
from slurm_dispatch.slurm.sbatch import (
    batch_script,
    crunch_run_argv,
    gateway_auth_secret,
    sbatch_args,
    sbatch_environment,
)

logger = logging.getLogger("slurm_dispatch.runner")

T = TypeVar("T")

SLURM_WORKERS = 4
"""Threads for blocking Slurm commands. SlurmCLI itself caps sbatch/scancel/scontrol at 3 at once."""

STUCK_CANCEL_WARNINGS = (10, 100)
"""After this many scancel rounds without the job leaving squeue, warn (then every 100 rounds)."""

ADOPT_CONCURRENCY = 8
"""GETs in flight while adopting orphans at startup (the dispatcher's executor bounds them too)."""

JOB_GONE_ATTEMPTS = 6
"""Tries at settling a container whose job has gone (1 s, doubling), before the tracker's fallback takes over."""

PERMANENT_SBATCH_ERRORS = (
    "Invalid feature specification",
    "Invalid partition name specified",
    "Requested node configuration is not available",
    "Memory specification can not be satisfied",
    "Invalid generic resource",
    "Invalid account",
    "Invalid qos specification",
)
"""sbatch refusals that retrying cannot change on this cluster (seen with Slurm 22.05)."""

PERMANENT_REFUSALS = 3
"""Refusals in a row (of ``PERMANENT_SBATCH_ERRORS``) after which a container is cancelled, not retried."""

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
        """Record the wanted Slurm priority of job ``uuid`` (may wait one poll); the renice pass applies it."""
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


def permanent_sbatch_failure(exc: SlurmCommandError) -> bool:
    """Return True if sbatch refused the job for a reason no retry on this cluster can change. Pure."""
    return not isinstance(exc, SlurmUnavailable) and any(m in exc.stderr_tail for m in PERMANENT_SBATCH_ERRORS)


def orphan_names(job_names: Mapping[str, Any] | list[str], cluster_id: str) -> list[str]:
    """Return the job names to adopt: container uuids of this cluster, sorted. Pure.

    squeue ``--all`` lists every user's jobs; only names that are container uuids *and* carry this
    cluster's prefix are ours (arvados-reference.md §6.6, gotcha 19).
    """
    return sorted(n for n in job_names if CONTAINER_UUID_RE.match(n) and n.startswith(cluster_id + "-"))


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
        metrics: Any = None,
        cancel_retry_s: float = 1.0,
    ) -> None:
        """Create the runner; does no I/O.

        Args:
            settings: the cluster's settings (templates, crunch-run command, token for the job env).
            backend: runs the Slurm commands (blocking; called in a thread pool of our own).
            squeue: the squeue poller shared by every container.
            client: the Arvados client, for the re-read after a job has gone.
            metrics: optional ``slurm_dispatch.service.metrics.Metrics``.
            cancel_retry_s: pause after a failed scancel before the next try.
        """
        self._settings = settings
        self._backend = backend
        self._squeue = squeue
        self._client = client
        # Only what sbatch gets beyond the backend's own environment (which already carries PATH, SLURM_CONF
        # and SbatchEnvironmentVariables): the Arvados API variables, and SbatchEnvironmentVariables again so
        # that they also win over the backend's LC_ALL=C.
        self._env = sbatch_environment(settings, {})
        self._metrics = metrics
        self._cancel_retry_s = cancel_retry_s
        self._executor = ThreadPoolExecutor(max_workers=SLURM_WORKERS, thread_name_prefix="slurm")
        self.submitting = 0
        """sbatch commands under way (the squeue poller defers renice passes meanwhile)."""
        self.states: dict[str, ContainerState] = {}
        """The latest state seen of every container this runner is running (for the containers gauge)."""
        self._refusals: OrderedDict[str, int] = OrderedDict()
        """Permanent-looking sbatch refusals in a row, by container uuid (see ``PERMANENT_REFUSALS``)."""

    def close(self) -> None:
        """Release the thread pool (running commands finish on their own). Does not block."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _slurm(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _count(self, name: str) -> None:
        if self._metrics is not None:
            getattr(self._metrics, name)()

    # -- submission ---------------------------------------------------------------------------

    def job_for(self, container: Container) -> tuple[list[str], str]:
        """Return the sbatch argv (after ``sbatch``) and the job script for ``container``. Pure.

        Raises:
            SbatchTemplateError: the template has an unknown ``%x``.
            UnsatisfiableContainer: instance types are configured and none fits.
        """
        args = sbatch_args(container, self._settings)
        secret = gateway_auth_secret(self._settings.system_root_token, container.uuid)
        script = batch_script(crunch_run_argv(container.uuid, self._settings), {"GatewayAuthSecret": secret})
        return args, script

    async def submit(self, container: Container) -> int | None:
        """Submit the job of ``container`` with sbatch; return its job id if sbatch printed one.

        Blocks (asynchronously) on sbatch.

        Raises:
            SbatchTemplateError, UnsatisfiableContainer: the container cannot be submitted as configured.
            SlurmCommandError: sbatch failed (``SlurmUnavailable`` when slurmctld did not answer).
        """
        args, script = self.job_for(container)
        self.submitting += 1
        try:
            job_id = await self._slurm(self._backend.submit, args=args, script=script, env=self._env)
        except SlurmCommandError as exc:
            self._count("submit_failed")
            if not permanent_sbatch_failure(exc):
                self._refusals.pop(container.uuid, None)  # "in a row": any other outcome breaks the run
                raise
            refusals = self._refusals.pop(container.uuid, 0) + 1
            if refusals >= PERMANENT_REFUSALS:
                raise UnsatisfiableContainer(
                    container.uuid,
                    f"sbatch refused the job {refusals} times in a row: {exc.stderr_tail.strip()}",
                    available=None,
                ) from exc
            self._refusals[container.uuid] = refusals
            while len(self._refusals) > REFUSALS_REMEMBERED:
                self._refusals.popitem(last=False)
            raise
        finally:
            self.submitting -= 1
        self._refusals.pop(container.uuid, None)
        self._count("submit_ok")
        logger.info("submitted container %s as Slurm job %s", container.uuid, job_id)
        return job_id

    # -- RunContainer ---------------------------------------------------------------------------

    async def run_container(self, dispatcher: Dispatch, container: Container, updates: Any) -> None:
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

    async def _run(self, dispatcher: Dispatch, container: Container, updates: Any) -> None:
        uuid = container.uuid
        if container.state is ContainerState.LOCKED and not await self._squeue.has_uuid(uuid, soon=True):
            await self._submit_once(container)

        gone = asyncio.Event()
        monitor = asyncio.create_task(self._watch(uuid, gone), name=f"squeue monitor {uuid}")
        closed = False
        cancelling = False
        attempts = 0
        try:
            while not gone.is_set():
                if closed or cancelling:
                    attempts += 1
                    if attempts in STUCK_CANCEL_WARNINGS or attempts % STUCK_CANCEL_WARNINGS[-1] == 0:
                        # e.g. a job stuck COMPLETING on a dead node, or another user's job of that name that
                        # our scancel cannot touch: the container cannot be locked again until it is gone
                        logger.warning("Slurm job of container %s is still in squeue after %d scancel rounds; "
                                       "check it with `scontrol show job` (a node down? another user's job?)",
                                       uuid, attempts)
                    # Go scancels once per update; a failed or slow scancel would then never be retried,
                    # since an unchanged record wakes nobody. Keep at it, once per poll, until the job has
                    # gone or (when it was for priority 0) a new update wants the job again.
                    if await self.cancel(uuid) is False:
                        await gone.wait()  # the poll that showed it gone wakes the monitor too
                        break
                    if closed or not (updates.pending or updates.closed):
                        continue
                update = await _first(updates.next(), gone.wait())
                if isinstance(update, _Gone):
                    break
                if update is None:
                    closed = True
                else:
                    self.states[uuid] = update.state
                    cancelling = update.priority == 0
                    if not cancelling:
                        await self._squeue.set_want(uuid, container_want(update))
        finally:
            monitor.cancel()
        await self._job_gone(dispatcher, uuid, updates)

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
            self._count("scancelled")
        except SlurmCommandError as exc:
            logger.warning("scancel of container %s failed: %s", uuid, exc)
            await asyncio.sleep(self._cancel_retry_s)
            return None
        present = await self._squeue.has_uuid(uuid)
        if present:
            logger.info("container %s is still in squeue after scancel", uuid)
        return present

    async def _job_gone(self, dispatcher: Dispatch, uuid: str, updates: Any) -> None:
        """The job left squeue: make the container's state say so (§6.4 step 3, gotcha 35).

        Re-reads the container; still Locked by us → unlock, still Running by us → Cancelled; anything
        else (finished, re-queued, or now another dispatcher's) → nothing. A failed call is retried with
        backoff while the container may still be ours: giving up would leave a Running container whose
        crunch-run is gone Running for ever. Blocks (asynchronously) on the API.
        """
        delay = self._cancel_retry_s
        for attempt in range(1, JOB_GONE_ATTEMPTS + 1):
            try:
                current = await dispatcher.call(self._client.get, uuid)
                if current.locked_by_uuid and current.locked_by_uuid != dispatcher.token_uuid:
                    logger.info("Slurm job of container %s has gone; the container is now locked by %s: "
                                "leaving it alone", uuid, current.locked_by_uuid)
                    return
                if current.state is ContainerState.LOCKED:
                    logger.info("Slurm job of container %s has gone while Locked: unlocking it", uuid)
                    await dispatcher.unlock(uuid)
                elif current.state is ContainerState.RUNNING:
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
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    # -- adoption -------------------------------------------------------------------------------

    async def adopt_orphans(self, dispatcher: Dispatch, job_names: list[str]) -> list[str]:
        """Track every job in ``job_names`` that belongs to this cluster; return those now tracked.

        Port of crunch-dispatch-slurm.go ``checkSqueueForOrphans``. A job of a finished or re-queued
        container gets a tracker that is closed at once, so its RunContainer scancels it. Jobs of
        other users and clusters are left alone. Blocks (asynchronously) on one GET per orphan,
        ``ADOPT_CONCURRENCY`` at a time (Go makes them one by one).
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

        names = orphan_names(job_names, self._settings.cluster_id)
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
