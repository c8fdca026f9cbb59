"""The health/metrics endpoint over real HTTP on loopback, and the Metrics it serves."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from plugins.waiting import wait_until
from prometheus_client import generate_latest

from slurm_dispatch import __version__
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.model import ContainerState
from slurm_dispatch.service import http as http_module
from slurm_dispatch.service.http import MAX_CONNECTIONS_PER_CLIENT, HealthServer, parse_internal_url
from slurm_dispatch.service.management import STATUS_PATH, ManagementAPI
from slurm_dispatch.service.metrics import PREFIX, Metrics
from slurm_dispatch.settings import Settings

TOKEN = "mgmt-Tok3n-xyz"


class Health:
    """A health callback a test can flip."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.raises: Exception | None = None

    def __call__(self) -> str | None:
        if self.raises is not None:
            raise self.raises
        return self.error


def request(
    server: HealthServer, path: str, *, token: str | None = None, method: str = "GET", header: str | None = None
) -> tuple[int, str, bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def health() -> Health:
    return Health()


def make_server(token: str, health: Health, metrics: Metrics) -> HealthServer:
    settings = Settings(dispatch_internal_urls=("http://127.0.0.1:0/",), management_token=token)
    return HealthServer.from_settings(settings, health=health, registry=metrics.registry)


@pytest.fixture
def server(health: Health, metrics: Metrics) -> Iterator[HealthServer]:
    with make_server(TOKEN, health, metrics) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/_health/ping", "/metrics"])
def test_empty_management_token_disables_both(path: str, health: Health, metrics: Metrics) -> None:
    with make_server("", health, metrics) as srv:
        assert request(srv, path, token="anything")[::2] == (404, b"disabled\n")
        assert request(srv, path)[::2] == (404, b"disabled\n")


@pytest.mark.parametrize("path", ["/_health/ping", "/metrics"])
def test_missing_authorization_is_401(server: HealthServer, path: str) -> None:
    assert request(server, path)[::2] == (401, b"authorization required\n")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer wrong", id="wrong-token"),
        pytest.param(f"Bearer {TOKEN}x", id="token-prefix"),
        pytest.param(TOKEN, id="no-bearer"),
        pytest.param(f"Basic {TOKEN}", id="other-scheme"),
        pytest.param("Bearer ünïcode", id="non-ascii"),
    ],
)
@pytest.mark.parametrize("path", ["/_health/ping", "/metrics"])
def test_wrong_authorization_is_403(server: HealthServer, path: str, header: str) -> None:
    assert request(server, path, header=header)[::2] == (403, b"authorization error\n")


@pytest.mark.parametrize("header", [f"OAuth2 {TOKEN}", f" Bearer  {TOKEN} "])
def test_metrics_take_the_token_as_arvados_services_do_and_the_health_check_exactly(
    server: HealthServer, header: str,
) -> None:
    """sdk/go/auth takes OAuth2 and spaces for /metrics; sdk/go/health/handler.go compares "Bearer <token>" exactly."""
    assert request(server, "/metrics", header=header)[0] == 200
    assert request(server, "/_health/ping", header=header)[::2] == (403, b"authorization error\n")


def test_health_ok(server: HealthServer) -> None:
    status, ctype, body = request(server, "/_health/ping", token=TOKEN)
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"health": "OK"}


def test_health_error_is_reported_with_status_200(server: HealthServer, health: Health) -> None:
    health.error = "error getting my token UUID: HTTP 401"
    status, _, body = request(server, "/_health/ping", token=TOKEN)
    assert status == 200
    assert json.loads(body) == {"health": "ERROR", "error": "error getting my token UUID: HTTP 401"}
    health.error, health.raises = None, RuntimeError("squeue has failed 5 times")
    assert json.loads(request(server, "/_health/ping", token=TOKEN)[2]) == {
        "health": "ERROR",
        "error": "squeue has failed 5 times",
    }


