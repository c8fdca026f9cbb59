"""Narrow unit tests of ArvadosClient: URL building, encoding, error shapes and the retry policy.

HTTP answers come from ``FakeHttp`` (tests/plugins/fake_http.py) (canned JSON, fine for error shapes per the style
guide) or from real loopback sockets for the transport failures. Time is injected: no
test here sleeps.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from plugins.fake_http import FakeHttp
from plugins.fake_time import FakeClock

from slurm_dispatch.arvados.client import (
    BACKOFF_CAP_S,
    ERROR_TEXT_LIMIT,
    ArvadosClient,
    ListPage,
    new_request_id,
    parse_api_host,
)
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosPermissionDenied,
    ArvadosUnavailable,
    TransientError,
)
from slurm_dispatch.model import ContainerState
from slurm_dispatch.settings import Settings

HOST = "ctrl.example:443"
BASE = f"https://{HOST}/arvados/v1/"
TOKEN = "v2/zzzzz-gj3su-000000000000000/sekrit-token-value-1234567890"
UUID = "zzzzz-dz642-queuedcontainer"


@pytest.fixture
def client(fake_clock: FakeClock) -> Iterator[ArvadosClient]:
    c = ArvadosClient(
        api_host=HOST, token=TOKEN, sleep=fake_clock.blocking_sleep, clock=fake_clock.clock, retry_deadline=60.0
    )
    yield c
    c.close()


@pytest.fixture
def mock() -> Iterator[FakeHttp]:
    with FakeHttp(assert_all_requests_are_fired=False) as m:
        yield m


def record(uuid: str = UUID, state: str = "Queued", priority: int = 1) -> dict[str, object]:
    return {"kind": "arvados#container", "uuid": uuid, "state": state, "priority": priority}


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("api_host", "base", "host"),
    [
        pytest.param("ctrl.example", "https://ctrl.example/arvados/v1/", "ctrl.example", id="bare-host"),
        pytest.param(
            "ctrl.example:8443", "https://ctrl.example:8443/arvados/v1/", "ctrl.example:8443", id="port"
        ),
        pytest.param(
            "https://ctrl.example:443/",
            "https://ctrl.example:443/arvados/v1/",
            "ctrl.example:443",
            id="https",
        ),
        pytest.param(
            "http://127.0.0.1:8000", "http://127.0.0.1:8000/arvados/v1/", "127.0.0.1:8000", id="http"
        ),
        pytest.param("HTTP://h:1/x/y", "http://h:1/arvados/v1/", "h:1", id="path-dropped"),
        pytest.param(" ctrl.example ", "https://ctrl.example/arvados/v1/", "ctrl.example", id="spaces"),
    ],
)
def test_parse_api_host(api_host: str, base: str, host: str) -> None:
    assert parse_api_host(api_host) == (base, host)


@pytest.mark.parametrize("api_host", ["", "ftp://ctrl.example", "https://"])
def test_parse_api_host_rejects(api_host: str) -> None:
    with pytest.raises(ValueError, match="(?i)host|scheme"):
        parse_api_host(api_host)


def test_empty_token_is_refused_without_io() -> None:
    with pytest.raises(ValueError, match="token"):
        ArvadosClient(api_host=HOST, token="")


def test_from_settings_keeps_scheme_and_insecure() -> None:
    s = Settings(controller_url="http://127.0.0.1:9/", system_root_token=TOKEN, tls_insecure=True)
    c = ArvadosClient.from_settings(s)
    assert c.base_url == "http://127.0.0.1:9/arvados/v1/"
    assert c._verify is False
    assert TOKEN not in repr(c)


@pytest.mark.parametrize(
    ("insecure", "verify"), [("1", False), ("true", False), ("", True), ("0", True), (None, True)]
)
def test_from_env(insecure: str | None, verify: bool) -> None:
    env = {"ARVADOS_API_HOST": HOST, "ARVADOS_API_TOKEN": TOKEN}
    if insecure is not None:
        env["ARVADOS_API_HOST_INSECURE"] = insecure
    c = ArvadosClient.from_env(env)
    assert (c.base_url, c._verify) == (BASE, verify)


def test_from_env_needs_host_and_token() -> None:
    with pytest.raises(ValueError, match="ARVADOS_API_HOST"):
        ArvadosClient.from_env({"ARVADOS_API_TOKEN": TOKEN})
    with pytest.raises(ValueError, match="token"):
        ArvadosClient.from_env({"ARVADOS_API_HOST": HOST})


def test_request_id_shape() -> None:
    ids = {new_request_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"req-[0-9a-z]{20}", i) for i in ids)


# ---------------------------------------------------------------- encoding


def test_get_sends_bearer_header_request_id_and_json_query(
    client: ArvadosClient, mock: FakeHttp
) -> None:
    mock.get(BASE + "containers", json={"items": [record()], "items_available": 7})
    page = client.list(
        filters=[["state", "=", "Queued"], ["priority", ">", "0"]],
        order=["priority desc"],
        limit=0,
        count="exact",
        select=["uuid", "state"],
    )
    assert page == ListPage(items=[record()], items_available=7)
    request = mock.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert re.fullmatch(r"req-[0-9a-z]{20}", request.headers["X-Request-Id"])
    assert request.headers["User-Agent"].startswith("slurm-dispatch/")
    assert TOKEN not in (request.url or "")
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    assert query == {
        "filters": '[["state","=","Queued"],["priority",">","0"]]',
        "order": '["priority desc"]',
        "limit": "0",
        "count": "exact",
        "select": '["uuid","state"]',
    }


def test_count_none_leaves_items_available_unset(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "containers", json={"items": []})
    assert client.list(filters=[], count="none", offset=5).items_available is None
    query = parse_qs(urlsplit(mock.calls[0].request.url).query)
    assert query["count"] == ["none"] and query["offset"] == ["5"]


def test_update_sends_json_body(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.put(BASE + f"containers/{UUID}", json={"kind": "arvados#container", "uuid": UUID})
    client.update(UUID, {"state": "Running", "log": "abc+1"}, select=["uuid"])
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body or b"") == {
        "container": {"state": "Running", "log": "abc+1"},
        "select": ["uuid"],
    }


def test_update_state_returns_container(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.put(BASE + f"containers/{UUID}", json=record(state="Cancelled"))
    container = client.update_state(UUID, ContainerState.CANCELLED)
    assert container.state is ContainerState.CANCELLED
    assert json.loads(mock.calls[0].request.body or b"") == {"container": {"state": "Cancelled"}}


def test_create_log_body(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.post(BASE + "logs", json={"uuid": "zzzzz-57u5n-pshmckwoma9plh7"})
    client.create_log(object_uuid=UUID, event_type="dispatch", text="hello")
    assert json.loads(mock.calls[0].request.body or b"") == {
        "log": {"object_uuid": UUID, "event_type": "dispatch", "properties": {"text": "hello"}}
    }


def test_lock_and_unlock_post_to_their_paths(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.post(BASE + f"containers/{UUID}/lock", json=record(state="Locked"))
    mock.post(BASE + f"containers/{UUID}/unlock", json=record(state="Cancelled"))
    assert client.lock(UUID)["state"] == "Locked"
    assert client.unlock(UUID)["state"] == "Cancelled"


# ---------------------------------------------------------------- error shapes


@pytest.mark.parametrize(
    ("method", "status", "error_type"),
    [
        pytest.param("get", 404, ArvadosNotFound, id="get-404"),
        pytest.param("lock", 422, ArvadosConflict, id="lock-422"),
        pytest.param("unlock", 403, ArvadosPermissionDenied, id="unlock-403"),
        pytest.param("unlock", 401, ArvadosAuthError, id="unlock-401"),
        pytest.param("get", 400, ArvadosAPIError, id="get-400"),
        pytest.param("lock", 501, ArvadosAPIError, id="lock-501"),
    ],
)
def test_status_maps_to_typed_error(
    client: ArvadosClient, mock: FakeHttp, method: str, status: int, error_type: type
) -> None:
    message = "#<ArvadosModel::LockFailedError: cannot lock when Locked> (req-abc)"
    verb = "GET" if method == "get" else "POST"
    path = f"containers/{UUID}" + ("" if method == "get" else f"/{method}")
    mock.add(verb, BASE + path, status=status, json={"errors": [message], "error_token": "1+abc"})
    with pytest.raises(ArvadosAPIError) as info:
        getattr(client, method)(UUID)
    assert type(info.value) is error_type
    assert (info.value.status, info.value.method, info.value.path) == (status, verb, f"/arvados/v1/{path}")
    assert message in info.value.message or status == 401
    assert len(mock.calls) == 1, "4xx and 501 are never retried"


def test_401_names_api_host_and_hint_but_not_token(
    client: ArvadosClient, mock: FakeHttp
) -> None:
    mock.get(BASE + "api_client_authorizations/current", status=401, json={"errors": ["Not logged in"]})
    with pytest.raises(ArvadosAuthError) as info:
        client.current_token_uuid()
    text = str(info.value)
    assert "Arvados API at ctrl.example:443 refused our token" in text
    assert "Not logged in" in text and "SystemRootToken" in text
    assert TOKEN not in text
    assert len(mock.calls) == 1


def test_403_on_current_is_auth_error(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "api_client_authorizations/current", status=403, json={"errors": ["Forbidden"]})
    with pytest.raises(ArvadosAuthError):
        client.current_token_uuid()


def test_current_token_uuid(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "api_client_authorizations/current", json={"uuid": "zzzzz-gj3su-000000000000000"})
    assert client.current_token_uuid() == "zzzzz-gj3su-000000000000000"


def test_error_text_is_trimmed_and_token_scrubbed(
    client: ArvadosClient, mock: FakeHttp
) -> None:
    mock.get(BASE + f"containers/{UUID}", status=422, json={"errors": [f"echo {TOKEN} " + "x" * 1000]})
    with pytest.raises(ArvadosConflict) as info:
        client.get(UUID)
    assert len(info.value.message) <= ERROR_TEXT_LIMIT
    assert TOKEN not in str(info.value)


def test_non_json_error_body_uses_reason(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.post(BASE + f"containers/{UUID}/lock", status=502, body="<html>bad gateway</html>")
    with pytest.raises(ArvadosUnavailable) as info:
        client.lock(UUID)
    assert info.value.status == 502 and info.value.message
    assert isinstance(info.value, TransientError)


def test_invalid_container_record_is_an_api_error(
    client: ArvadosClient, mock: FakeHttp
) -> None:
    mock.get(BASE + f"containers/{UUID}", json={"uuid": UUID, "state": "Sleeping"})
    with pytest.raises(ArvadosAPIError, match="not a valid container record"):
        client.get(UUID)


# ---------------------------------------------------------------- retry policy


def test_get_retries_5xx_with_growing_capped_backoff(
    mock: FakeHttp, fake_clock: FakeClock
) -> None:
    client = make(HOST, fake_clock, retry_deadline=600.0)
    url = BASE + f"containers/{UUID}"
    for _ in range(7):
        mock.get(url, status=503, json={"errors": ["down"]})
    mock.get(url, json=record())
    assert client.get(UUID).uuid == UUID
    assert len(mock.calls) == 8
    assert len(fake_clock.sleeps) == 7
    for attempt, slept in enumerate(fake_clock.sleeps):
        nominal = min(BACKOFF_CAP_S, 2.0**attempt)
        assert nominal * 0.5 <= slept <= nominal


def test_get_gives_up_at_the_deadline(
    client: ArvadosClient, mock: FakeHttp, fake_clock: FakeClock
) -> None:
    mock.get(BASE + f"containers/{UUID}", status=500, json={"errors": ["boom"]})
    start = fake_clock.now
    with pytest.raises(ArvadosUnavailable, match="boom"):
        client.get(UUID)
    assert fake_clock.now - start <= 60.0
    assert len(mock.calls) == len(fake_clock.sleeps) + 1 >= 4


def test_429_retry_after_is_honoured(
    client: ArvadosClient, mock: FakeHttp, fake_clock: FakeClock
) -> None:
    url = BASE + "containers"
    mock.get(url, status=429, json={"errors": ["slow down"]}, headers={"Retry-After": "7"})
    mock.get(url, json={"items": [], "items_available": 0})
    assert client.list(filters=[]).items_available == 0
    assert fake_clock.sleeps == [7.0]


def test_retry_after_beyond_deadline_fails_at_once(
    client: ArvadosClient, mock: FakeHttp, fake_clock: FakeClock
) -> None:
    mock.get(BASE + "containers", status=429, json={"errors": ["later"]}, headers={"Retry-After": "3600"})
    with pytest.raises(ArvadosUnavailable) as info:
        client.list(filters=[])
    assert info.value.status == 429
    assert fake_clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_lock_is_not_repeated_once_the_server_answered(
    client: ArvadosClient, mock: FakeHttp, fake_clock: FakeClock, status: int
) -> None:
    mock.post(BASE + f"containers/{UUID}/lock", status=status, json={"errors": ["maybe"]})
    with pytest.raises(ArvadosUnavailable):
        client.lock(UUID)
    assert len(mock.calls) == 1
    assert fake_clock.sleeps == []


# ---------------------------------------------------------------- transport failures on real sockets


@pytest.fixture
def refused_host() -> str:
    """host:port on loopback where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_host() -> Iterator[str]:
    """host:port on loopback that accepts connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def make(host: str, fake_clock: FakeClock, **kw: float) -> ArvadosClient:
    return ArvadosClient(api_host=host, token=TOKEN, sleep=fake_clock.blocking_sleep, clock=fake_clock.clock, **kw)


@pytest.mark.parametrize("call", ["lock", "unlock", "get"])
def test_refused_connection_is_retried_for_every_call(
    refused_host: str, fake_clock: FakeClock, call: str
) -> None:
    c = make(refused_host, fake_clock, retry_deadline=20.0)
    with pytest.raises(ArvadosUnavailable) as info:
        getattr(c, call)(UUID)
    assert info.value.status == 0
    assert len(fake_clock.sleeps) >= 3, "a request that never left may be sent again"
    assert "may have reached" not in info.value.message
    assert TOKEN not in str(info.value)


def test_read_timeout_is_not_retried_for_lock(silent_host: str, fake_clock: FakeClock) -> None:
    c = make(silent_host, fake_clock, read_timeout=0.2, retry_deadline=20.0)
    with pytest.raises(ArvadosUnavailable, match="may have reached the server") as info:
        c.lock(UUID)
    assert isinstance(info.value.__cause__, urllib3.exceptions.ReadTimeoutError)
    assert fake_clock.sleeps == []


def test_read_timeout_is_retried_for_get(silent_host: str, fake_clock: FakeClock) -> None:
    c = make(silent_host, fake_clock, read_timeout=0.2, retry_deadline=3.0)
    with pytest.raises(ArvadosUnavailable, match="timed out"):
        c.get(UUID)
    assert len(fake_clock.sleeps) >= 1
