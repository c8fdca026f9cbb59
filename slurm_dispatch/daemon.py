"""The dispatch loop, assembled: the Arvados client, the Slurm backend, the squeue poller, the Slurm runner
and the dispatch core, built from one Settings.

``DispatchLoop.run()`` is what ``slurm-dispatch run`` (and the demo, and the end-to-end tests) run inside the
service's process concerns (locks, sd_notify, health and metrics; see ``slurm_dispatch.service``).

Startup order (arvados-reference.md §6.1): learn our token's uuid, start the squeue poller and the dispatch loop
(both poll at once, then every PollInterval; Go waits one interval first); after the first squeue snapshot and the
first good dispatch tick, adopt the orphaned jobs squeue shows (§6.6). Shutdown stops both loops and leaves every
Slurm job running (§6.11).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch.dispatcher import Dispatcher
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosUnavailable,
    DispatchError,
)
from slurm_dispatch.runner import SlurmRunner, orphan_names
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.sbatch import slurm_command_env
from slurm_dispatch.slurm.squeue import SqueueChecker

logger = logging.getLogger("slurm_dispatch.daemon")


NODE_FEATURES_PERIOD_S = 2.0
"""How often the node-type feature step runs (arvados-reference.md §6.10: every 2 s, as Go)."""

FEATURE_NODE = "compute0"
"""The node whose features Go's dispatcher keeps in line with InstanceTypes (hard-coded there too)."""


def wanted_features(settings: Settings) -> list[str]:
    """Return ``instancetype=<name>`` for every configured instance type, sorted (Go's map order is random). Pure."""
    return sorted(f"instancetype={name}" for name in settings.instance_types)


async def sync_node_features(cli: Any, settings: Settings, *, node: str = FEATURE_NODE) -> None:
    """One pass of the node-type feature step: set ``node``'s features to the instance-type list if they differ.

    Blocks (in threads) on sinfo and, when needed, scontrol. ``cli`` is a SlurmCLI (or anything with its
    ``sinfo_features`` and ``set_node_features``).

    Raises:
        DispatchError: a Slurm command failed.
    """
    want = wanted_features(settings)
    have = await asyncio.to_thread(cli.sinfo_features, node)
    if sorted(have) != want:
        await asyncio.to_thread(cli.set_node_features, node, want)