def test_metrics_exposition(server: HealthServer, metrics: Metrics) -> None:
    for operation, ok in [("submit", True), ("submit", True), ("submit", False), ("queue", True), ("queue", False),
                          ("renice", True), ("renice", True), ("renice", True), ("renice", False), ("cancel", True)]:
        metrics.slurm_operation(operation, ok=ok, seconds=0.3)
    metrics.set_oldest_pending_age(42.5)
    metrics.api_error("unavailable")
    metrics.set_containers({ContainerState.QUEUED: 2, "Running": 1})
    status, ctype, body = request(server, "/metrics", token=TOKEN)
    assert status == 200 and ctype.startswith("text/plain")
    text = body.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples[PREFIX + "sbatch_submits_total"]) == 2
    assert float(samples[PREFIX + "sbatch_failures_total"]) == 1
    assert float(samples[PREFIX + "squeue_duration_seconds_count"]) == 1
    assert float(samples[PREFIX + "squeue_failures_total"]) == 1
    assert float(samples[PREFIX + "renices_total"]) == 3
    assert float(samples[PREFIX + "scancels_total"]) == 1
    assert float(samples[PREFIX + 'slurm_operations_total{operation="renice",outcome="ok"}']) == 3
    assert float(samples[PREFIX + 'slurm_operations_total{operation="renice",outcome="failed"}']) == 1
    assert float(samples[PREFIX + 'slurm_operations_total{operation="submit",outcome="failed"}']) == 1
    assert float(samples[PREFIX + "oldest_pending_job_age_seconds"]) == 42.5
    assert float(samples[PREFIX + 'api_errors_total{kind="unavailable"}']) == 1
    assert float(samples[PREFIX + 'containers{state="Queued"}']) == 2
    assert float(samples[PREFIX + 'containers{state="Running"}']) == 1
    assert float(samples[PREFIX + 'containers{state="Locked"}']) == 0
    assert float(samples[PREFIX + "process_resident_memory_bytes"]) > 1_000_000
    assert float(samples[PREFIX + "process_cpu_seconds_total"]) > 0
    assert float(samples[PREFIX + "process_open_fds"]) >= 3
    assert float(samples[PREFIX + "process_threads"]) >= 2  # us and the server thread


def test_set_containers_zeroes_states_that_left(metrics: Metrics) -> None:
    metrics.set_containers({"Queued": 5})
    metrics.set_containers({"Locked": 1})
    assert metrics.registry.get_sample_value(PREFIX + "containers", {"state": "Queued"}) == 0
    assert metrics.registry.get_sample_value(PREFIX + "containers", {"state": "Locked"}) == 1


def test_two_metrics_objects_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.slurm_operation("submit", ok=True, seconds=0.0)
    assert b.registry.get_sample_value(PREFIX + "sbatch_submits_total") == 0


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/", "GET"),
        ("/_health/other", "GET"),
        ("/metrics.json", "GET"),
        ("/metrics", "POST"),
        ("/_health/ping", "DELETE"),
    ],
)
def test_everything_else_is_404(server: HealthServer, path: str, method: str) -> None:
    assert request(server, path, token=TOKEN, method=method)[0] == 404


def test_head_and_query_string(server: HealthServer) -> None:
    assert request(server, "/_health/ping?x=1", token=TOKEN)[::2] == (200, b'{"health":"OK"}\n')  # as Go's
    status, _, body = request(server, "/metrics", token=TOKEN, method="HEAD")
    assert (status, body) == (200, b"")


