"""Slurm queries that a stopping service does not wait for.

A Slurm command that only reads (squeue, the end-of-job squeue and sacct, sinfo) can hang for its whole timeout
(60 s, ``slurm_dispatch.slurm.cli_backend.DEFAULT_TIMEOUT_S``) when slurmctld or munge is stuck. The thread
running it belongs to a thread pool, and Python joins every pool thread before the process exits, so a stopping
service would wait for the query, using most of systemd's TimeoutStopSec for nothing: nobody needs its answer
any more.

``StoppableQueries`` wraps the service's Slurm backend. Each read runs in a daemon thread of its own, which
Python does not wait for at exit; the caller's thread waits for the answer or for ``stop()``, whichever comes
first, and on ``stop()`` gets ``SlurmUnavailable`` ("no information") at once. The abandoned command ends on its
own timeout, or with the process (under systemd, KillMode=mixed SIGKILLs what is left in the unit's cgroup).
Commands that change something (sbatch, scancel, scontrol update) pass straight through: a submission under way
finishes within its own timeout, so that the next process finds its job rather than guess.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from slurm_dispatch.errors import SlurmUnavailable
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.node_features import NodeFeatureCLI

T = TypeVar("T")

STOPPING = "not waiting for it: the service is stopping"
"""The ``stderr_tail`` of the ``SlurmUnavailable`` a query gives after ``stop()``."""


class StoppableQueries:
    """A SlurmBackend (and node-feature CLI) whose reads return at once after ``stop()``.

    Thread-safe when the wrapped backend is. Each read starts one daemon thread; writes block exactly as the
    wrapped backend.
    """

    def __init__(self, inner: SlurmBackend) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._stopped = False
        self._waiting: set[threading.Event] = set()

    def stop(self) -> None:
        """Make every read under way, and every later one, raise ``SlurmUnavailable`` at once. Does not block."""
        with self._lock:
            self._stopped = True
            waiting = list(self._waiting)
        for wake in waiting:
            wake.set()

    def _read(self, argv0: str, fn: Callable[..., T], *args: Any) -> T:
        """Return ``fn(*args)``, run in a daemon thread. Blocks until it returns or ``stop()`` is called.

        Raises:
            SlurmUnavailable: ``stop()`` was called first.
            SlurmCommandError: whatever ``fn`` raises.
        """
        wake = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
                outcome.append((False, exc))
            finally:
                wake.set()

        with self._lock:
            if self._stopped:
                raise SlurmUnavailable([argv0], None, STOPPING)
            self._waiting.add(wake)
        try:
            threading.Thread(target=run, name=f"slurm-{argv0}", daemon=True).start()
            wake.wait()
        finally:
            with self._lock:
                self._waiting.discard(wake)
        if not outcome:
            raise SlurmUnavailable([argv0], None, STOPPING)
        ok, value = outcome[0]
        if not ok:
            raise value
        result: T = value
        return result

    # -- reads: abandoned on stop() --------------------------------------------------------------------

    def queue(self) -> str:
        """squeue (see ``SlurmBackend.queue``); abandoned on ``stop()``."""
        return self._read("squeue", self._inner.queue)

    def job_ends(self, job_ids: Sequence[str]) -> str:
        """The end-of-job squeue (see ``SlurmCLI.job_ends``); abandoned on ``stop()``."""
        result: str = self._read("squeue", getattr(self._inner, "job_ends"), job_ids)  # noqa: B009
        return result

    def job_ends_named(self, names: Sequence[str]) -> str:
        """The end-of-job squeue by name (see ``SlurmCLI.job_ends_named``); abandoned on ``stop()``."""
        result: str = self._read("squeue", getattr(self._inner, "job_ends_named"), names)  # noqa: B009
        return result

    def sacct(self, job_ids: Sequence[str]) -> str:
        """sacct for ended jobs (see ``SlurmCLI.sacct``); abandoned on ``stop()``."""
        result: str = self._read("sacct", getattr(self._inner, "sacct"), job_ids)  # noqa: B009
        return result

    def sinfo_features(self, node: str) -> list[str]:
        """sinfo of a node's features (see ``SlurmCLI.sinfo_features``); abandoned on ``stop()``."""
        return self._read("sinfo", self._features().sinfo_features, node)

    # -- writes: passed through ------------------------------------------------------------------------

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        """sbatch (see ``SlurmBackend.submit``)."""
        return self._inner.submit(args=args, script=script, env=env)

    def cancel(self, name: str) -> None:
        """The three scancel passes (see ``SlurmBackend.cancel``)."""
        self._inner.cancel(name)

    def renice(self, name: str, nice: int) -> None:
        """scontrol update Nice= (see ``SlurmBackend.renice``)."""
        self._inner.renice(name, nice)

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        """scancel by job ids (see ``SlurmBackend.cancel_jobs``)."""
        self._inner.cancel_jobs(job_ids, running=running, cluster=cluster)

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        """scontrol update JobId=a,b Nice= (see ``SlurmBackend.renice_jobs``)."""
        self._inner.renice_jobs(job_ids, nice, cluster=cluster)

    def release(self, name: str) -> None:
        """scontrol release (see ``SlurmBackend.release``)."""
        self._inner.release(name)

    def set_node_features(self, node: str, features: Sequence[str]) -> None:
        """scontrol update NodeName= Features= (see ``SlurmCLI.set_node_features``)."""
        self._features().set_node_features(node, features)

    def drain_node(self, node: str, reason: str) -> None:
        """scontrol update NodeName= State=DRAIN (see ``SlurmCLI.drain_node``)."""
        getattr(self._inner, "drain_node")(node, reason)  # noqa: B009

    def _features(self) -> NodeFeatureCLI:
        if not isinstance(self._inner, NodeFeatureCLI):
            raise TypeError(f"{type(self._inner).__name__} cannot run the node-feature step")
        return self._inner


__all__ = ["STOPPING", "StoppableQueries"]
