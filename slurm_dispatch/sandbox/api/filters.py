"""List filters and orders, with the semantics of Rails' ``record_filters.rb``.

``compile_filters`` validates a ``filters`` parameter exactly as Rails does (same
422 messages) and returns a predicate over stored records that reproduces the SQL
Rails generates, NULLs included (services/api/lib/record_filters.rb: record_filters):

* ``!=`` is ``col <> v OR col IS NULL``; ``= null`` is ``IS NULL``;
* ``in []`` matches nothing; ``not in`` is ``(col NOT IN (...) OR col IS NULL)``, so
  ``not in []`` matches only NULLs and a list holding null matches nothing;
* a string operand against an integer column is cast by the database
  (``["priority",">","0"]``), against a timestamp column it is parsed as a time;
* ``like``/``ilike``/``is_a``/``contains``/``exists`` are text-or-jsonb operators,
  so on an integer column they fail with ``Invalid attribute``;
* subproperty filters (``runtime_status.error``) follow the jsonb SQL, including
  its quirks: ``!=`` is ``NOT (col @> {k: v})`` and subproperty ``in []`` adds no
  condition at all.

Evaluation is in Python over the records, which keeps the NULL logic explicit.
Pure module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cmp_to_key
from typing import Any

from slurm_dispatch.model import parse_timestamp
from slurm_dispatch.sandbox.api import jsonb
from slurm_dispatch.sandbox.api.apierrors import ApiError, argument_error, ruby_class, ruby_exc
from slurm_dispatch.sandbox.api.schema import KIND_INFIX, Column, ColumnType, Table, now_timestamp

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

_T = ColumnType
_TEXTY = (_T.TEXT, _T.SERIALIZED)
_EXPR_RE = re.compile(r"^ *\( *(\w+) *(<=?|>=?|=) *(\w+) *\) *$")
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_INT64 = 1 << 63


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def searchable(table: Table, operator: str) -> list[str]:
    """Return the columns Rails allows with ``operator`` (``searchable_columns``). Pure.

    Text columns take every operator; integer, timestamp and boolean columns only
    operators containing ``<``, ``=`` or ``>``, and ``in``/``not in``.
    """
    textonly = not re.search(r"[<=>]", operator) and operator not in ("in", "not in")
    out = []
    for col in table.columns:
        if not col.searchable:
            continue
        if col.type in _TEXTY or (col.type in (_T.DATETIME, _T.INTEGER, _T.BOOLEAN) and not textonly):
            out.append(col.name)
    return out


def column_value(col: Column, record: Record) -> Any:
    """Return the SQL value of ``col`` in a stored record (serialised columns as JSON text). Pure."""
    v = record.get(col.name)
    if col.type is _T.SERIALIZED and v is not None:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return v


def like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """Return a regex equivalent to an SQL LIKE pattern (``%``, ``_``, backslash escape). Pure."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _time_operand(text: str) -> str:
    try:
        ts = parse_timestamp(text)
    except ValueError:
        m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})\s*", text)
        if not m:
            raise argument_error(f'no time information in "{text}"') from None
        ts = parse_timestamp(m.group(1) + "T00:00:00Z")
    if ts is None:
        raise argument_error(f'no time information in "{text}"')
    return now_timestamp(ts)


