"""Dispatcher: polls the container queue and keeps exactly one tracker per container it runs.

Port of sdk/go/dispatch/dispatch.go (``Dispatcher``, ``Run``, ``checkForUpdates``, ``checkListForUpdates``,
``start``, ``TrackContainer``), in asyncio. It knows nothing of Slurm: a backend supplies a RunContainer coroutine,
started once per container. What to do with each record is ``decide.record_action``; which Queued containers to
lock this tick is ``admission.admit``; what follows a RunContainer's return is ``fallback.py``.

Each tick:

1. ``todo`` = the uuids of open trackers.
2. Query A ``locked_by_uuid = <my token>`` and query B ``state = Queued AND priority > 0``
   (``queries.QueueReader``: a count probe, then pages, selecting the fields that change). Every returned uuid
   leaves ``todo``. Containers to adopt (A) get their whole record read once; containers to lock (B) are locked once
   the query is read, after their mounts were read when instance types need them.
3. If A or B failed, stop here: nothing is closed on the strength of a failed query.
4. Query the uuids left in ``todo`` by ``uuid in [...]``, 20 at a time.
5. If all of those succeeded, close the trackers still in ``todo``.

Deliberate differences from Go, each for a promise Go does not keep:

* A tracker stays registered until its RunContainer task has finished, even after it is closed. Go forgets it at
  once, so a re-queued container can be locked again and get a second RunContainer while the first is still
  cleaning up (for Slurm: the old tracker's scancel would hit the new job, which has the same name).
* A tracked container now locked by another token is closed; Go leaves its tracker open for ever.
* Closed trackers are not queried again (Go keeps querying uuids it closed but never forgot).
* Locks run concurrently in the bounded executor once the whole query has been read: locking mid-paging shifts
  the offset-paged Queued query past containers not yet seen (Go skips some every tick when more than a page is
  queued). A record that cannot be read is never locked.
* The queries select fields (``queries``) where Go reads whole records, about a tenth of the bytes at steady state.
* Shutdown (``shutdown()``) stops polling and cancels the tracker tasks, which means "abandon"; it never closes a
  tracker. Go closes every tracker when its context is cancelled, which would scancel every job on a restart.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from slurm_dispatch.dispatch.admission import (
    Admission,
    Drain,
    Limits,
    Verdict,
    Waiting,
    admit,
    in_priority_order,
)
from slurm_dispatch.dispatch.calls import ContainerCalls
from slurm_dispatch.dispatch.client import DispatchClient
from slurm_dispatch.dispatch.decide import (
    STATES_OURS,
    RecordAction,
    TrackDecision,
    record_action,
    track_decision,
)
from slurm_dispatch.dispatch.fallback import MAX_HAND_BACKS, apply_fallback, failure_report
from slurm_dispatch.dispatch.queries import (
    FULL_RECORD_FIELDS,
    LARGE_FIELDS,
    QUEUED_FIELDS,
    TRACKED_FIELDS,
    QueueReader,
    is_overload,
)
from slurm_dispatch.dispatch.throttle import Throttle
from slurm_dispatch.dispatch.tracker import Tracker, UpdateChannel
from slurm_dispatch.errors import ArvadosAuthError, ArvadosConflict, ArvadosShuttingDown, DispatchError
from slurm_dispatch.model import UUID_BATCH, Container, ContainerState, Filter, routing_fields

logger = logging.getLogger("slurm_dispatch.dispatch")

T = TypeVar("T")

RunContainer = Callable[["Dispatcher", Container, UpdateChannel], Awaitable[None]]
"""``async def run_container(dispatcher, container, updates) -> None``.

