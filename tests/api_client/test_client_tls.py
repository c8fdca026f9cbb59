"""The API client's TLS contexts: one per kind of trust, made once, and verification that still verifies.

urllib3 left alone makes a context and loads the CA certificates for every connection it opens (30-45 ms of CPU
here); the transport's pool gives each connection the context ``shared_tls_context`` made once instead.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slurm_dispatch.arvados import transport
from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.arvados.transport import _GuardedHTTPSConnectionPool, shared_tls_context
from slurm_dispatch.errors import ArvadosAPIError, ArvadosAuthError
from slurm_dispatch.sandbox.api import EmulatorServer


def server_cert(server: EmulatorServer, path: Path) -> Path:
    """Write ``server``'s self-signed certificate (its own CA) to ``path`` and return it."""
    host, _, port = server.api_host.rpartition(":")
    path.write_text(ssl.get_server_certificate((host, int(port))))
    return path


@pytest.fixture
def other_emulator() -> Iterator[EmulatorServer]:
    """A second emulator: its certificate is a CA that did not sign the first one's."""
    server = EmulatorServer(root_token="othersystemtoken1234567890aoeuidhtnsqjkxbmwvzpy").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_ca_file_that_holds_no_certificate_is_refused_and_not_remembered(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    pool = _GuardedHTTPSConnectionPool("ctl.example", 443, cert_reqs="CERT_REQUIRED", ca_certs=str(ca))
    shared_tls_context.cache_clear()
    with pytest.raises(urllib3.exceptions.SSLError, match="cannot load the CA certificates"):
        pool._new_conn()
    assert shared_tls_context.cache_info().currsize == 0, "a fixed file is read on the next connection"


def test_each_kind_of_trust_gets_its_own_context(tmp_path: Path, emulator: EmulatorServer) -> None:
    ca = server_cert(emulator, tmp_path / "ca.pem")
    shared_tls_context.cache_clear()
    verifying = _GuardedHTTPSConnectionPool("ctl.example", 443, cert_reqs="CERT_REQUIRED", ca_certs=str(ca))
    first, second = verifying._new_conn(), verifying._new_conn()
    assert first.ssl_context is not None and first.ssl_context is second.ssl_context
    assert first.ca_certs is None and second.ca_certs is None, "urllib3 must not load the CA file per connection"
    assert first.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert first.ssl_context.cert_store_stats()["x509"] == 1, "exactly the named CA is trusted"
    insecure = _GuardedHTTPSConnectionPool("ctl.example", 443, cert_reqs="CERT_NONE")._new_conn()
    assert insecure.ssl_context is not None and insecure.ssl_context is not first.ssl_context
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE
    assert insecure.ssl_context.cert_store_stats()["x509"] == 0, "nothing verifies: no CA is loaded"
    assert shared_tls_context.cache_info().misses == 2


def test_a_connection_with_a_client_certificate_keeps_urllib3s_own_context() -> None:
    pool = _GuardedHTTPSConnectionPool("ctl.example", 443, cert_reqs="CERT_REQUIRED", cert_file="/etc/client.pem")
    assert pool._new_conn().ssl_context is None


def test_verification_against_the_named_ca_succeeds_over_real_tls(tmp_path: Path, emulator: EmulatorServer) -> None:
    ca = server_cert(emulator, tmp_path / "ca.pem")
    client = ArvadosClient(api_host=emulator.api_host, token="wrongtoken" * 3, ca_bundle=str(ca), retry_deadline=0.0)
    try:
        for _ in range(2):  # the handshake verified the server: the API itself answered, refusing the token
            with pytest.raises(ArvadosAuthError):
                client.current_token_uuid()
    finally:
        client.close()


def test_a_server_the_named_ca_did_not_sign_is_refused(
    tmp_path: Path, emulator: EmulatorServer, other_emulator: EmulatorServer
) -> None:
    ca = server_cert(other_emulator, tmp_path / "other-ca.pem")
    client = ArvadosClient(api_host=emulator.api_host, token="wrongtoken" * 3, ca_bundle=str(ca), retry_deadline=0.0)
    try:
        with pytest.raises(ArvadosAPIError) as info:
            client.current_token_uuid()
    finally:
        client.close()
    assert not isinstance(info.value, ArvadosAuthError)
    assert "TLS handshake" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)


@pytest.mark.parametrize(
    "setting",
    [{"ssl_minimum_version": ssl.TLSVersion.TLSv1_3}, {"assert_hostname": "other.example"},
     {"assert_fingerprint": "AA:" * 31 + "AA"}],
    ids=["tls-version", "own-hostname-check", "fingerprint"],
)
def test_a_connection_with_tls_settings_of_its_own_keeps_its_own_context(setting: dict[str, object]) -> None:
    pool = _GuardedHTTPSConnectionPool("ctl.example", 443, cert_reqs="CERT_REQUIRED", **setting)
    assert pool._new_conn().ssl_context is None, "urllib3 adjusts a context to these: it must not be a shared one"



def test_the_arvados_ca_file_is_trusted_over_real_tls(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "ARVADOS_CA_FILE", str(server_cert(emulator, tmp_path / "arvados-ca.crt")))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    client = ArvadosClient(api_host=emulator.api_host, token="wrongtoken" * 3, retry_deadline=0.0)
    try:
        with pytest.raises(ArvadosAuthError):  # the handshake verified the server: the API refused the token
            client.current_token_uuid()
    finally:
        client.close()


def other_ca(path: Path) -> Path:
    """Write a self-signed CA certificate of another name than the emulators' to ``path`` and return it. (Another
    emulator's would not do: all have the same subject, and OpenSSL looks an issuer up by its name.)"""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a site's own CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_systems_cas_are_still_trusted_beside_the_arvados_ca_file(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Arvados file holds another CA; the server's is among "the system's", here a directory named by
    # SSL_CERT_DIR (hashed as OpenSSL looks them up). Go trusts both; a site whose file holds only its own CA must
    # still reach a controller with a certificate from a public CA.
    monkeypatch.setattr(transport, "ARVADOS_CA_FILE", str(other_ca(tmp_path / "arvados-ca.crt")))
    system = tmp_path / "system-certs"
    system.mkdir()
    server_cert(emulator, system / "controller.pem")
    subprocess.run(["openssl", "rehash", str(system)], check=True, capture_output=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(system))
    client = ArvadosClient(api_host=emulator.api_host, token="wrongtoken" * 3, retry_deadline=0.0)
    try:
        with pytest.raises(ArvadosAuthError):
            client.current_token_uuid()
    finally:
        client.close()


def test_an_arvados_ca_file_without_a_certificate_is_logged_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "ca-certificates.crt"
    junk.write_text("not a certificate\n")
    context = shared_tls_context(ssl.CERT_REQUIRED, "", "", str(junk))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert any(str(junk) in r.getMessage() and "system's CA certificates only" in r.getMessage()
               for r in caplog.records)
