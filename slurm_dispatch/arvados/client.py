"""ArvadosClient: the typed, blocking client of the Arvados REST API (``arvados/v1``), one method per call.

Every method does one HTTP call (``list_all`` does several), blocks until it has an answer, and either
returns plain values (dicts, ``Container``, ``ListPage``) or raises a typed error from
``slurm_dispatch.errors``. How a request travels (headers, timeouts, retries, which HTTP status means which
error) is the transport's business: see ``transport.py`` and ``http_errors.py``. This module knows the API:
paths, parameters, and the shape of each answer.

Answers are checked where they enter: a list answer must hold an ``items`` list of objects, each with a
container uuid, and an ``items_available`` count; a record must be a container (``Container.from_api``).
Anything else is ``ArvadosMalformedAnswer`` for the whole call, which a caller treats as a failed call:
no information, never "the container is gone" (see ``list``).

Stopping: ``stop()`` (thread-safe, does not block) makes every call in progress raise
``ArvadosShuttingDown`` at once, whether it was waiting to retry or waiting for an answer, and every later
call raise it without sending anything. The service calls it when it receives SIGTERM, so that worker
threads stuck on an unreachable API do not hold the process past systemd's TimeoutStopSec.

Each method's docstring says how it is retried. ``create_log`` counts as non-idempotent: a repeated POST
would write the same dispatch log line twice, and the dispatcher ignores log errors anyway (as
sdk/go/dispatch/dispatch.go: start ignores the error of its ``logs`` Create), so it is better to drop a
line than to block a worker for the whole retry deadline.
"""

from __future__ import annotations

import builtins
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from slurm_dispatch.arvados.http_errors import SYSTEM_ROOT_HINT
from slurm_dispatch.arvados.transport import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    DEFAULT_REQUEST_DEADLINE_S,
    DEFAULT_RETRY_DEADLINE_S,
    ERROR_TEXT_LIMIT,
    MAX_BODY_BYTES,
    Pool,
    Retry,
    Transport,
)
from slurm_dispatch.arvados.wire import new_request_id, parse_api_host
from slurm_dispatch.errors import ArvadosMalformedAnswer
from slurm_dispatch.model import (
    ARVADOS_UUID_RE,
    CONTAINER_UUID_RE,
    INT64_MAX,
    Container,
    ContainerState,
    Filter,
)

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "DEFAULT_REQUEST_DEADLINE_S",
    "DEFAULT_RETRY_DEADLINE_S",
    "ERROR_TEXT_LIMIT",
    "MAX_BODY_BYTES",
    "SYSTEM_ROOT_HINT",
    "ArvadosClient",
    "Count",
    "Filter",
    "ListPage",
    "new_request_id",
    "parse_api_host",
]

Count = Literal["exact", "none"]
"""The ``count`` list parameter: ``exact`` fills ``items_available``, ``none`` omits it
(doc/api/methods.html.textile.liquid, the list method)."""