Runs (or resumes watching) one container until it is finished. ``container`` is the first
record (state Locked when we just locked it; it is also the first item of ``updates``). Every
record holds ``queries.QUEUED_FIELDS`` and, of ``queries.LARGE_FIELDS``, those the dispatcher
was told to read (``read_before_lock``; all of them for an adopted container).
``updates.next()`` returns the newest record, or None once the container left this
dispatcher (finished, re-queued, locked by someone else, or returned by no query): then
stop the container's work if it is still going, and return. Raising an exception reports
the failure (``UnsatisfiableContainer`` when the container can never run). Cancellation
(``asyncio.CancelledError``) means the dispatcher is shutting down: leave the work running
for the next process to adopt, and return promptly.
"""

BLOCKING_WORKERS = 8
"""Threads for blocking API calls: bounds concurrent requests (locks, lists, RunContainers' calls)."""

QUEUED_QUERY = "queued"
"""The name of the query for Queued containers with priority > 0 (the ones the dispatcher may lock)."""

MAX_REMEMBERED_BAD_RECORDS = 10_000
"""Malformed records are logged once per uuid; this bounds the memory of which were logged."""

GC_REFREEZE_TICKS = 360
"""With ``freeze_gc``: every this many ticks (an hour at 10 s), unfreeze, collect fully and refreeze."""

ABANDON_GRACE_S = 5.0
"""How long shutdown waits for cancelled RunContainers to return before giving up on them."""



@dataclass
class TickReport:
    """What one tick saw and did; for logs, tests and the benchmark."""

    ok: bool = True
    """False if any query failed (then nothing was closed)."""
    records: int = 0
    woken: int = 0
    locked: int = 0
    started: int = 0
    closed: int = 0
    cpu_s: float = 0.0
    """Process CPU time used during the tick (all threads)."""



class Dispatcher(ContainerCalls):
    """Polls the Arvados container queue and runs one RunContainer task per container.

    Single use: ``run()`` once, on one event loop. Not thread-safe: call its methods from
    the loop that runs it (use ``loop.call_soon_threadsafe(dispatcher.shutdown)`` from
    another thread).
    """

    def __init__(
        self,
        client: DispatchClient,
        run_container: RunContainer,
        *,
        poll_period: float = 10.0,
        min_retry_period: float = 0.0,
        batch_size: int = 1000,
        max_workers: int = BLOCKING_WORKERS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        freeze_gc: bool = False,
        start_immediately: bool = False,
        after_tick: Callable[[TickReport], None] | None = None,
        admission: Admission | None = None,
        drain: Callable[[], Drain | None] = lambda: None,
        busy: Callable[[Container], str | None] = lambda container: None,
        wall_clock: Callable[[], float] = time.time,
        read_before_lock: Sequence[str] = LARGE_FIELDS,
    ) -> None:
        """Create a dispatcher; does no I/O.

        Args:
            client: the blocking Arvados API client.
            run_container: the backend's RunContainer coroutine function.
            poll_period: seconds between ticks (``Containers.CloudVMs.PollInterval``).
            min_retry_period: per-container hold between lock/adopt attempts; 0 disables it.
            batch_size: page size of list queries (``API.MaxItemsPerResponse``-bounded).
            max_workers: threads for blocking calls.
            clock: monotonic seconds, for the throttle and the tick schedule.
            sleep: coroutine that sleeps; injected so tests need not wait.
            freeze_gc: a process-wide policy for a daemon whose main work is this
                dispatcher: after a tick that started trackers, ``gc.freeze()`` moves every
                live object out of the cyclic collector's reach, so each tick's full
                collection no longer rescans ten thousand trackers' records (about half of
                a tick's CPU at 10,000 containers, see docs/benchmarks.md). Reference
                counting still frees everything; only garbage *cycles* among frozen objects
                wait, at most ``GC_REFREEZE_TICKS`` ticks, for the periodic full collection.
            start_immediately: tick as soon as ``run()`` starts; Go (and the default) waits one
                ``poll_period`` first, which delays dispatching by that much after every restart.
            after_tick: called with each tick's report when the tick ends (health, sd_notify READY,
                gauges). Must not block.
            admission: the caps, rate limit and overload backoff on locking (``admission.py``); None: none.
            drain: returns the drain state (None: not drained); asked once per tick. Must not block.
            busy: why a Queued container cannot be locked yet (its previous attempt is still alive), or None.
            wall_clock: seconds since the epoch, for when a waiting container was first seen.
            read_before_lock: the fields a tick does not read (``queries.LARGE_FIELDS``) that the RunContainer
                needs, read just before locking (one list request per ``UUID_BATCH`` locks; none when empty). The
                Slurm runner needs only ``mounts``: their tmp capacity is the scratch of ``%T`` and of the instance
                type choice.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        super().__init__(client, max_workers=max_workers)
        self._run_container = run_container
        self._poll_period = poll_period
        self._start_immediately = start_immediately
        self._batch_size = batch_size
        self._clock = clock
        self._sleep = sleep
        self._throttle = Throttle(min_retry_period, clock)
        self._trackers: dict[str, Tracker] = {}
        self._locking: set[str] = set()
        self._token_uuid = ""
        self._stop = asyncio.Event()
        self._reader = QueueReader(lambda: self._client, call=self.call, batch_size=batch_size, stopping=self._stop.is_set)
        self._bad_records: dict[str, str] = {}
        self._lock_errors: dict[str, str] = {}
        """The last lock error of each container whose lock failed (logged at warning when it changes)."""
        self._freeze_gc = freeze_gc
        self._ticks_since_refreeze = 0
        self._after_tick = after_tick
        self._admission = admission
        self._drain = drain
        self._busy = busy
        self._wall_clock = wall_clock
        self._read_before_lock = tuple(read_before_lock)
        self._overloaded = False
        self._locks_tried = 0
        self._waiting_seen = False
        self._waiting_next: dict[str, Waiting] = {}
        self.waiting: dict[str, Waiting] = {}
        """The Queued containers the latest complete tick held back, and why (their scheduling status)."""
        self._hand_backs: dict[str, int] = {}
        """Running containers handed back in a row by the fallback (``fallback.MAX_HAND_BACKS``), by uuid."""
        self.capped: frozenset[str] = frozenset()
        """Which limits held containers back in the latest tick (drain, cap, supervisors, rate, overload, busy)."""
        self._capped_next: set[str] = set()
        self.last_tick = TickReport()
        """The report of the most recent tick."""
        self.ticks = 0
        """How many ticks have finished (whatever their outcome); tests and status wait on it."""
        self.token_refused: str | None = None
        """Why the API refused our token in the latest tick, after it accepted it at the start (None: it did not)."""

    # -- public API -------------------------------------------------------------------------

    @property
    def token_uuid(self) -> str:
        """The uuid of our token ("" until ``run()``/``prepare()`` fetched it)."""
        return self._token_uuid

    def tracked(self) -> frozenset[str]:
        """Return the uuids that have a tracker (open or still finishing). Does not block."""
        return frozenset(self._trackers)

    def is_tracking(self, uuid: str) -> bool:
        """Return True if ``uuid`` has an open tracker. Does not block."""
        tracker = self._trackers.get(uuid)
        return tracker is not None and not tracker.closed

    async def prepare(self) -> None:
        """Learn our token's uuid (``GET api_client_authorizations/current``), once.

        Raises:
            ArvadosAPIError: the call failed (``ArvadosAuthError`` when the token is refused).
        """
        if self._token_uuid:
            return
        try:
            self._token_uuid = await self.call(self._client.current_token_uuid)
        except DispatchError as exc:
            if isinstance(exc, ArvadosShuttingDown) or self._stop.is_set():
                logger.info("getting my token UUID was cut short by the shutdown: %s", exc)
            else:
                logger.error("error getting my token UUID: %s; check the API host and the token", exc)
            raise

    async def run(self) -> None:
        """Poll every ``poll_period`` until ``shutdown()``; the first tick comes after one period
        (at once with ``start_immediately``).

        Blocks until shutdown. On return (or error) the tracker tasks are abandoned, not
        closed: their work keeps running for the next process to adopt.

        Raises:
            ArvadosAuthError: the API refused our token at the start (later refusals fail only their tick).
            ArvadosAPIError: the token uuid could not be fetched.
        """
        try:
            await self.prepare()
            next_at = self._clock() + (0.0 if self._start_immediately else self._poll_period)
            while not await self._wait_until(next_at):
                await self._poll()
                next_at = max(next_at + self._poll_period, self._clock())
        finally:
            await self.aclose()

    async def _poll(self) -> None:
        """Run one tick; a refused token fails that tick, not the dispatcher, once the token has been accepted.

        The token worked at the start (``prepare``), so a 401 now may not mean it is wrong: Rails answers 401 "Not
        logged in" when it could not check a token at all, its database being unreachable, say
        (services/api/app/middlewares/arvados_api_token.rb skips a token whose check raised). As Go's dispatcher
        (sdk/go/dispatch/dispatch.go: only the first ``current`` call is fatal), the next poll tries again;
        meanwhile nothing is locked or closed, jobs keep running, and ``token_refused`` says why for the health
        check. Blocks (asynchronously) on the tick.
        """
        try:
            await self.tick()
        except ArvadosAuthError as exc:
            text = str(exc)
            if self.token_refused is None:
                logger.error("the Arvados API refused our token during a poll: %s; nothing is locked or released "
                             "until it accepts it again, jobs keep running; trying again at every poll (a revoked "
                             "SystemRootToken, or the API server unable to check tokens)", text)
            else:
                logger.debug("the Arvados API still refuses our token: %s", text)
            self.token_refused = text
            self.ticks += 1
            return
        if self.token_refused is not None:
            logger.info("the Arvados API accepts our token again")
            self.token_refused = None

    def shutdown(self) -> None:
        """Ask ``run()`` to stop polling and return, leaving every container's work running.

        Does not block; call it on the dispatcher's loop (e.g. from ``loop.add_signal_handler``).
        """
        if not self._stop.is_set():
            logger.info("shutting down: polling stops, running containers are left for the next process")
        self._stop.set()

    async def aclose(self) -> None:
        """Abandon every tracker (cancel its task, close nothing) and release the executor.

        Blocks until the tasks have returned or ``ABANDON_GRACE_S`` has passed.
        """
        self._stop.set()
        tasks = [t.task for t in self._trackers.values() if t.task is not None and not t.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=ABANDON_GRACE_S)
            if pending:
                logger.warning(
                    "%d RunContainer tasks ignored cancellation for %.0f s; leaving them",
                    len(pending),
                    ABANDON_GRACE_S,
                )
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._freeze_gc:
            gc.unfreeze()

    async def tick(self) -> TickReport:
        """Run one poll of the queue (see the module docstring) and return what it did.

        Blocks (asynchronously) on the list queries and locks.

        Raises:
            ArvadosAuthError: the API refused our token.
        """
        await self.prepare()
        cpu0 = time.process_time()
        report = TickReport()
        self._reader.overloaded = False
        self._overloaded = False
        self._locks_tried = 0
        self._waiting_seen = False
        self._waiting_next = {}
        self._capped_next = set()
        todo = {uuid for uuid, tracker in self._trackers.items() if not tracker.closed}
        me = self._token_uuid
        ok = await self._check("locked by me", [["locked_by_uuid", "=", me]], TRACKED_FIELDS, todo, report)
        # Only once this tick knows every container we hold (the first tick after a restart adopts them through
        # that query) may it lock more: the caps count them, and a failed query would let a tick lock past a cap.
        if ok:
            ok = await self._check(QUEUED_QUERY, [["state", "=", "Queued"], ["priority", ">", "0"]], QUEUED_FIELDS,
                                   todo, report)
        if self._waiting_seen:  # the Queued query worked: its view of who waits, and why, replaces the last one
            self.waiting = self._waiting_next
            self.capped = frozenset(self._capped_next)  # published whole: readers never see a half-built set
        if self._admission is not None:
            self._admission.tick_ended(overloaded=self._overloaded or self._reader.overloaded,
                                       locks_tried=self._locks_tried)
        if ok and todo and not self._stop.is_set():
            missed = sorted(todo)
            batches = [missed[i : i + UUID_BATCH] for i in range(0, len(missed), UUID_BATCH)]
            results = await asyncio.gather(
                *(self._check("tracked by uuid", [["uuid", "in", b]], TRACKED_FIELDS, todo, report) for b in batches)
            )
            ok = all(results)
        if not ok:
            logger.debug("a container query failed this tick; closing no tracker")
        elif not self._stop.is_set():
            for uuid in sorted(todo):
                tracker = self._trackers.get(uuid)
                if tracker is not None and tracker.close():
                    report.closed += 1
                    logger.info("container %s not returned by any query, stopping tracking", uuid)
        self._throttle.sweep()
        if self._freeze_gc:
            self._manage_gc(started=report.started)
        report.ok = ok
        report.cpu_s = time.process_time() - cpu0
        self.last_tick = report
        self.ticks += 1
        if self._after_tick is not None:
            self._after_tick(report)
        return report

    def _manage_gc(self, *, started: int) -> None:
        """Apply the ``freeze_gc`` policy after a tick (see ``__init__``). Blocks for a full GC at most hourly."""
        self._ticks_since_refreeze += 1
        if self._ticks_since_refreeze >= GC_REFREEZE_TICKS:
            self._ticks_since_refreeze = 0
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif started:
            gc.freeze()

    async def track_container(self, uuid: str) -> None:
        """Make sure ``uuid`` has a tracker, whatever its state (port of ``TrackContainer``).

        Used to adopt leftover work found outside the queue (e.g. a Slurm job from a previous
        process). Does nothing if the container is locked by another token or already
        tracked. If it is Queued, Cancelled or Complete, the new tracker is closed at once,
        so the RunContainer sees the record and then the close, and cleans up. Not
        throttled. Blocks (asynchronously) on one GET.

        Raises:
            ArvadosAPIError: the GET failed (e.g. ``ArvadosNotFound``).
        """
        await self.prepare()
        container = await self.call(self._client.get, uuid)
        if self._stop.is_set():  # the GET ended after shutdown began: start no tracker that nobody will abandon
            return
        decision = track_decision(container, self._token_uuid)
        if decision is TrackDecision.IGNORE:
            logger.debug("not tracking %s: locked by %s", uuid, container.locked_by_uuid)
            return
        if uuid in self._trackers:
            return
        tracker = self._start(container, container.raw)
        if decision is TrackDecision.TRACK_CLOSED:
            logger.info("tracking %s (state %s) only to clean up after it", uuid, container.state.value)
            tracker.close()

    # -- polling ----------------------------------------------------------------------------

    async def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (by the injected clock); return True if shutdown came first."""
        if self._stop.is_set():
            return True
        delay = max(0.0, deadline - self._clock())
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return self._stop.is_set()

    async def _check(
        self, name: str, filters: Sequence[Filter], select: Sequence[str], todo: set[str], report: TickReport
    ) -> bool:
        """Run one query (count probe, then pages, ``select``-ed fields) and handle every record; False if it failed.

        Locks wait until the last page has been read: each lock takes a container out of
        the Queued query's result, which would shift the offset-paged rest past containers
        not yet seen (Go locks page by page and so skips some each tick when more than
        ``batch_size`` are queued). Containers seen before a failed page are still locked:
        a lock acts on a successful observation and destroys nothing.
        """
        to_lock: list[tuple[Mapping[str, Any], Container]] = []
        to_adopt: list[str] = []
        # An exception here (the token refused, or cancellation) locks nothing: it propagates at once.
        ok = await self._reader.read(
            name, filters, lambda items: self._check_list(items, todo, report, to_lock, to_adopt), select=select
        )
        if name == QUEUED_QUERY and ok:
            self._waiting_seen = True
        if to_adopt and not self._stop.is_set():
            report.started += await self._adopt(list(dict.fromkeys(to_adopt)))
        if to_lock and not self._stop.is_set():
            to_lock = in_priority_order(to_lock)
            verdict = self._admit([c for _, c in to_lock])
            admitted = {c.uuid for c in verdict.lock}
            self._note_waiting(to_lock, verdict)
            chosen = [(raw, c) for raw, c in to_lock if c.uuid in admitted and self._throttle.check(c.uuid)]
            if self._read_before_lock and chosen:
                chosen = await self._with_large_fields(chosen)
            self._locks_tried += len(chosen)
            if self._admission is not None:
                self._admission.locked(len(chosen))
            tasks = [asyncio.ensure_future(self._lock_and_start(raw, container)) for raw, container in chosen]
            try:
                results = await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:  # one lock raised (the token was refused) or we were cancelled: no more
                    task.cancel()
                raise
            report.locked += sum(results)
            report.started += sum(results)
        return ok

    def _admit(self, candidates: list[Container]) -> Verdict:
        """Decide which candidates to lock this tick (``admission.admit``), with this dispatcher's counts."""
        open_trackers = [t for t in self._trackers.values() if not t.closed]
        limits = self._admission.limits if self._admission is not None else Limits()
        return admit(
            candidates,
            in_slurm=len(open_trackers),
            supervisors_in_slurm=sum(1 for t in open_trackers if t.supervisor),
            limits=limits,
            drain=self._drain(),
            budget=self._admission.budget() if self._admission is not None else None,
            busy=self._busy,
            overloaded=self._admission is not None and self._admission.overloaded,
        )

    def _note_waiting(self, to_lock: list[tuple[Mapping[str, Any], Container]], verdict: Verdict) -> None:
        now = self._wall_clock()
        for _, container in to_lock:
            reason = verdict.waiting.get(container.uuid)
            if reason is not None:
                previous = self._waiting_next.get(container.uuid) or self.waiting.get(container.uuid)
                first_seen = previous.first_seen if previous is not None else now
                self._waiting_next[container.uuid] = Waiting(container, reason, first_seen)
        self._capped_next |= verdict.capped

    def _check_list(
        self,
        items: Sequence[Mapping[str, Any]],
        todo: set[str],
        report: TickReport,
        to_lock: list[tuple[Mapping[str, Any], Container]],
        to_adopt: list[str],
    ) -> None:
        """Handle one page of records (port of ``checkListForUpdates``); Queued ones go to ``to_lock``, ours that
        no tracker follows to ``to_adopt``.

        Does not block.
        """
        me = self._token_uuid
        trackers = self._trackers
        for raw in items:
            known = trackers.get(raw["uuid"]) if type(raw) is dict and type(raw.get("uuid")) is str else None
            if (known is not None and raw.get("locked_by_uuid") == me and type(raw.get("state")) is str
                    and raw["state"] in STATES_OURS and known.holds(raw)):
                # Still ours, and exactly the record its tracker holds: record_action would say OFFER, and the
                # offer would wake nobody. Most records of a tick at rest take this path (a few µs less each).
                todo.discard(known.uuid)
                report.records += 1
                continue
            try:
                uuid, parsed_state, locked_by = routing_fields(raw)
            except ValueError as exc:
                # No information about this container: its tracker is neither offered nor closed this tick.
                bad_uuid = raw.get("uuid") if isinstance(raw, Mapping) else None
                if isinstance(bad_uuid, str) and bad_uuid:
                    todo.discard(bad_uuid)
                    self._malformed(bad_uuid, exc)
                else:
                    logger.warning("ignoring a container record without a usable uuid in a list response: %s", exc)
                continue
            todo.discard(uuid)
            report.records += 1
            state = parsed_state.value
            tracker = self._trackers.get(uuid)
            decision = record_action(state=state, locked_by=locked_by, me=me, tracked=tracker is not None)
            try:
                if decision.action is RecordAction.CLOSE:
                    if tracker is not None and parsed_state.is_final and locked_by in ("", me):
                        # Unlike Go's checkListForUpdates, the RunContainer gets the final record before the
                        # close: the job of a Complete container may end by itself (slurm/decide.py: next_step)
                        self._deliver_last(tracker, raw)
                    if tracker is not None and tracker.close():
                        report.closed += 1
                        logger.info("container %s: %s; stopping tracking", uuid, decision.reason)
                elif decision.action is RecordAction.OFFER:
                    if tracker is not None:
                        report.woken += tracker.offer(raw, Container.from_api)
                elif decision.action is RecordAction.LOCK:
                    if uuid not in self._locking and not self._stop.is_set() and self._throttle.allows(uuid):
                        # a record that cannot be read is never locked (ValueError below)
                        to_lock.append((raw, Container.from_api(raw)))
                elif decision.action is RecordAction.ADOPT and self._throttle.check(uuid):
                    Container.from_api(raw)  # a record that cannot be read is not adopted (ValueError below)
                    to_adopt.append(uuid)
            except ValueError as exc:
                self._malformed(uuid, exc)

    def _deliver_last(self, tracker: Tracker, raw: Mapping[str, Any]) -> None:
        """Offer a tracker its container's final record (Complete or Cancelled) just before it is closed; a record
        that cannot be read is logged and the tracker is closed all the same. Does not block."""
        try:
            tracker.offer(raw, Container.from_api)
        except ValueError as exc:
            self._malformed(tracker.uuid, exc)

    async def _adopt(self, uuids: list[str]) -> int:
        """Start trackers for containers locked by us that none follows (left by a previous process), from their
        whole records; return how many started. Blocks (asynchronously) on the reads."""
        records = await self._reader.read_uuids(uuids, FULL_RECORD_FIELDS, "the whole records")
        started = 0
        for uuid in uuids:
            raw = (records or {}).get(uuid)
            if raw is None or uuid in self._trackers or self._stop.is_set():
                continue
            try:
                container = Container.from_api(raw)
            except ValueError as exc:
                self._malformed(uuid, exc)
                continue
            decision = track_decision(container, self._token_uuid)
            if decision is not TrackDecision.TRACK:  # it changed since the query: the next tick sees it anew
                continue
            logger.info("adopting container %s (state %s, locked by us)", uuid, container.state.value)
            self._start(container, raw)
            started += 1
        return started

    async def _with_large_fields(
        self, chosen: list[tuple[Mapping[str, Any], Container]]
    ) -> list[tuple[Mapping[str, Any], Container]]:
        """Return the chosen Queued records with the ``read_before_lock`` fields (read now); those that could not be
        read are left out, to be locked on a later tick. Blocks (asynchronously) on the reads."""
        fields = self._read_before_lock
        extra = await self._reader.read_uuids([c.uuid for _, c in chosen], ("uuid", *fields),
                                          "the " + " and ".join(fields))
        if extra is None:
            return []
        whole: list[tuple[Mapping[str, Any], Container]] = []
        for raw, container in chosen:
            uuid = container.uuid
            if uuid not in extra:
                continue
            record = {**raw, **{k: extra[uuid].get(k) for k in fields}}
            try:
                whole.append((record, Container.from_api(record)))  # a record that cannot be read is never locked
            except ValueError as exc:
                self._malformed(uuid, exc)
        return whole

    def _malformed(self, uuid: str, exc: ValueError) -> None:
        """Log an unreadable record: at warning the first time (or when the reason changes)."""
        text = str(exc)
        if self._bad_records.get(uuid) == text:
            logger.debug("ignoring malformed record of container %s: %s", uuid, text)
            return
        if len(self._bad_records) >= MAX_REMEMBERED_BAD_RECORDS:
            self._bad_records.clear()
        self._bad_records[uuid] = text
        logger.warning(
            "ignoring malformed record of container %s: %s; check the API server's answer for it", uuid, text
        )

    async def _lock_and_start(self, raw: Mapping[str, Any], queued: Container) -> bool:
        """Lock a Queued container (``raw``, read as ``queued``) and start its tracker as Locked; True on success."""
        uuid = queued.uuid
        if uuid in self._locking or uuid in self._trackers:  # listed twice (offset paging)
            return False
        self._locking.add(uuid)
        try:
            await self.call(self._client.lock, uuid)
        except ArvadosAuthError:
            raise
        except ArvadosConflict as exc:
            logger.info("did not lock container %s (lost a race, or it is no longer lockable): %s", uuid, exc)
            return False
        except DispatchError as exc:
            if is_overload(exc):
                self._overloaded = True
            text = str(exc)
            level = logging.DEBUG if self._lock_errors.get(uuid) == text else logging.WARNING  # on change only
            if len(self._lock_errors) >= MAX_REMEMBERED_BAD_RECORDS:
                self._lock_errors.clear()
            self._lock_errors[uuid] = text
            logger.log(level, "error locking container %s: %s; will retry on a later tick", uuid, exc)
            return False
        finally:
            self._locking.discard(uuid)
        self._lock_errors.pop(uuid, None)
        if uuid in self._trackers:  # track_container() got there while we waited
            return False
        record = {**raw, "state": ContainerState.LOCKED.value, "locked_by_uuid": self._token_uuid}
        # The record was read before the lock; only the state and the lock holder changed (both valid).
        container = dataclasses.replace(queued, state=ContainerState.LOCKED, locked_by_uuid=self._token_uuid,
                                        raw=record)
        self._start(container, record)
        return True

    # -- trackers ---------------------------------------------------------------------------

    def _start(self, container: Container, raw: Mapping[str, Any]) -> Tracker:
        """Register a tracker for ``container`` and start its task. Does not block."""
        tracker = Tracker(container.uuid, UpdateChannel(container), raw,
                          supervisor=container.scheduling_parameters.supervisor)
        self._trackers[container.uuid] = tracker
        tracker.task = asyncio.create_task(self._track(tracker, container), name=f"tracker {container.uuid}")
        tracker.task.add_done_callback(_log_task_failure)
        return tracker

    async def _track(self, tracker: Tracker, container: Container) -> None:
        """Run the RunContainer, report its failure, then apply the fallback until closed."""
        uuid = tracker.uuid
        exhausted = False
        try:
            fallback, status = ContainerState.QUEUED, None
            try:
                await self._run_container(self, container, tracker.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                tracker.draining = True
                report = failure_report(uuid, exc)
                fallback, status = report.fallback, report.runtime_status
                logger.error("%s", report.log_text.rstrip("\n"), exc_info=not isinstance(exc, DispatchError))
                await self.log(uuid, report.log_text)
                if fallback is ContainerState.CANCELLED:
                    # It can never run here and nothing was submitted: say why and cancel it now (as Arvados's
                    # LSF and cloud dispatchers do); the fallback below retries if this fails.
                    try:
                        await self.update(uuid, {"state": fallback.value, "runtime_status": status})
                    except DispatchError:
                        pass
            tracker.draining = True
            hand_backs = self._hand_backs.pop(uuid, 0)
            exhausted = hand_backs >= MAX_HAND_BACKS
            if exhausted and status is None:
                status = {"error": f"slurm-dispatch could not follow this container's Slurm job: it failed "
                                   f"{hand_backs + 1} times in a row (see the dispatcher's log)"}
            if await apply_fallback(tracker.channel, uuid=uuid, fallback=fallback, status=status,
                                    update=functools.partial(self.call, self._client.update), hand_back=not exhausted):
                if len(self._hand_backs) >= MAX_REMEMBERED_BAD_RECORDS:
                    self._hand_backs.clear()
                self._hand_backs[uuid] = hand_backs + 1
        finally:
            if self._trackers.get(uuid) is tracker:
                del self._trackers[uuid]
        if exhausted and not self._stop.is_set():
            # Cancelled by the fallback, its job may still run, and no query finds a Cancelled container again: a
            # closed tracker (as for a leftover job at startup) has its RunContainer scancel the job.
            try:
                await self.track_container(uuid)
            except DispatchError as exc:
                logger.warning("cannot clean up after container %s: %s", uuid, exc)


def _log_task_failure(task: asyncio.Task[None]) -> None:
    """Log a tracker task that died of an unexpected exception (otherwise asyncio reports it late, or never)."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s failed unexpectedly; its container is left for the next tick to find",
                     task.get_name(), exc_info=task.exception())
