"""scancel by job id, the jobs asked for at about the same time in one command.

Go's Cancel (services/crunch-dispatch-slurm/slurm.go) runs three ``scancel --name=<uuid> --state=...`` passes per
container; slurmctld answers each by sending the whole job table first (a REQUEST_JOB_INFO: 7-9 ms with 1,600
jobs in the queue, measured with sdiag). The runner instead scancels the job it saw in squeue by its id
(``backend.cancel_jobs``): a running or suspended job with no job table read at all, a pending one with one read
per command. When a workflow is cancelled, its many children's runners wake on the same squeue poll and ask
together; ``CancelBatcher`` gathers what they ask during one turn of the event loop (and while a command is under
way) into one command per kind. Whether a job has gone is still learnt from squeue, never from scancel's answer.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Awaitable, Callable

from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.backend import JOB_ID_RE, MAX_JOB_IDS_PER_COMMAND, SlurmBackend


class CancelMode(enum.Enum):
    """How to scancel a job."""

    PENDING = "pending"
    """By id, with ``--state=pending`` (Go's first pass)."""
    RUNNING = "running"
    """By id, with ``--batch --signal=TERM`` (Go's second and third passes: crunch-run gets SIGTERM and stops the
    container itself, with no KillWait deadline)."""
    BY_NAME = "by name"
    """Go's three passes by name: the job is not in the squeue snapshot, has no plain id, or is in a state between
    those (configuring is running; completing, requeued or unknown are left to Slurm's own filters)."""


RUNNING_STATES = frozenset({"RUNNING", "SUSPENDED", "CONFIGURING"})
"""squeue states whose scancel is Go's running/suspended pass (CONFIGURING is a running job still booting)."""


def cancel_mode(job: SlurmJob | None) -> CancelMode:
    """Return how to scancel ``job`` (its line in the latest squeue snapshot; None: not in it). Pure."""
    if job is None or not JOB_ID_RE.match(job.job_id):
        return CancelMode.BY_NAME
    if job.state == "PENDING":
        return CancelMode.PENDING
    if job.state in RUNNING_STATES:
        return CancelMode.RUNNING
    return CancelMode.BY_NAME


class CancelBatcher:
    """Runs ``backend.cancel_jobs`` for the jobs asked for together. Use it from one event loop."""

    def __init__(
        self,
        backend: SlurmBackend,
        *,
        run: Callable[[Callable[[], None]], Awaitable[None]],
        per_command: int = MAX_JOB_IDS_PER_COMMAND,
    ) -> None:
        """Create the batcher; does no I/O.

        Args:
            backend: runs the scancel commands (blocking).
            run: runs a blocking call off the event loop (the runner's Slurm executor).
            per_command: the most job ids in one command.
        """
        self._backend = backend
        self._run = run
        self._per_command = per_command
        self._asked: dict[tuple[bool, str], dict[str, list[asyncio.Future[None]]]] = {}
        """(running, cluster) -> job id -> who waits: one command per kind and cluster."""
        self._flusher: asyncio.Task[None] | None = None
        self.commands = 0
        """scancel commands run (for tests and the benchmark)."""

    async def cancel(self, job_id: str, *, running: bool, cluster: str = "") -> None:
        """scancel job ``job_id`` (``running``: with ``--batch --signal=TERM``, else ``--state=pending``) on
        ``cluster``, in the next command. Blocks (asynchronously) until that command has exited.

        Raises:
            ValueError: ``job_id`` is not a plain job id, or the backend cannot tell its cluster (scancel by name).
            SlurmCommandError: the command failed (``SlurmUnavailable``: slurmctld did not answer).
        """
        if not JOB_ID_RE.match(job_id):
            raise ValueError(f"not a plain Slurm job id: {job_id[:40]!r}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault((running, cluster), {}).setdefault(job_id, []).append(done)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="scancel by job id")
        await done

    async def _flush(self) -> None:
        """Run commands until nobody is waiting: what was asked meanwhile goes into the next one."""
        while True:
            await asyncio.sleep(0)  # the other runners woken by the same poll ask first
            asked = self._asked
            if not asked:
                return
            self._asked = {}
            try:
                for (running, cluster), by_id in sorted(asked.items()):
                    ids = list(by_id)
                    for i in range(0, len(ids), self._per_command):
                        chunk = ids[i : i + self._per_command]
                        await self._one(chunk, running, cluster, [f for job_id in chunk for f in by_id[job_id]])
            except asyncio.CancelledError:  # shutdown: nobody waits for ever
                for by_id in asked.values():
                    for waiters in by_id.values():
                        for f in waiters:
                            f.cancel()
                raise

    async def _one(self, chunk: list[str], running: bool, cluster: str, waiters: list[asyncio.Future[None]]) -> None:
        """Run one command and tell its waiters how it went (any error is theirs, as a direct call's would be)."""
        try:
            await self._run(functools.partial(self._backend.cancel_jobs, chunk, running=running, cluster=cluster))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed on to every waiter, who raises it
            _settle(waiters, exc)
        else:
            _settle(waiters, None)
        finally:
            self.commands += 1


def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for f in waiters:
        if f.done():  # its runner was cancelled (shutdown) meanwhile
            continue
        if error is None:
            f.set_result(None)
        else:
            f.set_exception(error)


__all__ = ["RUNNING_STATES", "CancelBatcher", "CancelMode", "cancel_mode"]
