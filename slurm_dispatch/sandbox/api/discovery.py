"""The discovery document the emulator serves at ``GET /discovery/v1/apis/arvados/v1/rest``.

Arvados describes its API in a Google-style ``discovery#restDescription``
document, served without a token. The official Python SDK
(``arvados-python-client``, through ``googleapiclient.discovery.build``) fetches
it first and builds ``api.containers().list(...)`` and the rest from it, so an
emulator without it answers ``UnknownApiNameOrVersion``.

This document describes only what the emulator serves (see ``endpoints.ROUTES``;
``tests/contract/test_emulator_discovery.py`` checks every method resolves to a
route and every route has a method). Method names, ids, paths, HTTP methods and
response schema names are the ones Arvados's own document uses; list methods
declare only the parameters the emulator honours (``filters``, ``where``,
``order``, ``select``, ``limit``, ``offset``, ``count``), so the SDK refuses
``distinct=`` or ``cluster_id=`` instead of the emulator silently ignoring them.
Schema properties come from the emulated tables' API columns.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from slurm_dispatch.sandbox.api.schema import CONTAINERS, LOGS, TOKENS, Column, ColumnType, Table

DISCOVERY_PATH = "/discovery/v1/apis/arvados/v1/rest"
SERVICE_PATH = "arvados/v1/"
SCOPE_READ = "https://api.arvados.org/auth/arvados.readonly"
SCOPE_WRITE = "https://api.arvados.org/auth/arvados"

# Resource name -> (schema name, the table behind it).
_SCHEMAS: dict[str, tuple[str, Table]] = {
    "containers": ("Container", CONTAINERS),
    "logs": ("Log", LOGS),
    "api_client_authorizations": ("ApiClientAuthorization", TOKENS),
}
# Resource name -> the key a create/update body nests its attributes under.
_BODY_KEY = {"containers": "container", "logs": "log", "api_client_authorizations": "api_client_authorization"}


def _param(type_: str, description: str, *, location: str = "query", required: bool = False,
           default: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "description": description, "required": required, "location": location}
    if default is not None:
        out["default"] = default
    return out


def _uuid_param(schema: str, what: str) -> dict[str, Any]:
    return _param("string", f"The UUID of the {schema} {what}.", location="path", required=True)


def _select_param(what: str) -> dict[str, Any]:
    return _param("array", f"Names of the attributes to return {what}.")


def _list_params() -> dict[str, Any]:
    return {
        "filters": _param("array", "Conditions ([attribute, operator, operand]) matching objects must meet."),
        "where": _param("object", "Attribute -> value (or array of values) that matching objects must have."),
        "order": _param("array", "Sort terms, each \"<attribute> [asc|desc]\"."),
        "select": _select_param("for each object"),
        "limit": _param("integer", "The most objects to return (the server may cap it).", default="100"),
        "offset": _param("integer", "Index of the first matching object to return.", default="0"),
        "count": _param("string", "\"exact\" to include items_available, \"none\" to leave it out.",
                        default="exact"),
    }


def _method(*, resource: str, name: str, http_method: str, path: str, description: str,
            parameters: dict[str, Any], response: str, read_only: bool = False,
            body: bool = False) -> dict[str, Any]:
    schema, _ = _SCHEMAS[resource]
    method: dict[str, Any] = {
        "id": f"arvados.{resource}.{name}",
        "path": path,
        "httpMethod": http_method,
        "description": description,
        "parameters": parameters,
        "response": {"$ref": response},
        "scopes": [SCOPE_WRITE, SCOPE_READ] if read_only else [SCOPE_WRITE],
    }
    if "uuid" in parameters and parameters["uuid"]["location"] == "path":
        method["parameterOrder"] = ["uuid"]
    if body:
        method["request"] = {"required": True, "properties": {_BODY_KEY[resource]: {"$ref": schema}}}
    return method


def _crud(resource: str, *, names: tuple[str, ...]) -> dict[str, Any]:
    """Return the standard methods ``names`` (of get, list, create, update) of one resource."""
    schema, _ = _SCHEMAS[resource]
    all_methods = {
        "get": lambda: _method(
            resource=resource, name="get", http_method="GET", path=f"{resource}/{{uuid}}",
            description=f"Get a {schema} record by UUID.",
            parameters={"uuid": _uuid_param(schema, "to return"), "select": _select_param("in the response")},
            response=schema, read_only=True),
        "list": lambda: _method(
            resource=resource, name="list", http_method="GET", path=resource,
            description=f"Retrieve a {schema}List.", parameters=_list_params(),
            response=f"{schema}List", read_only=True),
        "create": lambda: _method(
            resource=resource, name="create", http_method="POST", path=resource,
            description=f"Create a new {schema}.",
            parameters={"select": _select_param("in the response")}, response=schema, body=True),
        "update": lambda: _method(
            resource=resource, name="update", http_method="PUT", path=f"{resource}/{{uuid}}",
            description=f"Update attributes of an existing {schema}.",
            parameters={"uuid": _uuid_param(schema, "to update"), "select": _select_param("in the response")},
            response=schema, body=True),
    }
    return {name: all_methods[name]() for name in names}


def _container_methods() -> dict[str, Any]:
    methods = _crud("containers", names=("get", "list", "update"))

    def on_uuid(name: str, http_method: str, description: str) -> dict[str, Any]:
        # Arvados's own document names Container as the response of auth and secret_mounts
        # too, although their bodies are a token and {"secret_mounts": ...}; kept as it is.
        return _method(resource="containers", name=name, http_method=http_method,
                       path=f"containers/{{uuid}}/{name}", description=description,
                       parameters={"uuid": _uuid_param("Container", "to act on")}, response="Container")

    methods["lock"] = on_uuid("lock", "POST", "Lock a Queued container, for a dispatcher about to run it.")
    methods["unlock"] = on_uuid("unlock", "POST", "Unlock a Locked container, back to Queued.")
    methods["auth"] = on_uuid("auth", "GET", "Return the token a Locked/Running container runs with "
                                             "(only to the token holding the lock).")
    methods["secret_mounts"] = on_uuid("secret_mounts", "GET", "Return the secret mounts of the container "
                                                               "whose token authorises this request.")
    methods["current"] = _method(resource="containers", name="current", http_method="GET",
                                 path="containers/current", parameters={}, response="Container",
                                 description="Return the container whose token authorises this request.")
    return methods


_PROPERTY_TYPE = {
    ColumnType.TEXT: "string",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "float",
    ColumnType.DATETIME: "datetime",
    ColumnType.BOOLEAN: "boolean",
}


def _property_type(table: Table, col: Column) -> str:
    simple = _PROPERTY_TYPE.get(col.type)
    if simple is not None:
        return simple
    # Serialised and jsonb columns: an Array when the Go struct holds a slice, else a Hash.
    gotype = dict(table.go_fields).get(col.name)
    return "Array" if isinstance(gotype, tuple) and gotype[0] == "slice" else "Hash"


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for schema, table in _SCHEMAS.values():
        props: dict[str, Any] = {"etag": {"type": "string", "description": "Object cache version."}}
        for col in table.columns:
            if col.api and col.name != "id":
                props[col.name] = {"type": _property_type(table, col)}
        out[schema] = {"id": schema, "description": f"Arvados {table.kind.split('#', 1)[1]} (emulated).",
                       "type": "object", "uuidPrefix": table.infix, "properties": props}
        kind_list = table.kind + "List"
        out[f"{schema}List"] = {
            "id": f"{schema}List",
            "description": f"A list of {schema} objects.",
            "type": "object",
            "properties": {
                "kind": {"type": "string", "default": kind_list, "description": f"Always {kind_list}."},
                "etag": {"type": "string", "description": "List cache version."},
                "items": {"type": "array", "items": {"$ref": schema}, "description": f"Matching {schema}s."},
                "items_available": {"type": "integer", "description": "Matching objects (count=exact)."},
                "offset": {"type": "integer", "description": "Index of the first item."},
                "limit": {"type": "integer", "description": "The limit applied."},
            },
        }
    return out


def discovery_document(root_url: str, *, cluster_id: str) -> dict[str, Any]:
    """Return the discovery document for the emulated subset, rooted at ``root_url``. Pure.

    Args:
        root_url: the emulator's base URL as clients reach it; a trailing ``/`` is added if
            missing. Clients call ``root_url + "arvados/v1/" + method path``.
        cluster_id: the five-character cluster prefix, published as ``uuidPrefix``.
    """
    root = root_url if root_url.endswith("/") else root_url + "/"
    resources: dict[str, Any] = {
        "containers": {"methods": _container_methods()},
        "logs": {"methods": _crud("logs", names=("get", "list", "create"))},
        "api_client_authorizations": {"methods": {
            "current": _method(resource="api_client_authorizations", name="current", http_method="GET",
                               path="api_client_authorizations/current", parameters={},
                               response="ApiClientAuthorization",
                               description="Return the token that authorises this request."),
        }},
    }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "arvados:v1",
        "name": "arvados",
        "version": "v1",
        "revision": "sandbox",
        "title": "Arvados API (slurm-dispatch sandbox emulator)",
        "description": "The subset of the Arvados API that dispatchers and crunch-run use.",
        "protocol": "rest",
        "rootUrl": root,
        "servicePath": SERVICE_PATH,
        "basePath": "/" + SERVICE_PATH,
        "batchPath": "batch",
        "uuidPrefix": cluster_id,
        "maxRequestSize": 134217728,  # API.MaxRequestSize default, 128 MiB; the SDK refuses larger bodies
        "auth": {"oauth2": {"scopes": {SCOPE_WRITE: {"description": "View and manage objects"},
                                       SCOPE_READ: {"description": "View objects"}}}},
        "parameters": {
            "alt": {"type": "string", "description": "Response format (only json).", "default": "json",
                    "enum": ["json"], "location": "query"},
            "oauth_token": {"type": "string", "description": "The API token, as a parameter.",
                            "location": "query"},
        },
        "resources": resources,
        "schemas": _schemas(),
    }
