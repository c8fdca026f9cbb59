"""Metering at the adapters' boundaries: every Slurm operation and every failed API call, counted.

``MeteredBackend`` wraps the one Slurm backend of the service (``SlurmCLI``), so everything the service runs
in Slurm is counted in one place: sbatch, scancel, squeue, renices, releases and the node-feature step.
``MeteredClient`` wraps the Arvados client and counts failed calls by kind. Both are transparent: same
methods, same blocking, same errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch.queries import is_overload
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosMalformedAnswer,
    ArvadosNotFound,
    ArvadosShuttingDown,
    ArvadosUnavailable,
    SlurmCommandError,
)
from slurm_dispatch.service.metrics import Metrics
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.node_features import NodeFeatureCLI

T = TypeVar("T")


class MeteredBackend:
    """A SlurmBackend (and node-feature CLI) that counts every operation into ``Metrics``.

    Blocking exactly as the wrapped backend; thread-safe when it is.
    """

    def __init__(self, inner: SlurmBackend, metrics: Metrics, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._metrics = metrics
        self._clock = clock

    def _counted(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        t0 = self._clock()
        try:
            result = fn(*args, **kwargs)
        except SlurmCommandError:
            self._metrics.slurm_operation(operation, ok=False, seconds=self._clock() - t0)
            raise
        self._metrics.slurm_operation(operation, ok=True, seconds=self._clock() - t0)
        return result

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        """sbatch, counted (see ``SlurmBackend.submit``)."""
        return self._counted("submit", self._inner.submit, args=args, script=script, env=env)

    def cancel(self, name: str) -> None:
        """The three scancel passes, counted once (see ``SlurmBackend.cancel``)."""
        self._counted("cancel", self._inner.cancel, name)

    def renice(self, name: str, nice: int) -> None:
        """scontrol update Nice=, counted (see ``SlurmBackend.renice``)."""
        self._counted("renice", self._inner.renice, name, nice)

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        """One scancel by job ids, counted (see ``SlurmBackend.cancel_jobs``)."""
        self._counted("cancel_jobs", self._inner.cancel_jobs, job_ids, running=running, cluster=cluster)

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        """One scontrol update JobId=a,b Nice=, counted (see ``SlurmBackend.renice_jobs``)."""
        self._counted("renice_jobs", self._inner.renice_jobs, job_ids, nice, cluster=cluster)

    def release(self, name: str) -> None:
        """scontrol release, counted (see ``SlurmBackend.release``)."""
        self._counted("release", self._inner.release, name)

    def queue(self) -> str:
        """squeue, counted with its duration (see ``SlurmBackend.queue``)."""
        return self._counted("queue", self._inner.queue)

    def sinfo_features(self, node: str) -> list[str]:
        """sinfo of a node's features, counted (see ``SlurmCLI.sinfo_features``)."""
        result: list[str] = self._counted("node_features_read", self._features().sinfo_features, node)
        return result

    def set_node_features(self, node: str, features: Sequence[str]) -> None:
        """scontrol update NodeName= Features=, counted (see ``SlurmCLI.set_node_features``)."""
        self._counted("node_features_set", self._features().set_node_features, node, features)

    def job_ends(self, job_ids: Sequence[str]) -> str:
        """squeue --states=all for ended jobs, counted (see ``SlurmCLI.job_ends``)."""
        result: str = self._counted("job_ends", getattr(self._inner, "job_ends"), job_ids)  # noqa: B009
        return result

    def job_ends_named(self, names: Sequence[str]) -> str:
        """squeue --states=all --name= for ended jobs, counted (see ``SlurmCLI.job_ends_named``)."""
        result: str = self._counted("job_ends", getattr(self._inner, "job_ends_named"), names)  # noqa: B009
        return result

    def sacct(self, job_ids: Sequence[str]) -> str:
        """sacct for ended jobs, counted (see ``SlurmCLI.sacct``)."""
        result: str = self._counted("sacct", getattr(self._inner, "sacct"), job_ids)  # noqa: B009
        return result

    def drain_node(self, node: str, reason: str) -> None:
        """scontrol update NodeName= State=DRAIN, counted (see ``SlurmCLI.drain_node``)."""
        self._counted("drain_node", getattr(self._inner, "drain_node"), node, reason)  # noqa: B009

    def _features(self) -> NodeFeatureCLI:
        if not isinstance(self._inner, NodeFeatureCLI):
            raise TypeError(f"{type(self._inner).__name__} cannot run the node-feature step")
        return self._inner


class MeteredClient:
    """The Arvados client, counting failed calls by kind into ``Metrics`` (``api_errors_total{kind}``).

    Delegates every attribute; a method call that raises an ``ArvadosAPIError`` is counted and re-raised.
    """

    _KINDS = (
        (ArvadosAuthError, "auth"),
        (ArvadosConflict, "conflict"),
        (ArvadosNotFound, "not_found"),
        (ArvadosShuttingDown, "shutting_down"),
        (ArvadosMalformedAnswer, "malformed"),
        (ArvadosUnavailable, "unavailable"),
    )

    def __init__(self, inner: ArvadosClient, metrics: Metrics) -> None:
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
                if is_overload(exc):
                    self._metrics.api_overloaded(time.time())
                raise

        return counted


__all__ = ["MeteredBackend", "MeteredClient"]
