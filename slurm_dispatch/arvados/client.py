"""ArvadosClient: the typed, blocking client of the Arvados REST API (``arvados/v1``).

This is the only module outside ``slurm_dispatch/sandbox`` that imports ``requests``.
Every method does one HTTP call (``list_all`` does several), blocks until it has an
answer, and either returns plain values (dicts, ``Container``, ``ListPage``) or raises a
typed error from ``slurm_dispatch.errors``:

====================  =========================================================
HTTP status           error
====================  =========================================================
401                   ``ArvadosAuthError`` (fatal: the token is wrong)
403                   ``ArvadosPermissionDenied`` (a per-container rule), except on
                      ``api_client_authorizations/current``: ``ArvadosAuthError``
404                   ``ArvadosNotFound``
422                   ``ArvadosConflict`` (normal on a lost lock race)
429, 5xx but 501,     ``ArvadosUnavailable`` (transient), after the retries below
no response
anything else         ``ArvadosAPIError``
====================  =========================================================

Transport (arvados-reference.md §3.1): ``Authorization: Bearer <token>``; GET parameters
go in the query string, non-string values JSON-encoded, as the Go SDK sends them; POST and
PUT send a JSON body (the controller and the emulator accept JSON as well as forms). Each
request carries a ``User-Agent`` and a fresh ``X-Request-Id: req-<20 base-36 chars>``, and
has a connect and a read timeout. The token is only ever in the ``Authorization`` header:
never in a URL, a log line or an exception.

Retry policy (a narrower version of the Go SDK's, which retries everything including lock):

* Idempotent calls (every GET) are retried on connection errors, timeouts, 429 and 5xx
  other than 501, with exponential backoff and jitter (base 1 s, cap 30 s, honouring
  ``Retry-After``), until ``retry_deadline`` seconds have passed since the call began.
* Calls that change state (``lock``, ``unlock``, ``update``, ``update_state``,
  ``create_log``) are retried only when the request certainly never reached the server:
  the connection was refused, name resolution failed, or the connect timed out. Once the
  request may have been sent (read timeout, dropped connection, any 5xx/429 answer) they
  raise ``ArvadosUnavailable`` at once; see ``_NOT_SENT`` for why that is safe.
* ``create_log`` counts as non-idempotent: a repeated POST would write the same dispatch
  log line twice, and the dispatcher ignores log errors anyway (§3.5 item 6), so it is
  better to drop a line than to block a worker for the whole deadline.
"""

from __future__ import annotations

import builtins
import email.utils
import enum
import json
import logging
import random
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
import requests.adapters
import urllib3.exceptions

from slurm_dispatch import __version__
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosPermissionDenied,
    ArvadosUnavailable,
)
from slurm_dispatch.model import Container, ContainerState

log = logging.getLogger(__name__)

Count = Literal["exact", "none"]
"""The ``count`` list parameter: ``exact`` fills ``items_available``, ``none`` omits it (§3.3)."""

Filter = Sequence[Any]
"""One ``[attribute, operator, operand]`` triple (or a bare expression string) (§3.4)."""

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
SYSTEM_ROOT_HINT = "check SystemRootToken (ARVADOS_API_TOKEN)"

_BASE36 = string.digits + string.ascii_lowercase


class _Retry(enum.Enum):
    """Which failures a call may retry."""

    IDEMPOTENT = "idempotent"
    """Any transient failure: connection errors, timeouts, 429, 5xx other than 501."""
    NOT_SENT = "not-sent"
    """Only failures that prove the request never left this host (refused, DNS, connect timeout)."""


@dataclass(frozen=True)
class ListPage:
    """One page of a list call.

    Attributes:
        items: the records, as received.
        items_available: the total number of matching records, or None with ``count="none"``.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    items_available: int | None = None


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


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "t", "y")


def _retry_after_s(value: str | None, *, now_epoch: float) -> float | None:
    """Return the delay a ``Retry-After`` header asks for (seconds or an HTTP date). Pure."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