def _cast_string(col: Column, text: str) -> Any:
    """Cast a string operand the way PostgreSQL casts a quoted literal to the column's type."""
    if col.type is _T.INTEGER:
        if not _INT_RE.match(text) or abs(int(text)) >= _INT64:
            raise ApiError(
                422,
                ruby_exc(
                    "ActiveRecord::StatementInvalid",
                    f'PG::InvalidTextRepresentation: ERROR:  invalid input syntax for type bigint: "{text}"',
                ),
            )
        return int(text)
    if col.type is _T.DATETIME:
        return _time_operand(text)
    return text


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "<>":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _plain(table: Table, attr: str, operator: str, operand: Any) -> Predicate:
    """Return the predicate of a filter on a plain column (not subproperty/exists/expression)."""
    col = table.column(attr)
    if attr not in searchable(table, operator) and not (
        col is not None and col.type is _T.JSONB and operator in ("contains", "=", "<>", "!=")
    ):
        raise argument_error(f"Invalid attribute '{attr}' in filter")
    assert col is not None
    name = col.name

    if operator in ("=", "<", "<=", ">", ">=", "!=", "like", "ilike"):
        op = "<>" if operator == "!=" else operator
        if isinstance(operand, str):
            if col.type is _T.BOOLEAN:
                if op not in ("=", "<>"):
                    raise argument_error(f"Invalid operator '{op}' for boolean attribute '{attr}'")
                low = operand.lower()
                if low in ("1", "t", "true", "y", "yes"):
                    operand = True
                elif low in ("0", "f", "false", "n", "no"):
                    operand = False
                else:
                    raise argument_error(f"Invalid operand '{operand}' for boolean attribute '{attr}'")
                value: Any = operand
            elif col.type is _T.JSONB:
                try:
                    value = json.loads(operand)
                except ValueError:
                    raise ApiError(
                        422, ruby_exc("ActiveRecord::StatementInvalid", "invalid input syntax for type json")
                    ) from None
            elif op in ("like", "ilike"):
                if col.type not in _TEXTY:
                    raise argument_error(f"Invalid attribute '{attr}' in filter")
                rx = like_regex(operand, ignore_case=op == "ilike")
                return lambda r: (v := column_value(col, r)) is not None and rx.fullmatch(str(v)) is not None
            else:
                value = _cast_string(col, operand)
            if col.type is _T.JSONB:
                if op == "=":
                    return lambda r: r.get(name) is not None and jsonb.jeq(r.get(name), value)
                if op == "<>":
                    return lambda r: r.get(name) is None or not jsonb.jeq(r.get(name), value)
                return lambda r: (v := r.get(name)) is not None and _cmp(op, jsonb.compare(v, value), 0)
            if op == "<>":
                return lambda r: (v := column_value(col, r)) is None or v != value
            return lambda r: (v := column_value(col, r)) is not None and _cmp(op, v, value)
        if operand is None and op == "=":
            return lambda r: column_value(col, r) is None
        if operand is None and op == "<>":
            return lambda r: column_value(col, r) is not None
        if col.type is _T.BOOLEAN and op in ("=", "<>") and isinstance(operand, bool):
            return lambda r: (v := r.get(name)) is not None and _cmp(op, v, operand)
        if col.type is _T.INTEGER:
            if not _is_int(operand) or abs(operand) >= _INT64:
                shown = "" if operand is None else operand
                raise argument_error(f"Invalid operand '{shown}' for integer attribute '{attr}'")
            if op in ("like", "ilike"):
                raise argument_error(f"Invalid attribute '{attr}' in filter")
            # A plain SQL comparison: NULL matches no integer operand, not even with <> (record_filters.rb adds
            # "OR ... IS NULL" for a string operand only).
            return lambda r: (v := r.get(name)) is not None and _cmp(op, v, operand)
        raise argument_error(f"Invalid operand type '{ruby_class(operand)}' for '{operator}' operator in filters")

    if operator in ("in", "not in"):
        if not isinstance(operand, list):
            raise argument_error(f"Invalid operand type '{ruby_class(operand)}' for '{operator}' operator in filters")
        values: list[Any] = []
        for el in operand:
            if col.type is _T.INTEGER and (not _is_int(el) or abs(el) >= _INT64):
                raise argument_error(f"Invalid element '{'' if el is None else el}' in array for integer attribute '{attr}'")
            if el is None:
                continue
            if col.type is _T.DATETIME and isinstance(el, str):
                values.append(_time_operand(el))
            elif col.type in _TEXTY and not isinstance(el, str):
                raise ApiError(
                    422,
                    ruby_exc("ActiveRecord::StatementInvalid", f"PG::UndefinedFunction: ERROR:  operator does "
                             f"not exist: character varying = {ruby_class(el).lower()}"),
                )
            else:
                values.append(el)
        if operator == "in":
            # col IN (...): NULL never matches; an empty list is IN (NULL), which matches nothing.
            return lambda r: (v := column_value(col, r)) is not None and v in values
        if any(el is None for el in operand):
            # col NOT IN (..., NULL) is never true, and Rails adds no IS NULL clause then.
            return lambda r: False
        # (col NOT IN (...) OR col IS NULL); NOT IN () is NOT IN (NULL): only NULLs match.
        if not values:
            return lambda r: column_value(col, r) is None
        return lambda r: (v := column_value(col, r)) is None or v not in values

    if operator == "is_a":
        kinds = operand if isinstance(operand, list) else [operand]
        alts: list[Predicate] = []
        for kind in kinds:
            prefix = KIND_INFIX.get(kind) if isinstance(kind, str) else None
            if prefix is None or attr == "uuid":
                alts.append(_const(prefix is not None and prefix == table.infix))
            else:
                alts.append(_infix_is(col, prefix))
        return lambda r: any(a(r) for a in alts)

    if operator == "contains":
        if col.type is not _T.JSONB:
            raise argument_error(f"Invalid attribute '{attr}' for '{operator}' operator")
        if operand == []:
            raise argument_error(f"Invalid operand '[]' for '{operator}' operator")
        items = operand if isinstance(operand, list) else [operand]
        if not all(isinstance(s, str) for s in items):
            raise argument_error(
                f"Invalid element {json.dumps(operand)} in operand for \"{operator}\" operator "
                "(operand must be a string or array of strings)"
            )
        return lambda r: (v := r.get(name)) is not None and all(jsonb.exists(v, s) for s in items)

    raise argument_error(f"Invalid operator '{operator}'")


