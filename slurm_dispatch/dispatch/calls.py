"""The API calls a RunContainer makes through the dispatch core, each run in the core's bounded executor.

The ``Dispatcher`` is a ``ContainerCalls``: the runner calls ``call``, ``update_state``, ``unlock``, ``update`` and
``log`` on it (``slurm_dispatch.runner.ports.Dispatch``), so every blocking API request of the process shares one
bound on concurrent requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from slurm_dispatch.dispatch.client import DispatchClient
from slurm_dispatch.errors import DispatchError
from slurm_dispatch.model import ContainerState

logger = logging.getLogger("slurm_dispatch.dispatch")

T = TypeVar("T")


class ContainerCalls:
    """Blocking API calls, run in a bounded thread pool. Use it from one event loop."""

    def __init__(self, client: DispatchClient, *, max_workers: int) -> None:
        """Create the pool (threads start on first use); does no I/O.

        Args:
            client: the blocking Arvados API client.
            max_workers: the most API requests in flight at once.
        """
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dispatch-api")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Return ``fn(*args, **kwargs)``, run in the bounded executor.

        For short blocking calls (API requests). Long-running work would starve the poll
        loop of threads; give it an executor of its own. Blocks (asynchronously) until done.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def update_state(self, uuid: str, state: ContainerState) -> None:
        """Set the state of container ``uuid`` (``PUT containers/<uuid>``). Blocks on one request.

        Raises:
            ArvadosAPIError: the update failed; it has been logged.
        """
        try:
            await self.call(self._client.update_state, uuid, state)
        except DispatchError as exc:
            logger.warning("error updating container %s to state %s: %s", uuid, state.value, exc)
            raise

    async def unlock(self, uuid: str) -> None:
        """Unlock container ``uuid`` (``POST containers/<uuid>/unlock``). Blocks on one request.

        Raises:
            ArvadosAPIError: the unlock failed; it has been logged.
        """
        try:
            await self.call(self._client.unlock, uuid)
        except DispatchError as exc:
            logger.warning("error unlocking container %s: %s", uuid, exc)
            raise

    async def update(self, uuid: str, fields: Mapping[str, Any]) -> None:
        """Change fields of container ``uuid`` (``PUT containers/<uuid>``). Blocks on one request.

        Raises:
            ArvadosAPIError: the update failed; it has been logged.
        """
        try:
            await self.call(self._client.update, uuid, fields)
        except DispatchError as exc:
            logger.warning("error updating container %s (%s): %s", uuid, ", ".join(sorted(fields)), exc)
            raise

    async def log(self, uuid: str, text: str) -> None:
        """Write ``text`` as a ``dispatch`` log record on container ``uuid`` (``POST logs``). Never raises.

        Go's dispatcher writes its container log lines this way (sdk/go/dispatch/dispatch.go: start); a
        failure is logged here and otherwise ignored, as there.
        """
        try:
            await self.call(self._client.create_log, object_uuid=uuid, event_type="dispatch", text=text)
        except DispatchError as exc:
            logger.warning("error writing the dispatch log of container %s: %s", uuid, exc)


__all__ = ["ContainerCalls"]
