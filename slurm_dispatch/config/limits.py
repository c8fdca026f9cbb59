"""The ranges and character rules the dispatcher adds to Go's types, each bound in one place with its reason.

Go's loader takes any string, int or duration its types can hold; the values then reach argv, a job script,
an environment, an HTTP header or a timer, where a NUL, a newline, a ten-nanosecond poll or a 10**18 spread
fails later, once per container, far from the config. The converters here refuse such values where they
enter, with the key named (``document.Doc.error``) and a secret never shown. docs/configuration.md lists
every bound. Pure.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from slurm_dispatch.config.document import Doc, as_duration, as_int, as_map, as_str, as_str_list
from slurm_dispatch.config.redact import show

MIN_POLL_INTERVAL_S = 0.1
"""Containers.CloudVMs.PollInterval below this only spins a core and hammers the API and slurmctld: one
poll runs a paged container list and one squeue, which take longer than this on any real cluster."""
MAX_DURATION_S = 24 * 3600.0
"""PollInterval and MinRetryPeriod above a day are typos (a container would wait that long to start)."""
MIN_RETRY_PERIOD_S = 1.0
"""Containers.MinRetryPeriod is 0 (off) or at least this: a sub-second hold is shorter than any sensible
PollInterval, so it holds nothing back; a value like "1ns" is a typo for something else."""
MAX_PRIORITY_SPREAD = 100_000
"""Containers.SLURM.PrioritySpread above this pushes the nice values of a 10,000-job queue past Slurm's
limit (2147483645, slurm.priority.MAX_NICE), after which jobs can no longer be ordered."""
MAX_ITEMS_PER_RESPONSE = 1_000_000
"""API.MaxItemsPerResponse above this is a typo: Arvados servers return at most their own page size."""
MAX_PRICE_FACTOR = 1000.0
"""MaximumPriceFactor and PreemptiblePriceFactor above this are typos."""

_FEATURE_FORBIDDEN = frozenset(",&|[]()*!\"'")
"""Characters of Slurm's --constraint grammar: an instance type name holding one would change the
``--constraint=instancetype=<name>`` expression and the node's feature list."""


