"""FakeTime: an injected monotonic clock and sleep for the API client tests (fixture ``fake_time``)."""

from __future__ import annotations

import pytest


class FakeTime:
    """A monotonic clock that only moves when ``sleep`` is called; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    """A fresh FakeTime for the client's injected clock and sleep."""
    return FakeTime()
