"""The per-container update channel ("latest update wins", close = the container left).

Port of the ``runTracker`` half of sdk/go/dispatch/dispatch.go. Go gives each container
a goroutine and a one-slot channel; here each tracked container has one asyncio task
(running the RunContainer) and one ``UpdateChannel``: a slot holding at most one unread
record, a ``closed`` flag and, only while the task is actually waiting, one future. That
is a few hundred bytes per container, so ten thousand trackers cost a few MB, not ten
thousand threads.

Semantics, as in Go:

* ``next()`` returns the newest unread record; a newer record replaces an unread older
  one (a slow reader sees only the latest state, never a backlog).
* After ``close()`` the reader still gets the record that was unread at the time, then
  ``None`` forever. Close means "this container left this dispatcher" (finished, back to
  Queued, locked by someone else, or returned by no query): stop its work.
* Shutdown of the dispatcher is *not* close. On shutdown the tracker's task is
  cancelled (``asyncio.CancelledError`` inside the RunContainer), which means "abandon:
  leave the work running for the next process to adopt".

Records: a tick's queries select only the fields that change (``queries.TRACKED_FIELDS``); the tracker keeps the
whole record it started from and merges each tick's fields over it, so the RunContainer always sees a whole record.

Wake-ups: the dispatcher hands every listed record to ``Tracker.offer``. While the
RunContainer runs, a record whose fields all equal those already known is dropped without
waking the task, so an idle tick costs a few comparisons per container. The ``etag`` is
not compared: Arvados changes it with any field, including the ones a tick does not read
(log, progress, output), which would wake the task for nothing.
Once the RunContainer has returned, the tracker is *draining* and every record is
delivered, because the fallback counts updates (see ``Dispatcher``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from slurm_dispatch.model import Container


class UpdateChannel:
    """One container's stream of updated records; what a RunContainer reads.

    Use it from the dispatcher's event loop only (not thread-safe). One reader at a time.
    """

    __slots__ = ("_closed", "_latest", "_waiter")

    def __init__(self, initial: Container | None = None) -> None:
        """Create a channel, optionally holding ``initial`` as its first unread record."""
        self._latest: Container | None = initial
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """True once the container has left this dispatcher (an unread record may remain)."""
        return self._closed

    @property
    def pending(self) -> bool:
        """True if an unread record is waiting. Does not block."""
        return self._latest is not None

    def peek(self) -> Container | None:
        """Return the unread record, if any, leaving it unread. Does not block."""
        return self._latest

    def put(self, container: Container) -> bool:
        """Offer ``container``, replacing any unread record; ignored once closed. Does not block.

        Returns:
            True if the record was stored, False if the channel is closed.
        """
        if self._closed:
            return False
        self._latest = container
        self._wake()
        return True

    def close(self) -> None:
        """Signal that the container left this dispatcher; idempotent. Does not block."""
        self._closed = True
        self._wake()

    async def next(self) -> Container | None:
        """Return the newest unread record, or None once the channel is closed and drained.

        Blocks until a record arrives or the channel closes. Cancelling the wait loses no record.
        """
        while True:
            latest = self._latest
            if latest is not None:
                self._latest = None
                return latest
            if self._closed:
                return None
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = asyncio.get_running_loop().create_future()
                self._waiter = waiter
            await waiter

    def __aiter__(self) -> UpdateChannel:
        """Iterate over records until the channel is closed and drained."""
        return self

    async def __anext__(self) -> Container:
        """Return the next record; ends the iteration when the channel is closed. Blocks."""
        container = await self.next()
        if container is None:
            raise StopAsyncIteration
        return container

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class Tracker:
    """The dispatcher's handle on one tracked container: its channel, task and last record.

    Use it from the dispatcher's event loop only.
    """

    __slots__ = ("_offered", "_whole", "channel", "draining", "supervisor", "task", "uuid")

    def __init__(self, uuid: str, channel: UpdateChannel, raw: Mapping[str, Any], *, supervisor: bool = False) -> None:
        """Create a tracker whose channel already holds the record built from ``raw`` (a whole record)."""
        self.uuid = uuid
        self.supervisor = supervisor
        """The container is a supervisor (a workflow runner): it counts against the supervisor cap."""
        self.channel = channel
        self.task: asyncio.Task[None] | None = None
        self.draining = False
        """True once the RunContainer returned: every record is then delivered (for the fallback)."""
        self._whole: Mapping[str, Any] = raw
        self._offered: Mapping[str, Any] | None = None
        """The last record offered while open and either known already or delivered (not one ``build`` refused):
        the same one again would deliver nothing."""

    @property
    def closed(self) -> bool:
        """True once the container left this dispatcher."""
        return self.channel.closed

    def offer(self, raw: Mapping[str, Any], build: Callable[[Mapping[str, Any]], Container]) -> bool:
        """Deliver ``raw`` merged over the whole record (built with ``build``) unless it is unchanged or the tracker
        is closed. ``raw`` may hold some fields only (a selected record).

        Does not block.

        Returns:
            True if the task was woken with a new record.

        Raises:
            ValueError: ``build`` rejected the record (nothing is delivered).
        """
        if self.channel.closed:
            return False
        if not self.draining and self._known(raw):
            self._offered = raw
            return False
        whole = {**self._whole, **raw}
        container = build(whole)
        self._whole = whole
        self._offered = raw
        return self.channel.put(container)

    def holds(self, raw: Mapping[str, Any]) -> bool:
        """True if the tracker is open and not draining, and every field of ``raw`` (etag included) has the value
        it already holds: ``offer(raw, ...)`` would deliver nothing. Does not block."""
        if self.draining or self.channel.closed:
            return False
        return raw == self._offered or raw.items() <= self._whole.items()

    def _known(self, raw: Mapping[str, Any]) -> bool:
        """True if every field of ``raw`` but the etag has the value already known. Does not block."""
        whole = self._whole
        for key, value in raw.items():
            if key != "etag" and (key not in whole or whole[key] != value):
                return False
        return True

    def close(self) -> bool:
        """Close the channel. Does not block.

        Returns:
            True if it was open until now.
        """
        if self.channel.closed:
            return False
        self.channel.close()
        return True
