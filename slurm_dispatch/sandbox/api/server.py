"""The emulator's HTTP(S) server: ``EmulatorServer`` and the ``/_sandbox/`` control endpoints.

Standard library ``ThreadingHTTPServer``; the TLS handshake happens in each
request's thread, so a stuck client cannot block the listener. API paths go
through request counting and fault injection, then ``Api.handle``. Control paths
(``/_sandbox/...``) are refused with 403 unless the peer is a loopback address,
and faults never apply to them.

Control endpoints (JSON bodies; see docs/sandbox-api.md):

* ``POST /_sandbox/containers``: create a container from the given fields.
* ``POST /_sandbox/containers/{uuid}/priority`` ``{"priority": N}``.
* ``POST /_sandbox/faults`` (add a rule), ``GET`` (list), ``DELETE`` (clear).
* ``GET /_sandbox/stats``, ``POST /_sandbox/stats/reset``.
* ``POST /_sandbox/tokens`` ``{"admin": true}``: another token.
* ``GET /_sandbox/logs?object_uuid=...``: stored logs.

``GET /discovery/v1/apis/arvados/v1/rest`` (the discovery document, see
``discovery.py``) needs no token, as in Arvados; it is counted but never faulted.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from slurm_dispatch.sandbox.api import rules
from slurm_dispatch.sandbox.api.apierrors import ApiError
from slurm_dispatch.sandbox.api.discovery import DISCOVERY_PATH, discovery_document
from slurm_dispatch.sandbox.api.endpoints import DEFAULT_MAX_INDEX_DATABASE_READ, Api, route_of
from slurm_dispatch.sandbox.api.faults import Faults
from slurm_dispatch.sandbox.api.params import parse_request
from slurm_dispatch.sandbox.api.schema import CONTAINERS, LOGS, controller_view, now_timestamp
from slurm_dispatch.sandbox.api.store import Store
from slurm_dispatch.sandbox.api.tls import self_signed_context

CONTROL_PREFIX = "/_sandbox/"
_HOST_HEADER = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.%\w]+\](:\d+)?")
RUNTIME_USER_SUFFIX = "tpzed-xurymjxw79nv3jz"  # the "active user" fixture: runtime user of new containers


def error_body(messages: list[str]) -> dict[str, Any]:
    """Return Arvados's error body: ``errors`` and an ``error_token`` of ``<secs>+<8 hex>``. Reads the clock."""
    return {"errors": messages, "error_token": f"{int(time.time())}+{secrets.token_hex(4)}"}


def _is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive answers are small writes: with Nagle's algorithm each one waits ~40 ms for the client's
    # delayed ACK (1000 locks took 44 s instead of 1 s).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: request lines may carry api_token=

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        # The controller re-encodes every response from a Go map, so keys come out sorted.
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _root_url(self) -> str:
        # The URL the client used (its Host header), so a server listening on 0.0.0.0 still
        # publishes a reachable rootUrl; the bound address when the header is absent or odd.
        emu = self.server.emulator
        host = self.headers.get("Host") or ""
        if not _HOST_HEADER.fullmatch(host):
            return emu.base_url + "/"
        return f"{'https' if emu.tls else 'http'}://{host}/"

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if url.path.startswith(CONTROL_PREFIX):
            if not _is_loopback(self.client_address[0]):
                self._send(403, error_body(["sandbox control endpoints answer loopback clients only"]))
                return
            try:
                status, out = emu.control(self.command, url.path, url.query, body)
            except ApiError as exc:
                status, out = exc.status, error_body(exc.messages)
            self._send(status, out)
            return
        if url.path.rstrip("/") == DISCOVERY_PATH and self.command == "GET":
            emu.count(f"GET {DISCOVERY_PATH}")
            self._send(200, discovery_document(self._root_url(), cluster_id=emu.cluster_id))
            return
        try:
            req = parse_request(method=self.command, path=url.path, query=url.query,
                                content_type=self.headers.get("Content-Type") or "", body=body,
                                override=self.headers.get("X-Http-Method-Override"))
        except ApiError as exc:
            self._send(exc.status, error_body(exc.messages))
            return
        found = route_of(req.method, req.path)
        emu.count(found[0] if found else f"{req.method} (unknown)")
        rule = emu.faults.take(req.method, req.path)
        if rule is not None:
            if rule.mode == "status":
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
                self._send(rule.status, error_body([f"sandbox fault injection: HTTP {rule.status}"]), headers)
                return
            if rule.mode == "drop":
                self._drop()
                return
            if rule.mode == "hang":
                emu.stopping.wait(rule.seconds)
        try:
            status, out = emu.api.handle(req, authorization=self.headers.get("Authorization"))
        except ApiError as exc:
            status, out = exc.status, error_body(exc.messages)
        if rule is not None and rule.mode == "drop_after":
            self._drop()
            return
        self._send(status, out)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: EmulatorServer
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request is not an emulator error