async def keep_node_features(
    cli: SlurmCLI,
    settings: Settings,
    *,
    node: str = FEATURE_NODE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Every 2 s, make ``node``'s features the instance-type list, so sbatch accepts any
    ``--constraint=instancetype=X`` before such a node exists (§6.10). Only meaningful with InstanceTypes.

    Blocks until cancelled; errors are logged when they change and retried.
    """
    last_error = ""
    while True:
        try:
            await sync_node_features(cli, settings, node=node)
            last_error = ""
        except DispatchError as exc:
            if str(exc) != last_error:
                logger.warning("updating the features of node %s: %s", node, exc)
                last_error = str(exc)
        await sleep(NODE_FEATURES_PERIOD_S)


class DispatchLoop:
    """Everything that dispatches, wired together. Single use; run it on one event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_env: Mapping[str, str],
        client: ArvadosClient | None = None,
        backend: SlurmBackend | None = None,
        metrics: Any = None,
        start_immediately: bool = True,
        on_first_tick: Callable[[], None] | None = None,
        feature_cli: Any = None,
    ) -> None:
        """Build the components; does no I/O.

        Args:
            settings: the cluster's settings.
            base_env: the environment Slurm commands (and so the jobs) start from: PATH, SLURM_CONF, ...
            client: an Arvados client (default: from ``settings``).
            backend: a Slurm backend (default: ``SlurmCLI`` with ``base_env``).
            metrics: optional ``slurm_dispatch.service.metrics.Metrics``.
            start_immediately: poll squeue and the API at once rather than after one PollInterval, as Go does;
                a restart then resumes dispatching (and adoption) at once. Submissions still wait for a
                squeue poll that starts after their lock, so nothing is submitted twice.
            on_first_tick: called once after the first successful dispatch tick (sd_notify READY).
            feature_cli: what runs the node-type feature step (default: a SlurmCLI when InstanceTypes are
                configured, else none).
        """
        self.settings = settings
        self.client = client or ArvadosClient.from_settings(settings)
        slurm_env = slurm_command_env(settings, base_env)
        self.backend: SlurmBackend = backend or SlurmCLI(env=slurm_env)
        self._feature_cli = feature_cli or (SlurmCLI(env=slurm_env) if settings.instance_types else None)
        self.squeue = SqueueChecker(
            backend=self.backend,
            poll_interval_s=settings.poll_interval,
            priority_spread=settings.priority_spread,
            first_poll_immediately=start_immediately,
            defer_renice=lambda: self.runner.submitting > 0,
        )
        self.runner = SlurmRunner(
            settings=settings,
            backend=self.backend,
            squeue=self.squeue,
            client=self.client,
            metrics=metrics,
        )
        self._on_first_tick = on_first_tick
        self._metrics = metrics
        self._pending_since: dict[str, float] = {}
        self._pending_generation = -1
        self.dispatcher = _NotifyingDispatcher(
            self.client,
            self.runner.run_container,
            poll_period=settings.poll_interval,
            min_retry_period=settings.min_retry_period,
            batch_size=settings.batch_size,
            after_tick=self._after_tick,
            # A service process is all dispatcher: freezing the long-lived records out of the collector's
            # full passes halves the CPU of an idle tick at 10,000 containers (docs/benchmarks.md).
            freeze_gc=True,
            start_immediately=start_immediately,
        )
        self.adopted: list[str] | None = None
        """This cluster's jobs found in squeue at startup, now tracked (None until adoption has run)."""
        self._first_good_tick = asyncio.Event()
        self.last_good_tick: float | None = None
        """The monotonic time of the latest tick whose queries all worked (None before the first)."""
        self.failed: BaseException | None = None
        """Set when a background task (the squeue poller) died: the loop then shuts down."""

    def _after_tick(self, ok: bool) -> None:
        if ok:
            self.last_good_tick = time.monotonic()
            self._first_good_tick.set()
        if self._metrics is not None:
            self._metrics.set_containers(Counter(self.runner.states.values()))
            self._note_pending_jobs()
        if ok and self._on_first_tick is not None:
            callback, self._on_first_tick = self._on_first_tick, None
            callback()

    def _note_pending_jobs(self) -> None:
        """Set the oldest-pending-job gauge from the latest squeue snapshot (parsed once, by the poller)."""
        snapshot = self.squeue.snapshot()
        if snapshot.generation == self._pending_generation:
            return
        self._pending_generation = snapshot.generation
        now = time.monotonic()
        prefix = self.settings.cluster_id + "-dz642-"
        self._pending_since = {
            name: self._pending_since.get(name, now)
            for name, job in snapshot.jobs.items()
            if job.state == "PENDING" and name.startswith(prefix)
        }
        self._metrics.set_oldest_pending_age(now - min(self._pending_since.values(), default=now))

    async def run(self) -> None:
        """Dispatch until ``shutdown()``; blocks. Slurm jobs are left running on return.

        Raises:
            ArvadosAuthError: the API refused our token (fatal).
            ArvadosAPIError: our token's uuid could not be fetched.
        """
        await self.dispatcher.prepare()
        if self._feature_cli is not None:
            # Go's first submission comes one PollInterval after start, by when its feature step has run; ours
            # come at once, so the features go in first, or the first --constraint=instancetype=X is refused.
            try:
                await sync_node_features(self._feature_cli, self.settings)
            except DispatchError as exc:
                logger.warning("updating the features of node %s before dispatching: %s", FEATURE_NODE, exc)
        squeue_task = asyncio.create_task(self.squeue.run(), name="squeue poller")
        squeue_task.add_done_callback(self._background_task_ended)
        adopt_task = asyncio.create_task(self._adopt_orphans(), name="orphan adoption")
        tasks = [adopt_task, squeue_task]
        if self._feature_cli is not None:
            tasks.append(asyncio.create_task(keep_node_features(self._feature_cli, self.settings), name="node features"))
        try:
            await self.dispatcher.run()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.runner.close()

    def shutdown(self) -> None:
        """Stop polling; ``run()`` returns soon after. Does not block; call on the loop."""
        self.dispatcher.shutdown()

    def _background_task_ended(self, task: asyncio.Task[Any]) -> None:
        """The squeue poller must run for as long as the loop does: if it ends, stop dispatching and say why."""
        if task.cancelled():
            return
        exc = task.exception() or RuntimeError(f"{task.get_name()} returned")
        self.failed = exc
        logger.error("%s stopped unexpectedly (%r): shutting down, leaving every job running", task.get_name(), exc)
        self.shutdown()

    async def _adopt_orphans(self) -> None:
        """Track the jobs a previous process left (§6.6), once squeue and the first tick have been seen.

        Waiting for the first good tick means the containers locked by us (query A) are already tracked,
        so only true orphans (jobs of Queued, finished or unknown containers) cost a GET each.
        """
        snapshot = await self.squeue.next_snapshot()
        await self._first_good_tick.wait()
        names = orphan_names(list(snapshot.jobs), self.settings.cluster_id)
        tracked = self.dispatcher.tracked()
        already = [n for n in names if n in tracked]
        found = await self.runner.adopt_orphans(self.dispatcher, [n for n in names if n not in tracked])
        self.adopted = sorted(already + found)
        if self.adopted:
            logger.info("adopted %d Slurm jobs left from a previous run", len(self.adopted))