def _encode_query(params: Mapping[str, Any]) -> dict[str, str]:
    """Return GET parameters as the Go SDK sends them: strings as-is, the rest as JSON. Pure."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in params.items()
        if v is not None
    }


class ArvadosClient:
    """A blocking client of the Arvados API for a dispatcher (and the crunch-run stand-in).

    One instance may be shared by the threads of a small executor: it keeps no per-call
    state, and ``requests.Session`` is used only for its connection pool.
    """

    def __init__(
        self,
        *,
        api_host: str,
        token: str,
        insecure: bool = False,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry_deadline: float = DEFAULT_RETRY_DEADLINE_S,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pool_size: int = 10,
        ca_bundle: str | None = None,
    ) -> None:
        """Prepare a client; does no I/O.

        Args:
            api_host: ``host[:port]`` (https), or a ``https://`` / ``http://`` URL.
            token: the API token (SystemRootToken for a dispatcher). Never logged.
            insecure: skip TLS certificate verification (``TLS.Insecure``).
            connect_timeout: seconds to establish a connection, per attempt.
            read_timeout: seconds to wait for the answer, per attempt.
            retry_deadline: seconds one call may spend retrying, from its first attempt.
            session: a ``requests.Session`` to use (a new one when None).
            sleep: how to wait between attempts (tests pass a fake).
            clock: monotonic seconds (tests pass a fake).
            rng: jitter source (tests pass a seeded one).
            pool_size: connections kept per host when this client makes its own session.
            ca_bundle: a CA certificate file to verify the server with (default: certifi's).

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
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # Do not pick up proxies or a netrc from the environment: the token must go
            # to the configured host only.
            session.trust_env = False
        # Passed on every request: a session-wide setting would lose to REQUESTS_CA_BUNDLE
        # when an injected session trusts the environment.
        self._verify: bool | str = False if insecure else (ca_bundle or True)
        if insecure:
            # TLS.Insecure is the admin's explicit choice (a self-signed controller, the sandbox): urllib3's
            # warning on every request would bury the log, so it is silenced once here.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._session = session

    def __repr__(self) -> str:
        return f"ArvadosClient(base_url={self.base_url!r})"

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ArvadosClient:
        """Return a client for ``settings.controller_url`` with ``system_root_token``; no I/O.

        The controller URL's scheme is kept (``http://`` for a plain-HTTP emulator); a
        URL without a scheme means https. Extra keyword arguments go to the constructor.

        Raises:
            ValueError: the URL or the token is empty.
        """
        return cls(
            api_host=settings.controller_url,
            token=settings.system_root_token,
            insecure=bool(settings.tls_insecure),
            **kwargs,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **kwargs: Any) -> ArvadosClient:
        """Return a client for ``ARVADOS_API_HOST`` / ``ARVADOS_API_TOKEN`` / ``ARVADOS_API_HOST_INSECURE``.

        No I/O. ``ARVADOS_API_HOST_INSECURE`` is true for ``1``, ``true``, ``yes`` (any case).
        ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE``, when set, names the CA file to verify with.

        Raises:
            ValueError: the host or the token is missing.
        """
        host = environ.get("ARVADOS_API_HOST", "")
        if not host:
            raise ValueError("ARVADOS_API_HOST is not set")
        return cls(
            api_host=host,
            token=environ.get("ARVADOS_API_TOKEN", ""),
            insecure=_truthy(environ.get("ARVADOS_API_HOST_INSECURE")),
            **{
                "ca_bundle": environ.get("REQUESTS_CA_BUNDLE") or environ.get("SSL_CERT_FILE") or None,
                **kwargs,
            },
        )

    def close(self) -> None:
        """Close the pooled connections. Blocks briefly."""
        self._session.close()

    # ------------------------------------------------------------------ API methods

    def current_token_uuid(self) -> str:
        """Return the UUID of our own token (``GET api_client_authorizations/current``).

        Blocks; retried as an idempotent call. The dispatcher matches ``locked_by_uuid``
        against this value.

        Raises:
            ArvadosAuthError: the token is refused (401 or 403 here).
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
        """
        body = self._call("GET", "api_client_authorizations/current", retry=_Retry.IDEMPOTENT, auth_call=True)
        uuid = body.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            raise ArvadosAPIError(
                200, "GET", self._path("api_client_authorizations/current"), "no uuid in answer"
            )
        return uuid

    def list(
        self,
        *,
        filters: Sequence[Filter],
        order: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        count: Count = "exact",
        select: Sequence[str] | None = None,
    ) -> ListPage:
        """Return one page of ``GET containers`` with these parameters.

        Blocks; retried as an idempotent call. The server may return fewer items than
        ``limit`` (never none while more remain); page by ``offset += len(items)``.

        Raises:
            ArvadosConflict: a bad filter, order, count or select (422).
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
            ArvadosAPIError: any other refusal.
        """
        params: dict[str, Any] = {"filters": [list(f) if not isinstance(f, str) else f for f in filters]}
        if order is not None:
            params["order"] = list(order)
        if limit is not None:
            params["limit"] = limit
        if offset:
            params["offset"] = offset
        params["count"] = count
        if select is not None:
            params["select"] = list(select)
        body = self._call("GET", "containers", params=params, retry=_Retry.IDEMPOTENT)
        items = body.get("items")
        if not isinstance(items, list):
            raise ArvadosAPIError(200, "GET", self._path("containers"), "list answer has no items array")
        available = body.get("items_available")
        return ListPage(items=items, items_available=int(available) if available is not None else None)

    def list_all(
        self,
        *,
        filters: Sequence[Filter],
        order: Sequence[str] = ("priority desc",),
        batch_size: int = 1000,
        select: Sequence[str] | None = None,
    ) -> Iterator[builtins.list[Container]]:
        """Yield every container matching ``filters``, one page (a list) at a time.

        Port of sdk/go/dispatch/dispatch.go: checkListForUpdates' paging. First a
        ``count=exact&limit=0`` probe reads ``items_available``; then pages of
        ``batch_size`` with ``count=none``, ``offset += len(items)``, stopping on an empty
        page or once ``offset >= items_available`` (arvados-reference.md §3.5, gotcha 4).

        Blocks for each page. An error raises in the middle of the iteration, so a caller
        can tell a failed query (exception, possibly after some pages) from an empty one
        (no pages); it must not treat a partial listing as complete.

        Raises:
            ArvadosAPIError: as ``list``; also when a record is not a valid container.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        probe = self.list(filters=filters, order=order, limit=0, count="exact")
        available = probe.items_available
        offset = 0
        while available is None or offset < available:
            page = self.list(
                filters=filters, order=order, limit=batch_size, offset=offset, count="none", select=select
            )
            if not page.items:
                return
            yield [self._container(item, "GET", "containers") for item in page.items]
            offset += len(page.items)

    def get(self, uuid: str) -> Container:
        """Return the container ``uuid`` (``GET containers/{uuid}``).

        Blocks; retried as an idempotent call.

        Raises:
            ArvadosNotFound: no such container, or not readable with this token.
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
        """
        path = f"containers/{uuid}"
        return self._container(self._call("GET", path, retry=_Retry.IDEMPOTENT), "GET", path)

    def lock(self, uuid: str) -> dict[str, Any]:
        """Lock the container for our token (``POST containers/{uuid}/lock``); return the answer.

        The answer holds only ``uuid``, ``state``, ``priority``, ``auth_uuid`` and
        ``locked_by_uuid`` (gotcha 7). Blocks. Retried only if the request never reached
        the server.

        Raises:
            ArvadosConflict: not Queued, priority 0, or a lost race (422). After a timeout
                this can also mean *we* hold it: the next poll adopts it (gotcha 9).
            ArvadosUnavailable: no answer, or 5xx/429; the lock may or may not have happened.
        """
        return self._call("POST", f"containers/{uuid}/lock", retry=_Retry.NOT_SENT)

    def unlock(self, uuid: str) -> dict[str, Any]:
        """Unlock the container (``POST containers/{uuid}/unlock``); return the answer.

        The answer's ``state`` is ``Queued``, or ``Cancelled`` when MaxDispatchAttempts
        is reached (gotcha 8). Blocks. Retried only if the request never reached the server.

        Raises:
            ArvadosConflict: the container is not Locked (422).
            ArvadosPermissionDenied: another token holds the lock (403).
            ArvadosUnavailable: no answer, or 5xx/429; the tracker retries on a later update.
        """
        return self._call("POST", f"containers/{uuid}/unlock", retry=_Retry.NOT_SENT)

    def update(
        self, uuid: str, fields: Mapping[str, Any], *, select: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Change ``fields`` of the container (``PUT containers/{uuid}``); return the answer.

        The answer is the full record, or the ``select``-ed fields plus ``kind``/``etag``.
        Blocks. Retried only if the request never reached the server.

        Raises:
            ArvadosConflict: a refused transition or field change (422).
            ArvadosPermissionDenied: refused for this token (403).
            ArvadosNotFound: no such container (404).
            ArvadosUnavailable: no answer, or 5xx/429; the change may or may not have happened.
        """
        body: dict[str, Any] = {"container": dict(fields)}
        if select is not None:
            body["select"] = list(select)
        return self._call("PUT", f"containers/{uuid}", json_body=body, retry=_Retry.NOT_SENT)

    def update_state(self, uuid: str, state: ContainerState | str) -> Container:
        """Set the container's state (``PUT containers/{uuid}`` with ``{"state": ...}``); return it.

        Port of sdk/go/dispatch/dispatch.go: UpdateState. Blocks; errors as ``update``.
        """
        value = state.value if isinstance(state, ContainerState) else str(state)
        path = f"containers/{uuid}"
        return self._container(self.update(uuid, {"state": value}), "PUT", path)

    def container_auth(self, uuid: str) -> dict[str, Any]:
        """Return the container's runtime token record (``GET containers/{uuid}/auth``).

        The answer holds ``uuid`` and ``api_token`` (a secret: never log it). Only the
        lock holder may read it. Blocks; retried as an idempotent call.

        Raises:
            ArvadosPermissionDenied: our token does not hold the lock (403).
            ArvadosNotFound: no such container.
        """
        return self._call("GET", f"containers/{uuid}/auth", retry=_Retry.IDEMPOTENT)

    def create_log(self, *, object_uuid: str, event_type: str, text: str) -> dict[str, Any]:
        """Write a log entry about ``object_uuid`` (``POST logs``); return the new record.

        Sends ``{"log": {"object_uuid", "event_type", "properties": {"text": text}}}``
        (§3.5 item 6). Blocks. Retried only if the request never reached the server (a
        repeated POST would duplicate the entry).

        Raises:
            ArvadosAPIError: any refusal; the dispatcher logs and ignores it, as Go does.
        """
        body = {"log": {"object_uuid": object_uuid, "event_type": event_type, "properties": {"text": text}}}
        return self._call("POST", "logs", json_body=body, retry=_Retry.NOT_SENT)

    # ------------------------------------------------------------------ transport

    def _path(self, rel: str) -> str:
        return "/arvados/v1/" + rel

    def _container(self, raw: Mapping[str, Any], method: str, rel: str) -> Container:
        try:
            return Container.from_api(raw)
        except (ValueError, TypeError) as exc:
            raise ArvadosAPIError(
                200, method, self._path(rel), f"not a valid container record: {exc}"
            ) from exc

    def _scrub(self, text: str) -> str:
        """Return ``text`` without our token, trimmed to ERROR_TEXT_LIMIT characters. Pure."""
        text = text.replace(self._token, "<token>")
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[: ERROR_TEXT_LIMIT - 1] + "…"
        return text

    def _call(
        self,
        method: str,
        rel: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        retry: _Retry,
        auth_call: bool = False,
    ) -> dict[str, Any]:
        """Send one request, retrying as ``retry`` allows; return the decoded JSON object.

        Blocks, sleeping (through the injected ``sleep``) between attempts.
        """
        path = self._path(rel)
        url = self.base_url + rel
        query = _encode_query(params or {})
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
                # calls may repeat it. See _NOT_SENT below for why this is safe.
                if not (isinstance(error, ArvadosUnavailable) and retry is _Retry.IDEMPOTENT):
                    raise error
                delay = _retry_after_s(response.headers.get("Retry-After"), now_epoch=time.time())
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
            return {"verify": self._verify}
        return dict(self._session.merge_environment_settings(prepared.url, {}, None, self._verify, None))

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
                response.status_code, method, path, self._scrub(f"answer is not JSON: {response.text[:80]!r}")
            ) from exc
        if not isinstance(body, dict):
            raise ArvadosAPIError(response.status_code, method, path, "answer is not a JSON object")
        return body

    def _status_error(
        self, response: requests.Response, *, method: str, path: str, auth_call: bool
    ) -> ArvadosAPIError:
        """Return the typed error for a non-2xx answer. Pure apart from reading the body."""
        status = response.status_code
        text = self._error_text(response)
        if status == 401 or (status == 403 and auth_call):
            return ArvadosAuthError(
                status,
                method,
                path,
                self._scrub(f"Arvados API at {self.api_host} refused our token ({text}): {SYSTEM_ROOT_HINT}"),
            )
        cls: type[ArvadosAPIError]
        if status == 403:
            cls = ArvadosPermissionDenied
        elif status == 404:
            cls = ArvadosNotFound
        elif status == 422:
            cls = ArvadosConflict
        elif status == 429 or (status >= 500 and status != 501):
            cls = ArvadosUnavailable
        else:
            cls = ArvadosAPIError
        return cls(status, method, path, text)

    def _error_text(self, response: requests.Response) -> str:
        """Return the server's ``errors`` strings joined, or the reason phrase, trimmed."""
        text = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                text = "; ".join(str(e) for e in errors)
            elif isinstance(errors, str):
                text = errors
        if not text:
            text = response.reason or f"HTTP {response.status_code}"
        return self._scrub(text)

    # Why lock/unlock/update are not blindly retried (_Retry.NOT_SENT): once a request
    # may have reached the server, repeating it is not safe to reason about. A repeated
    # lock that had in fact succeeded answers 422 "cannot lock when Locked" (gotcha 9);
    # a repeated unlock answers 422 too. Instead we raise ArvadosUnavailable and let the
    # dispatcher's next poll heal it: a lock that did succeed shows up in the
    # ``locked_by_uuid = <our token>`` query and the container is adopted like any
    # orphan; a lost unlock or update leaves the container Locked/Running, so the
    # tracker sees it on a later update and tries again.
    def _transport_error(
        self, exc: requests.RequestException, *, method: str, path: str, retry: _Retry
    ) -> tuple[ArvadosAPIError, bool]:
        """Return the typed error for a transport failure and whether ``retry`` allows another try."""
        if isinstance(exc, requests.exceptions.SSLError):
            # A certificate problem does not fix itself: fail at once.
            return (
                ArvadosAPIError(
                    0,
                    method,
                    path,
                    self._scrub(
                        f"TLS handshake with {self.api_host} failed ({exc}): check the controller's "
                        "certificate, or set TLS.Insecure / ARVADOS_API_HOST_INSECURE for a test cluster"
                    ),
                ),
                False,
            )
        not_sent = _never_sent(exc)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            what = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            if not not_sent:
                what += " (the request may have reached the server)"
            error = ArvadosUnavailable(0, method, path, self._scrub(f"{self.api_host}: {what}: {exc}"))
            return error, retry is _Retry.IDEMPOTENT or not_sent
        # InvalidURL, TooManyRedirects, ...: a programming or configuration error.
        return ArvadosAPIError(0, method, path, self._scrub(f"{type(exc).__name__}: {exc}")), False


def _never_sent(exc: requests.RequestException) -> bool:
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
