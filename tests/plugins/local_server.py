"""A local TCP server for tests of the API client that need a real socket: a server that misbehaves on purpose.

``LocalServer(serve)`` listens on 127.0.0.1 (a free port), accepts connections on a thread of its own and hands
each one, on a thread of its own, to ``serve(conn, stopping)``, which may keep it as long as it likes; ``stopping``
is set by ``close()``, which also stops accepting. The connection is closed when ``serve`` returns. Loaded like
every module under tests/plugins/ (tests/conftest.py); it holds no fixtures.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Serve = Callable[[socket.socket, threading.Event], object]


class LocalServer:
    """Accepts connections and serves each with ``serve`` until ``close()``."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self.connections = 0
        """Connections accepted so far."""
        self.stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._serve(conn, self.stopping)
            except OSError:
                return  # the client gave up and closed: what these tests provoke

    def close(self) -> None:
        """Stop accepting and tell the connections' ``serve`` to stop. Blocks briefly."""
        self.stopping.set()
        self._listener.close()
        self._thread.join(5)


def read_request_head(conn: socket.socket, data: bytes = b"") -> tuple[bytes, bytes] | None:
    """Read up to the end of a request's headers, after ``data`` already read; return (head, what came after it),
    or None if the client closed first."""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
