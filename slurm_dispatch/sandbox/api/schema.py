"""Column types of the emulated tables, and the controller's serialisation.

Two views of one record exist:

* the *stored* record, as Rails holds it: ``None`` for NULL, timestamps as
  strings in the fixed 9-digit format (which sort correctly as text),
  serialised columns (``mounts``, ``runtime_constraints``...) as Python objects;
* the *controller* view, what a client receives: Rails' JSON decoded into the Go
  struct ``arvados.Container`` (sdk/go/arvados/container.go) and encoded again
  (lib/controller/router/response.go: mungeItemFields). ``controller_view`` is the
  ONE place that builds it: NULL strings become ``""``, a NULL ``exit_code`` becomes ``0``,
  unset ``*_at`` timestamps stay ``null``, nested structs get every key, a missing
  or null Go slice or map is ``null`` (``"partitions": null``), keys the Go struct
  does not have are dropped (``owner_uuid``, ``progress``, ``runtime_constraints.cuda``),
  ``runtime_token`` appears as ``""``, and map keys are sorted as Go sorts them.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slurm_dispatch.model import format_timestamp, parse_timestamp

# Go types, for controller_view. A str is a scalar kind; a tuple is (container kind, element type)
# or ("struct", ((key, type), ...)).
GoType = str | tuple[Any, ...]


class ColumnType(enum.Enum):
    """The database type of a column, which decides how filters treat it."""

    TEXT = "text"  # varchar/text: every text operator
    SERIALIZED = "serialized"  # a Hash/Array stored as text: text operators on its serialisation
    INTEGER = "integer"
    FLOAT = "float"  # double precision: not searchable at all in Rails
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    JSONB = "jsonb"  # subproperty, exists, contains


@dataclass(frozen=True)
class Column:
    """One column of an emulated table.

    Attributes:
        name: the column name.
        type: its database type.
        searchable: False for columns Rails removes from ``searchable_columns``.
        api: True when Rails returns it (``api_accessible``), so ``select`` accepts it.
    """

    name: str
    type: ColumnType
    searchable: bool = True
    api: bool = True


@dataclass(frozen=True)
class Table:
    """An emulated table: its columns, uuid infix, kind and Go output shape."""

    name: str
    kind: str
    infix: str
    columns: tuple[Column, ...]
    go_fields: tuple[tuple[str, GoType], ...]

    def column(self, name: str) -> Column | None:
        """Return the column called ``name``, or None. Pure."""
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def api_attributes(self) -> frozenset[str]:
        """The attribute names ``select`` accepts."""
        return frozenset(c.name for c in self.columns if c.api)



_GPU: GoType = (
    "struct",
    (
        ("stack", "string"),
        ("driver_version", "string"),
        ("hardware_target", ("slice", "string")),
        ("device_count", "int"),
        ("vram", "int"),
    ),
)
_RUNTIME_CONSTRAINTS: GoType = (
    "struct",
    (
        ("API", "bool"),
        ("ram", "int"),
        ("vcpus", "int"),
        ("keep_cache_ram", "int"),
        ("keep_cache_disk", "int"),
        ("gpu", _GPU),
    ),
)
_SCHEDULING_PARAMETERS: GoType = (
    "struct",
    (
        ("partitions", ("slice", "string")),
        ("preemptible", "bool"),
        ("max_run_time", "int"),
        ("supervisor", "bool"),
    ),
)
_MOUNT: GoType = (
    "struct",
    (
        ("kind", "string"),
        ("writable", "bool"),
        ("portable_data_hash", "string"),
        ("uuid", "string"),
        ("device_type", "string"),
        ("path", "string"),
        ("content", "any"),
        ("exclude_from_output", "bool"),
        ("capacity", "int"),
    ),
)
_PUBLISHED_PORT: GoType = (
    "struct",
    (
        ("access", "string"),
        ("label", "string"),
        ("initial_path", "string"),
        ("base_url", "string"),
        ("initial_url", "string"),
    ),
)

T = ColumnType
CONTAINERS = Table(
    name="containers",
    kind="arvados#container",
    infix="dz642",
    columns=(
        Column("uuid", T.TEXT),
        Column("owner_uuid", T.TEXT),
        Column("created_at", T.DATETIME),
        Column("modified_at", T.DATETIME),
        Column("modified_by_client_uuid", T.TEXT, api=False),
        Column("modified_by_user_uuid", T.TEXT),
        Column("state", T.TEXT),
        Column("started_at", T.DATETIME),
        Column("finished_at", T.DATETIME),
        Column("log", T.TEXT),
        Column("environment", T.SERIALIZED),
        Column("cwd", T.TEXT),
        Column("command", T.SERIALIZED),
        Column("output_path", T.TEXT),
        Column("mounts", T.SERIALIZED),
        Column("runtime_constraints", T.SERIALIZED),
        Column("output", T.TEXT),
        Column("container_image", T.TEXT),
        Column("progress", T.FLOAT),
        Column("priority", T.INTEGER),
        Column("exit_code", T.INTEGER),
        Column("auth_uuid", T.TEXT),
        Column("locked_by_uuid", T.TEXT),
        Column("scheduling_parameters", T.SERIALIZED),
        Column("secret_mounts", T.JSONB, api=False),
        Column("secret_mounts_md5", T.TEXT, searchable=False, api=False),
        Column("runtime_status", T.JSONB),
        Column("runtime_user_uuid", T.TEXT),
        Column("runtime_auth_scopes", T.JSONB),
        Column("runtime_token", T.TEXT, searchable=False, api=False),
        Column("lock_count", T.INTEGER),
        Column("gateway_address", T.TEXT, searchable=False),
        Column("interactive_session_started", T.BOOLEAN),
        Column("output_storage_classes", T.JSONB, searchable=False),
        Column("output_properties", T.JSONB),
        Column("cost", T.FLOAT),
        Column("subrequests_cost", T.FLOAT),
        Column("output_glob", T.SERIALIZED),
        Column("service", T.BOOLEAN),
        Column("published_ports", T.JSONB),
    ),
    # Field order of sdk/go/arvados/container.go: Container.
    go_fields=(
        ("uuid", "string"),
        ("etag", "string"),
        ("created_at", "time"),
        ("modified_by_user_uuid", "string"),
        ("modified_at", "time"),
        ("command", ("slice", "string")),
        ("container_image", "string"),
        ("cwd", "string"),
        ("environment", ("map", "string")),
        ("locked_by_uuid", "string"),
        ("lock_count", "int"),
        ("mounts", ("map", _MOUNT)),
        ("output", "string"),
        ("output_path", "string"),
        ("output_glob", ("slice", "string")),
        ("priority", "int"),
        ("runtime_constraints", _RUNTIME_CONSTRAINTS),
        ("state", "string"),
        ("scheduling_parameters", _SCHEDULING_PARAMETERS),
        ("exit_code", "int"),
        ("runtime_status", ("map", "any")),
        ("started_at", "time"),
        ("finished_at", "time"),
        ("gateway_address", "string"),
        ("interactive_session_started", "bool"),
        ("output_storage_classes", ("slice", "string")),
        ("runtime_user_uuid", "string"),
        ("runtime_auth_scopes", ("slice", "string")),
        ("runtime_token", "string"),
        ("auth_uuid", "string"),
        ("log", "string"),
        ("cost", "float"),
        ("subrequests_cost", "float"),
        ("service", "bool"),
        ("published_ports", ("map", _PUBLISHED_PORT)),
    ),
)

LOGS = Table(
    name="logs",
    kind="arvados#log",
    infix="57u5n",
    columns=(
        Column("id", T.INTEGER),
        Column("uuid", T.TEXT),
        Column("owner_uuid", T.TEXT),
        Column("created_at", T.DATETIME),
        Column("modified_at", T.DATETIME),
        Column("modified_by_user_uuid", T.TEXT),
        Column("object_uuid", T.TEXT),
        Column("object_owner_uuid", T.TEXT),
        Column("event_type", T.TEXT),
        Column("event_at", T.DATETIME),
        Column("summary", T.TEXT),
        Column("properties", T.SERIALIZED),
    ),
    # sdk/go/arvados/log.go: Log. Its EventAt is tagged ``json:"event"``, so through the controller
    # ``event_at`` is lost and ``event`` is Go's zero time; there is no etag.
    go_fields=(
        ("id", "int"),
        ("uuid", "string"),
        ("owner_uuid", "string"),
        ("object_uuid", "string"),
        ("object_owner_uuid", "string"),
        ("event_type", "string"),
        ("event", "zerotime"),
        ("summary", "string"),
        ("properties", ("map", "any")),
        ("created_at", "time"),
        ("modified_at", "time"),
    ),
)

TOKENS = Table(
    name="api_client_authorizations",
    kind="arvados#apiClientAuthorization",
    infix="gj3su",
    columns=(
        Column("uuid", T.TEXT),
        Column("api_token", T.TEXT),
        Column("owner_uuid", T.TEXT),
        Column("created_at", T.DATETIME),
        Column("modified_at", T.DATETIME),
        Column("expires_at", T.DATETIME),
        Column("scopes", T.JSONB),
    ),
    # sdk/go/arvados/api_client_authorization.go: APIClientAuthorization.
    go_fields=(
        ("uuid", "string"),
        ("api_token", "string"),
        ("created_at", "time"),
        ("created_by_ip_address", "string"),
        ("etag", "string"),
        ("expires_at", "time"),
        ("last_used_at", "time"),
        ("last_used_by_ip_address", "string"),
        ("modified_at", "time"),
        ("modified_by_user_uuid", "string"),
        ("owner_uuid", "string"),
        ("scopes", ("slice", "string")),
    ),
)

KIND_INFIX: Mapping[str, str] = {
    "arvados#container": "dz642",
    "arvados#containerRequest": "xvhdp",
    "arvados#apiClientAuthorization": "gj3su",
    "arvados#log": "57u5n",
    "arvados#user": "tpzed",
    "arvados#collection": "4zz18",
    "arvados#group": "j7d0g",
    "arvados#link": "o0j2j",
    "arvados#workflow": "7fd4e",
}
"""``is_a`` operands the emulator knows (ArvadosModel::kind_class)."""


def now_timestamp(now: datetime) -> str:
    """Return ``now`` as a stored timestamp (the fixed 9-digit format). Pure."""
    return format_timestamp(now)


def etag(record: Mapping[str, Any]) -> str:
    """Return a base-36 digest of a stored record (Rails' etag is of the same shape). Pure."""
    digest = hashlib.md5(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    n = int(digest, 16)
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = chars[r] + out
    return out or "0"


def _go(value: Any, gotype: GoType) -> Any:
    """Return ``value`` decoded into a Go value of ``gotype`` and encoded again. Pure."""
    if isinstance(gotype, str):
        if gotype == "string":
            return "" if value is None else value if isinstance(value, str) else str(value)
        if gotype == "int":
            return 0 if value is None or value is False else int(value)
        if gotype == "float":
            if value is None:
                return 0
            f = float(value)
            return int(f) if f.is_integer() else f  # Go prints 2.0 as 2
        if gotype == "bool":
            return bool(value)
        if gotype == "time":
            if value is None or value == "":
                return None
            ts = parse_timestamp(value)
            return None if ts is None else format_timestamp(ts)
        if gotype == "zerotime":
            return "0001-01-01T00:00:00Z"  # a Go time.Time that was never set, under a key not ending in _at
        return value  # "any"
    kind, inner = gotype
    if kind == "slice":
        return None if not isinstance(value, list) else [_go(v, inner) for v in value]
    if kind == "map":
        if not isinstance(value, Mapping):
            return None
        return {str(k): _go(value[k], inner) for k in sorted(value)}
    # struct: every key filled, unknown keys dropped
    src = value if isinstance(value, Mapping) else {}
    return {key: _go(src.get(key), sub) for key, sub in inner}


READ_LIMITED_TYPES = frozenset({ColumnType.TEXT, ColumnType.SERIALIZED, ColumnType.JSONB})
"""The column types Rails counts against ``API.MaxIndexDatabaseRead``: all but the small ones (boolean, datetime,
float, integer), as services/api/app/models/arvados_model.rb: ``limit_index_columns_read`` picks them."""


def read_length(table: Table, record: Mapping[str, Any], select: list[str] | None) -> int:
    """Return the bytes Rails counts for one record against ``API.MaxIndexDatabaseRead``. Pure.

    ``octet_length(<column>::text)`` summed over the record's read-limited columns (those selected, or all the
    table's, hidden ones too, without ``select``), null counted as 0. A JSON column's text is written as
    PostgreSQL writes jsonb (``", "`` and ``": "``), a serialized one compactly; the key order does not change
    the length.
    """
    total = 0
    for col in table.columns:
        if col.type not in READ_LIMITED_TYPES or (select is not None and col.name not in select):
            continue
        value = record.get(col.name)
        if value is None:
            continue
        if isinstance(value, str):
            text = value
        elif col.type is ColumnType.JSONB:
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        total += len(text.encode())
    return total


def controller_view(
    table: Table, record: Mapping[str, Any], select: list[str] | None = None
) -> dict[str, Any]:
    """Return the record as the Arvados controller would send it. Pure.

    ``select`` (already validated) keeps only those keys, plus ``kind`` and ``etag``,
    as ``applySelectParam`` does.
    """
    out: dict[str, Any] = {"kind": table.kind}
    for key, gotype in table.go_fields:
        out[key] = etag(record) if key == "etag" else _go(record.get(key), gotype)
    if select:
        keep = set(select) | {"kind", "etag"}
        out = {k: v for k, v in out.items() if k in keep}
    return out
