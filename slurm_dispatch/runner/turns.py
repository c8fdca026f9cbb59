"""Which waiting submission goes to sbatch next: the one Arvados wants first (``SubmitTurns``).

Slurm ranks a job submitted later below the ones before it: priority/basic gives each new job one point less
(measured on the test cluster, see tests/plugins/fake_slurm.py), and priority/multifactor's age factor favours
the jobs that have waited longest. Jobs that reach sbatch in the order of their containers' wants
(``slurm_dispatch.slurm.priority.container_want``) are therefore already in Arvados's order in Slurm, and the
renice pass leaves them alone.

A burst of locks wakes many containers at the same squeue poll, and they used to reach sbatch in the order
their locks came back. Each one out of place then cost renices (``scontrol update``: about as much CPU as an
sbatch per command, and one RPC to slurmctld per job; docs/benchmarks.md). Taking turns by want avoids most of
them; three sbatch at once can still swap neighbours. The renice pass still fixes what arrives out of order across polls (a container of higher priority queued
later), as before.

Pure asyncio; does no I/O. For one event loop: not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

TurnKey = tuple[int, str]
"""(want, job name): higher goes first. Equal wants go by name descending, the renice pass's order
(``slurm_dispatch.slurm.priority.renice_order``)."""


@dataclass(eq=False)
class _Waiter:
    key: TurnKey
    turn: asyncio.Future[None] = field(repr=False)

    def __lt__(self, other: _Waiter) -> bool:  # heapq pops the smallest: make that the highest key
        return self.key > other.key


class SubmitTurns:
    """At most ``slots`` submissions at once, highest key first.

    A free slot is given out on the event loop's next round, not at once: the containers woken by the same squeue
    poll all ask in the round before, so the first slots go to the highest of them too, not to whichever asked
    first.
    """

    def __init__(self, slots: int) -> None:
        """Args:
        slots: submissions allowed at once (at least 1).
        """
        if slots < 1:
            raise ValueError(f"SubmitTurns needs at least one slot, not {slots}")
        self._free = slots
        self._waiting: list[_Waiter] = []  # a heap; a cancelled waiter stays in it until it is popped and skipped
        self._granting = False

    @property
    def waiting(self) -> int:
        """Submissions waiting for their turn (cancelled ones not yet popped included)."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self, key: TurnKey) -> AsyncIterator[None]:
        """Wait for a turn, hold it in the block, then pass it on.

        Blocks (asynchronously) for at least one round of the event loop, and while every slot is taken. A waiter
        cancelled after it was handed a turn passes the turn on, so no slot is ever lost.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(key, loop.create_future())
        heapq.heappush(self._waiting, waiter)
        if self._free and not self._granting:
            self._granting = True
            loop.call_soon(self._grant)
        try:
            await waiter.turn
        except asyncio.CancelledError:
            if waiter.turn.done() and not waiter.turn.cancelled():
                self._pass_on()  # handed the turn in the same instant: give it to the next one
            else:
                waiter.turn.cancel()
            raise
        try:
            yield
        finally:
            self._pass_on()

    def _grant(self) -> None:
        """Give the free slots to the highest waiters still waiting."""
        self._granting = False
        while self._free and (waiter := self._next_waiter()) is not None:
            self._free -= 1
            waiter.turn.set_result(None)

    def _pass_on(self) -> None:
        """Give a finished turn to the highest waiter still waiting, or free the slot."""
        waiter = self._next_waiter()
        if waiter is None:
            self._free += 1
        else:
            waiter.turn.set_result(None)

    def _next_waiter(self) -> _Waiter | None:
        """Take the highest waiter still waiting off the heap (dropping the cancelled ones above it), or None."""
        while self._waiting:
            waiter = heapq.heappop(self._waiting)
            if not waiter.turn.done():
                return waiter
        return None


__all__ = ["SubmitTurns", "TurnKey"]
