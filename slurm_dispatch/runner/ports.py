"""What the Slurm runner needs of its neighbours: the squeue poller, the dispatch core and the API client.

Protocols only, so that the runner's modules and its tests name the same surface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from slurm_dispatch.model import Container, ContainerState, SlurmJob
from slurm_dispatch.slurm.squeue import SqueueSnapshot

T = TypeVar("T")


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

    async def job_after(self, uuid: str, *, soon: bool = False) -> SlurmJob | None:
        """Return job ``uuid``'s line in the next successful squeue snapshot (None: no such job)."""
        ...

    def snapshot(self) -> SqueueSnapshot:
        """Return the latest successful snapshot. Does not block."""
        ...

    async def wait_change(
        self, uuid: str, seen: SlurmJob | None, *, time_left_below: int | None = None
    ) -> SlurmJob | None:
        """Return job ``uuid``'s line once a successful poll shows news about it (None: it has gone)."""
        ...


class Dispatch(Protocol):
    """What the runner needs of the dispatch core (``slurm_dispatch.dispatch.Dispatcher``)."""

    @property
    def token_uuid(self) -> str: ...

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def unlock(self, uuid: str) -> None: ...

    async def update_state(self, uuid: str, state: ContainerState) -> None: ...

    async def update(self, uuid: str, fields: Mapping[str, Any]) -> None: ...

    async def log(self, uuid: str, text: str) -> None: ...

    async def track_container(self, uuid: str) -> None: ...


class ContainerGetter(Protocol):
    """The one API call the runner makes itself."""

    def get(self, uuid: str) -> Container: ...


__all__ = ["ContainerGetter", "Dispatch", "Squeue"]
