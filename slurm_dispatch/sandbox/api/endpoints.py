"""The emulated Arvados endpoints: authentication, routing and each handler.

``Api.handle`` takes a parsed request and returns ``(status, body)``; it knows no
HTTP. Handlers hold ``Store.lock`` around each read-modify-write, so concurrent
lock requests behave like Rails' row lock: one gets 200, the other 422.

Blocks on the store lock and does SQLite I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from slurm_dispatch.model import parse_timestamp
from slurm_dispatch.sandbox.api import filters as flt
from slurm_dispatch.sandbox.api import rules
from slurm_dispatch.sandbox.api.apierrors import ApiError, argument_error, permission_denied
from slurm_dispatch.sandbox.api.params import Request
from slurm_dispatch.sandbox.api.schema import (
    CONTAINERS,
    LOGS,
    TOKENS,
    Table,
    controller_view,
    now_timestamp,
    read_length,
)
from slurm_dispatch.sandbox.api.store import Store

DEFAULT_LIMIT = 100
UUID = r"[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/arvados/v1/api_client_authorizations/current"), "/arvados/v1/api_client_authorizations/current"),
    ("GET", re.compile(r"/arvados/v1/containers"), "/arvados/v1/containers"),
    ("GET", re.compile(r"/arvados/v1/containers/current"), "/arvados/v1/containers/current"),
    ("GET", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})"), "/arvados/v1/containers/{uuid}"),
    ("PUT", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})"), "/arvados/v1/containers/{uuid}"),
    ("POST", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})/lock"), "/arvados/v1/containers/{uuid}/lock"),
    ("POST", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})/unlock"), "/arvados/v1/containers/{uuid}/unlock"),
    ("GET", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})/auth"), "/arvados/v1/containers/{uuid}/auth"),
    ("GET", re.compile(rf"/arvados/v1/containers/(?P<uuid>{UUID})/secret_mounts"),
     "/arvados/v1/containers/{uuid}/secret_mounts"),
    ("GET", re.compile(r"/arvados/v1/logs"), "/arvados/v1/logs"),
    ("POST", re.compile(r"/arvados/v1/logs"), "/arvados/v1/logs"),
    ("GET", re.compile(rf"/arvados/v1/logs/(?P<uuid>{UUID})"), "/arvados/v1/logs/{uuid}"),
)
_LOCK_SELECT = ["uuid", "state", "priority", "auth_uuid", "locked_by_uuid"]


def route_of(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """Return ``("<METHOD> <pattern>", path params)`` for an API request, or None. Pure."""
    path = path.rstrip("/") or "/"
    for m, rx, pattern in ROUTES:
        match = rx.fullmatch(path)
        if match and m == method:
            return f"{m} {pattern}", match.groupdict()
    return None


def bearer_token(*, authorization: str | None, params: Mapping[str, Any]) -> str | None:
    """Return the token a request carries, from any accepted form. Pure.

    ``Authorization: Bearer|OAuth2 <token>``, Basic with the token as password, or
    the ``api_token``/``oauth_token`` parameter: the forms the controller reads
    (sdk/go/auth/auth.go: Credentials.LoadTokensFromHTTPRequest) and, for
    ``oauth_token``, Rails (services/api/app/middlewares/arvados_api_token.rb).
    """
    if authorization:
        scheme, _, rest = authorization.strip().partition(" ")
        rest = rest.strip()
        if scheme in ("Bearer", "OAuth2") and rest:  # spelled exactly so, as Go's and Rails's checks do
            return rest
        if scheme.lower() == "basic" and rest:
            import base64
            import binascii

            try:
                decoded = base64.b64decode(rest, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            _, _, password = decoded.partition(":")
            return password or None
    for key in ("api_token", "oauth_token"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


DEFAULT_MAX_INDEX_DATABASE_READ = 134_217_728
"""Arvados's default ``API.MaxIndexDatabaseRead`` (lib/config/config.default.yml)."""


