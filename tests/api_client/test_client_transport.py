"""What ArvadosClient hands to the transport: TLS verification and proxies, for its own session and an
injected one (which may trust the environment, as ``requests`` sessions do by default)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import requests.adapters

from slurm_dispatch.arvados.client import ArvadosClient

UUID = "zzzzz-dz642-transporttest01"


class RecordingAdapter(requests.adapters.BaseAdapter):
    """Answers every request with a container record and remembers what ``send`` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append({"request": request, **kwargs})
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"uuid": "%s", "state": "Queued", "priority": 1}' % UUID.encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def session_with(adapter: RecordingAdapter, *, trust_env: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = trust_env
    session.mount("https://", adapter)
    return session


def test_own_settings_session_verifies_with_the_given_ca_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    adapter = RecordingAdapter()
    client = ArvadosClient(api_host="ctl.example", token="t" * 20, ca_bundle="/etc/ssl/our-ca.pem",
                           session=session_with(adapter, trust_env=False))
    client.get(UUID)
    (call,) = adapter.calls
    assert call["verify"] == "/etc/ssl/our-ca.pem"
    assert not call["proxies"], "a session that ignores the environment takes no proxy from it"
    headers = call["request"].headers
    assert headers["Authorization"] == "Bearer " + "t" * 20
    assert headers["X-Request-Id"].startswith("req-") and headers["Accept"] == "application/json"
    assert "gzip" in headers["Accept-Encoding"], "the session's default headers are still sent"


def test_injected_session_keeps_its_own_proxies() -> None:
    adapter = RecordingAdapter()
    session = session_with(adapter, trust_env=False)
    session.proxies = {"https": "http://site-proxy.example:3128"}
    ArvadosClient(api_host="ctl.example", token="t" * 20, session=session).get(UUID)
    assert adapter.calls[0]["proxies"] == {"https": "http://site-proxy.example:3128"}


def test_injected_session_that_trusts_the_environment_gets_its_ca_bundle_and_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    adapter = RecordingAdapter()
    ArvadosClient(api_host="ctl.example", token="t" * 20, session=session_with(adapter, trust_env=True)).get(UUID)
    (call,) = adapter.calls
    assert call["verify"] == "/elsewhere/ca.pem"
    assert call["proxies"].get("https") == "http://proxy.example:3128"
