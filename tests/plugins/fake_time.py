"""Fake time for the tests: ``FakeClock`` (fixture ``fake_clock``), the one clock of every test, and
``InlineExecutor``."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest


class FakeClock:
    """One fake time for every test: a monotonic clock that moves only when told, and sleeps that wait for it.

    * ``clock()`` (or calling the object) returns ``now``.
    * ``await sleep(s)`` is a virtual sleep: it returns once the clock has been moved past its deadline, by
      ``advance`` or by ``run_until``; ``blocking_sleep(s)`` (for synchronous code such as the API client's
      retries) moves the clock at once. Both record ``s`` in ``sleeps``.
    * ``await run_until(predicate)`` is how a test waits: it lets every ready task run, and while the
      predicate is false moves the clock to the next sleeper's deadline, so a test that involves a 10 s poll
      interval takes no real time at all. It fails when nothing is left to wait for, or past ``limit_s``.

    With ``InlineExecutor`` for the code's blocking calls, nothing runs outside the event loop and every run
    is the same.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.now = start
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def blocking_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._seq, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has come. Does not block."""
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def settle(self, turns: int = 50) -> None:
        """Let ready tasks run for ``turns`` turns of the loop (virtual time does not move)."""
        for _ in range(turns):
            await asyncio.sleep(0)

    async def run_until(self, predicate: Callable[[], bool], what: str = "the condition", *,
                        limit_s: float = 3600.0) -> None:
        """Run the loop, moving virtual time from sleeper to sleeper, until ``predicate()`` holds.

        Raises:
            AssertionError: nothing is left to wait for, or ``limit_s`` of virtual time passed.
        """
        deadline = self.now + limit_s
        while True:
            await self.settle()
            if predicate():
                return
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                raise AssertionError(f"waiting for {what}: every task is blocked and no sleep is pending")
            next_at = self._sleepers[0][0]
            if next_at > deadline:
                raise AssertionError(f"waiting for {what}: still false after {limit_s:g} s of virtual time")
            self.advance(next_at - self.now)

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the start."""
        return self.now - self.start


class InlineExecutor(Executor):
    """An Executor that runs each call at once, on the caller's thread: no threads, so runs are repeatable."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, as a thread pool would
            future.set_exception(exc)
        return future


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fresh FakeClock."""
    return FakeClock()
