"""The seed's shape, assembled: one Settings in, one dispatch loop out.

```
ArvadosClient ──> Dispatcher(client, runner.run_container)      the generic dispatch core
                        │ one tracker per container, fed updates
                        v
SlurmCLI ──────> SlurmRunner(backend, squeue, client)            the Slurm RunContainer
      │                 │ has_uuid / wait_gone / set_want
      └──────> SqueueChecker(backend)                            ONE squeue per poll, renice pass
```

At startup the runner's ``adopt_orphans`` calls the core's ``track_container`` for every job of ours squeue
shows (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: checkSqueueForOrphans). With InstanceTypes the
node-feature step (``slurm_dispatch.slurm.node_features``) runs first and then every 2 s.

``DispatchLoop.run()`` is what ``slurm-dispatch run`` runs inside the service's process concerns
(``slurm_dispatch.service.serve``: locks, sd_notify, health and metrics), and what the demo, the end-to-end
tests and the benchmarks run directly.

Startup order: learn our token's uuid; with InstanceTypes, set the node features; start the squeue poller and
the dispatch loop (both poll at once, then every PollInterval; Go waits one interval first); after the first
squeue snapshot and the first good dispatch tick, adopt the orphaned jobs squeue shows. Shutdown stops both
loops and leaves every Slurm job running (Go's production ``run`` never cancels its dispatch context either).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch.admission import (
    PREVIOUS_ATTEMPT,
    QUIET_AFTER_OVERLOAD_S,
    Admission,
    Drain,
    Limits,
)
from slurm_dispatch.dispatch.client import DispatchClient
from slurm_dispatch.dispatch.dispatcher import Dispatcher, TickReport
from slurm_dispatch.errors import DispatchError
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.broken_nodes import BrokenNodes
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.clusters import clusters_of
from slurm_dispatch.slurm.decide import is_our_job_name, our_job_names
from slurm_dispatch.slurm.node_features import (
    FEATURE_NODE,
    NodeFeatureCLI,
    keep_node_features,
    sync_node_features,
)
from slurm_dispatch.slurm.queue_view import QueueEntry, tracked_entry, waiting_entry
from slurm_dispatch.slurm.sbatch import slurm_command_env
from slurm_dispatch.slurm.squeue import SqueueChecker

logger = logging.getLogger("slurm_dispatch.assemble")


def service_slurm_cli(settings: Settings, base_env: Mapping[str, str]) -> SlurmCLI:
    """Return the service's ``SlurmCLI``: its Slurm commands' environment and clusters from ``settings``, and this
    process's effective uid as ``own_uid`` (so a service that is not root may read its own jobs only). Does no
    I/O."""
    return SlurmCLI(env=slurm_command_env(settings, base_env), clusters=clusters_of(settings, base_env),
                    own_uid=os.geteuid())


class DispatchLoop:
    """Everything that dispatches, wired together. Single use; run it on one event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_env: Mapping[str, str],
        client: DispatchClient | None = None,
        backend: SlurmBackend | None = None,
        metrics: Any = None,
        start_immediately: bool = True,
        on_first_tick: Callable[[], None] | None = None,
        feature_cli: NodeFeatureCLI | None = None,
        drain: Callable[[], Drain | None] = lambda: None,
        broken: BrokenNodes | None = None,
        overload_quiet_s: float = QUIET_AFTER_OVERLOAD_S,
    ) -> None:
        """Build the components; does no I/O.

        Args:
            settings: the cluster's settings.
            base_env: the environment Slurm commands (and so the jobs) start from: PATH, SLURM_CONF, ...
            client: an Arvados client (default: from ``settings``).
            backend: the one Slurm backend every Slurm operation goes through (default: a ``SlurmCLI`` with
                ``base_env``), so the cap on concurrent Slurm commands is one cap.
            metrics: optional ``slurm_dispatch.service.metrics.Metrics`` (containers by state, oldest pending
                job; the backend and client count their own operations when the service meters them).
            start_immediately: poll squeue and the API at once rather than after one PollInterval, as Go does;
                a restart then resumes dispatching (and adoption) at once. Submissions still wait for a
                squeue poll that starts after their lock, so nothing is submitted twice.
            on_first_tick: called once after the first successful dispatch tick (sd_notify READY).
            feature_cli: what runs the node-type feature step (default: the backend, when InstanceTypes are
                configured and it can).
            drain: returns the drain (None: not drained); asked every tick (the service reads its state file).
            broken: the nodes crunch-run reported broken (default: an in-memory registry with the settings'
                action and hold).
            overload_quiet_s: after an API overload, how long without another before locking grows again (the
                cloud dispatcher's minute; tests shorten it).
        """
        self.settings = settings
        self.client: DispatchClient = client or ArvadosClient.from_settings(settings)
        self.backend: SlurmBackend = backend or service_slurm_cli(settings, base_env)
        if feature_cli is None and settings.instance_types and isinstance(self.backend, NodeFeatureCLI):
            feature_cli = self.backend
        self._feature_cli = feature_cli if settings.instance_types else None
        self.squeue = SqueueChecker(
            backend=self.backend,
            poll_interval_s=settings.poll_interval,
            priority_spread=settings.priority_spread,
            first_poll_immediately=start_immediately,
            defer_renice=lambda: self.runner.submitting > 0,
            submissions=lambda: self.runner.submissions,
        )
        self.broken = broken or BrokenNodes(action=settings.broken_node_action, hold_s=settings.broken_node_hold,
                                            clock=time.time)
        self._metrics = metrics
        self.runner = SlurmRunner(settings=settings, backend=self.backend, squeue=self.squeue, client=self.client,
                                  broken=self.broken, on_submitted=self._submitted)
        self._drain = drain
        self.admission = Admission(
            Limits.from_settings(max_in_slurm=settings.max_containers_in_slurm,
                                 max_supervisors=settings.max_supervisors,
                                 supervisor_fraction=settings.supervisor_fraction,
                                 locks_per_minute=settings.max_submits_per_minute),
            clock=time.monotonic,
            quiet_s=overload_quiet_s,
        )
        self.dispatcher = Dispatcher(
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
            admission=self.admission,
            drain=drain,
            busy=self._busy,
            # The runner needs the mounts of every container it submits: their tmp capacity is the scratch
            # estimate behind %T (the default template's --tmp) and the instance type choice, as Go's
            # EstimateScratchSpace counts it. It never needs the command.
            read_before_lock=("mounts",),
        )
        self._on_first_tick = on_first_tick
        self._cleaning: dict[str, asyncio.Task[None]] = {}
        """Queued containers whose untracked job is being handed to a closed tracker (``_clean_up_untracked_jobs``)."""
        self._pending_since: dict[str, float] = {}
        self._pending_generation = -1
        self.adopted: list[str] | None = None
        """This cluster's jobs found in squeue at startup, now tracked (None until adoption has run)."""
        self._first_good_tick = asyncio.Event()
        self.last_good_tick: float | None = None
        """The monotonic time of the latest tick whose queries all worked (None before the first)."""
        self.failed: BaseException | None = None
        """Set when a background task (the squeue poller) died: the loop then shuts down."""

    def _busy(self, container: Container) -> str | None:
        """A container whose previous job is still in squeue (being scancelled) is not locked again yet."""
        return PREVIOUS_ATTEMPT if container.uuid in self.squeue.snapshot().jobs else None

    def _clean_up_untracked_jobs(self) -> None:
        """After a tick: hand each held-back Queued container's job that no tracker follows to ``track_container``.

        Such a job (its RunContainer failed after sbatch, or an sbatch that timed out created it late) would
        otherwise hold the container back for as long as it pends, with nobody to scancel it. As for a leftover
        found at startup, its closed tracker scancels it (a job of a Queued container can never run it: crunch-run
        needs the container Locked). Does not block; the clean-ups run as tasks, cancelled by ``run()``'s end.
        """
        jobs = self.squeue.snapshot().jobs
        tracked = self.dispatcher.tracked()
        for uuid in self.dispatcher.waiting:
            if uuid in jobs and uuid not in tracked and uuid not in self._cleaning:
                task = asyncio.create_task(self._clean_up(uuid), name=f"clean up after {uuid}")
                self._cleaning[uuid] = task  # the loop keeps only a weak reference to a task
                task.add_done_callback(functools.partial(self._cleaned, uuid))

    def _cleaned(self, uuid: str, _task: asyncio.Task[None]) -> None:
        self._cleaning.pop(uuid, None)

    async def _clean_up(self, uuid: str) -> None:
        logger.info("the Slurm job of Queued container %s has no tracker: tracking it to scancel the job", uuid)
        await self.runner.adopt_orphans(self.dispatcher, [uuid])

    def _submitted(self, container: Container) -> None:
        if self._metrics is not None and container.created_at is not None:
            self._metrics.queued_to_sbatch(time.time() - container.created_at.timestamp())

    def _after_tick(self, report: TickReport) -> None:
        if report.ok:
            self.last_good_tick = time.monotonic()
            self._first_good_tick.set()
            self._clean_up_untracked_jobs()
        if self._metrics is not None:
            states = Counter(self.runner.states.values())
            states[ContainerState.QUEUED] += len(self.dispatcher.waiting)  # held back by the admission rules
            self._metrics.set_containers(states)
            self._metrics.set_admission(drained=self._drain() is not None, limits=self.dispatcher.capped)
            self._metrics.set_broken_nodes(len(self.broken.current()))
            self._note_pending_jobs()
        if report.ok and self._on_first_tick is not None:
            callback, self._on_first_tick = self._on_first_tick, None
            callback()

    def _note_pending_jobs(self) -> None:
        """Set the oldest-pending-job gauge from the latest squeue snapshot (parsed once, by the poller)."""
        snapshot = self.squeue.snapshot()
        if snapshot.generation == self._pending_generation:
            return
        self._pending_generation = snapshot.generation
        now = time.monotonic()
        before, pending_since = self._pending_since, {}
        for name, job in snapshot.jobs.items():
            if job.state != "PENDING":
                continue
            since = before.get(name)
            if since is None:  # a name not pending before: is it ours? (known ones were checked then)
                if not is_our_job_name(name, self.settings.cluster_id):
                    continue
                since = now
            pending_since[name] = since
        self._pending_since = pending_since
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
        tasks = [asyncio.create_task(self._adopt_orphans(), name="orphan adoption"), squeue_task]
        if self._feature_cli is not None:
            tasks.append(asyncio.create_task(keep_node_features(self._feature_cli, self.settings),
                                             name="node features"))
        try:
            await self.dispatcher.run()
        finally:
            tasks += self._cleaning.values()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.runner.close()

    async def queue_entries(self) -> list[QueueEntry]:
        """Return every container this dispatcher runs or holds back, with its scheduling status. On the loop."""
        entries = [tracked_entry(view, settings=self.settings, first_seen=self.runner.first_seen.get(uuid))
                   for uuid, view in list(self.runner.views.items())]
        entries += [waiting_entry(w.container, w.reason, settings=self.settings, first_seen=w.first_seen)
                    for w in self.dispatcher.waiting.values()]
        return entries

    async def status(self) -> dict[str, Any]:
        """Return the dispatcher's own state: drain, limits, what holds containers back, broken nodes. On the loop.

        ``starting`` is true until a poll of the API has worked: until then the counts are not yet known (zero).
        """
        drain = self._drain()
        limits = self.admission.limits
        return {
            "starting": self.last_good_tick is None,
            "drained": drain is not None,
            "drain_reason": drain.reason if drain else "",
            "drained_since": drain.since if drain else "",
            "containers_in_slurm": len(self.runner.views),
            "containers_waiting": len(self.dispatcher.waiting),
            "limits": {"max_containers_in_slurm": limits.max_in_slurm, "max_supervisors": limits.max_supervisors,
                       "max_submits_per_minute": limits.locks_per_minute},
            "limits_reached": sorted(self.dispatcher.capped),
            "api_overloaded": self.admission.overloaded,
            "broken_nodes": self.broken.shown(),
        }

    def shutdown(self) -> None:
        """Stop polling and stop the API client (its retries end at once, no request starts); ``run()`` returns
        soon after. Does not block; call on the loop."""
        self.dispatcher.shutdown()
        stop = getattr(self.client, "stop", None)
        if callable(stop):
            stop()

    def _background_task_ended(self, task: asyncio.Task[Any]) -> None:
        """The squeue poller must run for as long as the loop does: if it ends, stop dispatching and say why."""
        if task.cancelled():
            return
        exc = task.exception() or RuntimeError(f"{task.get_name()} returned")
        self.failed = exc
        logger.error("%s stopped unexpectedly (%r): shutting down, leaving every job running", task.get_name(), exc)
        self.shutdown()

    async def _adopt_orphans(self) -> None:
        """Track the jobs a previous process left, once squeue and the first tick have been seen.

        Waiting for the first good tick means the containers locked by us are already tracked, so only true
        orphans (jobs of Queued, finished or unknown containers) cost a GET each.
        """
        snapshot = await self.squeue.next_snapshot()
        await self._first_good_tick.wait()
        names = our_job_names(snapshot.jobs, self.settings.cluster_id)
        tracked = self.dispatcher.tracked()
        already = [n for n in names if n in tracked]
        found = await self.runner.adopt_orphans(self.dispatcher, [n for n in names if n not in tracked])
        self.adopted = sorted(already + found)
        if self.adopted:
            logger.info("adopted %d Slurm jobs left from a previous run", len(self.adopted))


__all__ = ["DispatchLoop", "service_slurm_cli"]
