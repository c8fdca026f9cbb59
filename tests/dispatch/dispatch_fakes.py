"""Fakes at the DispatchClient boundary, and helpers shared by the dispatch tests.

``FakeArvados`` keeps containers in memory, applies the lock/unlock/state rules the
dispatcher relies on (services/api/app/models/container.rb), answers the filters the dispatcher sends,
records every call, and can fail chosen calls. It is thread-safe because the dispatcher
calls it from its executor.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slurm_dispatch.dispatch import Dispatcher, UpdateChannel
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosPermissionDenied,
)
from slurm_dispatch.model import Container, ContainerState, format_timestamp

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ME = "zzzzz-gj3su-000000000000000"
OTHER = "zzzzz-gj3su-0000000000other"
_seq = itertools.count(1)


def new_uuid() -> str:
    return f"zzzzz-dz642-{next(_seq):015d}"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    items_available: int | None


@dataclass
class FakeArvados:
    """An in-memory Arvados holding containers; implements DispatchClient."""

    token_uuid: str = ME
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    logs: list[dict[str, str]] = field(default_factory=list)
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    """method name -> errors to raise on its next calls, in order."""
    lock_hook: Callable[[str], None] | None = None
    """Called (inside the lock call) before a lock is applied: lets a test lose a race."""
    short_pages: int | None = None
    """A page holds at most this many records when more were asked (``limit`` > 1), as Rails cuts a page at
    ``API.MaxIndexDatabaseRead`` bytes (application_controller.rb: ``limit_database_read``)."""
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test set-up ---------------------------------------------------------------------------

    def add(self, state: str = "Queued", priority: int = 1, locked_by: str = "", **extra: Any) -> str:
        uuid = extra.pop("uuid", None) or new_uuid()
        with self._mutex:
            self.records[uuid] = {
                "uuid": uuid,
                "state": state,
                "priority": priority,
                "locked_by_uuid": locked_by,
                "modified_at": self._stamp(),
                **extra,
            }
        return uuid

    def set(self, uuid: str, **fields: Any) -> None:
        """Change a record as another actor would (bumps modified_at)."""
        with self._mutex:
            self.records[uuid].update(fields, modified_at=self._stamp())

    def fail(self, method: str, *errors: Exception) -> None:
        with self._mutex:
            self.failures.setdefault(method, []).extend(errors)

    def clear_failures(self, method: str) -> None:
        """Drop the failures still waiting for ``method``."""
        with self._mutex:
            self.failures.pop(method, None)

    def count(self, method: str) -> int:
        with self._mutex:
            return sum(1 for m, _ in self.calls if m == method)

    def state(self, uuid: str) -> str:
        with self._mutex:
            return str(self.records[uuid]["state"])

    def _stamp(self) -> str:
        return format_timestamp(EPOCH + timedelta(microseconds=next(self._clock)))

    def _enter(self, method: str, arg: Any) -> None:
        self.calls.append((method, arg))
        queue = self.failures.get(method)
        if queue:
            raise queue.pop(0)

    # -- DispatchClient ------------------------------------------------------------------------

    def current_token_uuid(self) -> str:
        with self._mutex:
            self._enter("current_token_uuid", None)
            return self.token_uuid

    def list(
        self,
        *,
        filters: Sequence[Sequence[Any]],
        order: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        count: str = "exact",
        select: Sequence[str] | None = None,
    ) -> Page:
        with self._mutex:
            self._enter("list", (filters, limit, offset, count, select))
            rows = [dict(r) for r in self.records.values() if all(_match(r, f) for f in filters)]
            rows.sort(key=lambda r: (-int(r["priority"]), r["uuid"]))
            if select is not None:  # as the API: the selected fields (those the record has), kind and etag
                rows = [{"kind": "arvados#container", "etag": r["modified_at"], **{k: r[k] for k in select if k in r}}
                        for r in rows]
            limit = 1000 if limit is None else min(limit, 1000)
            if self.short_pages is not None and limit > 1:
                limit = min(limit, self.short_pages)
            return Page(
                items=rows[offset : offset + limit],
                items_available=len(rows) if count == "exact" else None,
            )

    def get(self, uuid: str) -> Container:
        with self._mutex:
            self._enter("get", uuid)
            if uuid not in self.records:
                raise ArvadosNotFound(404, "GET", f"/arvados/v1/containers/{uuid}", "not found")
            return Container.from_api(self.records[uuid])

    def lock(self, uuid: str) -> Mapping[str, Any]:
        with self._mutex:
            self._enter("lock", uuid)
        if self.lock_hook is not None:
            self.lock_hook(uuid)
        with self._mutex:
            rec = self.records[uuid]
            if rec["state"] != "Queued" or int(rec["priority"]) <= 0:
                raise ArvadosConflict(422, "POST", f"/arvados/v1/containers/{uuid}/lock", "cannot lock")
            rec.update(state="Locked", locked_by_uuid=self.token_uuid, modified_at=self._stamp())
            return {"uuid": uuid, "state": "Locked"}

    def unlock(self, uuid: str) -> Mapping[str, Any]:
        with self._mutex:
            self._enter("unlock", uuid)
            rec = self.records[uuid]
            if rec["locked_by_uuid"] != self.token_uuid:
                raise ArvadosPermissionDenied(
                    403, "POST", f"/arvados/v1/containers/{uuid}/unlock", "not yours"
                )
            rec.update(state="Queued", locked_by_uuid="", modified_at=self._stamp())
            return {"uuid": uuid, "state": "Queued"}

    def update_state(self, uuid: str, state: ContainerState | str) -> Any:
        value = ContainerState(state).value
        with self._mutex:
            self._enter("update_state", (uuid, value))
            rec = self.records[uuid]
            if rec["state"] == "Running" and value == "Queued":
                raise ArvadosConflict(422, "PUT", f"/arvados/v1/containers/{uuid}", "Running to Queued")
            rec.update(state=value, modified_at=self._stamp())
            if value in ("Queued", "Complete", "Cancelled"):
                rec["locked_by_uuid"] = ""
            return dict(rec)

    def update(self, uuid: str, fields: Mapping[str, Any]) -> Any:
        """A PUT: a state change is recorded as ``update_state`` (as the state-only PUT it replaces), and
        ``runtime_status`` is stored."""
        fields = dict(fields)
        status = fields.pop("runtime_status", None)
        if set(fields) - {"state"}:
            raise ArvadosAPIError(422, "PUT", f"/arvados/v1/containers/{uuid}", f"fake cannot change {fields}")
        result = self.update_state(uuid, fields["state"]) if "state" in fields else dict(self.records[uuid])
        if status is not None:
            with self._mutex:
                self.records[uuid]["runtime_status"] = dict(status)
                result["runtime_status"] = dict(status)
        return result

    def create_log(self, *, object_uuid: str, event_type: str, text: str) -> Any:
        with self._mutex:
            self._enter("create_log", object_uuid)
            entry = {"object_uuid": object_uuid, "event_type": event_type, "text": text}
            self.logs.append(entry)
            return entry


def _match(rec: Mapping[str, Any], f: Sequence[Any]) -> bool:
    attr, op, operand = f
    value = rec.get(attr)
    if op == "=":
        return bool(value == operand)
    if op == ">":
        return float(value or 0) > float(operand)
    if op == "in":
        return value in operand
    raise ArvadosAPIError(422, "GET", "/arvados/v1/containers", f"fake does not know operator {op}")


@dataclass
class Recorder:
    """A test RunContainer: records what each container's tracker hears.

    ``fail[uuid]`` makes it raise that error after reading the first update; ``finish``
    makes it return after the first update. Otherwise it reads updates until closed.
    """

    started: list[str] = field(default_factory=list)
    seen: dict[str, list[Container]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    fail: dict[str, BaseException] = field(default_factory=dict)
    finish: set[str] = field(default_factory=set)
    returned: set[str] = field(default_factory=set)
    """uuids whose RunContainer has returned or raised (not counting cancellation)."""

    async def __call__(self, dispatcher: Dispatcher, container: Container, updates: UpdateChannel) -> None:
        uuid = container.uuid
        self.started.append(uuid)
        seen = self.seen.setdefault(uuid, [])
        cancelled = False
        try:
            first = await updates.next()
            assert first is container
            seen.append(first)
            if uuid in self.fail:
                raise self.fail[uuid]
            if uuid in self.finish:
                return
            async for update in updates:
                seen.append(update)
            self.closed.add(uuid)
        except asyncio.CancelledError:
            cancelled = True
            self.cancelled.add(uuid)
            raise
        finally:
            if not cancelled:
                self.returned.add(uuid)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``cond()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.001)
