"""A wall-clock deadline for each HTTP request attempt, and a stop signal that ends attempts in flight.

``requests`` has no total timeout: its read timeout bounds each socket read, so a server that trickles its
answer (a byte a second, forever; in the status line, the headers or the body) holds a request for ever.
Here every attempt runs under an ``Attempt``: the connection that carries it registers itself
(``bind_current``, called by the transport's connection classes), and when the deadline passes, one
watchdog thread shuts the connection's socket down, which ends any blocked read or write at once. A
``StopSignal`` does the same to every attempt in flight when the client is stopped, and ends the waits
between retries.

Shutting a socket down from another thread is what Go's ``net/http`` does when a request's context is
cancelled (sdk/go/arvados/client.go: Client.Do runs each request under a context with a deadline).
This module imports no HTTP library: it sees a connection only as an object with a ``sock`` attribute (and, while
it connects, ``handshake_sock``).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WATCHDOG_IDLE_S = 60.0
"""The watchdog thread exits after this long with no attempt to watch (and starts again when needed)."""


class Abort(enum.Enum):
    """Why an attempt was cut short."""

    DEADLINE = "deadline"
    STOPPED = "stopped"


def _shutdown(conn: Any) -> None:
    """Shut down the socket of ``conn`` (if it has one yet), ending any blocked read, write or TLS handshake on it.

    ``handshake_sock`` is the same socket under a second descriptor, which the connection keeps while it connects:
    during a TLS handshake its ``sock`` is a detached plain socket (see transport.py, ``_Guarded._new_conn``).
    """
    for sock in (getattr(conn, "sock", None), getattr(conn, "handshake_sock", None)):
        if isinstance(sock, socket.socket):
            try:
                # socket.socket's own shutdown, not SSLSocket's, which would also drop the TLS state that
                # the blocked thread is still using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed, detached or never connected: nothing is blocked on it


class Attempt:
    """One HTTP request attempt: its deadline, the connection carrying it, and why it was aborted, if it was.

    Thread-safe: the attempt's own thread binds and finishes it; the watchdog or a stop aborts it.
    """

    __slots__ = ("_conn", "_lock", "deadline", "done", "reason")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        """When the attempt must be over, in ``time.monotonic()`` seconds."""
        self.reason: Abort | None = None
        """Why the attempt was aborted (None while it was not)."""
        self.done = False
        self._conn: Any = None
        self._lock = threading.Lock()

    def bind(self, conn: Any) -> None:
        """Record the connection that carries the attempt. Does not block.

        Raises:
            ConnectionAbortedError: the attempt was already aborted (its socket has been shut down).
        """
        with self._lock:
            self._conn = conn
            if self.reason is None:
                return
            _shutdown(conn)
        raise ConnectionAbortedError(f"request aborted ({self.reason.value})")

    def abort(self, reason: Abort) -> None:
        """End the attempt: shut its connection's socket down, unless it is over already. Does not block."""
        with self._lock:
            if self.done or self.reason is not None:
                return
            self.reason = reason
            if self._conn is not None:
                _shutdown(self._conn)

    def finish(self) -> None:
        """Mark the attempt over: an abort now does nothing. Does not block."""
        with self._lock:
            self.done = True


_CURRENT = threading.local()


def bind_current(conn: Any) -> None:
    """Bind ``conn`` to the attempt running in this thread, if any (called by the connection). Does not block.

    Raises:
        ConnectionAbortedError: that attempt was already aborted.
    """
    attempt: Attempt | None = getattr(_CURRENT, "attempt", None)
    if attempt is not None:
        attempt.bind(conn)


class _Watchdog:
    """One daemon thread that aborts every watched attempt whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Attempt]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: Attempt) -> None:
        """Abort ``attempt`` at its deadline unless it is done by then. Does not block."""
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._seq), attempt))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="arvados-request-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is attempt:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(WATCHDOG_IDLE_S)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                deadline, _, attempt = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            attempt.abort(Abort.DEADLINE)


_WATCHDOG = _Watchdog()


class StopSignal:
    """Set once, by ``stop()``: ends the waits between retries and aborts every attempt in flight. Thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[Attempt] = set()

    def is_set(self) -> bool:
        """Return True once ``set()`` has been called. Does not block."""
        return self._event.is_set()

    def set(self) -> None:
        """Stop: wake every ``wait``, abort every attempt in flight. Does not block; idempotent."""
        self._event.set()
        with self._lock:
            attempts = list(self._in_flight)
        for attempt in attempts:
            attempt.abort(Abort.STOPPED)

    def wait(self, seconds: float) -> None:
        """Block for ``seconds``, or until ``set()`` is called."""
        self._event.wait(seconds)

    @contextmanager
    def attempt(self, timeout_s: float) -> Iterator[Attempt]:
        """Run one attempt (the body of the ``with``) under a deadline ``timeout_s`` seconds from now.

        The connection the attempt uses binds itself to it (``bind_current``). Does not block by itself.
        """
        attempt = Attempt(time.monotonic() + timeout_s)
        with self._lock:
            self._in_flight.add(attempt)
        if self._event.is_set():  # stopped while we registered: set() may have missed us
            attempt.abort(Abort.STOPPED)
        _WATCHDOG.watch(attempt)
        _CURRENT.attempt = attempt
        try:
            yield attempt
        finally:
            _CURRENT.attempt = None
            attempt.finish()
            with self._lock:
                self._in_flight.discard(attempt)