class EmulatorServer:
    """An emulated Arvados API server, serving HTTPS (or HTTP) on a background thread.

    Args:
        host: address to listen on.
        port: port, 0 for a free one.
        db_path: SQLite file that keeps the state across restarts (None: memory only).
        cluster_id: the cluster prefix of every uuid.
        root_token: the SystemRootToken secret (random when None, or the stored one).
        tls: serve HTTPS with a fresh self-signed certificate (else plain HTTP).
        max_dispatch_attempts: ``Containers.MaxDispatchAttempts``.
        max_items_per_response: ``API.MaxItemsPerResponse``.
        max_index_database_read: ``API.MaxIndexDatabaseRead`` (bytes of text and JSON a list page may read).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str | None = None,
        cluster_id: str = "zzzzz",
        root_token: str | None = None,
        tls: bool = True,
        max_dispatch_attempts: int = 10,
        max_items_per_response: int = 1000,
        max_index_database_read: int = DEFAULT_MAX_INDEX_DATABASE_READ,
    ):
        self.host = host
        self.port = port
        self.tls = tls
        self.cluster_id = cluster_id
        self.store = Store(db_path, cluster_id=cluster_id)
        self.api = Api(self.store, max_dispatch_attempts=max_dispatch_attempts,
                       max_items_per_response=max_items_per_response,
                       max_index_database_read=max_index_database_read)
        self.root_token = self.store.ensure_root_token(root_token, now=self.api.clock())
        self.faults = Faults()
        self.stopping = threading.Event()
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            httpd = _HTTPServer((self.host, self.port), _Handler)
            httpd.emulator = self
            if self.tls:
                httpd.ssl_context = self_signed_context(self.host)
            self.port = httpd.server_address[1]
            self._httpd = httpd
        return self._httpd

    def start(self) -> EmulatorServer:
        """Bind and serve on a background thread; return self. Does not block."""
        httpd = self._bind()
        self.stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"sandbox-api-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve on the calling thread until ``stop()``. Blocks."""
        self._bind().serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and close the listener and the database. Blocks until the server loop exits."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.store.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def api_host(self) -> str:
        """``host:port`` with no scheme (ARVADOS_API_HOST)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``https://host:port`` (or ``http://``)."""
        return f"{'https' if self.tls else 'http'}://{self.api_host}"

    # stats

    def count(self, key: str) -> None:
        """Count one API request under ``"<METHOD> <pattern>"``."""
        with self._stats_lock:
            self._stats[key] += 1

    def stats(self) -> dict[str, int]:
        """Return the request counters."""
        with self._stats_lock:
            return dict(self._stats)

    # direct (in-process) control, also used by the HTTP control endpoints

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def create_container(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a container as the API would (defaults, keep_cache_disk) and return its controller view.

        A container created Locked or Running is locked by the root token and gets a container token.

        Raises:
            ApiError: 422 for a field the API would refuse, 409 for an existing uuid.
        """
        now = self._now()
        rec = rules.new_container(fields, cluster_id=self.cluster_id, now=now,
                                  system_user_uuid=self.store.system_user_uuid,
                                  runtime_user_uuid=f"{self.cluster_id}-{RUNTIME_USER_SUFFIX}")
        with self.store.lock:
            if self.store.container(rec["uuid"]) is not None:
                raise ApiError(409, f"container {rec['uuid']} already exists")
            if rec["state"] in (rules.LOCKED, rules.RUNNING):
                rec["locked_by_uuid"] = rec.get("locked_by_uuid") or self.store.root_token_uuid
                if not rec.get("auth_uuid"):
                    tok = self.store.new_token(owner_uuid=str(rec["runtime_user_uuid"]), admin=False,
                                               scopes=list(rec["runtime_auth_scopes"] or ["all"]), now=now)
                    rec["auth_uuid"] = tok["uuid"]
                if rec["state"] == rules.RUNNING and rec.get("started_at") is None:
                    rec["started_at"] = now_timestamp(now)
            if rec["state"] in (rules.COMPLETE, rules.CANCELLED) and rec.get("finished_at") is None:
                rec["finished_at"] = now_timestamp(now)
            self.store.put_container(rec)
        return controller_view(CONTAINERS, rec)

    def set_priority(self, uuid: str, priority: Any) -> dict[str, Any]:
        """Set a container's priority as its requests would (any non-final state); return its view.

        Raises:
            ApiError: 404 unknown uuid, 422 final state or bad priority.
        """
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
            raise ApiError(422, "Priority must be a non-negative integer")
        with self.store.lock:
            rec = self.store.container(uuid)
            if rec is None:
                raise ApiError(404, "Path not found")
            if rec["state"] in (rules.COMPLETE, rules.CANCELLED):
                raise ApiError(422, f"Priority cannot be modified in state '{rec['state']}' "
                                    f"({rec['priority']}, {priority})")
            if rec["priority"] != priority:
                rec["priority"] = priority
                rec["modified_at"] = now_timestamp(self._now())
                self.store.put_container(rec)
        return controller_view(CONTAINERS, rec)

    def new_token(self, *, admin: bool = True) -> dict[str, Any]:
        """Create another token (another dispatcher's, or a plain user's); return uuid and api_token."""
        n = rules.random_tail()
        owner = f"{self.cluster_id}-tpzed-{n}"
        tok = self.store.new_token(owner_uuid=owner, admin=admin, scopes=["all"], now=self._now())
        return {"uuid": tok["uuid"], "api_token": tok["api_token"], "owner_uuid": owner, "admin": admin}

    def control(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        """Return ``(status, body)`` for a ``/_sandbox/`` request.

        Raises:
            ApiError: for a refused control request.
        """
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            raise ApiError(400, "control request body is not JSON") from None
        parts = path.rstrip("/").split("/")[2:]
        if method == "POST" and parts == ["containers"]:
            if not isinstance(data, dict):
                raise ApiError(400, "container fields must be a JSON object")
            return 200, self.create_container(data)
        if method == "POST" and len(parts) == 3 and parts[0] == "containers" and parts[2] == "priority":
            return 200, self.set_priority(parts[1], data.get("priority"))
        if parts == ["faults"]:
            if method == "POST":
                return 200, self.faults.add(data).public()
            if method == "DELETE":
                self.faults.clear()
                return 200, {"rules": []}
            if method == "GET":
                return 200, {"rules": self.faults.rules()}
        if parts == ["stats"] and method == "GET":
            return 200, self.stats()
        if parts == ["stats", "reset"] and method == "POST":
            with self._stats_lock:
                self._stats.clear()
            return 200, {}
        if parts == ["tokens"] and method == "POST":
            return 200, self.new_token(admin=bool(data.get("admin", True)))
        if parts == ["logs"] and method == "GET":
            want = dict(parse_qsl(query)).get("object_uuid")
            items = [controller_view(LOGS, r) | {"event_at": r.get("event_at")}
                     for r in self.store.logs() if want is None or r.get("object_uuid") == want]
            return 200, {"items": items}
        raise ApiError(404, f"no sandbox control endpoint {method} {path}")
