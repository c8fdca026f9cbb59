"""The dispatch loop, assembled: the Arvados client, the Slurm backend, the squeue poller, the Slurm runner
and the dispatch core, built from one Settings.

``DispatchLoop.run()`` is what ``slurm-dispatch run`` (and the demo, and the end-to-end tests) run inside the
service's process concerns (locks, sd_notify, health and metrics; see ``slurm_dispatch.service``).

Startup order (arvados-reference.md §6.1): learn our token's uuid, start the squeue poller; after its first
successful poll, adopt the orphaned jobs it shows (§6.6); the dispatch loop ticks every PollInterval. Shutdown
stops both loops and leaves every Slurm job running (§6.11).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch.dispatcher import Dispatcher
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.squeue import SqueueChecker

logger = logging.getLogger("slurm_dispatch.daemon")


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
        first_squeue_immediately: bool = False,
        on_first_tick: Callable[[], None] | None = None,
    ) -> None:
        """Build the components; does no I/O.

        Args:
            settings: the cluster's settings.
            base_env: the environment Slurm commands (and so the jobs) start from: PATH, SLURM_CONF, ...
            client: an Arvados client (default: from ``settings``).
            backend: a Slurm backend (default: ``SlurmCLI`` with ``base_env``).
            metrics: optional ``slurm_dispatch.service.metrics.Metrics``.
            first_squeue_immediately: poll squeue at once rather than after one PollInterval (Go waits).
            on_first_tick: called once after the first successful dispatch tick (sd_notify READY).
        """
        self.settings = settings
        self.client = client or ArvadosClient.from_settings(settings)
        self.backend: SlurmBackend = backend or SlurmCLI(env=base_env)
        self.squeue = SqueueChecker(
            backend=self.backend,
            poll_interval_s=settings.poll_interval,
            priority_spread=settings.spread,
            first_poll_immediately=first_squeue_immediately,
        )
        self.runner = SlurmRunner(
            settings=settings,
            backend=self.backend,
            squeue=self.squeue,
            client=self.client,
            base_env=base_env,
            metrics=metrics,
        )
        self._on_first_tick = on_first_tick
        self.dispatcher = _NotifyingDispatcher(
            self.client,
            self.runner.run_container,
            poll_period=settings.poll_interval,
            min_retry_period=settings.min_retry_period,
            batch_size=settings.batch_size,
            after_tick=self._after_tick,
        )
        self.adopted: list[str] | None = None
        """The orphans adopted at startup (None until the first squeue poll)."""

    def _after_tick(self, ok: bool) -> None:
        if ok and self._on_first_tick is not None:
            callback, self._on_first_tick = self._on_first_tick, None
            callback()

    async def run(self) -> None:
        """Dispatch until ``shutdown()``; blocks. Slurm jobs are left running on return.

        Raises:
            ArvadosAuthError: the API refused our token (fatal).
            ArvadosAPIError: our token's uuid could not be fetched.
        """
        await self.dispatcher.prepare()
        squeue_task = asyncio.create_task(self.squeue.run(), name="squeue poller")
        adopt_task = asyncio.create_task(self._adopt_orphans(), name="orphan adoption")
        try:
            await self.dispatcher.run()
        finally:
            for task in (adopt_task, squeue_task):
                task.cancel()
            await asyncio.gather(adopt_task, squeue_task, return_exceptions=True)
            self.runner.close()

    def shutdown(self) -> None:
        """Stop polling; ``run()`` returns soon after. Does not block; call on the loop."""
        self.dispatcher.shutdown()

    async def _adopt_orphans(self) -> None:
        """After the first successful squeue, track the jobs a previous process left (§6.6)."""
        snapshot = await self.squeue.next_snapshot()
        self.adopted = await self.runner.adopt_orphans(self.dispatcher, list(snapshot.jobs))
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


async def run_until_signalled(loop_: DispatchLoop, stop: Awaitable[Any]) -> None:
    """Run ``loop_`` until ``stop`` completes, then shut it down; blocks."""
    stopper = asyncio.ensure_future(stop)
    stopper.add_done_callback(lambda _: loop_.shutdown())
    try:
        await loop_.run()
    finally:
        stopper.cancel()
