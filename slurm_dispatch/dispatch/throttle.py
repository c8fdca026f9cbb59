"""Per-container retry hold (``Containers.MinRetryPeriod``), driven by an injected clock.

Port of sdk/go/dispatch/throttle.go. The dispatcher asks ``check(uuid)`` before it
locks a Queued container and before it adopts a Locked/Running one, so a container
that keeps bouncing back (lock lost, job vanished, unlocked again) is tried at most
once per hold. ``track_container`` does not consult it.

Go sweeps stale entries in a goroutine; here the dispatcher calls ``sweep()`` once
per tick, so the map holds only uuids tried within the last hold.
"""

from __future__ import annotations

from collections.abc import Callable


class Throttle:
    """Allows one attempt per uuid per ``hold`` seconds; the first sight is always allowed.

    Not thread-safe: it lives on the dispatcher's event loop.
    """

    def __init__(self, hold: float, clock: Callable[[], float]) -> None:
        """Create a throttle.

        Args:
            hold: seconds between allowed attempts on one uuid; ``<= 0`` allows everything.
            clock: monotonic seconds (``time.monotonic`` in production, a fake in tests).
        """
        self._hold = hold
        self._clock = clock
        self._last: dict[str, float] = {}

    def check(self, uuid: str) -> bool:
        """Return True if an attempt on ``uuid`` is allowed now, and record it if so. Does not block."""
        if self._hold <= 0:
            return True
        now = self._clock()
        last = self._last.get(uuid)
        if last is not None and now - last < self._hold:
            return False
        self._last[uuid] = now
        return True

    def allows(self, uuid: str) -> bool:
        """Return True if an attempt on ``uuid`` would be allowed now, without recording one. Does not block."""
        if self._hold <= 0:
            return True
        last = self._last.get(uuid)
        return last is None or self._clock() - last >= self._hold

    def sweep(self) -> None:
        """Forget uuids whose last allowed attempt is older than the hold. Does not block."""
        if not self._last:
            return
        cutoff = self._clock() - self._hold
        for uuid in [u for u, t in self._last.items() if t <= cutoff]:
            del self._last[uuid]

    def __len__(self) -> int:
        """The number of uuids currently remembered."""
        return len(self._last)
