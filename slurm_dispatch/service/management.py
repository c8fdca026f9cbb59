"""The dispatcher's management API, in the shape of Arvados's cloud dispatcher, so tools built for it read it.

Routes, behind ``Authorization: Bearer <ManagementToken>`` on ``Services.DispatchSLURM.InternalURLs``
(lib/dispatchcloud/dispatcher.go: initialize; sdk/go/auth: RequireLiteralToken):

* ``GET /arvados/v1/dispatch/containers`` → ``{"items": [entry, ...]}``: every container this dispatcher runs,
  and the Queued ones it is holding back (drained, capped, ...), running ones first, then Locked, then by
  priority.
* ``GET /arvados/v1/dispatch/container?container_uuid=<uuid>`` → one entry, or 404
  ``{"errors": ["container not found"]}``.
* ``POST /arvados/v1/dispatch/drain`` (optional ``reason``) and ``POST /arvados/v1/dispatch/resume``: stop or
  resume locking new containers (slurm-dispatch's own; the cloud dispatcher drains instances, not itself).
* ``GET /arvados/v1/dispatch/status``: the dispatcher's own state (drained, caps, broken nodes).

An entry is ``{"container": {...}, "instance_types": [...], "first_seen_at": "...", "scheduling_status": "..."}``
(lib/dispatchcloud/scheduler/run_queue.go: QueueEnt): ``container`` is the record as the dispatcher last read it,
``instance_types`` the eligible InstanceTypes cheapest first in Go's JSON (``ProviderType``, ``VCPUs``, ``RAM``,
..., without ``Name``, which Go's struct does not encode), ``scheduling_status`` one sentence for users.

The HTTP server answers from its own thread; ``ManagementAPI`` runs each request's work on the dispatch event loop
(``asyncio.run_coroutine_threadsafe``), so the loop's state is only ever touched from the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slurm_dispatch.dispatch.admission import drain_reason_problem
from slurm_dispatch.model import Container, format_timestamp
from slurm_dispatch.settings import InstanceType
from slurm_dispatch.slurm.queue_view import QueueEntry

CONTAINERS_PATH = "/arvados/v1/dispatch/containers"
CONTAINER_PATH = "/arvados/v1/dispatch/container"
DRAIN_PATH = "/arvados/v1/dispatch/drain"
RESUME_PATH = "/arvados/v1/dispatch/resume"
STATUS_PATH = "/arvados/v1/dispatch/status"

LOOP_TIMEOUT_S = 7.0
"""How long a request waits for the dispatch loop; a wedged loop gives 503, never a hung request. Shorter than
the health server's whole-request deadline (``http.REQUEST_TIMEOUT_S``), or the connection is cut first and the
503 never sent."""


def instance_type_json(it: InstanceType) -> dict[str, Any]:
    """Return an InstanceType as Go's arvados.InstanceType encodes it (no Name, no Scratch: ``json:"-"``). Pure."""
    return {
        "ProviderType": it.provider_type,
        "VCPUs": it.vcpus,
        "RAM": it.ram,
        "IncludedScratch": it.included_scratch,
        "AddedScratch": it.added_scratch,
        "Price": it.price,
        "Preemptible": it.preemptible,
        "GPU": {"Stack": it.gpu.stack, "DriverVersion": it.gpu.driver_version,
                "HardwareTarget": it.gpu.hardware_target, "DeviceCount": it.gpu.device_count, "VRAM": it.gpu.vram},
    }


def container_json(container: Container) -> dict[str, Any]:
    """Return the container record as the dispatcher last read it, with its current state and priority. Pure."""
    record = dict(container.raw) if container.raw else {}
    record.update(uuid=container.uuid, state=container.state.value, priority=container.priority,
                  locked_by_uuid=container.locked_by_uuid)
    record.setdefault("kind", "arvados#container")
    return record


