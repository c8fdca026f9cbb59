"""The HTTP transport of the Arvados API client: one request with its retries, answered by JSON or a typed error.

This is the only module outside ``slurm_dispatch/sandbox`` that imports an HTTP library: urllib3, directly.
``Transport.call`` sends one API request, retries it as its ``Retry`` policy allows, and returns the decoded JSON
object or raises a typed error from ``slurm_dispatch.errors`` (the status table is in ``http_errors.py``).

Why urllib3 and not ``requests`` on top of it: this client uses none of what ``requests`` adds (cookies, auth
handlers, hooks, redirects, proxies and CA bundles from the environment), and building a ``PreparedRequest``,
going through ``Session.send`` and the adapter, and wrapping the answer in a ``Response`` made a lock request cost
half as much CPU again: 0.99-1.15 ms through requests, 0.65-0.75 ms without, on this project's test machine, where
the service sends one lock per container it submits (docs/benchmarks.md).

Trust: the server's certificate is verified against the CA file or directory the caller names; else against the
system's CA certificates (OpenSSL's default paths, which honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``) and, when
it exists and ``SSL_CERT_FILE`` is not set, /etc/arvados/ca-certificates.crt beside them, which is what the Go
dispatcher trusts (``arvados_ca_file``). ``TLS.Insecure`` turns verification off. Proxies are never used: the
token goes to the configured host only.

Bounds (what a hostile or broken server cannot make it do):

* Each attempt has a total wall-clock deadline (``request_deadline``: connect, send, status line, headers
  and the whole body), enforced by ``deadline.py``; a trickled answer becomes ``ArvadosUnavailable``.
* A body is read in chunks up to ``max_body_bytes`` (after decompression): a bigger one is
  ``ArvadosUnavailable`` too, and is not retried. Error bodies are read up to ``ERROR_BODY_BYTES``.
* JSON is strict: ``NaN``/``Infinity`` literals, invalid UTF-8 and absurd nesting are "not JSON".
* ``stop()`` ends the waits between retries and aborts attempts in flight: the call raises
  ``ArvadosShuttingDown``, and no request starts afterwards.
* No error it raises carries the token, in any form (``redaction.py``): messages are scrubbed, and a
  library exception whose text holds the token is not chained as the cause.

What goes on the wire (built with ``wire.py``), as the Go SDK sends it
(sdk/go/arvadosclient/arvadosclient.go: CallRaw, and sdk/go/arvados/client.go: Client.Do):
``Authorization: Bearer <token>``; GET parameters in the query string, non-string values JSON-encoded;
POST and PUT send a JSON body (the controller and the emulator accept JSON as well as forms). Each
request carries a ``User-Agent`` and a fresh ``X-Request-Id: req-<20 base-36 chars>``, and has a connect
and a read timeout. The token is only ever in the ``Authorization`` header: never in a URL, a log line
or an exception.

Retry policy (a narrower version of the Go SDK's, which retries everything including lock):

* Idempotent calls (every GET) are retried on connection errors, timeouts, 429 and 5xx
  other than 501, with exponential backoff and jitter (base 1 s, cap 30 s, honouring
  ``Retry-After``), until ``retry_deadline`` seconds have passed since the call began.
* Calls that change state (lock, unlock, update, create log) are retried only when the request
  certainly never reached the server: the connection was refused, name resolution failed, or the
  connect timed out. Once the request may have been sent (read timeout, dropped connection, any
  5xx/429 answer) they raise ``ArvadosUnavailable`` at once; see ``Retry.NOT_SENT`` for why that is safe.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.util.ssl_
from urllib3.util.ssl_ import resolve_cert_reqs

from slurm_dispatch import __version__
from slurm_dispatch.arvados.deadline import Abort, Attempt, StopSignal, bind_current
from slurm_dispatch.arvados.http_errors import error_text, retry_after_s, status_error
from slurm_dispatch.arvados.redaction import Redactor, token_secrets
from slurm_dispatch.arvados.wire import check_token, decode_json, encode_query, new_request_id, parse_api_host
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosMalformedAnswer,
    ArvadosShuttingDown,
    ArvadosUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_DEADLINE_S = 60.0
"""How long one call may keep retrying. The Go dispatcher uses 25 min (Retries=25 × 60 s); we
choose much less because the poll loop retries on its next tick anyway, and a call blocked
for 25 minutes would hold an executor thread and hide an outage from the operator."""
BACKOFF_BASE_S = 1.0
"""First retry delay (before jitter), as in the Go SDK."""
BACKOFF_CAP_S = 30.0
"""Longest delay between two attempts, unless the server's Retry-After asks for more."""
ERROR_TEXT_LIMIT = 256
"""Server error text is trimmed to this many characters (kopf caps bodies at 256)."""
DEFAULT_REQUEST_DEADLINE_S = 120.0
"""How long one attempt may take in all (connect, send, the whole answer). A healthy controller sends a page of
1000 containers in well under a second; two minutes leaves room for a slow link and a big page, and bounds a
server that trickles its answer (which the per-read ``read_timeout`` never catches)."""
MAX_BODY_BYTES = 256 * 1024 * 1024
"""The largest answer read (after decompression). The controller stops filling a page once it has read
API.MaxIndexDatabaseRead (128 MiB by default, lib/config/config.default.yml) of large columns; twice that leaves
room for the JSON around them."""
ERROR_BODY_BYTES = 64 * 1024
"""An error answer is read up to this much: its ``errors`` text is all we use, trimmed to ERROR_TEXT_LIMIT."""
TOKEN_MARKER = "<token>"
"""What the token (in any form) becomes in an error message."""
_CHUNK_BYTES = 64 * 1024

