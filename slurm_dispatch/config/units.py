"""Go's unit grammars: durations (``"1m30s"``) and Arvados byte sizes (``"550MiB"``).

Owns ``parse_duration`` and ``parse_byte_size`` and nothing else: each takes one already-parsed YAML value and
returns seconds or bytes, or raises a ``ConfigError`` naming the key. Ports of sdk/go/arvados/duration.go:
Duration.UnmarshalJSON (Go's time.ParseDuration plus a unitless zero) and sdk/go/arvados/byte_size.go:
ByteSize.UnmarshalJSON. Pure.

Deliberate differences from Go, both refusing what Go would misread:

* A quoted byte size with no unit (``"1024"``) is an error here; Go silently reads it as 0. ``"0"`` is
  accepted (both readings agree). Write ``1024`` unquoted or ``"1024B"``.
* Negative durations and sizes are errors.
* A quoted size's number must be a JSON number, as Go's decoder reads it (no ``+``, no leading ``.`` or
  ``0``); Go would refuse those or, for ``"1 0KB"`` or ``"010KB"``, read only the first number.
"""

from __future__ import annotations

import math
import re

from slurm_dispatch.config.redact import show
from slurm_dispatch.errors import ConfigError

# Go's time.ParseDuration grammar: one or more <decimal><unit>, with an optional sign in front.
_DURATION_PART_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_SIZE_RE = re.compile(r"\A[ \t\n\r]*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?) *([KMGTPE]i?)?(B?) *\Z")
"""sdk/go/arvados/byte_size.go: ByteSize.UnmarshalJSON: a JSON number (encoding/json skips JSON whitespace before
it), then the unit with only spaces around it (strings.Trim(..., " ")); a tab or a newline there is refused."""
_SIZE_PREFIX = {
    "": 1,
    "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}
_INT64_MAX = (1 << 63) - 1
_MAX_DURATION_S = _INT64_MAX / 1e9
"""Go's time.Duration is int64 nanoseconds (about 292 years); time.ParseDuration refuses longer ones."""


def parse_duration(value: object, *, key: str = "", path: str = "") -> float:
    """Returns a Go duration (``"1m30s"``, ``"300ms"``, ``0``, ``"0"``) in seconds.

    Port of sdk/go/arvados/duration.go: Duration.UnmarshalJSON (time.ParseDuration plus unitless zero).
    Pure.

    Raises:
        ConfigError: a bare number other than 0, an unknown unit, a negative duration, one longer than
            Go's int64 nanoseconds, or a non-string.
    """
    shown = show(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"expected a duration like \"10s\", got {shown}", path=path, key=key, value=shown)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"expected a duration like \"10s\", got {shown}: an infinite or NaN duration is not "
                          "allowed", path=path, key=key, value=shown)
    if not isinstance(value, str):
        if value == 0:
            return 0.0
        raise ConfigError(f"missing unit in duration {shown} (write e.g. \"{value}s\")",
                          path=path, key=key, value=shown)
    text = value
    if text != text.strip():
        # time.ParseDuration refuses them, so Arvados's own services would not start with this value
        raise ConfigError(f"invalid duration {shown}: remove the whitespace around it (Arvados refuses it)",
                          path=path, key=key, value=shown)
    negative = text.startswith("-")
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if not body:
        raise ConfigError(f"invalid duration {shown}", path=path, key=key, value=shown)
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART_RE.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            hint = " (missing unit)" if re.fullmatch(r"[0-9.]+", body) else ""
            raise ConfigError(f"invalid duration {shown}{hint}; use e.g. \"10s\", \"1m30s\", \"300ms\"",
                              path=path, key=key, value=shown)
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if negative and total > 0:
        raise ConfigError(f"negative duration {shown} is not allowed", path=path, key=key, value=shown)
    if total > _MAX_DURATION_S:
        raise ConfigError(f"invalid duration {shown}: too large (Go's limit is about 292 years)",
                          path=path, key=key, value=shown)
    return total


def parse_byte_size(value: object, *, key: str = "", path: str = "") -> int:
    """Returns a byte size in bytes: an integer, or a string like ``"550MiB"``, ``"16GB"``, ``"1.5Ki"``.

    Port of sdk/go/arvados/byte_size.go: ByteSize.UnmarshalJSON. K M G T P E are powers of 1000,
    Ki Mi Gi Ti Pi Ei powers of 1024, a trailing ``B`` is optional, decimals are truncated to whole bytes.
    Unlike Go, a quoted number with no unit other than ``"0"`` is refused (Go reads it as 0). Pure.

    Raises:
        ConfigError: an unparsable, negative or over-int64 size, a unitless quoted number, or a
            non-integral float.
    """
    shown = show(value)
    if isinstance(value, bool):
        raise ConfigError(f"expected a byte size like 1024 or \"550MiB\", got {shown}",
                          path=path, key=key, value=shown)
    if isinstance(value, int):
        number: float | int = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"expected a byte size like 1024 or \"550MiB\", got {shown}: an infinite or NaN size is "
                              "not allowed", path=path, key=key, value=shown)
        if not value.is_integer():
            raise ConfigError(f"byte size {shown} is not a whole number of bytes", path=path, key=key,
                              value=shown)
        number = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match is None:
            odd = (" (only spaces may come between the number and the unit, or after it: Arvados refuses a tab or a "
                   "line break there)" if any(ch.isspace() and ch != " " for ch in value.lstrip(" \t\n\r")) else "")
            raise ConfigError(f"invalid byte size {shown}{odd}; use e.g. 1024, \"64KiB\", \"550MiB\", \"16GB\"",
                              path=path, key=key, value=shown)
        digits, prefix, unit_b = match.group(1), match.group(2) or "", match.group(3)
        unitless = prefix == "" and not unit_b
        if unitless and float(digits) != 0:
            raise ConfigError(
                f"byte size {shown} is a quoted number with no unit (Arvados's Go loader would silently "
                f"read it as 0); write it unquoted, or with a unit such as \"{digits}B\"",
                path=path, key=key, value=shown)
        scale = _SIZE_PREFIX[prefix]
        if not float(digits) * scale <= _INT64_MAX * 2:
            # checked in floating point first: int() of a few thousand digits raises ValueError
            raise ConfigError(f"byte size {shown} is too large", path=path, key=key, value=shown)
        if re.fullmatch(r"[+-]?[0-9]+", digits):
            number = int(digits) * scale
        else:
            number = int(float(digits) * scale)
    else:
        raise ConfigError(f"expected a byte size like 1024 or \"550MiB\", got {shown}",
                          path=path, key=key, value=shown)
    if number < 0:
        raise ConfigError(f"byte size {shown} must not be negative", path=path, key=key, value=shown)
    if number > _INT64_MAX:
        raise ConfigError(f"byte size {shown} is too large", path=path, key=key, value=shown)
    return int(number)