def entry_json(entry: QueueEntry) -> dict[str, Any]:
    """Return one queue entry as the cloud dispatcher's QueueEnt JSON. Pure."""
    from datetime import UTC, datetime

    first_seen = (format_timestamp(datetime.fromtimestamp(entry.first_seen_at, UTC))
                  if entry.first_seen_at is not None else None)
    return {
        "container": container_json(entry.container),
        "instance_types": [instance_type_json(it) for it in entry.instance_types],
        "first_seen_at": first_seen,
        "scheduling_status": entry.scheduling_status,
    }


def sorted_entries(entries: list[QueueEntry]) -> list[QueueEntry]:
    """Return the entries in the cloud dispatcher's order: running first, then Locked, then priority. Pure."""
    return sorted(entries, key=lambda e: (not e.running, e.container.state.value != "Locked" and not e.running,
                                          -e.container.priority, e.first_seen_at or 0.0, e.container.uuid))


Response = tuple[int, str, bytes]


def json_response(status: int, body: Any) -> Response:
    """Return a JSON response triple."""
    return status, "application/json", (json.dumps(body, separators=(",", ":")) + "\n").encode()


class ManagementAPI:
    """Answers the management routes from the HTTP server's threads, doing the work on the dispatch loop.

    ``entries``, ``drain``, ``resume`` and ``status`` are coroutine functions the assembly provides; they run
    on ``loop``.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        entries: Callable[[], Awaitable[list[QueueEntry]]],
        drain: Callable[[str], Awaitable[Mapping[str, Any]]],
        resume: Callable[[], Awaitable[Mapping[str, Any]]],
        status: Callable[[], Awaitable[Mapping[str, Any]]],
    ) -> None:
        self._loop = loop
        self._entries = entries
        self._drain = drain
        self._resume = resume
        self._status = status

    def handles(self, path: str) -> bool:
        """Return True if ``path`` is one of the management routes."""
        return path in (CONTAINERS_PATH, CONTAINER_PATH, DRAIN_PATH, RESUME_PATH, STATUS_PATH)

    def respond(self, method: str, path: str, query: Mapping[str, list[str]]) -> Response:
        """Return the response to an authorized request. Blocks (up to ``LOOP_TIMEOUT_S``) on the dispatch loop."""
        try:
            if path == CONTAINERS_PATH and method in ("GET", "HEAD"):
                entries = self._on_loop(self._entries())
                return json_response(200, {"items": [entry_json(e) for e in sorted_entries(entries)]})
            if path == CONTAINER_PATH and method in ("GET", "HEAD"):
                uuid = (query.get("container_uuid") or [""])[0]
                for entry in self._on_loop(self._entries()):
                    if entry.container.uuid == uuid:
                        return json_response(200, entry_json(entry))
                return json_response(404, {"errors": ["container not found"]})
            if path == DRAIN_PATH and method == "POST":
                reason = (query.get("reason") or [""])[0].strip() or "drained through the management API"
                problem = drain_reason_problem(reason)
                if problem is not None:
                    return json_response(400, {"errors": [problem]})
                return json_response(200, dict(self._on_loop(self._drain(reason))))
            if path == RESUME_PATH and method == "POST":
                return json_response(200, dict(self._on_loop(self._resume())))
            if path == STATUS_PATH and method in ("GET", "HEAD"):
                return json_response(200, dict(self._on_loop(self._status())))
        except TimeoutError:
            return json_response(503, {"errors": ["the dispatch loop did not answer in time"]})
        return 405, "text/plain; charset=utf-8", b"method not allowed\n"

    def _on_loop(self, coro: Awaitable[Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(_wrap(coro), self._loop)
        try:
            return future.result(timeout=LOOP_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise


async def _wrap(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


__all__ = [
    "CONTAINERS_PATH",
    "CONTAINER_PATH",
    "DRAIN_PATH",
    "RESUME_PATH",
    "STATUS_PATH",
    "ManagementAPI",
    "QueueEntry",
    "container_json",
    "entry_json",
    "instance_type_json",
    "sorted_entries",
]