ACCEPT_ENCODING = "gzip, deflate"
"""The answer encodings accepted, as requests accepted them (Go's net/http asks for gzip): list pages are large."""

ARVADOS_CA_FILE = "/etc/arvados/ca-certificates.crt"
"""A site's CA file, which Arvados's Go services trust when it exists and ``SSL_CERT_FILE`` is not set
(sdk/go/arvados/tls_certs.go)."""


def arvados_ca_file(environ: Mapping[str, str], path: str = ARVADOS_CA_FILE) -> str | None:
    """Return ``path`` when the client should trust its CAs too: it can be read and ``SSL_CERT_FILE`` is not set.

    As the Go SDK does at start: it points ``SSL_CERT_FILE`` there, and Go's crypto/x509 then reads that file in
    place of the system's bundle but still reads the system's certificate directories (crypto/x509/root_unix.go),
    so the file's CAs are trusted beside the system's. ``shared_tls_context`` loads the system's CAs and this
    file on top. ``SSL_CERT_FILE``, when set (not empty), wins, as in Go. Reads the file's first byte.
    """
    if environ.get("SSL_CERT_FILE"):
        return None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError:
        return None
    return path


class Pool(Protocol):
    """What the transport sends its requests through: a urllib3 connection pool (tests pass a fake one)."""

    def urlopen(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Send one request and return its answer, the body not yet read (``preload_content=False``)."""
        ...

    def close(self) -> None:
        """Close every pooled connection."""
        ...


class Retry(enum.Enum):
    """Which failures a call may retry.

    Why lock, unlock and update are not blindly retried (``NOT_SENT``): once a request may have
    reached the server, repeating it is not safe to reason about. A repeated lock that had in fact
    succeeded answers 422 "cannot lock when Locked" (services/api/app/models/container.rb: lock
    refuses any state but Queued); a repeated unlock answers 422 too. Instead the call raises
    ``ArvadosUnavailable`` and the dispatcher's next poll heals it: a lock that did succeed shows up
    in the ``locked_by_uuid = <our token>`` query and the container is adopted like any orphan; a
    lost unlock or update leaves the container Locked/Running, so the tracker sees it on a later
    update and tries again.
    """

    IDEMPOTENT = "idempotent"
    """Any transient failure: connection errors, timeouts, 429, 5xx other than 501."""
    NOT_SENT = "not-sent"
    """Only failures that prove the request never left this host (refused, DNS, connect timeout)."""


class _Guarded:
    """Mixed into a urllib3 connection: it binds itself to the attempt running in its thread (``deadline.py``)
    whenever it connects or sends."""

    handshake_sock: socket.socket | None = None
    """A second descriptor of the connection's socket while it connects (see ``_new_conn``), for deadline.py."""

    def connect(self) -> None:
        bind_current(self)
        try:
            super().connect()  # type: ignore[misc]
        finally:
            held, self.handshake_sock = self.handshake_sock, None
            if held is not None:
                held.close()

    def request(self, *args: Any, **kwargs: Any) -> None:
        bind_current(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_Guarded, urllib3.connection.HTTPConnection):
    """An HTTP connection bound to its thread's attempt."""


class _GuardedHTTPSConnection(_Guarded, urllib3.connection.HTTPSConnection):
    """An HTTPS connection bound to its thread's attempt, which can also cut its TLS handshake short."""

    def _new_conn(self) -> socket.socket:
        """Open the TCP connection, and keep a second descriptor of its socket until ``connect`` is over.

        The TLS handshake runs inside ``wrap_socket``, which detaches the plain socket first and returns the TLS
        one only when the handshake is done: while a server stalls it, the connection's ``sock`` is a detached
        socket, and shutting it down would do nothing. Shutting down this second descriptor ends the handshake
        (shutdown acts on the socket, whichever descriptor names it), so a deadline or ``stop()`` is not held
        up to the connect timeout by a server that accepts and never answers. The connection binds itself to
        its attempt again once the descriptor is kept: an abort that came while the TCP connect was pending
        found nothing to shut down, and ends the attempt here instead.

        Raises:
            urllib3.exceptions.NewConnectionError: no second descriptor could be made (nothing was sent).
            ConnectionAbortedError: the attempt was aborted while the TCP connection was being made.
        """
        sock: socket.socket = super()._new_conn()
        try:
            self.handshake_sock = sock.dup()
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(
                self, f"Failed to keep a second descriptor of the new connection: {exc}"
            ) from exc
        try:
            bind_current(self)
        except ConnectionAbortedError:
            sock.close()
            raise
        return sock


class _GuardedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection
    site_ca_file = ""
    """A CA file trusted beside the system's CAs (``arvados_ca_file``), when the pool names no CA of its own."""

    def _new_conn(self) -> urllib3.connection.HTTPSConnection:
        """A new connection whose TLS settings come from a context made once (``shared_tls_context``).

        Left alone, urllib3 makes a fresh ``SSLContext`` for every connection and loads the CA certificates into
        it: 30-45 ms of CPU on this project's test machine, for each of the pool's connections and again whenever
        the server closes an idle one. A connection with a client certificate or its own context keeps urllib3's
        way.
        """
        conn: urllib3.connection.HTTPSConnection = super()._new_conn()  # type: ignore[assignment]
        if conn.ssl_context is None and _plain_tls(conn):
            named = conn.ca_certs or conn.ca_cert_dir
            conn.ssl_context = shared_tls_context(
                resolve_cert_reqs(conn.cert_reqs), conn.ca_certs or "", conn.ca_cert_dir or "",
                "" if named else self.site_ca_file,
            )
            conn.ca_certs = conn.ca_cert_dir = None
        return conn


def _plain_tls(conn: urllib3.connection.HTTPSConnection) -> bool:
    """True when ``conn`` asks for nothing but a verification mode and CAs: the only settings a shared context is
    made from. urllib3 changes the context it is given to suit the connection (``verify_mode``, and
    ``check_hostname`` off for ``assert_hostname``), so a connection with other settings (a client certificate,
    a fingerprint, TLS versions, its own hostname check) keeps a context of its own. Pure."""
    verifies = resolve_cert_reqs(conn.cert_reqs) != ssl.CERT_NONE
    return (
        not conn.cert_file
        and not conn.ca_cert_data
        and conn.assert_fingerprint is None
        and conn.ssl_version is None
        and conn.ssl_minimum_version is None
        and conn.ssl_maximum_version is None
        and (conn.assert_hostname is None if verifies else conn.assert_hostname in (None, False))
    )


@functools.lru_cache(maxsize=8)
def shared_tls_context(cert_reqs: int, ca_certs: str, ca_cert_dir: str, site_ca: str = "") -> ssl.SSLContext:
    """Return the one TLS context for connections that verify with ``cert_reqs`` against these CAs.

    Made as urllib3 makes one for each connection (``create_urllib3_context``), and loaded with the CA file or
    directory the client was given, or else the system's CAs and ``site_ca`` beside them (``arvados_ca_file``). A
    ``site_ca`` that holds no readable certificate is logged and left out, as Go skips what it cannot parse.
    Verification off (``TLS.Insecure``) loads none: nothing would read them. The CAs are read once per process, as
    Go's crypto/x509 reads the system's roots once; a new CA bundle takes a restart.

    Raises:
        urllib3.exceptions.SSLError: the CA file or directory cannot be read or holds no certificate. urllib3
            passes it on as it is, so the request that opens the connection fails with a TLS error (not with a
            "connection aborted" that would be retried), and nothing is remembered: a fixed file is read on the
            next connection.
    """
    context = urllib3.util.ssl_.create_urllib3_context(cert_reqs=cert_reqs)
    if cert_reqs != ssl.CERT_NONE:
        try:
            if ca_certs or ca_cert_dir:
                context.load_verify_locations(cafile=ca_certs or None, capath=ca_cert_dir or None)
            else:
                context.load_default_certs()
        except OSError as exc:  # ssl.SSLError is an OSError
            where = ca_certs or ca_cert_dir or "(the system's)"
            raise urllib3.exceptions.SSLError(f"cannot load the CA certificates {where}: {exc}") from exc
        if site_ca:
            try:
                context.load_verify_locations(cafile=site_ca)
            except OSError as exc:  # ssl.SSLError is an OSError
                log.warning("%s holds no certificate this service can read (%s): the API server's certificate is "
                            "checked against the system's CA certificates only", site_ca, exc)
    return context


class _TooLarge(Exception):
    """The answer's body is bigger than allowed."""


class _TooSlow(Exception):
    """The attempt's deadline passed while its body was being read."""


@dataclass
class _Failure:
    """A failed attempt: the error to raise, whether the policy allows another try, the server's delay."""

    error: ArvadosAPIError
    retryable: bool = False
    delay: float | None = None
    cause: BaseException | None = None


class Transport:
    """Sends Arvados API requests with retries; shared by the threads of a small executor.

    It keeps no per-call state but the set of attempts in flight (for ``stop()``) and its connection pool.
    """

    def __init__(
        self,
        *,
        api_host: str,
        token: str,
        insecure: bool,
        connect_timeout: float,
        read_timeout: float,
        retry_deadline: float,
        pool: Pool | None,
        sleep: Callable[[float], None] | None,
        clock: Callable[[], float],
        rng: random.Random | None,
        pool_size: int,
        ca_bundle: str | None,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        """Prepare a transport; does no network I/O (it reads the first byte of ``ARVADOS_CA_FILE`` when no CA is
        named, and looks whether a named one is a directory). The arguments are ``ArvadosClient``'s, which
        documents them.

        Raises:
            ValueError: ``api_host`` is empty or not http(s), or ``token`` is empty or cannot go in an
                HTTP header. The message never shows the token.
        """
        check_token(token)
        self.base_url, self.api_host = parse_api_host(api_host)
        self._token = token
        self._redactor = Redactor(token_secrets(token), marker=TOKEN_MARKER)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._retry_deadline = retry_deadline
        self._request_deadline = request_deadline
        self._max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = StopSignal()
        self.verify: bool | str = False if insecure else (ca_bundle or True)
        """What the server's certificate is verified with: False, True (the system's CAs) or a CA file/directory."""
        # The process's own environment, not a mapping passed in: OpenSSL's default verify paths, which
        # ``shared_tls_context`` loads, read SSL_CERT_FILE from it, and the two must agree.
        self.site_ca = arvados_ca_file(os.environ, ARVADOS_CA_FILE) if self.verify is True else None
        """A site CA file trusted beside the system's CAs (``arvados_ca_file``), or None."""
        if insecure:
            # TLS.Insecure is the admin's explicit choice (a self-signed controller, the sandbox): urllib3's
            # warning on every request would bury the log, so it is silenced once here.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._pool_size = pool_size
        self._own = pool is None
        self._pool = pool if pool is not None else self._new_pool()

    def _new_pool(self) -> Pool:
        """Return a connection pool to ``base_url``'s host that verifies its certificate as ``verify`` says. Pure
        (connections are opened when a request needs one).

        Raises:
            ValueError: the host is not one urllib3 can parse.
        """
        try:
            parts = urllib3.util.parse_url(self.base_url)
        except urllib3.exceptions.LocationParseError:
            raise ValueError(f"Arvados API host {self.api_host!r} is not a host name or address") from None
        host = parts.host or ""  # never empty: parse_api_host refused a URL without a host
        if parts.scheme == "http":
            return _GuardedHTTPConnectionPool(
                host, parts.port, maxsize=self._pool_size, block=False, retries=False, timeout=self._timeout
            )
        trust: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
        if self.verify is False:
            trust = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
        elif isinstance(self.verify, str):
            trust["ca_cert_dir" if os.path.isdir(self.verify) else "ca_certs"] = self.verify
        pool = _GuardedHTTPSConnectionPool(
            host, parts.port, maxsize=self._pool_size, block=False, retries=False, timeout=self._timeout,
            **trust,
        )
        pool.site_ca_file = self.site_ca or ""
        return pool

    def close(self) -> None:
        """Close the pooled connections. Blocks briefly. Later calls open new ones (own pool only)."""
        old = self._pool
        if self._own:
            self._pool = self._new_pool()
        old.close()

    def stop(self) -> None:
        """Stop for good: end retry waits, abort requests in flight; later calls raise at once. Does not block."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop.is_set()

    def path(self, rel: str) -> str:
        """Return the request path of API path ``rel`` (``containers`` → ``/arvados/v1/containers``). Pure."""
        return "/arvados/v1/" + rel

    def scrub(self, text: str) -> str:
        """Return ``text`` without our token in any form, trimmed to ERROR_TEXT_LIMIT characters. Pure."""
        return self._redactor.trimmed(text, ERROR_TEXT_LIMIT)

    def call(
        self,
        method: str,
        rel: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        retry: Retry,
        auth_call: bool = False,
    ) -> dict[str, Any]:
        """Send one request, retrying as ``retry`` allows; return the decoded JSON object.

        Blocks: each attempt for at most ``request_deadline`` seconds, and between attempts (through the
        injected ``sleep``, or until ``stop()``).

        Args:
            method: the HTTP method.
            rel: the API path below ``/arvados/v1/``.
            params: query parameters (``encode_query``).
            json_body: the JSON body of a POST or PUT.
            retry: which failures may be retried.
            auth_call: the call checks our own token: a 403 means the token is refused.

        Raises:
            ArvadosShuttingDown: ``stop()`` was called before or during the call.
            ArvadosMalformedAnswer: a 2xx answer that is JSON but not an object.
            ArvadosAPIError: the typed error of the answer (``http_errors.py``) or of the failure.
        """
        path = self.path(rel)
        query = encode_query(params or {})
        started = self._clock()
        attempt = 0
        while True:
            if self._stop.is_set():
                raise ArvadosShuttingDown(0, method, path, "the client is stopped: request not sent")
            outcome = self._attempt(method, path, query, json_body, retry=retry, auth_call=auth_call)
            if not isinstance(outcome, _Failure):
                return outcome
            error = outcome.error
            if not outcome.retryable:
                raise error from outcome.cause
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt)) * self._rng.uniform(0.5, 1.0)
            wait = backoff if outcome.delay is None else max(outcome.delay, 0.0)
            elapsed = self._clock() - started
            if elapsed + wait > self._retry_deadline:
                log.warning(
                    "giving up on %s %s after %d attempts in %.1fs: %s",
                    method,
                    path,
                    attempt + 1,
                    elapsed,
                    error,
                )
                raise error from outcome.cause
            log.info("retrying %s %s in %.1fs (attempt %d): %s", method, path, wait, attempt + 1, error)
            if self._sleep is None:
                self._stop.wait(wait)
            else:
                self._sleep(wait)
            if self._stop.is_set():
                raise ArvadosShuttingDown(
                    0, method, path, f"the client was stopped while waiting to retry after: {error.message}"
                ) from None
            attempt += 1

    def _attempt(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        json_body: Mapping[str, Any] | None,
        *,
        retry: Retry,
        auth_call: bool,
    ) -> dict[str, Any] | _Failure:
        """Send the request once; return the decoded JSON object, or what went wrong. Blocks, up to the deadline."""
        failure: _Failure | None = None
        with self._stop.attempt(self._request_deadline) as attempt:
            response: urllib3.BaseHTTPResponse | None = None
            try:
                target, body, headers = self._request(method, path, query, json_body)
                response = self._pool.urlopen(
                    method, target, body=body, headers=headers, retries=False, redirect=False,
                    assert_same_host=False, timeout=self._timeout, preload_content=False, decode_content=True,
                )
                ok = 200 <= response.status < 300
                limit = self._max_body_bytes if ok else ERROR_BODY_BYTES
                data = self._read_body(response, attempt, limit=limit, truncate=not ok)
            except _TooLarge:
                status = response.status if response is not None else 0
                too_large = f"the answer is larger than {self._max_body_bytes} bytes; check the API server"
                too_large += " (or a proxy in front of it)"
                failure = _Failure(ArvadosUnavailable(status, method, path, too_large))
            except _TooSlow:
                failure = self._aborted(Abort.DEADLINE, method=method, path=path, retry=retry)
            except Exception as exc:  # noqa: BLE001 - any failure of the HTTP library becomes a typed error
                failure = self._exception_failure(exc, attempt, method=method, path=path, retry=retry)
            else:
                if attempt.reason is not None:  # cut short, yet the library saw a (truncated) answer
                    failure = self._aborted(attempt.reason, method=method, path=path, retry=retry)
            finally:
                if response is not None:
                    _close(response)
        if failure is not None:
            return failure
        assert response is not None
        if ok:
            return self._decode(data, status=response.status, method=method, path=path)
        error = self._status_error(response, data, method=method, path=path, auth_call=auth_call)
        # A status answer proves the request reached the server: only idempotent
        # calls may repeat it. See Retry for why this is safe.
        if not (isinstance(error, ArvadosUnavailable) and retry is Retry.IDEMPOTENT):
            return _Failure(error)
        delay = retry_after_s(response.headers.get("Retry-After"), now_epoch=time.time())
        return _Failure(error, retryable=True, delay=delay)

    def _read_body(
        self, response: urllib3.BaseHTTPResponse, attempt: Attempt, *, limit: int, truncate: bool
    ) -> bytes:
        """Return the (decompressed) body, at most ``limit`` bytes. Blocks until it is read.

        Raises:
            _TooLarge: the body is bigger than ``limit`` (and ``truncate`` is False).
            _TooSlow: the attempt's deadline passed (the watchdog also aborts a read blocked for good).
        """
        buf = bytearray()
        for chunk in response.stream(_CHUNK_BYTES, decode_content=True):
            buf += chunk
            if len(buf) > limit:
                if truncate:
                    return bytes(buf[:limit])
                raise _TooLarge
            if time.monotonic() > attempt.deadline:
                raise _TooSlow
        return bytes(buf)

    def _request(
        self, method: str, path: str, query: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> tuple[str, bytes | None, dict[str, str]]:
        """Return the request target (``path`` and the query), the body and the headers to send. Pure.

        The path is ours (``path()``, with uuids checked where they enter): it needs no parsing, only the query,
        encoded as ``urlencode(doseq=True)`` encodes it. The pool adds the host of ``base_url``, whose path is
        ``/arvados/v1/`` like every ``path()`` (``parse_api_host``).
        """
        target = path
        if query:
            target += "?" + urlencode(query, doseq=True)
        headers = self._headers()
        body = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body or b""))
        return target, body, headers

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "User-Agent": f"slurm-dispatch/{__version__}",
            "X-Request-Id": new_request_id(),
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
        }

    def _decode(self, body: bytes, *, status: int, method: str, path: str) -> dict[str, Any]:
        """Return the JSON object of a 2xx answer. Pure.

        Raises:
            ArvadosUnavailable: not JSON (a proxy's error page, a truncated answer).
            ArvadosMalformedAnswer: JSON, but not an object.
        """
        try:
            value = decode_json(body)
        except ValueError:
            value = _NOT_JSON
        if value is _NOT_JSON:
            excerpt = self._redactor.trimmed(body[:4096].decode("utf-8", "replace"), 80)
            raise ArvadosUnavailable(status, method, path, self.scrub(f"answer is not JSON: {excerpt!r}"))
        if not isinstance(value, dict):
            raise ArvadosMalformedAnswer(status, method, path, "answer is not a JSON object")
        return value

    def _status_error(
        self, response: urllib3.BaseHTTPResponse, body: bytes, *, method: str, path: str, auth_call: bool
    ) -> ArvadosAPIError:
        """Return the typed error for a non-2xx answer. Pure."""
        try:
            value = decode_json(body)
        except ValueError:
            value = None
        try:
            text = error_text(value, reason=response.reason or "", status=response.status)
        except RecursionError:
            text = response.reason or f"HTTP {response.status}"
        return status_error(
            status=response.status,
            method=method,
            path=path,
            text=self.scrub(text),
            api_host=self.api_host,
            auth_call=auth_call,
            scrub=self.scrub,
        )

    def _aborted(self, reason: Abort, *, method: str, path: str, retry: Retry) -> _Failure:
        """Return the failure of an attempt cut short by its deadline or by ``stop()``. Pure."""
        if reason is Abort.STOPPED:
            text = "the client was stopped during the request (it may have reached the server)"
            return _Failure(ArvadosShuttingDown(0, method, path, text))
        return _Failure(
            ArvadosUnavailable(
                0,
                method,
                path,
                f"{self.api_host}: no complete answer within {self._request_deadline:g} s (the request may "
                "have reached the server); the API server or a proxy is too slow or trickling its answer",
            ),
            retryable=retry is Retry.IDEMPOTENT,
        )

    def _exception_failure(
        self, exc: Exception, attempt: Attempt, *, method: str, path: str, retry: Retry
    ) -> _Failure:
        """Return the failure for an exception raised while sending or reading. Pure, but cleans ``exc``."""
        if attempt.reason is not None:
            failure = self._aborted(attempt.reason, method=method, path=path, retry=retry)
        else:
            error, retryable = self._transport_error(exc, method=method, path=path, retry=retry)
            failure = _Failure(error, retryable=retryable)
        failure.cause = self._clean_cause(exc)
        return failure

    def _clean_cause(self, exc: BaseException) -> BaseException | None:
        """Return ``exc`` to chain as the cause of our error, or None when it would carry the token.

        Walks the chain (causes, contexts, wrapped exceptions): if any of them shows the token in any form in
        its ``str``, its ``repr`` or the URL urllib3 keeps on it, nothing is chained. Pure.
        """
        seen: set[int] = set()
        todo: list[BaseException] = [exc]
        while todo:
            cur = todo.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            try:
                text = f"{cur}\n{cur!r}\n{getattr(cur, 'url', '')}"  # urllib3's errors keep the URL aside
            except Exception:  # noqa: BLE001 - an exception that cannot describe itself is not chained
                return None
            if self._redactor.found_in(text):
                return None
            linked = [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
            todo.extend(e for e in linked if isinstance(e, BaseException))
        return exc

    def _transport_error(
        self, exc: Exception, *, method: str, path: str, retry: Retry
    ) -> tuple[ArvadosAPIError, bool]:
        """Return the typed error for a failure to send or to read, and whether ``retry`` allows another try. Pure.

        urllib3 raises its own exception, not one wrapped in ``MaxRetryError``, since it never retries here
        (``retries=False``).
        """
        if isinstance(exc, urllib3.exceptions.SSLError):
            # A certificate problem does not fix itself: fail at once.
            text = (
                f"TLS handshake with {self.api_host} failed ({exc}): check the controller's certificate, or set "
                "TLS.Insecure / ARVADOS_API_HOST_INSECURE for a test cluster"
            )
            return ArvadosAPIError(0, method, path, self.scrub(text)), False
        not_sent = never_sent(exc)
        timed_out = isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)) and not isinstance(
            exc, urllib3.exceptions.NewConnectionError
        )
        lost = isinstance(exc, (urllib3.exceptions.ProtocolError, urllib3.exceptions.ProxyError, HTTPException,
                                OSError, *_NEVER_SENT))
        if timed_out or lost:
            what = "timed out" if timed_out else "connection failed"
            if not not_sent:
                what += " (the request may have reached the server)"
            error = ArvadosUnavailable(0, method, path, self.scrub(f"{self.api_host}: {what}: {_describe(exc)}"))
            return error, retry is Retry.IDEMPOTENT or not_sent
        # A body that does not decompress, a bad header value, ...: the request or the answer is unusable.
        return ArvadosAPIError(0, method, path, self.scrub(f"{type(exc).__name__}: {exc}")), False


_NOT_JSON = object()


def _describe(exc: BaseException) -> str:
    """Return what ``exc`` says. urllib3's connection errors carry ``(connection, message)``, whose text would
    show the connection object's repr and address: only the message is kept. Pure."""
    if isinstance(exc, urllib3.exceptions.HTTPError) and len(exc.args) == 2 and isinstance(exc.args[1], str):
        return exc.args[1]
    return str(exc)


def _close(response: urllib3.BaseHTTPResponse) -> None:
    """Close ``response``: its connection goes back to the pool if the body was read to the end, else is dropped.

    A body read to its end has already given its connection back (urllib3 does so at the end of the body);
    otherwise closing drops the connection, and ``release_conn`` frees its place in the pool.
    """
    with contextlib.suppress(Exception):  # closing a broken answer must not hide why it broke
        response.close()
    with contextlib.suppress(Exception):
        response.release_conn()


_NEVER_SENT = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.ClosedPoolError,
)


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` proves no byte of the request reached the server. Pure.

    urllib3 raises ``NewConnectionError`` (refused, unreachable; ``NameResolutionError`` for a DNS failure) or
    ``ConnectTimeoutError`` when no connection was made, and ``ClosedPoolError`` when the pool was closed before
    it gave out a connection (a call racing ``close()``). Every other failure (reset, remote closed, a read
    timeout, a protocol error) may come after the request was written. The exception's causes and arguments are
    searched too, for a library that wraps one of those.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, _NEVER_SENT):
            return True
        if isinstance(cur, urllib3.exceptions.MaxRetryError):
            todo.append(cur.reason)
        todo.extend(a for a in cur.args if isinstance(a, BaseException))
        todo.append(cur.__cause__)
        todo.append(cur.__context__)
    return False
