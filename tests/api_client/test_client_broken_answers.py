"""Answers that break off, over a real socket: what the client reports, whether it retries, and that the broken
connection is not used again.

A tiny local server answers every request on a connection with the next of its scripted answers (raw bytes),
then closes the connection when the script says so.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from plugins.fake_time import FakeClock
from plugins.local_server import LocalServer, read_request_head

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosUnavailable

UUID = "zzzzz-dz642-queuedcontainer"
TOKEN = "v2/zzzzz-gj3su-000000000000000/broken-answer-token-0123456789"
RECORD = b'{"uuid": "zzzzz-dz642-queuedcontainer", "state": "Queued", "priority": 1}'
GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(RECORD), RECORD)
BAD_CHUNK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
SHORT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + RECORD


class ScriptServer:
    """Answers request i with ``script[i]`` (the last one for ever after), closing the connection after an answer
    whose entry says so. Counts the requests and the connections."""

    def __init__(self, script: list[tuple[bytes, bool]]) -> None:
        self.script = script
        self.requests = 0
        self._server = LocalServer(self._serve)
        self.url = f"http://127.0.0.1:{self._server.port}"

    @property
    def connections(self) -> int:
        return self._server.connections

    def _serve(self, conn: socket.socket, stopping: threading.Event) -> None:
        buf = b""
        while not stopping.is_set():
            read = read_request_head(conn, buf)
            if read is None:
                return
            head, buf = read
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(buf) < length:
                buf += conn.recv(4096)
            buf = buf[length:]
            answer, close = self.script[min(self.requests, len(self.script) - 1)]
            self.requests += 1
            conn.sendall(answer)
            if close:
                return

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def server_for() -> Iterator[list[ScriptServer]]:
    made: list[ScriptServer] = []
    yield made
    for server in made:
        server.close()


def client(server: ScriptServer, fake_clock: FakeClock, retry_deadline: float) -> ArvadosClient:
    return ArvadosClient(api_host=server.url, token=TOKEN, sleep=fake_clock.blocking_sleep, clock=fake_clock.clock,
                         retry_deadline=retry_deadline)


@pytest.mark.parametrize("broken", [BAD_CHUNK, SHORT], ids=["bad-chunk-size", "shorter-than-content-length"])
def test_an_answer_that_breaks_off_is_retried_for_a_get_on_a_new_connection(
    server_for: list[ScriptServer], fake_clock: FakeClock, broken: bytes
) -> None:
    server = ScriptServer([(broken, True), (GOOD, False)])
    server_for.append(server)
    assert client(server, fake_clock, retry_deadline=30.0).get(UUID).uuid == UUID
    assert server.requests == 2 and len(fake_clock.sleeps) == 1
    assert server.connections == 2, "the broken connection is not used again"


@pytest.mark.parametrize("broken", [BAD_CHUNK, SHORT], ids=["bad-chunk-size", "shorter-than-content-length"])
def test_an_answer_that_breaks_off_is_not_retried_for_a_lock(
    server_for: list[ScriptServer], fake_clock: FakeClock, broken: bytes
) -> None:
    server = ScriptServer([(broken, True), (GOOD, False)])
    server_for.append(server)
    with pytest.raises(ArvadosUnavailable, match="may have reached the server") as info:
        client(server, fake_clock, retry_deadline=30.0).lock(UUID)
    assert server.requests == 1 and fake_clock.sleeps == [], "the lock may have happened: never sent twice"
    assert TOKEN not in str(info.value) and "broken-answer-token" not in repr(info.value.__cause__)


def test_a_kept_alive_connection_is_used_for_the_next_request(
    server_for: list[ScriptServer], fake_clock: FakeClock
) -> None:
    server = ScriptServer([(GOOD, False)])
    server_for.append(server)
    c = client(server, fake_clock, retry_deadline=0.0)
    for _ in range(5):
        assert c.get(UUID).uuid == UUID
    assert (server.requests, server.connections) == (5, 1)
