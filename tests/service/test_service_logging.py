"""Logging set-up: JSON lines that parse, text lines, and the secret-redacting filter."""

from __future__ import annotations

import base64
import io
import json
import logging
import urllib.parse
from collections.abc import Iterator

import pytest

from slurm_dispatch.errors import ConfigError
from slurm_dispatch.service.logging_setup import (
    REDACTED,
    RedactingFilter,
    configure_from_settings,
    configure_logging,
    secrets_from_settings,
)
from slurm_dispatch.settings import Settings

ROOT_TOKEN = "v2/zzzzz-gj3su-000000000000000/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
MGMT = "mgmt-0123456789abcdef"
DB_PASSWORD = "db-Pa55-word"
OTHER_V2 = "v2/zzzzz-gj3su-abcdefghij01234/anothersecretvalue1234567"
SETTINGS = Settings(
    system_root_token=ROOT_TOKEN,
    management_token=MGMT,
    postgresql_connection={"Host": "db", "Password": DB_PASSWORD},
    log_level="debug",
    log_format="json",
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()
    yield buf
    for handler in [h for h in root.handlers if getattr(h, "_slurm_dispatch_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_parse_with_time_level_logger_msg_and_extras(stream: io.StringIO) -> None:
    configure_from_settings(SETTINGS, stream=stream)
    log = logging.getLogger("slurm_dispatch.test")
    log.info("submitted %s as job %d", "zzzzz-dz642-queuedcontainer", 1234, extra={"job_id": 1234, "uuid": "u"})
    log.debug("second line")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second, third = (json.loads(line) for line in lines(stream))
    assert first["msg"] == "submitted zzzzz-dz642-queuedcontainer as job 1234"
    assert (first["level"], first["logger"], first["job_id"], first["uuid"]) == ("info", "slurm_dispatch.test", 1234, "u")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "debug"
    assert third["level"] == "error" and "ValueError: boom" in third["exception"]


def test_text_format(stream: io.StringIO) -> None:
    configure_logging(level="info", fmt="text", stream=stream)
    logging.getLogger("slurm_dispatch.test").warning("squeue failed", extra={"attempt": 3})
    logging.getLogger("slurm_dispatch.test").debug("not shown at info")
    (line,) = lines(stream)
    assert line.endswith(" WARNING slurm_dispatch.test: squeue failed attempt=3")


def test_plain_format_is_text_without_the_time(stream: io.StringIO) -> None:
    """Go's SystemLogs.Format: plain (sdk/go/ctxlog/log.go: setFormat) leaves the time to the journal."""
    configure_logging(level="info", fmt="plain", stream=stream)
    logging.getLogger("slurm_dispatch.test").warning("squeue failed", extra={"attempt": 3})
    assert lines(stream) == ["WARNING slurm_dispatch.test: squeue failed attempt=3"]


def test_reconfiguring_replaces_our_handler(stream: io.StringIO) -> None:
    configure_logging(level="info", fmt="text", stream=io.StringIO())
    configure_logging(level="info", fmt="json", stream=stream)
    logging.getLogger("x").info("once")
    assert len(lines(stream)) == 1
    assert sum(getattr(h, "_slurm_dispatch_handler", False) for h in logging.getLogger().handlers) == 1


@pytest.mark.parametrize(("level", "fmt", "key"), [("loud", "json", "SystemLogs.LogLevel"), ("info", "xml", "SystemLogs.Format")])
def test_bad_level_or_format_names_the_key(level: str, fmt: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(level=level, fmt=fmt)
    assert info.value.key == key


def test_secrets_from_settings() -> None:
    found = secrets_from_settings(SETTINGS)
    assert set(found) == {ROOT_TOKEN, ROOT_TOKEN.rsplit("/", 1)[1], MGMT, DB_PASSWORD}
    assert secrets_from_settings(Settings()) == []


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_redaction_in_msg_args_extras_and_exceptions(stream: io.StringIO, fmt: str) -> None:
    configure_logging(level="debug", fmt=fmt, secrets=secrets_from_settings(SETTINGS), stream=stream)
    log = logging.getLogger("slurm_dispatch.test")
    bare = ROOT_TOKEN.rsplit("/", 1)[1]
    log.info("token in args: %s and %r", ROOT_TOKEN, {"pw": DB_PASSWORD})
    log.info(f"token in msg: {MGMT} and bare {bare}")
    log.info("an unknown v2 token %s", OTHER_V2)
    log.info("in extras", extra={"auth": f"Bearer {MGMT}", "env": {"ARVADOS_API_TOKEN": ROOT_TOKEN}})
    try:
        raise RuntimeError(f"connecting with password={DB_PASSWORD}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in (ROOT_TOKEN, bare, MGMT, DB_PASSWORD, OTHER_V2, "anothersecretvalue1234567"):
        assert secret not in text
    assert text.count(REDACTED) >= 8
    assert "v2/zzzzz-gj3su-abcdefghij01234/" + REDACTED in text  # the uuid survives: it names, it does not grant


def test_filter_rewrites_the_record_for_every_later_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s", (DB_PASSWORD,), None)
    assert RedactingFilter([DB_PASSWORD]).filter(record) is True
    assert record.getMessage() == f"pw={REDACTED}"
    assert record.args is None


def test_unformattable_args_are_dropped_not_leaked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", (MGMT,), None)
    RedactingFilter([]).filter(record)
    assert MGMT not in record.getMessage()
    assert "unformattable" in record.getMessage()


def test_longer_secret_is_replaced_whole() -> None:
    f = RedactingFilter(["abc", "abcdef"])
    assert f.redact("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"


HOSTILE_SECRETS = {
    "newline": "s3cret-newline-0123456789\n",
    "quote": 's3cret"quote\'0123456789',
    "backslash": "s3cret\\backslash\\n0123456789",
    "unicode": "s3cret-ünicode-☃-0123456789",
    "url-chars": "s3cret/url+chars%20&=0123456789",
}


def escaped_forms(secret: str) -> list[str]:
    """How libraries print a secret; written out here, not taken from the code under test."""
    raw = secret.encode("utf-8")
    return [
        secret,
        repr(secret)[1:-1],
        repr(repr(secret))[1:-1],
        ascii(secret)[1:-1],
        repr(raw)[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        base64.b64encode(b"user:" + raw).decode(),
    ]


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("secret", list(HOSTILE_SECRETS.values()), ids=list(HOSTILE_SECRETS))
def test_escaped_forms_of_a_secret_are_redacted(stream: io.StringIO, fmt: str, secret: str) -> None:
    configure_logging(level="debug", fmt=fmt, secrets=[secret], stream=stream)
    log = logging.getLogger("slurm_dispatch.test")
    raw = secret.encode("utf-8")
    log.info("header %r and bytes %r", f"Bearer {secret}", b"Bearer " + raw)
    log.info("as json %s", json.dumps({"token": secret}))
    log.info("in a url %s", "https://h/x?api_token=" + urllib.parse.quote(secret, safe=""))
    log.info("basic auth %s", "Basic " + base64.b64encode(b"user:" + raw).decode())
    log.info("in extras", extra={"env": {"ARVADOS_API_TOKEN": secret}, "header": repr(secret)})
    try:
        try:
            raise ValueError("Invalid header value %r" % (b"Bearer " + raw,))  # noqa: UP031 - as http.client says it
        except ValueError as inner:
            raise RuntimeError(f"request failed: {inner!r}") from inner
    except RuntimeError:
        log.exception("it failed")
    text = stream.getvalue()
    for form in escaped_forms(secret):
        assert form not in text, f"the secret leaked as {form!r}"
    assert text.count(REDACTED) >= 8


def test_unknown_v2_token_secret_is_redacted_when_escaped() -> None:
    f = RedactingFilter([])
    secret = "anothersecretvalue1234567"
    assert f.redact(json.dumps(OTHER_V2).replace("/", "\\/")) == json.dumps(
        "v2/zzzzz-gj3su-abcdefghij01234/" + REDACTED
    ).replace("/", "\\/")
    assert secret not in f.redact(urllib.parse.quote(OTHER_V2, safe=""))
    assert "zzzzz-gj3su-abcdefghij01234" in f.redact(urllib.parse.quote(OTHER_V2, safe=""))


@pytest.mark.parametrize("fmt", ["text", "plain"])
def test_text_record_is_one_line_whatever_its_message_and_exception_carry(stream: io.StringIO, fmt: str) -> None:
    """A message with text from outside (an sbatch's stderr, an API record's field) cannot forge a record: its line
    breaks are escaped, and an exception's lines are indented under the record that carries it."""
    configure_logging(level="info", fmt=fmt, stream=stream)
    forged = "2026-12-08T00:00:00.000Z ERROR slurm_dispatch.dispatch: forged"
    log = logging.getLogger("slurm_dispatch.test")
    log.warning("sbatch said %s", f"no\n{forged}\r\x1b[2J\u2028{forged}\x85end\tok", extra={"stderr": f"x\u2028{forged}"})
    try:
        raise ValueError(f"bad\n{forged}")
    except ValueError:
        log.exception("it failed")
    out = lines(stream)
    records = [line for line in out if not line.startswith("    ")]
    assert len(records) == 2
    assert records[0].endswith(
        f"WARNING slurm_dispatch.test: sbatch said no\\n{forged}\\r\\x1b[2J\\u2028{forged}\\x85end\tok "
        f'stderr="x\\u2028{forged}"'
    )
    assert records[1].endswith("ERROR slurm_dispatch.test: it failed")
    assert out[-2:] == ["    ValueError: bad", f"    {forged}"]
    assert out[2] == "    Traceback (most recent call last):"
