"""Reading one container query from the API: a count probe, then pages, with failures logged once.

Port of the paging half of sdk/go/dispatch/dispatch.go (``checkForUpdates``): ``count=exact&limit=0`` for
``items_available``, then pages of ``count=none`` ordered ``priority desc``, ``offset += len(items)``, stopping on an
empty page or once ``offset >= items_available``. A failed request makes the whole query "failed": the dispatcher
then closes nothing on its strength (a partial observation is never read as "absent").

Unlike Go's crunch-dispatch-slurm, which reads whole records every tick, the queries ``select`` the fields that can
change (as Arvados's cloud dispatcher does, lib/dispatchcloud/container/queue.go): the rest of a container record
(command, mounts, runtime constraints, scheduling parameters, image, creation time) cannot be modified once the
container exists (services/api/app/models/container.rb: ``validate_change`` permits only priority, state, the
progress fields, runtime_status and log), so the dispatcher reads it once per container and merges each tick's
fields over it (``Tracker``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from slurm_dispatch.dispatch.client import DispatchClient
from slurm_dispatch.errors import ArvadosAPIError, ArvadosAuthError, ArvadosShuttingDown, DispatchError
from slurm_dispatch.model import UUID_BATCH, Filter

logger = logging.getLogger("slurm_dispatch.dispatch")

ORDER = ("priority desc",)


TRACKED_FIELDS: tuple[str, ...] = ("uuid", "state", "priority", "locked_by_uuid", "runtime_status")
"""What a tick reads of a container it runs or may adopt: what the runner acts on (``runtime_status`` too, because
the reasons the runner writes keep its other keys). About 150 bytes a record, a tenth of a whole one."""

QUEUED_FIELDS: tuple[str, ...] = (
    *TRACKED_FIELDS, "created_at", "container_image", "runtime_constraints", "scheduling_parameters",
)
"""What a tick reads of a Queued container: enough to decide whether to lock it (``admission``) and to build its
job, except ``LARGE_FIELDS``."""

LARGE_FIELDS: tuple[str, ...] = ("command", "mounts")
"""The fields that do not change but can be large (a workflow's inputs as a JSON mount, a long command): no tick
reads them; the dispatcher reads those its RunContainer needs once, just before locking."""

FULL_RECORD_FIELDS: tuple[str, ...] = (*QUEUED_FIELDS, *LARGE_FIELDS)
"""The fields a RunContainer's records hold (``Container.from_api`` reads no other that matters to it)."""


OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses that mean "the API is too busy": admission backs off while they come."""


def is_overload(exc: DispatchError) -> bool:
    """Return True for an API answer that means "too busy": 429, 503, or a proxy's 502 or 504 (nginx and the
    controller answer those when Rails does not keep up). Pure."""
    return isinstance(exc, ArvadosAPIError) and exc.status in OVERLOAD_STATUSES


class QueueReader:
    """Reads container queries page by page. Use it from the dispatcher's event loop.

    ``overloaded`` is set when a request got an ``OVERLOAD_STATUSES`` answer (the dispatcher resets it each tick).
    """

    def __init__(
        self,
        client: Callable[[], DispatchClient],
        *,
        call: Callable[..., Awaitable[Any]],
        batch_size: int,
        stopping: Callable[[], bool],
    ) -> None:
        """Create the reader; does no I/O.

        Args:
            client: returns the API client (its ``list``); asked at each request.
            call: runs a blocking call in the dispatcher's bounded executor.
            batch_size: the page size (``API.MaxItemsPerResponse``).
            stopping: True once shutdown began: reading stops between pages.
        """
        self._client = client
        self._call = call
        self._batch_size = batch_size
        self._stopping = stopping
        self._errors: dict[str, str] = {}
        self.overloaded = False

    async def read(
        self,
        name: str,
        filters: Sequence[Filter],
        on_page: Callable[[Sequence[Mapping[str, Any]]], None],
        *,
        select: Sequence[str] | None = None,
    ) -> bool:
        """Read the count probe and every page of one query, handing each page to ``on_page``.

        ``select``: the fields each record holds (None: all of them).

        Blocks (asynchronously) on the requests. Returns False if a request failed (or shutdown began).

        Raises:
            ArvadosAuthError: the API refused our token (fatal to the dispatcher).
        """
        try:
            probe = await self._call(self._client().list, filters=filters, order=ORDER, limit=0, offset=0,
                                     count="exact")
        except ArvadosAuthError:
            raise
        except DispatchError as exc:
            self._failed(name, "count", exc)
            return False
        available = probe.items_available or 0
        offset = 0
        while offset < available:
            if self._stopping():
                return False
            try:
                page = await self._call(self._client().list, filters=filters, order=ORDER, limit=self._batch_size,
                                        offset=offset, count="none", select=select)
            except ArvadosAuthError:
                raise
            except DispatchError as exc:
                self._failed(name, "list", exc)
                return False
            if not page.items:
                break
            offset += len(page.items)
            on_page(page.items)
        if self._errors.pop(name, None) is not None:
            logger.info("container query %r works again", name)
        return True

    async def read_uuids(
        self, uuids: Sequence[str], select: Sequence[str], why: str
    ) -> dict[str, Mapping[str, Any]] | None:
        """Read these containers' records (``uuid in [...]``, ``UUID_BATCH`` at a time); None if a request failed.

        A page may hold fewer records than asked while more match: Rails stops a page once the text and JSON columns
        it read reach ``API.MaxIndexDatabaseRead`` bytes (services/api/app/controllers/application_controller.rb:
        ``limit_database_read``; a page always holds at least one record), which a few large ``mounts`` can reach.
        So the uuids a page left out are asked for again, until each is read or a page brings none of them.

        Blocks (asynchronously) on the requests. Records that cannot be read are left out (and logged).

        Raises:
            ArvadosAuthError: the API refused our token.
        """
        found: dict[str, Mapping[str, Any]] = {}
        wanted = list(dict.fromkeys(uuids))
        for i in range(0, len(wanted), UUID_BATCH):
            batch = wanted[i : i + UUID_BATCH]
            while batch:
                try:
                    page = await self._call(self._client().list, filters=[["uuid", "in", batch]], order=("uuid",),
                                           limit=len(batch), offset=0, count="none", select=select)
                except ArvadosAuthError:
                    raise
                except DispatchError as exc:
                    if is_overload(exc):
                        self.overloaded = True
                    logger.warning("error reading %s of %d containers: %s; will retry on a later tick", why,
                                   len(batch), exc)
                    return None
                asked = set(batch)
                for raw in page.items:
                    uuid = raw.get("uuid") if isinstance(raw, Mapping) else None
                    if isinstance(uuid, str) and uuid in asked:
                        found[uuid] = raw
                rest = [u for u in batch if u not in found]
                if len(rest) == len(batch):
                    break  # none of them came back (deleted, or not readable): nothing more to ask for
                batch = rest
        return found

    def _failed(self, name: str, what: Literal["count", "list"], exc: DispatchError) -> None:
        """Log a failed query: at warning when its error changed, at debug when it repeats, at info when the
        service is stopping (the stop cut it short: nothing for an operator to check)."""
        if is_overload(exc):
            self.overloaded = True
        text = f"error getting {what} of containers ({name} query): {exc}"
        if isinstance(exc, ArvadosShuttingDown) or self._stopping():
            logger.info("%s; the service is stopping", text)
            return
        level = logging.DEBUG if self._errors.get(name) == text else logging.WARNING
        self._errors[name] = text
        logger.log(level, "%s; skipping the rest of this tick, no tracker is closed; check the API server", text)


__all__ = [
    "FULL_RECORD_FIELDS",
    "LARGE_FIELDS",
    "ORDER",
    "QUEUED_FIELDS",
    "TRACKED_FIELDS",
    "QueueReader",
    "is_overload",
]
