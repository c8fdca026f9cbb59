"""Logging from ``SystemLogs.LogLevel``/``SystemLogs.Format``, and a filter that redacts secrets.

Formats: ``json`` (Arvados's default) writes one JSON object per line with ``time`` (UTC, RFC 3339 with
milliseconds), ``level``, ``logger``, ``msg``, every ``extra=`` field, and ``exception`` when there is one:
what journald, Loki or jq want. ``text`` writes ``<time> <LEVEL> <logger>: <msg> key=value ...`` for people.

Redaction is belt and braces: the code never logs a token in the first place. ``RedactingFilter`` sits on our
handler (a filter on a handler sees records from every logger, a filter on a logger only that logger's own) and
rewrites the formatted message, the exception text (tracebacks, with their chained causes) and the ``extra``
fields, replacing each configured secret (SystemRootToken, ManagementToken, the PostgreSQL password) and the
secret part of anything shaped like an Arvados v2 token (``v2/<uuid>/<secret>``, the uuid is kept: it
identifies without granting) with ``<redacted>``. A secret is found in every form a library may print it in:
escaped by ``repr`` (``\\n``, ``\\\\n``, ``\\xe9``), as bytes, JSON-escaped, URL-quoted, or base64-encoded as in
HTTP Basic auth (``slurm_dispatch.arvados.redaction.secret_forms``).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from slurm_dispatch.arvados.redaction import Redactor
from slurm_dispatch.config import LOG_FORMATS, LOG_LEVELS
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

REDACTED = "<redacted>"

LEVELS = LOG_LEVELS
"""The loader's list of SystemLogs.LogLevel names (and their Python levels): one list, so a level the loader
accepts is one this module accepts, and the reverse."""
FORMATS = LOG_FORMATS
"""The loader's list of SystemLogs.Format names: json, text, and plain (text without the time, as Go's)."""

_SLASH = r"(?:/|\\/|%2[Ff])"  # "/" as printed, JSON-escaped, or URL-quoted
V2_TOKEN = re.compile(rf"\b(v2{_SLASH}[a-z0-9]{{5}}-gj3su-[a-z0-9]{{15}}{_SLASH})[A-Za-z0-9]+")
"""The secret part of any v2 token (the uuid before it is kept)."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_OURS = "_slurm_dispatch_handler"


def secrets_from_settings(settings: Settings) -> list[str]:
    """Return the secrets to redact: SystemRootToken (and its v2 secret part), ManagementToken, DB password. Pure."""
    found = [settings.system_root_token, settings.management_token]
    found += [str(v) for k, v in settings.postgresql_connection.items() if k.lower() == "password"]
    if settings.system_root_token.startswith("v2/"):
        found.append(settings.system_root_token.rsplit("/", 1)[-1])
    return [s for s in found if s]


class RedactingFilter(logging.Filter):
    """Rewrites each record so no configured secret and no v2 token secret survives formatting.

    The record's ``msg`` becomes the formatted, redacted message and ``args`` is emptied, so every handler after
    this one (and every formatter) sees only redacted text.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Every form of every secret, longest first, so a secret that contains another is replaced whole.
        self._redactor = Redactor(secrets, marker=REDACTED)

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret, in any form, replaced by ``<redacted>``. Pure."""
        text = self._redactor.redact(text)
        # Every form V2_TOKEN matches starts with "v2": most lines have none, and the test is 40 times cheaper
        # than the substitution (4 µs a line here).
        return V2_TOKEN.sub(r"\1" + REDACTED, text) if "v2" in text else text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keeps it. Does no I/O."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record (nor leak its args)
            message = f"{record.msg!s} (unformattable log arguments dropped)"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
            elif not isinstance(value, (int, float, bool, type(None))):
                text = str(value)
                redacted = self.redact(text)
                if redacted != text:
                    setattr(record, key, redacted)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, the extra fields, and exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON. Pure."""
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


_LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
"""Characters that end or garble a line of text (every C0 control but tab, DEL, NEL and the Unicode line and
paragraph separators)."""
_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def one_line(text: str) -> str:
    """Return ``text`` with every line-breaking character escaped (``\\n``, ``\\x1b``, ``\\u2028``). Pure.

    A message may carry text from outside (an sbatch's stderr, a field of an API record): in a line-oriented log,
    a newline in it would start what looks like a record of its own, at any level, from any logger.
    """
    return _LINE_BREAKING.sub(_escape_char, text) if _LINE_BREAKING.search(text) else text


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <msg> key=value ...`` on one line, then the exception text, if any, on the
    following lines, each indented; without ``<time>`` for ``plain`` (``timestamps=False``), as Go's plain format
    leaves the time to the journal.

    A record's first line is the only one that starts at the left margin: its message has its line breaks escaped
    (as Go's text format quotes a message with them: logrus's TextFormatter), and every further line is indented,
    so nothing in a message or an exception can pass for a record of its own.
    """

    def __init__(self, *, timestamps: bool = True) -> None:
        super().__init__()
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as text. Pure."""
        line = f"{record.levelname} {record.name}: {one_line(record.getMessage())}"
        if self._timestamps:
            line = f"{_timestamp(record)} {line}"
        # json.dumps escapes the C0 controls but leaves NEL and the Unicode line separators as they are
        extras = " ".join(f"{k}={one_line(json.dumps(v, default=str, ensure_ascii=False))}"
                          for k, v in _extras(record).items())
        if extras:
            line += " " + extras
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for more in (record.exc_text, record.stack_info):
            if more:
                line += "".join(f"\n    {one_line(part)}" for part in more.splitlines())
        return line


def configure_logging(
    *, level: str, fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in ``fmt``, at ``level``, through the redacting filter.

    Calling it again replaces the handler it installed before (and leaves other handlers, e.g. pytest's, alone).

    Returns:
        The installed handler.

    Raises:
        ConfigError: unknown level or format (naming ``SystemLogs.LogLevel`` / ``SystemLogs.Format``).
    """
    numeric = LEVELS.get(level.strip().lower())
    if numeric is None:
        raise ConfigError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}", key="SystemLogs.LogLevel")
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}", key="SystemLogs.Format")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(timestamps=fmt == "text"))
    handler.addFilter(RedactingFilter(secrets))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def configure_from_settings(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """``configure_logging`` with ``Settings.log_level``/``log_format`` and ``secrets_from_settings``.

    Raises:
        ConfigError: unknown level or format.
    """
    return configure_logging(
        level=settings.log_level, fmt=settings.log_format, secrets=secrets_from_settings(settings), stream=stream
    )
