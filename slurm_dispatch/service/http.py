"""The health and metrics endpoint, on ``Services.DispatchSLURM.InternalURLs``.

``GET /_health/ping`` answers ``{"health":"OK"}`` or ``{"health":"ERROR","error":"..."}`` (status 200 either
way, as Arvados's sdk/go/health does), and ``GET /metrics`` the Prometheus text exposition of a registry. The
management API (``slurm_dispatch.service.management``: the queue with scheduling status, drain and resume) is
served on the same port.
Authentication is Arvados's: ``Authorization: Bearer <ManagementToken>``; no header → 401, a wrong one → 403,
compared in constant time. Everything else is 404.

One deliberate difference: with an empty ManagementToken both endpoints answer 404 ``disabled``. Go does this
for the health check only and serves /metrics to anyone (auth.RequireLiteralToken with an empty token is a
no-op); we do not expose an unauthenticated endpoint.

The server is the stdlib ``ThreadingHTTPServer`` in a daemon thread: a handful of requests a minute do not
deserve a place in the dispatch event loop, and a wedged loop must not stop the health check from answering
(it should answer ERROR). The health callback therefore runs in a server thread: it must only read state.

Which URL: like Go's lib/service getListenAddr, each InternalURL is tried in turn; one whose address this host
does not have (EADDRNOTAVAIL) is skipped, the first that binds is used. Only ``http`` is supported.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from slurm_dispatch.errors import ConfigError
from slurm_dispatch.service.management import ManagementAPI
from slurm_dispatch.settings import Settings

log = logging.getLogger(__name__)

URLS_KEY = "Services.DispatchSLURM.InternalURLs"
HEALTH_PATH = "/_health/ping"
METRICS_PATH = "/metrics"
MAX_CONNECTIONS = 32
"""Requests served at once; more are closed at once (each holds a thread until it is answered or times out)."""

MAX_CONNECTIONS_PER_CLIENT = 16
"""Requests served at once from one address, so that one client cannot take every place (half of them: local
monitoring, the health aggregator and a proxy may all come from one address, and a management call can take
seconds)."""

MAX_FORM_BYTES = 4096
"""The largest POST body read as a form (a drain reason is at most 500 characters)."""

REQUEST_TIMEOUT_S = 10.0
"""The longest a request may take in all, and any one read of it: the connection is cut then, so slow clients
cannot hold threads and places."""

SHUTDOWN_POLL_S = 0.05
"""How often the serving loop looks for a stop request: ``stop()`` returns within this."""

HealthCheck = Callable[[], str | None]
"""Returns None when healthy, else the error text; an exception counts as an error too. Runs in a server thread."""


def parse_internal_url(url: str) -> tuple[str, int]:
    """Return the ``(host, port)`` to listen on for one InternalURL such as ``http://127.0.0.1:9006/``. Pure.

    An empty host (``http://:9006/``) means every address. The port must be explicit (Go would take the scheme's
    default, 80: not a port a dispatcher should take by accident).

    Raises:
        ConfigError: not ``http``, no port, or a malformed URL; the message names the key and the URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"unusable URL {url!r}: {exc}", key=URLS_KEY) from exc
    if parts.scheme != "http":
        raise ConfigError(f"unusable URL {url!r}: only http:// is supported for the health endpoint", key=URLS_KEY)
    if port is None:
        raise ConfigError(f"unusable URL {url!r}: no port", key=URLS_KEY)
    return parts.hostname or "", port


