"""Every request has a total deadline and a bounded body: a trickling or huge answer cannot hold a call.

The trickling server is a tiny local socket server that sends one byte per interval, for ever: requests'
read timeout (per socket read) never fires on it. Huge bodies come from ``FakeHttp`` (tests/plugins/fake_http.py).
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
import urllib3.connection
from plugins.fake_http import FakeHttp
from plugins.local_server import LocalServer, read_request_head

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.arvados.deadline import StopSignal
from slurm_dispatch.arvados.transport import _GuardedHTTPSConnection
from slurm_dispatch.errors import ArvadosAPIError, ArvadosShuttingDown, ArvadosUnavailable

UUID = "zzzzz-dz642-queuedcontainer"
TOKEN = "v2/zzzzz-gj3su-000000000000000/deadline-test-token-0123456789"
JOIN_S = 20.0
"""How long a test waits for a call that must end within a few seconds (it hangs for ever without the fix)."""


class TrickleServer:
    """Accepts connections; to each, after reading its request, sends ``head`` at once and then ``tail``
    one byte per ``interval`` seconds, repeating ``tail`` for ever, until closed."""

    def __init__(self, head: bytes, tail: bytes, interval: float = 0.1) -> None:
        self.head, self.tail, self.interval = head, tail, interval
        self.requests = 0
        self._server = LocalServer(self._serve)
        self.url = f"http://127.0.0.1:{self._server.port}"

    def _serve(self, conn: socket.socket, stopping: threading.Event) -> None:
        if read_request_head(conn) is None:
            return
        self.requests += 1
        conn.sendall(self.head)
        while not stopping.is_set():
            for byte in self.tail:
                if stopping.wait(self.interval):
                    return
                conn.sendall(bytes([byte]))

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def trickle() -> Iterator[Callable[[bytes, bytes], TrickleServer]]:
    servers: list[TrickleServer] = []

    def make(head: bytes, tail: bytes) -> TrickleServer:
        servers.append(TrickleServer(head, tail))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def outcome_within(seconds: float, fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; return what it raised and how long it took. Fails if it is still running."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call was still blocked after {seconds} s"
    return result[0], time.monotonic() - started


HEADERS_THEN_TRICKLED_BODY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    b'{"uuid": "' + UUID.encode() + b'", "state": "Queued", "x": "' + b"y" * 100,
)
TRICKLED_HEADERS = (b"HTTP/1.1 200 OK\r\n", b"X-Trickle: " + b"z" * 1000)
TRICKLED_STATUS_LINE = (b"", b"HTTP/1.1 200 OK" + b" " * 1000)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(HEADERS_THEN_TRICKLED_BODY, id="body"),
        pytest.param(TRICKLED_HEADERS, id="headers"),
        pytest.param(TRICKLED_STATUS_LINE, id="status-line"),
    ],
)
def test_trickled_answer_ends_at_the_request_deadline(
    trickle: Callable[[bytes, bytes], TrickleServer], answer: tuple[bytes, bytes]
) -> None:
    server = trickle(*answer)
    client = ArvadosClient(
        api_host=server.url, token=TOKEN, read_timeout=5.0, request_deadline=1.0, retry_deadline=0.0
    )
    error, took = outcome_within(JOIN_S, lambda: client.get(UUID))
    assert isinstance(error, ArvadosUnavailable), error
    assert "no complete answer within 1 s" in str(error)
    assert "trickling" in str(error)
    assert 1.0 <= took < 10.0
    assert server.requests == 1


def test_trickled_lock_is_not_repeated(trickle: Callable[[bytes, bytes], TrickleServer]) -> None:
    server = trickle(*HEADERS_THEN_TRICKLED_BODY)
    client = ArvadosClient(
        api_host=server.url, token=TOKEN, read_timeout=5.0, request_deadline=1.0, retry_deadline=60.0
    )
    error, _ = outcome_within(JOIN_S, lambda: client.lock(UUID))
    assert isinstance(error, ArvadosUnavailable)
    assert "may have reached the server" in str(error)
    assert server.requests == 1, "a lock that may have been applied is not sent again"


def test_trickled_get_is_retried_until_the_retry_deadline(trickle: Callable[[bytes, bytes], TrickleServer]) -> None:
    server = trickle(*HEADERS_THEN_TRICKLED_BODY)
    slept: list[float] = []
    client = ArvadosClient(
        api_host=server.url,
        token=TOKEN,
        read_timeout=5.0,
        request_deadline=0.5,
        retry_deadline=2.5,
        sleep=slept.append,  # no real wait between attempts
    )
    error, took = outcome_within(JOIN_S, lambda: client.get(UUID))
    assert isinstance(error, ArvadosUnavailable)
    assert server.requests == len(slept) + 1 >= 2
    assert took < 10.0


@pytest.fixture
def mock() -> Iterator[FakeHttp]:
    with FakeHttp(assert_all_requests_are_fired=False) as m:
        yield m


def test_huge_body_is_refused_and_not_retried(mock: FakeHttp) -> None:
    url = f"https://ctrl.example/arvados/v1/containers/{UUID}"
    mock.get(url, body=b'{"uuid": "' + UUID.encode() + b'", "pad": "' + b"p" * 3_000_000 + b'"}')
    client = ArvadosClient(api_host="ctrl.example", token=TOKEN, max_body_bytes=1_000_000, sleep=lambda s: None)
    with pytest.raises(ArvadosUnavailable, match="the answer is larger than 1000000 bytes") as info:
        client.get(UUID)
    assert info.value.status == 200
    assert len(mock.calls) == 1, "a body that is too big will not be smaller a second later"


@pytest.mark.parametrize("layers", [1, 2], ids=["gzip", "gzip-gzip"])
def test_compressed_huge_body_is_refused_before_it_is_all_decompressed(mock: FakeHttp, layers: int) -> None:
    bomb = b" " * 30_000_000  # 30 MB of JSON whitespace, in about 30 KB (a few hundred bytes when twice gzipped)
    for _ in range(layers):
        bomb = gzip.compress(bomb, compresslevel=9)
    assert len(bomb) < 100_000
    mock.get("https://ctrl.example/arvados/v1/containers", body=bomb,
             headers={"Content-Encoding": ", ".join(["gzip"] * layers)})
    client = ArvadosClient(api_host="ctrl.example", token=TOKEN, max_body_bytes=1_000_000, sleep=lambda s: None)
    tracemalloc.start()
    try:
        with pytest.raises(ArvadosUnavailable, match="larger than 1000000 bytes"):
            client.list(filters=[])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"{peak} bytes at the peak: the body was decompressed far past the limit"


def test_huge_error_body_is_cut_not_refused(mock: FakeHttp) -> None:
    mock.get(f"https://ctrl.example/arvados/v1/containers/{UUID}", status=400, body=b"x" * 5_000_000)
    client = ArvadosClient(api_host="ctrl.example", token=TOKEN)
    with pytest.raises(ArvadosAPIError) as info:
        client.get(UUID)
    assert info.value.status == 400 and len(str(info.value)) < 400


def test_body_at_the_limit_is_read() -> None:
    with FakeHttp() as mock:
        body = b'{"uuid": "' + UUID.encode() + b'", "state": "Queued"}'
        mock.get(f"https://ctrl.example/arvados/v1/containers/{UUID}", body=body)
        client = ArvadosClient(api_host="ctrl.example", token=TOKEN, max_body_bytes=len(body))
        assert client.get(UUID).uuid == UUID


@pytest.fixture
def silent_tls_host() -> Iterator[str]:
    """An https host:port that accepts connections and never answers the TLS ClientHello."""
    server = LocalServer(lambda conn, stopping: stopping.wait())
    yield f"127.0.0.1:{server.port}"
    server.close()


def test_a_stalled_tls_handshake_ends_at_the_request_deadline(silent_tls_host: str) -> None:
    client = ArvadosClient(api_host=silent_tls_host, token=TOKEN, insecure=True, connect_timeout=30.0,
                           request_deadline=1.0, retry_deadline=0.0)
    error, took = outcome_within(JOIN_S, lambda: client.lock(UUID))
    assert isinstance(error, ArvadosUnavailable) and "no complete answer within 1 s" in str(error), error
    assert took < 10.0, "the handshake was cut by the connect timeout (30 s), not the deadline"


def test_stop_ends_a_stalled_tls_handshake(silent_tls_host: str) -> None:
    client = ArvadosClient(api_host=silent_tls_host, token=TOKEN, insecure=True, connect_timeout=30.0,
                           retry_deadline=0.0)
    threading.Timer(0.3, client.stop).start()
    error, took = outcome_within(JOIN_S, lambda: client.lock(UUID))
    assert isinstance(error, ArvadosShuttingDown), error
    assert took < 10.0


def test_an_abort_during_the_tcp_connect_ends_the_attempt_once_the_socket_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # While the TCP connect is pending there is no socket to shut down: the abort must not be lost, or the TLS
    # handshake that follows would run to the connect timeout.
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[socket.socket] = []
    stop = StopSignal()
    real_new_conn = urllib3.connection.HTTPConnection._new_conn

    def connect_while_stopped(self: urllib3.connection.HTTPConnection) -> socket.socket:
        sock = real_new_conn(self)
        made.append(sock)
        stop.set()  # the stop comes while the TCP connection is being made
        return sock

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", connect_while_stopped)
    conn = _GuardedHTTPSConnection("127.0.0.1", listener.getsockname()[1], cert_reqs="CERT_NONE", timeout=2.0)
    try:
        with stop.attempt(30.0), pytest.raises(ConnectionAbortedError):
            conn.connect()
        assert made and made[0].fileno() == -1, "the new socket is closed"
        assert conn.handshake_sock is None, "and so is its second descriptor"
    finally:
        listener.close()