def test_token_never_logged(health: Health, metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with make_server(TOKEN, health, metrics) as srv:
        request(srv, "/_health/ping", token=TOKEN)
        request(srv, f"/metrics?api_token={TOKEN}", header="Bearer nope")
        request(srv, "/metrics", token=TOKEN)
    assert caplog.records, "expected the request log lines"
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9006/", ("127.0.0.1", 9006)),
        ("http://localhost:9006", ("localhost", 9006)),
        ("http://[::1]:9006/", ("::1", 9006)),
        ("http://:9006/", ("", 9006)),
    ],
)
def test_parse_internal_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_internal_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1:9006/", "only http"),
        ("http://127.0.0.1/", "no port"),
        ("http://127.0.0.1:notaport/", "unusable URL"),
        ("127.0.0.1:9006", "only http"),
    ],
)
def test_unusable_internal_url_names_the_key(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        parse_internal_url(url)
    assert info.value.key == "Services.DispatchSLURM.InternalURLs"


def test_no_internal_url_names_the_key(health: Health, metrics: Metrics) -> None:
    with pytest.raises(ConfigError, match=r"Services\.DispatchSLURM\.InternalURLs"):
        HealthServer.from_settings(Settings(management_token=TOKEN), health=health, registry=metrics.registry)


def test_other_hosts_urls_are_skipped_and_a_busy_port_is_an_error(health: Health, metrics: Metrics) -> None:
    with make_server(TOKEN, health, metrics) as first:
        busy = f"http://127.0.0.1:{first.address[1]}/"
        # 192.0.2.1 (TEST-NET-1) is nobody's address: skipped, as Go skips another host's InternalURL
        with HealthServer(urls=["http://192.0.2.1:9006/", "http://127.0.0.1:0/"], management_token=TOKEN,
                          health=health, registry=metrics.registry) as second:
            assert second.address[0] == "127.0.0.1"
        with pytest.raises(ConfigError, match=f"tried {busy}"):
            HealthServer(urls=[busy], management_token=TOKEN, health=health, registry=metrics.registry).start()
        with pytest.raises(ConfigError, match="no InternalURL names an address of this host"):
            HealthServer(urls=["http://192.0.2.1:9006/"], management_token=TOKEN, health=health,
                         registry=metrics.registry).start()


def test_metrics_do_not_carry_arvados_version_running(metrics: Metrics) -> None:
    """Arvados's health aggregator (sdk/go/health/aggregator.go) reads arvados_version_running and reports the cluster
    as ERROR when it differs from Arvados's own version: ours is named in our own namespace."""
    text = generate_latest(metrics.registry).decode()
    assert "arvados_version_running" not in text
    assert f'{PREFIX}version_info{{version="{__version__}"}} 1.0' in text


def _raw(server: HealthServer, data: bytes) -> bytes:
    """Send ``data`` as is on a new connection; return all the server answered."""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_requests_get_an_answer_and_no_traceback(
    server: HealthServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    """Anyone who reaches the port may send these; each gets a one-line answer, and nothing bypasses the logging."""
    answer = _raw(server, b"POST /arvados/v1/dispatch/drain HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and answer.endswith(b"bad Content-Length\n")
    assert b"505" in _raw(server, b"GET /x HTTP/9.9\r\n\r\n")  # the stdlib's answer (no path was read: none logged)
    assert _raw(server, b"\r\n") == b""
    assert "Traceback" not in capsys.readouterr().err
    assert "Traceback" not in caplog.text


def test_slow_clients_get_few_places_and_are_cut_at_the_deadline_whatever_they_send(
    server: HealthServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that sends a header line now and then keeps each read short of the timeout: the whole request has a
    deadline, and one address gets MAX_CONNECTIONS_PER_CLIENT places, so the health check keeps answering."""
    monkeypatch.setattr(http_module, "REQUEST_TIMEOUT_S", 1.0)
    slow = [socket.create_connection(server.address, timeout=10) for _ in range(MAX_CONNECTIONS_PER_CLIENT)]
    try:
        for sock in slow:
            sock.sendall(b"GET /_health/ping HTTP/1.1\r\n")
        wait_until(lambda: _raw(server, b"GET /_health/ping HTTP/1.0\r\n\r\n") == b"", timeout=10,
                   what="a fifth connection from the same address to be closed", every=0.05)

        def cut() -> bool:  # keep trickling: each read is short, the request is not
            for sock in slow:
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    return True
            return False

        wait_until(cut, timeout=10, what="the slow requests to be cut at their deadline", every=0.2)
        wait_until(lambda: request(server, "/_health/ping", token=TOKEN)[0] == 200, timeout=10,
                   what="the places to be free again", every=0.05)
    finally:
        for sock in slow:
            sock.close()


def test_a_path_that_does_not_parse_gets_400(server: HealthServer) -> None:
    assert _raw(server, b"GET http://[v2zzzz/x]/ HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 400 ")

@pytest.mark.parametrize(("headers", "body", "said"), [
    pytest.param(b"Content-Type: application/json\r\n", b'{"reason": "json reason"}', b"send the parameters as a form",
                 id="json: its reason would be ignored"),
    pytest.param(b"Content-Type: application/x-www-form-urlencoded\r\n", b"reason=" + b"x" * 5000,
                 b"the body is larger than 4096 bytes", id="a reason past the first 4096 bytes would be dropped"),
])
def test_a_post_body_that_is_not_a_small_form_is_refused_not_ignored(
    server: HealthServer, headers: bytes, body: bytes, said: bytes,
) -> None:
    request = (b"POST /arvados/v1/dispatch/drain HTTP/1.1\r\nHost: x\r\n" + headers
               + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = _raw(server, request)
    assert answer.startswith(b"HTTP/1.0 400 ") and said in answer, answer


def test_a_chunked_post_is_refused(server: HealthServer) -> None:
    answer = _raw(server, b"POST /arvados/v1/dispatch/drain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n\r\n9\r\nreason=x\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"not chunked" in answer, answer


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")  # the loop never runs them
def test_a_wedged_dispatch_loop_gives_503_before_the_request_deadline_cuts_the_connection(
    health: Health, metrics: Metrics,
) -> None:
    """The management routes wait LOOP_TIMEOUT_S for the dispatch loop, within the whole-request deadline: a loop
    that never answers gives the admin a 503 that says so, not a reset connection."""
    wedged = asyncio.new_event_loop()  # never run
    try:
        async def never() -> dict[str, Any]:
            raise AssertionError("the wedged loop ran")

        api = ManagementAPI(loop=wedged, entries=never, drain=lambda reason: never(), resume=never, status=never)
        settings = Settings(dispatch_internal_urls=("http://127.0.0.1:0/",), management_token=TOKEN)
        with HealthServer.from_settings(settings, health=health, registry=metrics.registry, management=api) as srv:
            status, _, body = request(srv, STATUS_PATH, token=TOKEN)
        assert (status, json.loads(body)) == (503, {"errors": ["the dispatch loop did not answer in time"]})
    finally:
        wedged.close()