class HealthServer:
    """Serves /_health/ping and /metrics from a daemon thread.

    Args:
        urls: the InternalURLs to try, in order.
        management_token: the Bearer token; empty disables both endpoints. Never logged.
        health: the health callback.
        registry: what /metrics exposes (``Metrics.registry``).
    """

    def __init__(
        self,
        *,
        urls: Sequence[str],
        management_token: str,
        health: HealthCheck,
        registry: CollectorRegistry,
        management: ManagementAPI | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("no InternalURL: cannot start the health/metrics endpoint", key=URLS_KEY)
        self._addresses = [parse_internal_url(u) for u in urls]  # validate them all now
        self._urls = list(urls)
        self.management_token = management_token
        self.health = health
        self.registry = registry
        self.management = management
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, health: HealthCheck, registry: CollectorRegistry,
        management: ManagementAPI | None = None,
    ) -> HealthServer:
        """Build one from ``Settings`` (dispatch_internal_urls, management_token). Does no I/O.

        Raises:
            ConfigError: no usable InternalURL.
        """
        return cls(urls=settings.dispatch_internal_urls, management_token=settings.management_token,
                   health=health, registry=registry, management=management)

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (the real port when the URL said 0). Only valid after ``start``."""
        if self._server is None:
            raise RuntimeError("HealthServer.address before start()")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind the first usable InternalURL and serve from a daemon thread. Binds a socket; returns at once.

        Raises:
            ConfigError: no InternalURL could be bound on this host (each attempt and its error in the message).
        """
        problems = []
        for url, (host, port) in zip(self._urls, self._addresses, strict=True):
            try:
                self._server = _bind(host, port, self)
                break
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue  # another host's URL
                problems.append(f"tried {url}: {exc.strerror or exc}")
        if self._server is None:
            detail = "; ".join(problems) or "no InternalURL names an address of this host"
            raise ConfigError(f"cannot start the health/metrics endpoint: {detail}", key=URLS_KEY)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, name="health-http", daemon=True
        )
        self._thread.start()
        log.info("health and metrics endpoint listening on %s:%d", *self.address)

    def stop(self) -> None:
        """Stop serving and close the socket. Blocks until the serving loop ends (within SHUTDOWN_POLL_S)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- request handling (server threads) -------------------------------------------------------------

    def respond(self, path: str, authorization: str | None, *, method: str = "GET",
                query: Mapping[str, list[str]] | None = None) -> tuple[int, str, bytes]:
        """Return ``(status, content type, body)`` for a request. Runs the health callback, a scrape, or a
        management request (which waits for the dispatch loop)."""
        if self.management is not None and self.management.handles(path):
            # lib/dispatchcloud: the whole management mux is behind RequireLiteralToken; with no token configured
            # every request is refused.
            if not self.management_token:
                return 403, "text/plain; charset=utf-8", b"Management API authentication is not configured\n"
            denied = self._denied(authorization)
            if denied is not None:
                return denied
            return self.management.respond(method, path, query or {})
        if path not in (HEALTH_PATH, METRICS_PATH) or method not in ("GET", "HEAD"):
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        if not self.management_token:
            return 404, "text/plain; charset=utf-8", b"disabled\n"
        denied = self._denied(authorization, exact=path == HEALTH_PATH)
        if denied is not None:
            return denied
        if path == METRICS_PATH:
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 200, "application/json", (json.dumps(self._health(), separators=(",", ":")) + "\n").encode()

    def _denied(self, authorization: str | None, *, exact: bool = False) -> tuple[int, str, bytes] | None:
        """401 without an Authorization header, 403 with a wrong token, None when it is the ManagementToken.

        With ``exact`` (the health check, as sdk/go/health/handler.go compares it), exactly ``Bearer <token>``.
        Otherwise (/metrics, the management API) also ``OAuth2 <token>`` and surrounding spaces, as Arvados's
        services take those (sdk/go/auth: the Authorization forms of CredentialsFromRequest); tokens in the query
        string or a cookie are not taken (they end up in logs and caches).
        """
        if not authorization:
            return 401, "text/plain; charset=utf-8", b"authorization required\n"
        given: str | None = None
        if exact:
            if authorization.startswith("Bearer "):
                given = authorization.removeprefix("Bearer ")
        else:
            scheme, _, rest = authorization.strip().partition(" ")
            if scheme in ("Bearer", "OAuth2"):
                given = rest.strip()
        expected = self.management_token.encode("utf-8", "surrogateescape")
        if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            return 403, "text/plain; charset=utf-8", b"authorization error\n"
        return None

    def _health(self) -> dict[str, str]:
        try:
            error = self.health()
        except Exception as exc:  # noqa: BLE001 - any failure of the check is what the endpoint reports
            error = str(exc) or type(exc).__name__
        return {"health": "OK"} if error is None else {"health": "ERROR", "error": error}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    app: HealthServer

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._mutex = threading.Lock()
        self._by_client: dict[str, int] = {}
        """Requests under way, by client address."""

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        """Serve at most MAX_CONNECTIONS requests at once, MAX_CONNECTIONS_PER_CLIENT from one address, each for at
        most REQUEST_TIMEOUT_S in all (a client that sends slowly holds a thread and a place until then)."""
        client = str(client_address[0])
        with self._mutex:
            full = (sum(self._by_client.values()) >= MAX_CONNECTIONS
                    or self._by_client.get(client, 0) >= MAX_CONNECTIONS_PER_CLIENT)
            if not full:
                self._by_client[client] = self._by_client.get(client, 0) + 1
        if full:
            log.debug("health endpoint: too many requests under way; closing a new connection from %s", client)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(client)
            raise

    def process_request_thread(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        sock = request if isinstance(request, socket.socket) else request[1]
        # the whole request, not each read: cut the connection at the deadline, whatever the client sends
        deadline = threading.Timer(REQUEST_TIMEOUT_S, _cut, args=(sock,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._done(str(client_address[0]))

    def _done(self, client: str) -> None:
        with self._mutex:
            left = self._by_client.get(client, 1) - 1
            if left > 0:
                self._by_client[client] = left
            else:
                self._by_client.pop(client, None)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (``getfqdn``), which can block the event loop
        that starts the server for as long as a slow resolver takes."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """One log line, through the service's logging (and its redaction), instead of a traceback on stderr; at
        DEBUG for a client that went away or was cut at the deadline (anyone can cause those)."""
        exc = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(exc, OSError) else logging.WARNING  # resets and timeouts are OSErrors
        log.log(level, "health endpoint: a request from %s failed: %s: %s", client_address, type(exc).__name__, exc)


def _cut(sock: socket.socket) -> None:
    """End a connection that outlived its deadline (the handler's next read or write then fails)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "slurm-dispatch"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET", head=False)

    def do_HEAD(self) -> None:
        self._serve("HEAD", head=True)

    def do_POST(self) -> None:
        self._serve("POST", head=False)

    def _not_found(self) -> None:
        self._send(404, "text/plain; charset=utf-8", b"404 page not found\n", head=False)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found  # everything else is 404

    def _serve(self, method: str, *, head: bool) -> None:
        try:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, max_num_fields=20)
        except ValueError:  # e.g. "http://[v2zzz/x]/": not a path this server has
            self._send(400, "text/plain; charset=utf-8", b"bad request path\n", head=False)
            return
        if method == "POST":  # a form body may carry the parameters too (reason=...); a few KB at most
            problem = self._form_problem()
            if problem is not None:
                self.close_connection = True  # the body was not read: it must not be taken for a next request
                self._send(400, "text/plain; charset=utf-8", problem.encode() + b"\n", head=False)
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                try:
                    form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"), max_num_fields=20)
                except ValueError:
                    self._send(400, "text/plain; charset=utf-8", b"too many form fields\n", head=False)
                    return
                for key, values in form.items():
                    query.setdefault(key, values)
        status, ctype, body = self.server.app.respond(parts.path, self.headers.get("Authorization"), method=method,
                                                      query=query)
        self._send(status, ctype, body, head=head)

    def _form_problem(self) -> str | None:
        """Return why a POST's body cannot be read as its parameters, or None. Pure (reads the headers only).

        A body is read only as a form (``application/x-www-form-urlencoded``) of at most ``MAX_FORM_BYTES``, with
        its Content-Length: anything else (JSON, chunked, larger) is refused rather than silently ignored, which
        would drain with the default reason instead of the one sent.
        """
        if self.headers.get("Transfer-Encoding"):
            return "send the body with a Content-Length, not chunked"
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return "bad Content-Length"
        if length < 0:
            return "bad Content-Length"
        if length == 0:
            return None
        if length > MAX_FORM_BYTES:
            return f"the body is larger than {MAX_FORM_BYTES} bytes"
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return ("send the parameters as a form (Content-Type: application/x-www-form-urlencoded, e.g. curl -d "
                    "reason=...) or in the query string")
        return None

    def _send(self, status: int, ctype: str, body: bytes, *, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: no query string (someone may try ?api_token=...), never headers.
        # (a request line too bad to parse has no path nor command)
        path = str(getattr(self, "path", "")).split("?", 1)[0]  # not urlsplit: it raises on some paths
        log.debug("%s %s %s from %s", getattr(self, "command", "-"), path, code, self.client_address[0])

    def log_message(self, format: str, *args: object) -> None:
        # http.server passes the raw request line here on a bad request; it may carry ?api_token=...
        log.debug("health endpoint: %s", (format % args).split("?", 1)[0])


def _bind(host: str, port: int, app: HealthServer) -> _Server:
    """Create a listening server on the first address ``host`` resolves to. Binds a socket.

    Raises:
        OSError: could not resolve or bind (EADDRNOTAVAIL when the address is not this host's).
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    last: OSError | None = None
    for family, _, _, _, sockaddr in infos:
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            server: _Server = server_class(sockaddr[:2], _Handler)
        except OSError as exc:
            last = exc
            continue
        server.app = app
        return server
    raise last or OSError(errno.EADDRNOTAVAIL, f"no address for {host!r}")