@dataclass(frozen=True)
class ListPage:
    """One page of a list call.

    Attributes:
        items: the records, as received.
        items_available: the total number of matching records, or None with ``count="none"``.
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    items_available: int | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "t", "y")


class ArvadosClient:
    """A blocking client of the Arvados API for a dispatcher (and the crunch-run stand-in).

    One instance may be shared by the threads of a small executor: it keeps no per-call
    state but its transport's connection pool.
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
        pool: Pool | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pool_size: int = 10,
        ca_bundle: str | None = None,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        """Prepare a client; does no I/O.

        Args:
            api_host: ``host[:port]`` (https), or a ``https://`` / ``http://`` URL.
            token: the API token (SystemRootToken for a dispatcher). Never logged.
            insecure: skip TLS certificate verification (``TLS.Insecure``).
            connect_timeout: seconds to establish a connection, per attempt.
            read_timeout: seconds to wait for each read of the answer, per attempt.
            retry_deadline: seconds one call may spend retrying, from its first attempt.
            pool: the connection pool to send through (tests pass a fake; by default the client's own urllib3
                pool). Only the client's own pool enforces ``request_deadline`` while a read is blocked and
                lets ``stop()`` abort a request in flight; with another, they are checked between chunks of
                the answer.
            sleep: how to wait between attempts (tests pass a fake); by default a wait that ``stop()`` ends.
            clock: monotonic seconds, for the retry deadline (tests pass a fake).
            rng: jitter source (tests pass a seeded one).
            pool_size: connections kept open to the API server (the client's own pool).
            ca_bundle: a CA certificate file or directory to verify the server with, the only one trusted. By
                default the system's CA certificates (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` name others) and
                /etc/arvados/ca-certificates.crt beside them when it exists and ``SSL_CERT_FILE`` is not set: what
                the Go dispatcher trusts (``transport.arvados_ca_file``).
            request_deadline: seconds one attempt may take in all, from connecting to the answer's last
                byte (real monotonic time, whatever ``clock`` is).
            max_body_bytes: the largest answer accepted (after decompression).

        Raises:
            ValueError: ``api_host`` is empty or not http(s), or ``token`` is empty or holds a character
                that cannot go in an HTTP header (a space, a newline, ...); the message never shows it.
        """
        self._transport = Transport(
            api_host=api_host,
            token=token,
            insecure=insecure,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry_deadline=retry_deadline,
            pool=pool,
            sleep=sleep,
            clock=clock,
            rng=rng,
            pool_size=pool_size,
            ca_bundle=ca_bundle,
            request_deadline=request_deadline,
            max_body_bytes=max_body_bytes,
        )
        self.base_url = self._transport.base_url
        self.api_host = self._transport.api_host

    @property
    def _verify(self) -> bool | str:
        """What the server's certificate is verified with (the transport's ``verify``)."""
        return self._transport.verify

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
        ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE``, when set, names the CA file to verify with; otherwise the
        client's default trust applies (see ``ca_bundle``).

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
        """Close the pooled connections. Blocks briefly. The client can still be used (it reconnects)."""
        self._transport.close()

    def stop(self) -> None:
        """Stop the client for good, for a process that is shutting down. Thread-safe; does not block.

        Every call in progress, in any thread, raises ``ArvadosShuttingDown`` at once: a call waiting to
        retry stops waiting, and a request in flight is aborted (its connection is shut down; a lock or
        update may or may not have reached the server, as after a timeout, and the next process's first
        poll finds out). Every later call raises ``ArvadosShuttingDown`` without sending anything.
        ``ArvadosShuttingDown`` is an ``ArvadosUnavailable``: callers that treat that as "no information"
        need no change. Idempotent.
        """
        self._transport.stop()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
        return self._transport.stopped

    # ------------------------------------------------------------------ API methods

    def current_token_uuid(self) -> str:
        """Return the UUID of our own token (``GET api_client_authorizations/current``).

        Blocks; retried as an idempotent call. The dispatcher matches ``locked_by_uuid``
        against this value.

        Raises:
            ArvadosAuthError: the token is refused (401 or 403 here).
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
            ArvadosMalformedAnswer: the answer has no uuid, or not an Arvados uuid.
        """
        rel = "api_client_authorizations/current"
        body = self._transport.call("GET", rel, retry=Retry.IDEMPOTENT, auth_call=True)
        uuid = body.get("uuid")
        if not isinstance(uuid, str) or not ARVADOS_UUID_RE.fullmatch(uuid):
            problem = "no token uuid in the answer" if not uuid else "uuid: not an Arvados uuid"
            raise self._malformed("GET", rel, problem)
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

        The page's shape is checked, and the whole page refused (``ArvadosMalformedAnswer``) unless:
        ``items`` is a list; every item is a JSON object whose ``uuid`` is a container uuid (when
        ``select`` leaves it out, only that the item is an object); ``items_available`` is an integer
        from 0 to 2**63-1, present when ``count="exact"``. A page failing this is no information at
        all: the caller must treat it as a failed query, never as "these containers are gone". The rest
        of each item is not checked here (a dispatcher reads 10,000 records a tick and parses only the
        changed ones): ``Container.from_api(item)`` raises ValueError for a bad field, and a caller skips
        that one item, knowing its uuid.

        Raises:
            ArvadosConflict: a bad filter, order, count or select (422).
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
            ArvadosMalformedAnswer: the answer is not a list page of container records (see above).
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
        body = self._transport.call("GET", "containers", params=params, retry=Retry.IDEMPOTENT)
        problem = _page_problem(body, count=count, uuids=select is None or "uuid" in select)
        if problem:
            raise self._malformed("GET", "containers", f"not a container list: {problem}")
        return ListPage(items=body["items"], items_available=body.get("items_available"))

    def list_all(
        self,
        *,
        filters: Sequence[Filter],
        order: Sequence[str] = ("priority desc",),
        batch_size: int = 1000,
        select: Sequence[str] | None = None,
        on_malformed: Callable[[str, str], None] | None = None,
    ) -> Iterator[builtins.list[Container]]:
        """Yield every container matching ``filters``, one page (a list) at a time.

        ``on_malformed``, when given, is called with the uuid and the problem of each record that is not a valid
        container (every item has a container uuid: the page is checked first), which is then left out of its
        page; without it such a record fails the listing, as below.

        Port of sdk/go/dispatch/dispatch.go: checkForUpdates' paging. First a
        ``count=exact&limit=0`` probe reads ``items_available``; then pages of
        ``batch_size`` with ``count=none``, ``offset += len(items)``, stopping on an empty
        page or once ``offset >= items_available``. Paging by the number of items received,
        not by ``batch_size``, matters: the server clamps ``limit`` to MaxItemsPerResponse and
        may return fewer rows once it has read MaxIndexDatabaseRead bytes
        (lib/config/config.default.yml, API section).

        Blocks for each page. An error raises in the middle of the iteration, so a caller
        can tell a failed query (exception, possibly after some pages) from an empty one
        (no pages); it must not treat a partial listing as complete.

        Raises:
            ArvadosAPIError: as ``list``; ``ArvadosMalformedAnswer`` also when a record is not a valid
                container.
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
            if on_malformed is None:
                yield [self._container(item, "GET", "containers") for item in page.items]
            else:
                good: builtins.list[Container] = []
                for item in page.items:
                    try:
                        good.append(Container.from_api(item))
                    except ValueError as exc:
                        on_malformed(str(item.get("uuid")), str(exc))
                yield good
            offset += len(page.items)

    def get(self, uuid: str) -> Container:
        """Return the container ``uuid`` (``GET containers/{uuid}``).

        Blocks; retried as an idempotent call.

        Raises:
            ArvadosNotFound: no such container, or not readable with this token.
            ArvadosUnavailable: the API stayed unreachable until the retry deadline.
            ArvadosMalformedAnswer: the answer is not a valid record of this container.
        """
        path = _container_path(uuid)
        answer = self._transport.call("GET", path, retry=Retry.IDEMPOTENT)
        return self._container(answer, "GET", path, uuid=uuid)

    def lock(self, uuid: str) -> dict[str, Any]:
        """Lock the container for our token (``POST containers/{uuid}/lock``); return the answer.

        The answer holds only ``uuid``, ``state``, ``priority``, ``auth_uuid`` and
        ``locked_by_uuid`` (the controller selects them: lib/controller/router/router.go, the
        ContainerLock route). Blocks. Retried only if the request never reached the server.

        Raises:
            ArvadosConflict: not Queued, priority 0, or a lost race (422). After a timeout
                this can also mean *we* hold it: the next poll adopts it (see ``Retry``).
            ArvadosUnavailable: no answer, or 5xx/429; the lock may or may not have happened.
        """
        return self._transport.call("POST", _container_path(uuid, "lock"), retry=Retry.NOT_SENT)

    def unlock(self, uuid: str) -> dict[str, Any]:
        """Unlock the container (``POST containers/{uuid}/unlock``); return the answer.

        The answer's ``state`` is ``Queued``, or ``Cancelled`` when MaxDispatchAttempts
        is reached (services/api/app/models/container.rb: unlock). Blocks. Retried only if
        the request never reached the server.

        Raises:
            ArvadosConflict: the container is not Locked (422).
            ArvadosPermissionDenied: another token holds the lock (403).
            ArvadosUnavailable: no answer, or 5xx/429; the tracker retries on a later update.
        """
        return self._transport.call("POST", _container_path(uuid, "unlock"), retry=Retry.NOT_SENT)

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
        return self._transport.call("PUT", _container_path(uuid), json_body=body, retry=Retry.NOT_SENT)

    def update_state(self, uuid: str, state: ContainerState | str) -> Container:
        """Set the container's state (``PUT containers/{uuid}`` with ``{"state": ...}``); return it.

        Port of sdk/go/dispatch/dispatch.go: UpdateState. Blocks; errors as ``update``.
        """
        value = state.value if isinstance(state, ContainerState) else str(state)
        return self._container(self.update(uuid, {"state": value}), "PUT", _container_path(uuid), uuid=uuid)

    def container_auth(self, uuid: str) -> dict[str, Any]:
        """Return the container's runtime token record (``GET containers/{uuid}/auth``).

        The answer holds ``uuid`` and ``api_token`` (a secret: never log it). Only the
        lock holder may read it. Blocks; retried as an idempotent call.

        Raises:
            ArvadosPermissionDenied: our token does not hold the lock (403).
            ArvadosNotFound: no such container.
        """
        return self._transport.call("GET", _container_path(uuid, "auth"), retry=Retry.IDEMPOTENT)

    def create_log(self, *, object_uuid: str, event_type: str, text: str) -> dict[str, Any]:
        """Write a log entry about ``object_uuid`` (``POST logs``); return the new record.

        Sends ``{"log": {"object_uuid", "event_type", "properties": {"text": text}}}``, as
        sdk/go/dispatch/dispatch.go: start does. Blocks. Retried only if the request never reached the server (a
        repeated POST would duplicate the entry).

        Raises:
            ArvadosAPIError: any refusal; the dispatcher logs and ignores it, as Go does.
        """
        body = {"log": {"object_uuid": object_uuid, "event_type": event_type, "properties": {"text": text}}}
        return self._transport.call("POST", "logs", json_body=body, retry=Retry.NOT_SENT)

    def _container(self, raw: Any, method: str, rel: str, *, uuid: str | None = None) -> Container:
        """Return the container of an answer (of container ``uuid``, when given). Pure.

        Raises:
            ArvadosMalformedAnswer: not a valid container record, or another container's.
        """
        try:
            container = Container.from_api(raw)
        except ValueError as exc:
            problem = f"not a valid container record: {exc}"
        else:
            if uuid is None or container.uuid == uuid:
                return container
            problem = f"the answer is about container {container.uuid}, not {uuid}"
        raise self._malformed(method, rel, problem)

    def _malformed(self, method: str, rel: str, problem: str) -> ArvadosMalformedAnswer:
        text = f"{problem}; check the API server (or a proxy in front of it)"
        return ArvadosMalformedAnswer(200, method, self._transport.path(rel), text)


def _container_path(uuid: str, action: str = "") -> str:
    """Return ``containers/<uuid>[/<action>]``, the uuid percent-encoded: no value can change the path. Pure."""
    path = "containers/" + quote(uuid, safe="")
    return f"{path}/{action}" if action else path


def _page_problem(body: Mapping[str, Any], *, count: Count, uuids: bool) -> str:
    """Return what makes ``body`` not a page of container records ("" when it is one). Pure.

    Args:
        body: the decoded answer.
        count: the ``count`` asked for: with ``exact``, ``items_available`` must be there.
        uuids: every item must carry a container uuid (False when ``select`` left ``uuid`` out).
    """
    items = body.get("items")
    if not isinstance(items, list):
        return "no items list" if items is None else "items is not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"items[{i}] is not an object"
        if uuids:
            uuid = item.get("uuid")
            if not isinstance(uuid, str) or not CONTAINER_UUID_RE.fullmatch(uuid):
                return f"items[{i}].uuid is not a container uuid"
    available = body.get("items_available")
    if available is None:
        return "no items_available in a count=exact answer" if count == "exact" else ""
    if isinstance(available, bool) or not isinstance(available, int) or not 0 <= available <= INT64_MAX:
        return "items_available is not a count"
    return ""