def _const(value: bool) -> Predicate:
    return lambda r: value


def _infix_is(col: Column, prefix: str) -> Predicate:
    # substring(col, 7, 5) = prefix: supports remote uuids
    return lambda r: (v := column_value(col, r)) is not None and str(v)[6:11] == prefix


def _any_of(alts: list[Predicate]) -> Predicate:
    return lambda r: any(a(r) for a in alts)


def _jsonb_exists(name: str, key: str) -> Predicate:
    return lambda r: (v := r.get(name)) is not None and jsonb.exists(v, key)


def _subproperty(table: Table, attr: str, path: str, operator: str, operand: Any) -> Predicate | None:
    """Return the predicate of a ``col.key`` filter, or None when Rails adds no condition."""
    col = table.column(attr)
    if col is None or col.type is not _T.JSONB:
        raise argument_error(f"Invalid attribute '{attr}' for subproperty filter")
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1]
    name = attr

    def has(r: Record) -> bool:
        v = r.get(name)
        return isinstance(v, dict) and path in v

    if operator in ("=", "!="):
        want = {path: operand}
        if operator == "=":
            return lambda r: (v := r.get(name)) is not None and jsonb.contains(v, want)
        # NOT (col @> ...): a NULL column gives NULL, which does not match.
        return lambda r: (v := r.get(name)) is not None and not jsonb.contains(v, want)
    if operator == "in":
        if not isinstance(operand, list):
            raise argument_error(f"Invalid operand type '{ruby_class(operand)}' for '{operator}' operator in filters")
        if not operand:
            return None  # no SQL fragment at all: the filter is ignored
        wants = [{path: el} for el in operand]
        return lambda r: (v := r.get(name)) is not None and any(jsonb.contains(v, w) for w in wants)
    if operator in ("<", "<=", ">", ">="):
        return lambda r: has(r) and _cmp(operator, jsonb.compare(r[name][path], operand), 0)
    if operator in ("like", "ilike"):
        if not isinstance(operand, str):
            raise argument_error(f"Invalid operand type '{ruby_class(operand)}' for '{operator}' operator in filters")
        rx = like_regex(operand, ignore_case=operator == "ilike")
        return lambda r: has(r) and rx.fullmatch(jsonb.text(r[name][path])) is not None
    if operator == "not in":
        if not isinstance(operand, list):
            raise argument_error(f"Invalid operand type '{ruby_class(operand)}' for '{operator}' operator in filters")
        texts = [None if el is None else jsonb.text(el) for el in operand]
        nonnull = [t for t in texts if t is not None]

        def not_in(r: Record) -> bool:
            if not has(r) or r[name][path] is None:
                return True  # col->>key IS NULL
            if not nonnull or len(nonnull) != len(texts):
                return False  # NOT IN (NULL, ...) is never true
            return jsonb.text(r[name][path]) not in nonnull

        return not_in
    if operator == "exists":
        if operand is True:
            return has
        if operand is False:
            return lambda r: not has(r)
        raise argument_error(f"Invalid operand '{operand}' for '{operator}' must be true or false")
    if operator == "contains":
        a, b = {path: operand}, {path: [operand]}
        return lambda r: (v := r.get(name)) is not None and (jsonb.contains(v, a) or jsonb.contains(v, b))
    raise argument_error(f"Invalid operator for subproperty search '{operator}'")


def _expression(table: Table, attr: str, m: re.Match[str], operator: str, operand: Any) -> Predicate:
    if operator != "=" or not (operand is True or operand == "true"):
        raise argument_error(f"Invalid expression filter '{attr}': subsequent elements must be [\"=\", true]")
    a, op, b = m.group(1), m.group(2), m.group(3)
    allowed = searchable(table, op)
    for tok in (a, b):
        if tok not in allowed:
            raise argument_error(f"Invalid attribute in expression: '{tok}'")
        col = table.column(tok)
        if col is None or col.type is not _T.INTEGER:
            raise argument_error(f"Non-numeric attribute in expression: '{tok}'")
    return lambda r: (x := r.get(a)) is not None and (y := r.get(b)) is not None and _cmp(op, x, y)