class Api:
    """The emulated API over a Store.

    Args:
        store: the state.
        max_dispatch_attempts: ``Containers.MaxDispatchAttempts``.
        max_items_per_response: ``API.MaxItemsPerResponse``.
        max_index_database_read: ``API.MaxIndexDatabaseRead``: a list page ends once its records' text and JSON
            columns reach this many bytes (``schema.read_length``).
        clock: returns the current UTC time (injected for tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_dispatch_attempts: int = 10,
        max_items_per_response: int = 1000,
        max_index_database_read: int = DEFAULT_MAX_INDEX_DATABASE_READ,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.max_dispatch_attempts = max_dispatch_attempts
        self.max_items_per_response = max_items_per_response
        self.max_index_database_read = max_index_database_read
        self.clock = clock

    # authentication

    def authenticate(self, token: str | None) -> tuple[rules.Caller, dict[str, Any]] | None:
        """Return the caller and token record for a token string, or None when it is not valid."""
        if not token:
            return None
        parts = token.split("/")
        if parts[0] == "v2":
            if len(parts) not in (3, 4):
                return None
            tok = self.store.token(parts[1])
            if tok is None or tok["api_token"] != parts[2]:
                return None
        else:
            tok = self.store.token_by_secret(token)
            if tok is None:
                return None
        expires = parse_timestamp(tok.get("expires_at"))
        if expires is not None and expires <= self.clock():
            return None
        caller = rules.Caller(token_uuid=tok["uuid"], token_secret=tok["api_token"], user_uuid=tok["owner_uuid"],
                              admin=bool(tok.get("admin")))
        tok["_container_uuid"] = parts[3] if parts[0] == "v2" and len(parts) == 4 else None
        return caller, tok

    @staticmethod
    def _scope_allows(scopes: list[str], method: str, path: str) -> bool:
        # api_client_authorization.rb scopes_allow_request?: any token may read itself.
        if "all" in scopes or (method == "GET" and path.rstrip("/") == "/arvados/v1/api_client_authorizations/current"):
            return True
        for scope in scopes:
            verb, _, prefix = scope.partition(" ")
            if verb.upper() == method and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
                return True
        return False

    # dispatch

    def handle(self, req: Request, *, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """Return ``(status, body)`` for an API request. Does store I/O.

        Raises:
            ApiError: for every refusal (the caller renders it).
        """
        found = route_of(req.method, req.path)
        if found is None:
            raise ApiError(404, "Path not found")
        pattern, args = found
        auth = self.authenticate(bearer_token(authorization=authorization, params=req.params))
        if auth is None:
            raise ApiError(401, "Not logged in")
        caller, tok = auth
        if not self._scope_allows(list(tok.get("scopes") or []), req.method, req.path):
            raise ApiError(403, "Forbidden")  # application_controller.rb require_auth_scope
        handler = {
            "GET /arvados/v1/api_client_authorizations/current": self._current_token,
            "GET /arvados/v1/containers": self._list_containers,
            "GET /arvados/v1/containers/current": self._current_container,
            "GET /arvados/v1/containers/{uuid}": self._get_container,
            "PUT /arvados/v1/containers/{uuid}": self._update_container,
            "POST /arvados/v1/containers/{uuid}/lock": self._lock,
            "POST /arvados/v1/containers/{uuid}/unlock": self._unlock,
            "GET /arvados/v1/containers/{uuid}/auth": self._auth,
            "GET /arvados/v1/containers/{uuid}/secret_mounts": self._secret_mounts,
            "GET /arvados/v1/logs": self._list_logs,
            "POST /arvados/v1/logs": self._create_log,
            "GET /arvados/v1/logs/{uuid}": self._get_log,
        }[pattern]
        return handler(req, caller, tok, args.get("uuid", ""))

    # helpers

    def _select(self, table: Table, req: Request) -> list[str] | None:
        sel = req.params.get("select")
        if sel is None:
            return None
        if not isinstance(sel, list):  # load_param.rb: a bare or comma-separated name is not a JSON array
            raise argument_error('Could not parse "select" param as an array')
        model = "Container" if table is CONTAINERS else "Log"
        for attr in sel:
            if attr in ("kind", "etag", "href"):
                continue
            if not isinstance(attr, str) or attr not in table.api_attributes:
                raise argument_error(f"Invalid attribute '{attr}' of {model} in select parameter")
        return [str(a) for a in sel]

    def _readable(self, caller: rules.Caller, rec: Mapping[str, Any]) -> bool:
        # Non-admins read only containers reached through a readable request; the only
        # such containers the emulator knows are a container token's own.
        return caller.admin or rec.get("auth_uuid") == caller.token_uuid

    def _find(self, caller: rules.Caller, uuid: str) -> dict[str, Any]:
        rec = self.store.container(uuid)
        if rec is None or not self._readable(caller, rec):
            raise ApiError(404, "Path not found")
        return rec

    def _for_token(self, caller: rules.Caller, tok: Mapping[str, Any]) -> dict[str, Any] | None:
        """Container.for_current_token."""
        ctr_uuid = tok.get("_container_uuid")
        for rec in self.store.containers():
            if rec.get("auth_uuid") == caller.token_uuid:
                return dict(rec)
            if ctr_uuid and rec.get("uuid") == ctr_uuid and rec.get("runtime_token") == caller.token_secret:
                return dict(rec)
        return None

    def _token_view(self, tok: Mapping[str, Any]) -> dict[str, Any]:
        return controller_view(TOKENS, tok)

    def _save(self, outcome: rules.Outcome) -> dict[str, Any]:
        now = self.clock()
        rec = outcome.record
        if outcome.expire_auth:
            self.store.expire_token(outcome.expire_auth, now=now)
        if outcome.new_auth:
            runtime_user = rec.get("runtime_user_uuid") or self.store.system_user_uuid
            tok = self.store.new_token(owner_uuid=runtime_user, admin=runtime_user == self.store.system_user_uuid,
                                       scopes=list(rec.get("runtime_auth_scopes") or ["all"]), now=now)
            rec["auth_uuid"] = tok["uuid"]
        self.store.put_container(rec)
        return rec

    def _list(self, table: Table, records: list[dict[str, Any]], req: Request) -> dict[str, Any]:
        p = req.params
        count = p.get("count")
        if count in (None, ""):
            count = "exact"
        if count not in ("exact", "none"):
            raise argument_error("count parameter must be 'exact' or 'none'")
        limit = self._nonneg(p.get("limit"), "limit", DEFAULT_LIMIT)
        limit = min(limit, self.max_items_per_response)
        offset = self._nonneg(p.get("offset"), "offset", 0)
        select = self._select(table, req)
        where = p.get("where")
        filters_param = p.get("filters")
        if isinstance(filters_param, str):
            raise argument_error(f"Invalid value for filters parameter: {filters_param!r}")
        pred = flt.compile_filters(table, filters_param)
        if isinstance(where, dict):
            for attr in where:
                if table.column(attr) is None:
                    raise argument_error(f"Invalid attribute '{attr}' in where")
            where_pred = flt.compile_filters(
                table, [[a, "in" if isinstance(v, list) else "=", v] for a, v in where.items()])
        else:
            where_pred = flt.compile_filters(table, [])
        order = flt.parse_order(table, p.get("order"))
        if select is not None:
            # load_param.rb: load_select_param drops the order terms (the defaults too) of columns not selected
            order = [(attr, desc) for attr, desc in order if attr in select]
        matched = [r for r in records if pred(r) and where_pred(r)]
        ordered = flt.sort_records(table, matched, order)
        page = self._within_database_read(table, ordered[offset: offset + limit], limit, select)
        body: dict[str, Any] = {
            "kind": table.kind + "List",
            "items": [controller_view(table, r, select) for r in page],
            "items_available": len(matched),
            "offset": offset,
            "limit": limit,
        }
        if count == "none":
            del body["items_available"]
        return body

    def _within_database_read(
        self, table: Table, page: list[Mapping[str, Any]], limit: int, select: list[str] | None
    ) -> list[Mapping[str, Any]]:
        """Return the page cut as Rails cuts it at ``API.MaxIndexDatabaseRead`` bytes (application_controller.rb:
        ``limit_database_read``): not for a limit of 0 or 1; the record that reaches the cap is left out, unless
        it is the first: a page always holds at least one record."""
        if limit <= 1:
            return page
        total = 0
        for n, record in enumerate(page, 1):
            total += read_length(table, record, select)
            if total >= self.max_index_database_read:
                return page[: max(1, n - 1)]
        return page

    @staticmethod
    def _nonneg(value: Any, name: str, default: int) -> int:
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise argument_error(f"Invalid value for {name} parameter")
        if isinstance(value, int):
            if value < 0:
                raise argument_error(f"Invalid value for {name} parameter")
            return value
        if isinstance(value, str) and re.fullmatch(r"\d+", value):
            return int(value)
        raise argument_error(f"Invalid value for {name} parameter")

    # handlers

    def _current_token(self, req: Request, caller: rules.Caller, tok: dict[str, Any], _: str) -> tuple[int, dict[str, Any]]:
        return 200, self._token_view(tok)

    def _list_containers(self, req: Request, caller: rules.Caller, tok: dict[str, Any], _: str) -> tuple[int, dict[str, Any]]:
        with self.store.lock:
            records = [r for r in self.store.containers() if self._readable(caller, r)]
            return 200, self._list(CONTAINERS, records, req)

    def _current_container(self, req: Request, caller: rules.Caller, tok: dict[str, Any], _: str) -> tuple[int, dict[str, Any]]:
        rec = self._for_token(caller, tok)
        if rec is None:
            raise ApiError(404, "Token is not associated with a container.")
        return 200, controller_view(CONTAINERS, rec, self._select(CONTAINERS, req))

    def _get_container(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        select = self._select(CONTAINERS, req)
        return 200, controller_view(CONTAINERS, self._find(caller, uuid), select)

    def _update_container(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        select = self._select(CONTAINERS, req)
        attrs = req.resource("container")
        with self.store.lock:
            old = self._find(caller, uuid)
            outcome = rules.apply_update(old, attrs, caller=caller, now=self.clock(),
                                         max_dispatch_attempts=self.max_dispatch_attempts)
            rec = self._save(outcome)
        return 200, controller_view(CONTAINERS, rec, select)

    def _lock(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        with self.store.lock:
            old = self._find(caller, uuid)
            rec = self._save(rules.lock(old, caller=caller, now=self.clock(),
                                        max_dispatch_attempts=self.max_dispatch_attempts))
        return 200, controller_view(CONTAINERS, rec, _LOCK_SELECT)

    def _unlock(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        with self.store.lock:
            old = self._find(caller, uuid)
            rec = self._save(rules.unlock(old, caller=caller, now=self.clock(),
                                          max_dispatch_attempts=self.max_dispatch_attempts))
        return 200, controller_view(CONTAINERS, rec, _LOCK_SELECT)

    def _auth(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        rec = self._find(caller, uuid)
        if rec.get("locked_by_uuid") != caller.token_uuid:
            raise permission_denied("Not locked by your token")
        if rec.get("runtime_token") is not None:
            auth = self.store.token_by_secret(str(rec["runtime_token"]))
            if auth is None:
                raise permission_denied("Invalid runtime_token")
        else:
            auth = self.store.token(str(rec.get("auth_uuid")))
            if auth is None:
                raise ApiError(404, "Path not found")
        return 200, self._token_view(auth)

    def _secret_mounts(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        obj = self._find(caller, uuid)
        mine = self._for_token(caller, tok)
        if mine is None or mine.get("uuid") != obj.get("uuid"):
            raise ApiError(403, "Token is not associated with this container.")
        return 200, {"secret_mounts": obj.get("secret_mounts") or {}}

    def _list_logs(self, req: Request, caller: rules.Caller, tok: dict[str, Any], _: str) -> tuple[int, dict[str, Any]]:
        records = [r for r in self.store.logs() if caller.admin or r.get("owner_uuid") == caller.user_uuid]
        return 200, self._list(LOGS, records, req)

    def _get_log(self, req: Request, caller: rules.Caller, tok: dict[str, Any], uuid: str) -> tuple[int, dict[str, Any]]:
        for r in self.store.logs():
            if r.get("uuid") == uuid and (caller.admin or r.get("owner_uuid") == caller.user_uuid):
                return 200, controller_view(LOGS, r, self._select(LOGS, req))
        raise ApiError(404, "Path not found")

    def _create_log(self, req: Request, caller: rules.Caller, tok: dict[str, Any], _: str) -> tuple[int, dict[str, Any]]:
        attrs = rules.coerce_attrs(LOGS, req.resource("log"))
        attrs.pop("id", None)
        now = self.clock()
        stamp = now_timestamp(now)
        obj = self.store.container(str(attrs.get("object_uuid") or ""))
        rec: dict[str, Any] = {c.name: None for c in LOGS.columns}
        rec.update({
            "uuid": f"{self.store.cluster_id}-57u5n-{rules.random_tail()}",
            "owner_uuid": caller.user_uuid,
            "created_at": stamp,
            "modified_at": stamp,
            "modified_by_user_uuid": caller.user_uuid,
            "event_at": stamp,
            "properties": {},
        })
        rec.update({k: v for k, v in attrs.items() if v is not None or k in ("summary",)})
        rec["object_owner_uuid"] = obj.get("owner_uuid") if obj else None
        if not isinstance(rec.get("properties"), dict):
            raise ApiError(422, "Properties must be a hash")
        stored = self.store.add_log(rec)
        return 200, controller_view(LOGS, stored, self._select(LOGS, req))