class _NotifyingDispatcher(Dispatcher):
    """A Dispatcher that reports each tick's outcome (for READY=1 after the first good poll)."""

    def __init__(self, *args: Any, after_tick: Callable[[bool], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after_tick = after_tick

    async def tick(self) -> Any:
        report = await super().tick()
        self._after_tick(report.ok)
        return report


# -- the service: process concerns around the loop ------------------------------------------------------------

def stale_reason(last_good_tick: float | None, now: float, poll_interval: float) -> str | None:
    """Return why the dispatcher is unhealthy if no poll has worked for a while, else None. Pure.

    "A while" is three PollIntervals, and at least a minute, so that one slow or failed poll is not an alarm.
    """
    limit = max(3 * poll_interval, 60.0)
    if last_good_tick is None:
        return None  # still starting: READY=1 has not been sent either
    age = now - last_good_tick
    if age > limit:
        return f"no successful poll of the Arvados API for {age:.0f} s (limit {limit:.0f} s)"
    return None


LOCK_RETRY_S = 5.0
"""Seconds between attempts at a lock another process holds (Go's dblock retries every 5 s too)."""


class MeteredBackend:
    """A SlurmBackend that counts what it runs into ``Metrics``.

    Wraps the real backend at the Protocol boundary; blocking exactly as the wrapped one.
    """

    def __init__(self, inner: SlurmBackend, metrics: Any, *, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._metrics = metrics
        self._clock = clock

    def submit(self, *, args: Any, script: str, env: Mapping[str, str]) -> int | None:
        return self._inner.submit(args=args, script=script, env=env)

    def cancel(self, name: str) -> None:
        self._inner.cancel(name)

    def renice(self, name: str, nice: int) -> None:
        self._inner.renice(name, nice)
        self._metrics.reniced()

    def release(self, name: str) -> None:
        self._inner.release(name)

    def queue(self) -> str:
        t0 = self._clock()
        try:
            text = self._inner.queue()
        except Exception:
            self._metrics.squeue_failed()
            raise
        self._metrics.squeue_ok(self._clock() - t0)
        return text


class MeteredClient:
    """The Arvados client, counting failed calls by kind into ``Metrics`` (``api_errors_total{kind}``).

    Delegates every attribute; a method call that raises an ``ArvadosAPIError`` is counted and re-raised.
    """

    _KINDS = (
        (ArvadosAuthError, "auth"),
        (ArvadosConflict, "conflict"),
        (ArvadosNotFound, "not_found"),
        (ArvadosUnavailable, "unavailable"),
    )

    def __init__(self, inner: ArvadosClient, metrics: Any) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except ArvadosAPIError as exc:
                kind = next((k for cls, k in self._KINDS if isinstance(exc, cls)), "other")
                self._metrics.api_error(kind)
                raise

        return counted


async def serve(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    base_env: Mapping[str, str],
    lock_path: str | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the service until SIGTERM/SIGINT (or ``stop``); return the process exit code. Blocks.

    Order: take the local file lock (waiting while another instance holds it), start the health/metrics
    endpoint, take the PostgreSQL advisory lock 10005 when ``PostgreSQL.Connection`` is configured (waiting,
    retried every 5 s), then dispatch. sd_notify ``READY=1`` is sent only after the locks are held and the
    first dispatch poll succeeded (Go sends it earlier, before holding the lock: gotcha 39); ``STOPPING=1``
    on shutdown; ``WATCHDOG=1`` at half of ``WatchdogSec`` while the loop is alive. Shutdown leaves every
    Slurm job running for the next process to adopt.
    """
    import signal

    from slurm_dispatch.service.http import HealthServer
    from slurm_dispatch.service.locks import AdvisoryLock, FileLock, LockHeld, default_lock_path
    from slurm_dispatch.service.metrics import Metrics
    from slurm_dispatch.service.notify import Notifier

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier(environ)
    metrics = Metrics()
    health_error: list[str] = []
    dispatch: DispatchLoop | None = None
    file_lock = FileLock(lock_path or default_lock_path(environ))
    pg_lock = AdvisoryLock(settings.postgresql_connection) if settings.postgresql_connection else None

    def health_check() -> str | None:
        """Runs in the health server's thread: reads state only."""
        if health_error:
            return health_error[-1]
        if dispatch is None:
            return "waiting for the dispatch lock" if pg_lock is not None else "starting"
        if dispatch.last_good_tick is None:
            return "no successful poll of the Arvados API yet"
        return stale_reason(dispatch.last_good_tick, time.monotonic(), settings.poll_interval)

    health = HealthServer.from_settings(settings, health=health_check, registry=metrics.registry)
    tasks: list[asyncio.Task[Any]] = []
    try:
        waiting_logged = False
        while True:
            try:
                file_lock.acquire()
                break
            except LockHeld as exc:
                notifier.status(f"waiting for another instance to exit: {exc}")
                if not waiting_logged:
                    logger.info("waiting for another instance to exit: %s", exc)
                    waiting_logged = True
            try:
                await asyncio.wait_for(stop.wait(), LOCK_RETRY_S)
                return 0
            except TimeoutError:
                pass
        health.start()
        if pg_lock is not None:
            notifier.status("waiting for the PostgreSQL dispatch lock 10005")
            if not await pg_lock.acquire(stop):
                return 0

        def ready() -> None:
            notifier.ready()
            notifier.status("dispatching")
            logger.info("locks held and the first poll worked: ready")
        dispatch = DispatchLoop(
            settings,
            base_env=base_env,
            client=MeteredClient(ArvadosClient.from_settings(settings), metrics),  # type: ignore[arg-type]
            backend=MeteredBackend(SlurmCLI(env=slurm_command_env(settings, base_env)), metrics, clock=time.monotonic),
            metrics=metrics,
            on_first_tick=ready,
        )
        exit_code = 0

        async def on_stop() -> None:
            await stop.wait()
            notifier.stopping()
            dispatch.shutdown()

        async def watchdog(interval: float) -> None:
            # Ping only while polls keep working: a loop that is alive but stuck should be restarted.
            while True:
                await asyncio.sleep(interval / 2)
                last = dispatch.last_good_tick if dispatch is not None else None
                if stale_reason(last, time.monotonic(), settings.poll_interval) is None:
                    notifier.watchdog()

        async def watch_pg() -> None:
            nonlocal exit_code
            assert pg_lock is not None
            lost = await pg_lock.monitor(stop)
            if lost is not None:
                logger.error("%s; stopping dispatch so that no other dispatcher runs beside us", lost)
                health_error.append(str(lost))
                exit_code = 1
                dispatch.shutdown()

        tasks.append(asyncio.create_task(on_stop(), name="stop"))
        interval = notifier.watchdog_interval()
        if interval:
            tasks.append(asyncio.create_task(watchdog(interval), name="watchdog"))
        if pg_lock is not None:
            tasks.append(asyncio.create_task(watch_pg(), name="pg lock monitor"))
        try:
            await dispatch.run()
        except ArvadosAuthError as exc:
            logger.error("the Arvados API refused our token, stopping: %s", exc)
            return 1
        except DispatchError as exc:
            logger.error("dispatching stopped: %s", exc)
            return 1
        if dispatch.failed is not None:
            return 1
        return exit_code
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pg_lock is not None:
            await asyncio.to_thread(pg_lock.release)
        health.stop()
        file_lock.release()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
