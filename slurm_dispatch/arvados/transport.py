"""The HTTP transport of the Arvados API client: one request with its retries, answered by JSON or a typed error.

This is the only module outside ``slurm_dispatch/sandbox`` that imports ``requests``. ``Transport.call``
sends one API request, retries it as its ``Retry`` policy allows, and returns the decoded JSON object or
raises a typed error from ``slurm_dispatch.errors`` (the status table is in ``http_errors.py``).

What goes on the wire, as the Go SDK sends it (sdk/go/arvadosclient/arvadosclient.go: CallRaw, and
sdk/go/arvados/client.go: Client.Do): ``Authorization: Bearer <token>``; GET parameters in the query
string, non-string values JSON-encoded; POST and PUT send a JSON body (the controller and the emulator
accept JSON as well as forms). Each request carries a ``User-Agent`` and a fresh
``X-Request-Id: req-<20 base-36 chars>``, and has a connect and a read timeout. The token is only ever in
the ``Authorization`` header: never in a URL, a log line or an exception.

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

import enum
import json
import logging
import random
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import requests.adapters
import urllib3.exceptions

from slurm_dispatch import __version__
from slurm_dispatch.arvados.http_errors import error_text, retry_after_s, status_error
from slurm_dispatch.errors import ArvadosAPIError, ArvadosUnavailable

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

Session = requests.Session
"""The session type a caller may inject (tests, a site's proxies); named here so no other module imports requests."""

_BASE36 = string.digits + string.ascii_lowercase


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


_REQUEST_ID_RNG = random.Random()  # seeded from the OS once, at import


def new_request_id() -> str:
    """Return a fresh ``req-<20 base-36 chars>`` request id, as the Go SDK sends. Pure but random.

    A request id only has to be unique enough to find one request in the logs, not unguessable: it comes
    from a pseudo-random generator seeded once, not from the OS's random source (choosing each character
    with ``secrets.choice`` made twenty system calls, the largest CPU cost of a lock request). 104 random bits
    cover 20 base-36 digits.
    """
    n = _REQUEST_ID_RNG.getrandbits(104)
    chars = []
    for _ in range(20):
        n, digit = divmod(n, 36)
        chars.append(_BASE36[digit])
    return "req-" + "".join(chars)


def parse_api_host(api_host: str) -> tuple[str, str]:
    """Return ``(base_url, host)`` for an ARVADOS_API_HOST-style value. Pure.

    ``api_host`` is normally ``host[:port]`` with no scheme, which means https. A URL is
    accepted too: ``https://`` is stripped, and ``http://host:port`` is kept as a plain-HTTP
    base (the sandbox emulator may run without TLS). Any path is dropped.

    Raises:
        ValueError: ``api_host`` is empty or has another scheme.
    """
    text = api_host.strip()
    scheme = "https"
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"Arvados API host {api_host!r}: scheme must be http or https")
    host = text.split("/", 1)[0]
    if not host:
        raise ValueError("Arvados API host is empty: set Services.Controller.ExternalURL or ARVADOS_API_HOST")
    return f"{scheme}://{host}/arvados/v1/", host


