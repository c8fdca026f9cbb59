"""What goes on the wire and whom it trusts: the headers of each request, and the client's own connection pool
(the CA it verifies with, no proxy, whatever the environment says)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import urllib3
from plugins.fake_http import FakeHttp
from plugins.fake_time import FakeClock

from slurm_dispatch.arvados import transport
from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosUnavailable
from slurm_dispatch.sandbox.api import EmulatorServer

UUID = "zzzzz-dz642-transporttest01"
RECORD = {"uuid": UUID, "state": "Queued", "priority": 1}


def test_every_request_carries_our_headers() -> None:
    with FakeHttp() as mock:
        mock.get(f"https://ctl.example/arvados/v1/containers/{UUID}", json=RECORD)
        ArvadosClient(api_host="ctl.example", token="t" * 20).get(UUID)
    headers = mock.calls[0].request.headers
    assert headers["Authorization"] == "Bearer " + "t" * 20
    assert headers["X-Request-Id"].startswith("req-") and headers["Accept"] == "application/json"
    assert "gzip" in headers["Accept-Encoding"], "list pages are large: a compressed answer is welcome"
    assert headers["User-Agent"].startswith("slurm-dispatch/")


def test_own_pool_verifies_with_the_given_ca_and_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    client = ArvadosClient(api_host="ctl.example", token="t" * 20, ca_bundle="/etc/ssl/our-ca.pem")
    pool = client._transport._pool
    assert pool.ca_certs == "/etc/ssl/our-ca.pem" and pool.cert_reqs == "CERT_REQUIRED"
    assert pool.proxy is None, "the token goes to the configured host only"
    directory = ArvadosClient(api_host="ctl.example", token="t" * 20, ca_bundle=str(tmp_path))._transport._pool
    assert directory.ca_cert_dir == str(tmp_path) and directory.ca_certs is None


def test_own_pool_trusts_the_systems_cas_by_default_and_nothing_when_insecure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(transport, "ARVADOS_CA_FILE", str(tmp_path / "absent.crt"))
    system = ArvadosClient(api_host="ctl.example", token="t" * 20)._transport._pool
    assert system.cert_reqs == "CERT_REQUIRED" and system.ca_certs is None
    insecure = ArvadosClient(api_host="ctl.example", token="t" * 20, insecure=True)._transport._pool
    assert insecure.cert_reqs == "CERT_NONE" and insecure.assert_hostname is False
    context = insecure._new_conn().ssl_context
    assert context.verify_mode == ssl.CERT_NONE


def test_a_closed_client_opens_new_connections_when_used_again(emulator: EmulatorServer) -> None:
    client = ArvadosClient(api_host=emulator.api_host, token=emulator.root_token, insecure=True)
    first = client.current_token_uuid()
    old = client._transport._pool
    client.close()
    assert old.pool is None, "closing closed the pooled connections"
    assert client.current_token_uuid() == first
    client.close()


class ClosedPool:
    """A pool closed under a call (``close()`` racing it): urllib3 raises ClosedPoolError before sending."""

    def __init__(self) -> None:
        self.calls = 0

    def urlopen(self, method: str, url: str, **kwargs: object) -> object:
        self.calls += 1
        raise urllib3.exceptions.ClosedPoolError(None, "Pool is closed.")  # type: ignore[arg-type]

    def close(self) -> None:
        pass


def test_a_closed_pool_counts_as_never_sent_so_even_a_lock_is_retried(fake_clock: FakeClock) -> None:
    pool = ClosedPool()
    client = ArvadosClient(api_host="ctl.example", token="t" * 20, pool=pool, retry_deadline=5.0,
                           sleep=fake_clock.blocking_sleep, clock=fake_clock.clock)
    with pytest.raises(ArvadosUnavailable) as info:
        client.lock(UUID)
    assert pool.calls >= 2 and "may have reached" not in str(info.value)


def test_the_arvados_ca_file_is_trusted_beside_the_systems_when_it_exists_and_ssl_cert_file_is_not_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca-certificates.crt"
    monkeypatch.setattr(transport, "ARVADOS_CA_FILE", str(ca))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    def trust(**kwargs: object) -> tuple[object, object]:
        t = ArvadosClient(api_host="ctl.example", token="t" * 20, **kwargs)._transport  # type: ignore[arg-type]
        return t.verify, t.site_ca

    assert trust() == (True, None), "no such file: the system's CAs alone"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert trust() == (True, str(ca)), "the system's CAs, and the file's beside them"
    assert trust(ca_bundle="/etc/ours.pem") == ("/etc/ours.pem", None), "a CA the caller names is the only one"
    assert trust(insecure=True) == (False, None)
    monkeypatch.setenv("SSL_CERT_FILE", "")
    assert trust() == (True, str(ca)), "an empty SSL_CERT_FILE is not set, as in Go"
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/site.pem")
    assert trust() == (True, None), "SSL_CERT_FILE wins, as in Go"
