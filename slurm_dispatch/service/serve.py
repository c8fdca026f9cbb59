"""The service: the process concerns around the dispatch loop.

``serve`` is what ``slurm-dispatch run`` runs: the single-instance file lock, the health and metrics endpoint,
the PostgreSQL advisory lock 10005 shared with Arvados's Go dispatchers, sd_notify (READY, STATUS, STOPPING,
WATCHDOG), signal handling and the process exit code. The dispatching itself is ``DispatchLoop``
(``slurm_dispatch.assemble``); this module builds it with the service's one metered Slurm backend and metered
API client, and watches it.

Signals (docs/operations.md, "Signals"): SIGTERM and SIGINT stop the service, leaving every Slurm job running
for the next process to adopt: polling stops, API calls in flight and their retries are cut short (the client's
``stop``), Slurm queries under way are not waited for (``StoppableQueries``), and an sbatch, scancel or scontrol
already running finishes within its own timeout. SIGHUP does not stop it: the config is read only at start
(``run`` never re-reads it: a changed config takes a restart, which is safe, since jobs are adopted), and logs go
to stderr, so there is no file to reopen. The service logs one line saying so, with what the state file says
now (read again at once: drained or not, broken nodes), the one thing it does pick up while running.

Drain changes: the service reads the state file every tick (``StateWatch``) and logs one INFO line when the drain
it reads changes, whoever changed it (``slurm-dispatch drain``/``resume`` from another process); a drain or resume
through the management API is logged by its handler, once.

The ``dispatching`` gauge is 1 from READY (the locks held, the first poll worked) until the service stops or loses
the PostgreSQL lock; 0 before, so a standby waiting for the lock shows it dispatches nothing.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, whatever the API was doing meanwhile: a call cut short by
the stop is not an error); 1 when dispatching stopped on an error (the API refused our token, the squeue poller
died, the PostgreSQL lock was lost), so systemd restarts the service. A config the service refuses to start
with exits 2 earlier, in ``slurm_dispatch.cli.run`` (RestartPreventExitStatus=2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.assemble import DispatchLoop, service_slurm_cli
from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.errors import ArvadosAuthError, DispatchError
from slurm_dispatch.model import format_timestamp
from slurm_dispatch.service.http import HealthServer
from slurm_dispatch.service.locks import AdvisoryLock, FileLock, LockHeld, default_lock_path
from slurm_dispatch.service.management import ManagementAPI
from slurm_dispatch.service.metered import MeteredBackend, MeteredClient
from slurm_dispatch.service.metrics import Metrics
from slurm_dispatch.service.notify import Notifier, keep_alive
from slurm_dispatch.service.state import MANAGEMENT_API, State, StateError, StateStore, StateWatch
from slurm_dispatch.service.stoppable import StoppableQueries
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.broken_nodes import BrokenNode, BrokenNodes
from slurm_dispatch.slurm.clusters import clusters_of, inherited_cluster_variables
from slurm_dispatch.slurm.queue_view import QueueEntry

logger = logging.getLogger("slurm_dispatch.service")

LOCK_RETRY_S = 5.0
"""Seconds between attempts at a lock another process holds (Go's lib/controller/dblock retries every 5 s)."""


AUTH_REFUSED_WAIT_S = 60.0
"""How long the service stays up, unhealthy, after the API refused its token, before it exits 1: systemd restarts it
(``Restart=always``, ``RestartSec=1``), and without the wait a revoked or mistyped token would restart it every
second. A token fixed (or an API server that recovered) works again at the next start."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop the service (systemd's KillSignal=SIGTERM; SIGINT is Ctrl-C in a shell)."""


def hangup_message(state: State, path: str) -> str:
    """Return the line logged on SIGHUP: what it did (re-read the state file) and did not (the config). Pure."""
    if state.problem:
        now = f"unreadable ({state.problem}), so drained"
    elif state.drain is not None:
        now = f"drained since {state.drain.since} ({state.drain.reason})"
    else:
        now = "not drained"
    broken = f", {len(state.broken)} broken node(s) recorded" if state.broken else ""
    return (f"SIGHUP: re-read the state file {path}: {now}{broken}; the config is read only at start (restart "
            "to apply a change: Slurm jobs keep running and are adopted); logs go to stderr, nothing to reopen")


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
    first dispatch poll succeeded (Go sends it earlier, before holding the lock: lib/service/cmd.go sends READY=1
    when its HTTP server is up, and crunch-dispatch-slurm.go again after dblock); ``STOPPING=1``
    on shutdown; ``WATCHDOG=1`` at half of ``WatchdogSec`` while the loop is alive. Shutdown leaves every
    Slurm job running for the next process to adopt.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    state = StateWatch(StateStore(settings.state_directory))

    def on_stop_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("%s: stopping; Slurm jobs keep running, the next start adopts them", sig.name)
        stop.set()

    def on_hangup() -> None:
        # The read is one stat and a small file (the service reads it every tick anyway).
        logger.info("%s", hangup_message(state.read(), str(state.path)))

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    notifier = Notifier(environ)
    metrics = Metrics()
    health_error: list[str] = []
    dispatch: DispatchLoop | None = None
    file_lock = FileLock(lock_path or default_lock_path(environ))
    pg_lock = AdvisoryLock(settings.postgresql_connection) if settings.postgresql_connection else None

    dispatch_started: list[float] = []

    def health_check() -> str | None:
        """Runs in the health server's thread: reads state only.

        A standby waiting for the dispatch lock, or an instance still starting, is healthy, as Go's answers
        (crunch-dispatch-slurm.go: CheckHealth): Arvados's health aggregator counts any ERROR against the whole
        cluster. ``arvados_dispatchslurm_dispatching`` says which instance dispatches.
        """
        if health_error:
            return health_error[-1]
        if dispatch is None or not dispatch_started:
            return None
        # before the first good poll, "a while" counts from the start of dispatching
        stale = stale_reason(dispatch.last_good_tick or dispatch_started[0], time.monotonic(), settings.poll_interval)
        refused = dispatch.dispatcher.token_refused
        return f"{stale}: the Arvados API refuses our token: {refused}" if stale and refused else stale

    async def drain(reason: str) -> dict[str, Any]:
        await asyncio.to_thread(state.set_drain, Drain(reason=reason, since=format_timestamp(datetime.now(UTC))),
                                by=MANAGEMENT_API)
        logger.warning("drained through the management API: %s; no new container is locked", reason)
        return await dispatcher_status()

    async def resume() -> dict[str, Any]:
        await asyncio.to_thread(state.set_drain, None, by=MANAGEMENT_API)
        logger.warning("resumed through the management API: locking new containers again")
        return await dispatcher_status()

    async def dispatcher_status() -> dict[str, Any]:
        if dispatch is None:
            current = await asyncio.to_thread(state.read)
            return {"starting": True, "drained": current.drain is not None,
                    "drain_reason": current.drain.reason if current.drain else ""}
        return await dispatch.status()

    async def entries() -> list[QueueEntry]:
        return [] if dispatch is None else await dispatch.queue_entries()

    management = ManagementAPI(loop=loop, entries=entries, drain=drain, resume=resume, status=dispatcher_status)
    health = HealthServer.from_settings(settings, health=health_check, registry=metrics.registry,
                                        management=management)
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
        inherited = inherited_cluster_variables(base_env)
        if inherited:
            logger.warning("%s set in the service's own environment: the jobs may go to the Slurm clusters it names, "
                           "so every Slurm command of the service names clusters %s, but the admin commands do not "
                           "see this environment; name the clusters in Containers.SLURM.SbatchEnvironmentVariables "
                           "or with --clusters in SbatchArgumentsList instead", " and ".join(inherited),
                           ",".join(clusters_of(settings, base_env)))
        if pg_lock is None:
            # Go's crunch-dispatch-slurm waits for the database until it can lock (lib/controller/dblock:
            # DBLocker.Lock): it never dispatches without the lock. Here an empty Connection means no lock at all.
            logger.warning("PostgreSQL.Connection is empty: no cluster-wide dispatch lock (10005); only this host's "
                           "file lock keeps a second instance from dispatching, so run one instance for the cluster")
        else:
            notifier.status("waiting for the PostgreSQL dispatch lock 10005")
            if not await pg_lock.acquire(stop):
                return 0

        def ready() -> None:
            metrics.set_dispatching(True)
            notifier.ready()
            notifier.status("dispatching")
            logger.info("locks held and the first poll worked: ready")
        def persist_broken(nodes: dict[str, BrokenNode]) -> None:
            try:
                state.set_broken(nodes)
            except StateError as exc:
                logger.warning("%s: the broken nodes are kept in memory only", exc)

        queries = StoppableQueries(service_slurm_cli(settings, base_env))
        known = await asyncio.to_thread(state.read)
        if known.drain is not None:
            by = f" by {known.drained_by}" if known.drained_by else ""
            logger.warning("starting drained%s (since %s: %s): no new container is locked until `slurm-dispatch "
                           "resume`", by, known.drain.since, known.drain.reason)
        dispatch_started.append(time.monotonic())
        dispatch = DispatchLoop(
            settings,
            base_env=base_env,
            client=MeteredClient(ArvadosClient.from_settings(settings), metrics),
            backend=MeteredBackend(queries, metrics),
            metrics=metrics,
            on_first_tick=ready,
            drain=state.drain,
            broken=BrokenNodes(action=settings.broken_node_action, hold_s=settings.broken_node_hold, clock=time.time,
                               known=known.broken, persist=persist_broken),
        )
        exit_code = 0

        async def on_stop() -> None:
            await stop.wait()
            metrics.set_dispatching(False)
            notifier.stopping()
            dispatch.shutdown()
            queries.stop()

        def polls_work() -> bool:
            # Ping the watchdog only while polls keep working: a loop that is alive but stuck should be restarted.
            since = dispatch.last_good_tick or dispatch_started[0]  # before the first good poll: since the start
            return stale_reason(since, time.monotonic(), settings.poll_interval) is None

        async def watch_pg() -> None:
            nonlocal exit_code
            assert pg_lock is not None
            lost = await pg_lock.monitor(stop)
            if lost is not None:
                logger.error("%s; stopping dispatch so that no other dispatcher runs beside us", lost)
                health_error.append(str(lost))
                metrics.set_dispatching(False)
                exit_code = 1
                dispatch.shutdown()

        tasks.append(asyncio.create_task(on_stop(), name="stop"))
        tasks.append(asyncio.create_task(keep_alive(notifier, stop, healthy=polls_work), name="watchdog"))
        if pg_lock is not None:
            tasks.append(asyncio.create_task(watch_pg(), name="pg lock monitor"))
        try:
            await dispatch.run()
        except DispatchError as exc:
            if stop.is_set():
                # Stopping cut short what was under way (the first API call, say): not an error.
                logger.info("stopped; what was under way was cut short: %s", exc)
                return exit_code
            if isinstance(exc, ArvadosAuthError):
                logger.error("the Arvados API refused our token (check SystemRootToken): %s; exiting in %.0f s, "
                             "jobs keep running", exc, AUTH_REFUSED_WAIT_S)
                health_error.append(f"the Arvados API refused our token: {exc}")
                metrics.set_dispatching(False)
                notifier.status(f"the Arvados API refused our token; exiting in {AUTH_REFUSED_WAIT_S:.0f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), AUTH_REFUSED_WAIT_S)
                return exit_code if stop.is_set() else 1  # a SIGTERM meanwhile is a clean stop
            else:
                logger.error("dispatching stopped: %s", exc)
            return 1
        if dispatch.failed is not None:
            return 1
        return exit_code
    finally:
        metrics.set_dispatching(False)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pg_lock is not None:
            await asyncio.to_thread(pg_lock.release)
        health.stop()
        file_lock.release()
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)


__all__ = ["AUTH_REFUSED_WAIT_S", "LOCK_RETRY_S", "STOP_SIGNALS", "hangup_message", "serve", "stale_reason"]