def compile_filters(table: Table, filters: Any) -> Predicate:
    """Return a predicate for a ``filters`` parameter, validated as Rails validates it. Pure.

    A bare string element such as ``"(priority > lock_count)"`` is read as
    ``[<string>, "=", true]``, as the controller does.

    Raises:
        ApiError: 422 with Rails' message for any invalid filter.
    """
    if filters is None or filters == "":
        filters = []
    if not isinstance(filters, list):
        raise argument_error(f"filters param must be an array, not {ruby_class(filters)}")
    conds: list[Predicate] = []
    for flt in filters:
        if isinstance(flt, str):
            flt = [flt, "=", True]
        if not isinstance(flt, list):
            raise argument_error(f"Invalid element in filters array: {json.dumps(flt)} is not an array")
        attrs_in: Any = flt[0] if len(flt) > 0 else None
        operator = flt[1] if len(flt) > 1 else None
        operand = flt[2] if len(flt) > 2 else None
        if operator == "@@":
            raise argument_error("Full text search operator is no longer supported")
        if not isinstance(operator, str):
            raise argument_error(f"Invalid operator '{'' if operator is None else operator}' "
                                 f"({ruby_class(operator)}) in filter")
        operator = operator.lower()
        attrs: list[Any]
        if attrs_in == "any":
            attrs = [a for a in searchable(table, operator) if table.column(a).type is not _T.DATETIME]  # type: ignore[union-attr]
        elif isinstance(attrs_in, list):
            attrs = attrs_in
        else:
            attrs = [attrs_in]
        alts: list[Predicate] = []
        for attr in attrs:
            if not isinstance(attr, str):
                raise argument_error(f"Invalid attribute '{attr}' in filter")
            parts = attr.split(".", 1)
            col = table.column(parts[0])
            if len(parts) == 2:
                sub = _subproperty(table, parts[0], parts[1], operator, operand)
                if sub is not None:
                    alts.append(sub)
            elif operator == "exists":
                if col is None or col.type is not _T.JSONB:
                    raise argument_error(f"Invalid attribute '{attr}' for operator '{operator}' in filter")
                alts.append(_jsonb_exists(attr, str(operand)))
            elif m := _EXPR_RE.match(attr):
                alts.append(_expression(table, attr, m, operator, operand))
            else:
                alts.append(_plain(table, attr, operator, operand))
        if alts:
            conds.append(_any_of(alts))
    return lambda r: all(c(r) for c in conds)


def parse_order(table: Table, order: Any) -> list[tuple[str, bool]]:
    """Return ``[(column, descending)]`` for an ``order`` parameter, as Rails builds it. Pure.

    Accepts a JSON array or a comma-separated string of ``"<column> [asc|desc]"``
    (a ``table.`` prefix is allowed). Unknown columns or directions are dropped
    silently, ``modified_at desc, uuid desc`` are appended, and nothing after a
    unique column (``uuid``) is kept.
    """
    if order is None or order == "":
        items: list[Any] = []
    elif isinstance(order, str):
        items = order.split(",")
    elif isinstance(order, list):
        items = order
    else:
        items = []
    out: list[tuple[str, bool]] = []
    for item in items:
        if not isinstance(item, str):
            continue
        words = item.strip().split()
        if not words or len(words) > 2:
            continue
        attr = words[0]
        if attr.startswith(table.name + "."):
            attr = attr[len(table.name) + 1 :]
        direction = words[1].lower() if len(words) == 2 else "asc"
        if table.column(attr) is None or direction not in ("asc", "desc"):
            continue
        out.append((attr, direction == "desc"))
    for default in (("modified_at", True), ("uuid", True)):
        if all(a != default[0] for a, _ in out):
            out.append(default)
    kept: list[tuple[str, bool]] = []
    for attr, desc in out:
        kept.append((attr, desc))
        if attr in ("uuid", "id"):
            break
    return kept


def sort_records(table: Table, records: Sequence[Record], order: list[tuple[str, bool]]) -> list[Record]:
    """Return ``records`` sorted as PostgreSQL would for ``order``. Pure.

    NULLs sort last ascending and first descending (PostgreSQL's default); jsonb
    columns use jsonb order; text compares by code point (the C collation).
    """
    cols = [(table.column(a), desc) for a, desc in order]

    def cmp(x: Record, y: Record) -> int:
        for col, desc in cols:
            assert col is not None
            a, b = column_value(col, x), column_value(col, y)
            if a is None and b is None:
                continue
            if a is None or b is None:
                c = 1 if a is None else -1  # NULL is larger than everything
            elif col.type is _T.JSONB:
                c = jsonb.compare(a, b)
            else:
                c = 0 if a == b else (-1 if a < b else 1)
            if c:
                return -c if desc else c
        return 0

    return sorted(records, key=cmp_to_key(cmp))
