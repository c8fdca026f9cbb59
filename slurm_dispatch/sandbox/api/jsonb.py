"""PostgreSQL ``jsonb`` semantics the filters need: equality, ``@>``, ordering, ``->>``, ``?``.

Pure functions over JSON-decoded Python values. JSON ``true`` is not the number 1
here, unlike in Python.
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypeVar, cast

_T = TypeVar("_T")

_ATOMS = (str, int, float, bool, type(None))


def copy_json(value: _T) -> _T:
    """Return a deep copy of a JSON-shaped value (dicts, lists and atoms). Pure.

    Five times faster than ``copy.deepcopy`` on container records, which the store copies on every read and
    write (deepcopy was half of a lock's CPU). Anything that is not a dict, list or JSON atom goes to deepcopy.
    """
    kind = type(value)
    if kind is dict:
        return cast(_T, {k: copy_json(v) for k, v in cast(dict[Any, Any], value).items()})
    if kind is list:
        return cast(_T, [copy_json(v) for v in cast(list[Any], value)])
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def jeq(a: Any, b: Any) -> bool:
    """Return True when two JSON values are equal as jsonb (numbers by value, no bool/number mixing). Pure."""
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(jeq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(jeq(a[k], b[k]) for k in a)
    return bool(a == b)


def contains(a: Any, b: Any, *, top: bool = True) -> bool:
    """Return ``a @> b`` (jsonb containment). Pure.

    An array contains a primitive only at the top level, as PostgreSQL documents;
    that is why Arvados's subproperty ``contains`` also tries ``{key: [operand]}``.
    """
    if isinstance(b, dict):
        return isinstance(a, dict) and all(k in a and contains(a[k], v, top=False) for k, v in b.items())
    if isinstance(b, list):
        return isinstance(a, list) and all(any(contains(x, y, top=False) for x in a) for y in b)
    if isinstance(a, list) and top:
        return any(not isinstance(x, list | dict) and jeq(x, b) for x in a)
    return not isinstance(a, list | dict) and jeq(a, b)


def _rank(v: Any) -> int:
    # PostgreSQL jsonb btree order: Object > Array > Boolean > Number > String > Null.
    if v is None:
        return 0
    if isinstance(v, str):
        return 1
    if isinstance(v, bool):
        return 3
    if _is_num(v):
        return 2
    if isinstance(v, list):
        return 4
    return 5


def compare(a: Any, b: Any) -> int:
    """Return -1, 0 or 1 comparing two jsonb values in PostgreSQL's btree order. Pure.

    Arrays and objects compare by length first, then elementwise (objects by sorted keys).
    """
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if isinstance(a, list):
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        for x, y in zip(a, b, strict=True):
            c = compare(x, y)
            if c:
                return c
        return 0
    if isinstance(a, dict):
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        ka, kb = sorted(a), sorted(b)
        if ka != kb:
            return -1 if ka < kb else 1
        for k in ka:
            c = compare(a[k], b[k])
            if c:
                return c
        return 0
    if a is None:
        return 0
    return 0 if a == b else (-1 if a < b else 1)


def text(v: Any) -> str:
    """Return PostgreSQL's text of a jsonb value, as ``->>`` gives it (strings unquoted). Pure."""
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(", ", ": "), ensure_ascii=False)


def exists(col: Any, key: str) -> bool:
    """Return ``col ? key``: an object has the key, an array has the string element. Pure."""
    if isinstance(col, dict):
        return key in col
    if isinstance(col, list):
        return any(isinstance(x, str) and x == key for x in col)
    return isinstance(col, str) and col == key