def encode_query(params: Mapping[str, Any]) -> dict[str, str]:
    """Return GET parameters as the Go SDK sends them: strings as-is, the rest as JSON; None dropped. Pure."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in params.items()
        if v is not None
    }


class Transport:
    """Sends Arvados API requests with retries; shared by the threads of a small executor.

    It keeps no per-call state, and ``requests.Session`` is used only for its connection pool.
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
        session: Session | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        rng: random.Random | None,
        pool_size: int,
        ca_bundle: str | None,
    ) -> None:
        """Prepare a transport; does no I/O. The arguments are ``ArvadosClient``'s, which documents them.

        Raises:
            ValueError: ``api_host`` is empty or not http(s), or ``token`` is empty.
        """
        if not token:
            raise ValueError("no Arvados API token: set SystemRootToken or ARVADOS_API_TOKEN")
        self.base_url, self.api_host = parse_api_host(api_host)
        self._token = token
        self._timeout = (connect_timeout, read_timeout)
        self._retry_deadline = retry_deadline
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        if session is None:
            session = Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # Do not pick up proxies or a netrc from the environment: the token must go
            # to the configured host only.
            session.trust_env = False
        # Passed on every request: a session-wide setting would lose to REQUESTS_CA_BUNDLE
        # when an injected session trusts the environment.
        self.verify: bool | str = False if insecure else (ca_bundle or True)
        """What requests verifies the server's certificate with: False, True (certifi's CAs) or a CA file."""
        if insecure:
            # TLS.Insecure is the admin's explicit choice (a self-signed controller, the sandbox): urllib3's
            # warning on every request would bury the log, so it is silenced once here.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._session = session

    def close(self) -> None:
        """Close the pooled connections. Blocks briefly."""
        self._session.close()

    def path(self, rel: str) -> str:
        """Return the request path of API path ``rel`` (``containers`` → ``/arvados/v1/containers``). Pure."""
        return "/arvados/v1/" + rel

    def scrub(self, text: str) -> str:
        """Return ``text`` without our token, trimmed to ERROR_TEXT_LIMIT characters. Pure."""
        text = text.replace(self._token, "<token>")
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[: ERROR_TEXT_LIMIT - 1] + "…"
        return text

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

        Blocks, sleeping (through the injected ``sleep``) between attempts.

        Args:
            method: the HTTP method.
            rel: the API path below ``/arvados/v1/``.
            params: query parameters (``encode_query``).
            json_body: the JSON body of a POST or PUT.
            retry: which failures may be retried.
            auth_call: the call checks our own token: a 403 means the token is refused.

        Raises:
            ArvadosAPIError: the typed error of the answer (``http_errors.py``) or of the failure.
        """
        path = self.path(rel)
        url = self.base_url + rel
        query = encode_query(params or {})
        started = self._clock()
        attempt = 0
        while True:
            delay: float | None = None
            try:
                prepared = self._prepare(method, url, query, json_body)
                response = self._session.send(
                    prepared, timeout=self._timeout, allow_redirects=False, **self._send_options(prepared)
                )
            except requests.RequestException as exc:
                error, retryable = self._transport_error(exc, method=method, path=path, retry=retry)
                if not retryable:
                    raise error from exc
                cause: BaseException | None = exc
            else:
                if 200 <= response.status_code < 300:
                    return self._decode(response, method=method, path=path)
                error = self._status_error(response, method=method, path=path, auth_call=auth_call)
                # A status answer proves the request reached the server: only idempotent
                # calls may repeat it. See Retry for why this is safe.
                if not (isinstance(error, ArvadosUnavailable) and retry is Retry.IDEMPOTENT):
                    raise error
                delay = retry_after_s(response.headers.get("Retry-After"), now_epoch=time.time())
                cause = None
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt)) * self._rng.uniform(0.5, 1.0)
            wait = backoff if delay is None else max(delay, 0.0)
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
                raise error from cause
            log.info("retrying %s %s in %.1fs (attempt %d): %s", method, path, wait, attempt + 1, error)
            self._sleep(wait)
            attempt += 1

    def _prepare(
        self, method: str, url: str, query: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> requests.PreparedRequest:
        """Return the request to send: the session's default headers (Accept-Encoding, keep-alive) and ours. Pure.

        Built with ``Request.prepare`` rather than ``Session.request``, which merges the session's cookies,
        auth, hooks and environment settings into every request: none of which this client uses (the session
        has no cookies, auth or hooks, and ignores the environment), and the merging was a third of a lock
        request's CPU.
        """
        headers = {**self._session.headers, **self._headers()}
        return requests.Request(method, url, params=query or None, json=json_body, headers=headers).prepare()

    def _send_options(self, prepared: requests.PreparedRequest) -> dict[str, Any]:
        """Return ``verify`` (and, for a session that trusts the environment, what Session.request takes from it).

        Our own session ignores the environment: ``verify`` is all it needs, and Session.send uses the
        session's own proxies (none). An injected session that trusts the environment gets exactly what
        Session.request would have given it (proxies, REQUESTS_CA_BUNDLE, ...). Pure but for reading the
        environment in that case.
        """
        if not self._session.trust_env:
            return {"verify": self.verify}
        return dict(self._session.merge_environment_settings(prepared.url, {}, None, self.verify, None))

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "User-Agent": f"slurm-dispatch/{__version__}",
            "X-Request-Id": new_request_id(),
            "Accept": "application/json",
        }

    def _decode(self, response: requests.Response, *, method: str, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise ArvadosUnavailable(
                response.status_code, method, path, self.scrub(f"answer is not JSON: {response.text[:80]!r}")
            ) from exc
        if not isinstance(body, dict):
            raise ArvadosAPIError(response.status_code, method, path, "answer is not a JSON object")
        return body

    def _status_error(
        self, response: requests.Response, *, method: str, path: str, auth_call: bool
    ) -> ArvadosAPIError:
        """Return the typed error for a non-2xx answer. Pure apart from reading the body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        text = self.scrub(error_text(body, reason=response.reason, status=response.status_code))
        return status_error(
            status=response.status_code,
            method=method,
            path=path,
            text=text,
            api_host=self.api_host,
            auth_call=auth_call,
            scrub=self.scrub,
        )

    def _transport_error(
        self, exc: requests.RequestException, *, method: str, path: str, retry: Retry
    ) -> tuple[ArvadosAPIError, bool]:
        """Return the typed error for a transport failure and whether ``retry`` allows another try."""
        if isinstance(exc, requests.exceptions.SSLError):
            # A certificate problem does not fix itself: fail at once.
            return (
                ArvadosAPIError(
                    0,
                    method,
                    path,
                    self.scrub(
                        f"TLS handshake with {self.api_host} failed ({exc}): check the controller's "
                        "certificate, or set TLS.Insecure / ARVADOS_API_HOST_INSECURE for a test cluster"
                    ),
                ),
                False,
            )
        not_sent = never_sent(exc)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            what = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            if not not_sent:
                what += " (the request may have reached the server)"
            error = ArvadosUnavailable(0, method, path, self.scrub(f"{self.api_host}: {what}: {exc}"))
            return error, retry is Retry.IDEMPOTENT or not_sent
        # InvalidURL, TooManyRedirects, ...: a programming or configuration error.
        return ArvadosAPIError(0, method, path, self.scrub(f"{type(exc).__name__}: {exc}")), False


def never_sent(exc: requests.RequestException) -> bool:
    """True when ``exc`` proves no byte of the request reached the server. Pure.

    requests raises ``ConnectTimeout`` for a connect timeout, and ``ConnectionError``
    wrapping urllib3's ``NewConnectionError`` (refused, unreachable, DNS failure) when
    no connection was made. Every other ``ConnectionError`` (reset, remote closed,
    protocol error) may come after the request was written.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)):
            return True
        if isinstance(cur, urllib3.exceptions.MaxRetryError):
            todo.append(cur.reason)
        todo.extend(a for a in cur.args if isinstance(a, BaseException))
        todo.append(cur.__cause__)
        todo.append(cur.__context__)
    return False
