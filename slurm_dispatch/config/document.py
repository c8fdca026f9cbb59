"""Typed access to one parsed YAML document: dotted keys, converters, and errors that name file and key.

Owns ``Doc`` (a parsed mapping plus the file and key prefix to name in messages) and the converters the
cluster and legacy readers apply to each key (``as_str``, ``as_int``, ``as_duration``, ...). A converter
takes ``(doc, rel_key, value)`` and returns the typed value or raises the ``ConfigError`` that ``Doc.error``
builds, with the value shown through ``redact.show`` (so a secret never appears). A null value means "absent":
the key keeps its default, as in Go's JSON decoding. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from slurm_dispatch.config.redact import is_secret, printable, show
from slurm_dispatch.config.units import parse_byte_size, parse_duration
from slurm_dispatch.errors import ConfigError

INT64_MAX = (1 << 63) - 1
"""Go's int and int64: every integer key is one, so larger values are refused, as Go's decoder does."""
MAX_FLOAT = 1e15
"""No price or factor is this large; a larger one (up to 1e308) is a typo, and multiplied it becomes inf."""

MISSING: Any = object()
"""What ``Doc.get`` returns for an absent or null key."""
T = TypeVar("T")


class Doc:
    """One parsed YAML mapping plus how to name its keys in errors and warnings."""

    def __init__(self, data: Mapping[str, Any], *, source: str, prefix: str, warnings: list[str]):
        self.data = data
        self.source = source
        self.prefix = prefix
        self.warnings = warnings

    def full(self, rel: str) -> str:
        """Returns the full dotted key of ``rel`` (``Clusters.<id>.`` prefixed), escaped for one line."""
        return printable(f"{self.prefix}.{rel}" if self.prefix else rel)

    def error(self, rel: str, message: str, value: object) -> ConfigError:
        """Returns the ConfigError for ``rel`` (file, full key, value shown unless it is a secret)."""
        return ConfigError(message, path=self.source, key=self.full(rel),
                           value=show(value, secret=is_secret(rel)))

    def get(self, rel: str) -> Any:
        """Returns the value at dotted ``rel``, or MISSING when absent or null (null keeps the default).

        Raises:
            ConfigError: a step of the path is not a map.
        """
        node: Any = self.data
        walked: list[str] = []
        for part in rel.split("."):
            if not isinstance(node, Mapping):
                here = ".".join(walked)
                raise self.error(here, f"expected a map, got {show(node, secret=is_secret(here))}", node)
            walked.append(part)
            node = node.get(part)
            if node is None:
                return MISSING
        return node

    def typed(self, rel: str, convert: Callable[[Doc, str, Any], T]) -> T | Any:
        """Returns ``convert`` applied to the value at ``rel``, or MISSING when absent.

        Raises:
            ConfigError: from ``get`` or ``convert``.
        """
        value = self.get(rel)
        return MISSING if value is MISSING else convert(self, rel, value)


def as_str(doc: Doc, rel: str, value: Any) -> str:
    """Returns ``value`` if it is a string. Raises ConfigError otherwise."""
    if not isinstance(value, str):
        raise doc.error(rel, f"expected a string, got {show(value, secret=is_secret(rel))}"
                        + ("" if is_secret(rel) else " (quote it)"), value)
    return value


def as_bool(doc: Doc, rel: str, value: Any) -> bool:
    """Returns ``value`` if it is true or false. Raises ConfigError otherwise."""
    if not isinstance(value, bool):
        raise doc.error(rel, f"expected true or false, got {show(value)}", value)
    return value


def as_int(doc: Doc, rel: str, value: Any) -> int:
    """Returns ``value`` as an int64 (a whole float is accepted). Raises ConfigError otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(rel, f"expected an integer, got {show(value)}", value)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise doc.error(rel, f"out of range, got {show(value)}: integers here are 64-bit (at most {INT64_MAX})",
                        value)
    return value


def as_nonneg_int(doc: Doc, rel: str, value: Any) -> int:
    """Returns ``value`` as an int ≥ 0. Raises ConfigError otherwise."""
    number = as_int(doc, rel, value)
    if number < 0:
        raise doc.error(rel, f"must not be negative, got {show(value)}", value)
    return number


def as_nonneg_float(doc: Doc, rel: str, value: Any) -> float:
    """Returns ``value`` as a finite float ≥ 0. Raises ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise doc.error(rel, f"expected a number, got {show(value)}", value)
    if value < 0:
        raise doc.error(rel, f"must not be negative, got {show(value)}", value)
    if value > MAX_FLOAT:
        raise doc.error(rel, f"too large: at most {MAX_FLOAT:g}, got {show(value)}", value)
    return float(value)


def as_duration(doc: Doc, rel: str, value: Any) -> float:
    """Returns a Go duration in seconds (``units.parse_duration``). Raises ConfigError."""
    return parse_duration(value, key=doc.full(rel), path=doc.source)


def as_size(doc: Doc, rel: str, value: Any) -> int:
    """Returns a byte size in bytes (``units.parse_byte_size``). Raises ConfigError."""
    return parse_byte_size(value, key=doc.full(rel), path=doc.source)


def as_str_list(doc: Doc, rel: str, value: Any) -> tuple[str, ...]:
    """Returns ``value`` as a tuple of strings. Raises ConfigError naming the first bad item."""
    if not isinstance(value, list):
        raise doc.error(rel, f"expected a list of strings, got {show(value)}", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise doc.error(f"{rel}[{i}]", f"expected a string, got {show(item)} (quote it)", item)
    return tuple(value)


def as_map(doc: Doc, rel: str, value: Any) -> Mapping[str, Any]:
    """Returns ``value`` if it is a map. Raises ConfigError otherwise."""
    if not isinstance(value, Mapping):
        raise doc.error(rel, f"expected a map, got {show(value, secret=is_secret(rel))}", value)
    return value


def as_enum(allowed: Sequence[str]) -> Callable[[Doc, str, Any], str]:
    """Returns a converter that accepts only the strings in ``allowed``."""
    def convert(d: Doc, r: str, value: Any) -> str:
        text = as_str(d, r, value)
        if text not in allowed:
            raise d.error(r, f"{show(text)} is not one of {', '.join(a for a in allowed if a)}", text)
        return text
    return convert