def _control_at(text: str) -> int:
    """Returns the index of the first control character (Unicode Cc, line or paragraph separator), or -1."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return i
    return -1


def _describe(ch: str) -> str:
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space", "\0": "a NUL"}
    if ch in names:
        return names[ch]
    if ord(ch) >= 128:
        return "a non-ASCII character"
    return "a control character"


def as_text(doc: Doc, rel: str, value: Any, *, secret: bool = False) -> str:
    """Returns ``value`` if it is a string with no control character (NUL, newline, ...).

    Such a string becomes a command argument, a job-script word or an environment value, none of which can
    hold a NUL; a newline there is never meant. ``secret``: do not show the value. Pure.

    Raises:
        ConfigError: not a string, or a control character (its code point and position named).
    """
    text = as_str(doc, rel, value)
    at = _control_at(text)
    if at >= 0:
        shown = "" if secret else f" in {show(text)}"
        raise doc.error(rel, f"contains a control character (U+{ord(text[at]):04X} at position {at}){shown}; "
                        "control characters are refused in command arguments and environment values",
                        "<redacted>" if secret else text)
    return text


def as_text_list(doc: Doc, rel: str, value: Any) -> tuple[str, ...]:
    """Returns ``value`` as a tuple of strings without control characters. Raises ConfigError."""
    items = as_str_list(doc, rel, value)
    for i, item in enumerate(items):
        as_text(doc, f"{rel}[{i}]", item)
    return items


def as_command(doc: Doc, rel: str, value: Any) -> str:
    """Returns a command name: a non-empty string without control characters. Raises ConfigError."""
    text = as_text(doc, rel, value)
    if text == "":
        raise doc.error(rel, "must not be empty, got ''", "")
    return text


def as_env_map(doc: Doc, rel: str, value: Any) -> dict[str, str]:
    """Returns an environment map: names non-empty, without ``=`` or control characters; values as_text.

    A null value is ``""`` (the cluster config has none left: ``schema.without_nulls`` drops them first, as Arvados
    does). Values are not shown in errors: they may be secrets. Pure.

    Raises:
        ConfigError: naming the variable.
    """
    out: dict[str, str] = {}
    for name, v in as_map(doc, rel, value).items():
        key = f"{rel}.{name}"
        if name == "" or "=" in name or _control_at(name) >= 0:
            raise doc.error(key, f"{show(name)} is not a usable environment variable name (it must be "
                            "non-empty, without '=' or control characters)", name)
        out[name] = "" if v is None else as_text(doc, key, v, secret=True)
    return out


def as_token(doc: Doc, rel: str, value: Any) -> str:
    """Returns a token if it is printable ASCII without spaces; an empty token is returned as is.

    Nothing is stripped: a YAML ``|`` block adds a newline that would otherwise end up in every request's
    Authorization header and every job's environment. The message never shows the token. Pure.

    Raises:
        ConfigError: naming the key and the kind of character (and "at the end" for a trailing one).
    """
    text = as_str(doc, rel, value)
    return check_token(text, lambda message: doc.error(rel, message, "<redacted>"))


def check_token(text: str, error: Callable[[str], Exception], *, from_yaml: bool = True) -> str:
    """Returns ``text`` if it is a usable token (see ``as_token``); raises ``error(message)`` otherwise.

    ``from_yaml``: the token comes from a config file, so a final newline is most likely a ``|`` block's and the
    message says so; otherwise (an environment variable) it says where such a newline usually comes from.
    """
    def usable(ch: str) -> bool:
        return "!" <= ch <= "~"

    for i, ch in enumerate(text):
        if not usable(ch):
            at_end = i > 0 and not any(usable(rest) for rest in text[i:])
            if not (at_end and ch == "\n"):
                hint = ""
            elif from_yaml:
                hint = " (a YAML '|' block scalar ends with a newline: write the token on the key's line)"
            else:
                hint = " (an environment variable keeps every character: set it without the final line break)"
            raise error(f"contains {_describe(ch)}{' at the end' if at_end else ''}{hint}; a token is "
                        "printable ASCII with no spaces, and nothing is stripped from it")
    return text


def _bounded_duration(low: float, *, zero_ok: bool, reason: str) -> Callable[[Doc, str, Any], float]:
    def convert(doc: Doc, rel: str, value: Any) -> float:
        seconds = as_duration(doc, rel, value)
        if seconds == 0 and zero_ok:
            return seconds
        if seconds < low:
            lowest = f"{low * 1000:g}ms" if low < 1 else f"{low:g}s"
            raise doc.error(rel, f"must be {'0 or ' if zero_ok else ''}at least {lowest}, got "
                            f"{show(value)} ({reason})", value)
        if seconds > MAX_DURATION_S:
            raise doc.error(rel, f"must be at most 24h, got {show(value)}", value)
        return seconds
    return convert


as_poll_interval = _bounded_duration(MIN_POLL_INTERVAL_S, zero_ok=False,
                                     reason="a shorter poll only spins the CPU and hammers the API and slurmctld")
"""PollInterval / legacy PollPeriod: 100ms to 24h."""
as_retry_period = _bounded_duration(MIN_RETRY_PERIOD_S, zero_ok=True, reason="0 turns the throttle off")
"""MinRetryPeriod: 0, or 1s to 24h."""


def as_int_in(*, low: int | None, high: int, reason: str) -> Callable[[Doc, str, Any], int]:
    """Returns a converter for an integer from ``low`` (None: any) to ``high``; ``reason`` says why."""
    def convert(doc: Doc, rel: str, value: Any) -> int:
        number = as_int(doc, rel, value)
        if low is not None and number < low:
            raise doc.error(rel, f"must not be less than {low}, got {number}", value)
        if number > high:
            raise doc.error(rel, f"must be at most {high}, got {number} ({reason})", value)
        return number
    return convert


def as_feature_name(doc: Doc, rel: str, name: str) -> str:
    """Returns an instance type name if it can be a Slurm feature and a ``--constraint`` term.

    Raises:
        ConfigError: empty, whitespace, a control character, or one of ``, & | [ ] ( ) * ! " '``.
    """
    if name == "" or any(ch.isspace() or ch in _FEATURE_FORBIDDEN for ch in name) or _control_at(name) >= 0:
        raise doc.error(rel, "an instance type name becomes a Slurm feature (instancetype=<name>) and a "
                        "--constraint term: it must be non-empty, with no whitespace, control characters or "
                        "any of , & | [ ] ( ) * ! \" '", name)
    return name
