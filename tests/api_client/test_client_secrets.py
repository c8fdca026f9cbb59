"""No error the client raises carries its token, in any form: raw, escaped, quoted, JSON, URL, base64.

Each check renders the error the ways it can reach a person: ``str``, ``repr``, the formatted traceback with
its chained causes, and the ``str``/``repr`` of every exception in the chain.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import urllib3
from plugins.fake_http import FakeHttp

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosAPIError, ArvadosAuthError
from slurm_dispatch.sandbox.api import EmulatorServer

UUID = "zzzzz-dz642-queuedcontainer"
BASE = "https://ctrl.example/arvados/v1/"

# Tokens an HTTP header cannot carry: refused when the client is made, without showing them.
UNSENDABLE = {
    "newline": "v2/zzzzz-gj3su-000000000000000/s3cretNewline0123456789\n",
    "crlf-header": "s3cretCrlf0123456789\r\nX-Evil: 1",
    "leading-space": " s3cretSpace0123456789",
    "inner-space": "s3cret Space0123456789",
    "tab": "s3cret\tTab0123456789",
    "nul": "s3cret\x00Nul0123456789",
    "del": "s3cret\x7fDel0123456789",
    "unicode": "s3cretÜnicode☃0123456789",
}
# Tokens that can be sent: every error must still hide them, whatever echoes them back.
SENDABLE = {
    "quote": 's3cret"Quote\'0123456789',
    "backslash": "s3cret\\Backslash\\n0123456789",
    "v2": "v2/zzzzz-gj3su-000000000000000/s3cretV2Token0123456789abcdef",
    "url-chars": "s3cret/Url+Chars%20&=0123456789",
}


def forms(token: str) -> list[str]:
    """The forms in which the token must not appear (written out here, not taken from the code under test)."""
    raw = token.encode("utf-8")
    found = [
        token,
        repr(token)[1:-1],
        repr(repr(token))[1:-1],
        ascii(token)[1:-1],
        repr(raw)[2:-1],
        repr(repr(raw))[1:-1],
        json.dumps(token)[1:-1],
        json.dumps(json.dumps(token))[1:-1],
        quote(token, safe=""),
        quote(token),
        quote_plus(token),
        base64.b64encode(b"user:" + raw).decode(),
        base64.b64encode(raw).decode(),
    ]
    if token.startswith("v2/"):
        found.append(token.split("/")[2])
    return found


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo += [cur.__cause__, cur.__context__, *(a for a in cur.args if isinstance(a, BaseException))]


def assert_hidden(token: str, exc: BaseException) -> None:
    texts = ["".join(traceback.format_exception(exc))]
    for cur in chain(exc):
        texts += [str(cur), repr(cur)]
        request = getattr(cur, "request", None)
        assert request is None, f"{type(cur).__name__}.request holds the Authorization header"
    text = "\n".join(texts)
    for form in forms(token):
        assert form not in text, f"the token leaked as {form!r}"


@pytest.mark.parametrize("token", list(UNSENDABLE.values()), ids=list(UNSENDABLE))
def test_unsendable_token_is_refused_without_showing_it(token: str) -> None:
    with pytest.raises(ValueError, match="cannot go in an HTTP header") as info:
        ArvadosClient(api_host="ctrl.example", token=token)
    assert_hidden(token, info.value)
    with pytest.raises(ValueError, match="SystemRootToken or ARVADOS_API_TOKEN") as info:
        ArvadosClient.from_env({"ARVADOS_API_HOST": "ctrl.example", "ARVADOS_API_TOKEN": token})
    assert_hidden(token, info.value)


def test_refusal_says_what_kind_of_character_and_where() -> None:
    with pytest.raises(ValueError, match=r"holds a newline \(character 11 of 11\)"):
        ArvadosClient(api_host="ctrl.example", token="abcdefghij\n")


def echoes(token: str) -> list[tuple[int, str | bytes]]:
    """Answers that echo the token back in some form (as a broken proxy or a debug page might)."""
    raw = token.encode("utf-8")
    return [
        (422, json.dumps({"errors": [f"bad token {token}"]})),
        (422, json.dumps({"errors": [f"bad token {token!r} ({json.dumps(token)})"]})),
        (500, json.dumps({"errors": [f"Authorization: Basic {base64.b64encode(b'user:' + raw).decode()}"]})),
        (403, json.dumps({"errors": [f"url was /x?api_token={quote(token, safe='')}"]})),
        (200, f"<html>not json: {token!r} {token}</html>"),
        (200, b"\xff not json: " + raw),
        (401, json.dumps({"errors": ["x" * 230 + token]})),  # the token across the trimming point
    ]


@pytest.mark.parametrize("token", list(SENDABLE.values()), ids=list(SENDABLE))
def test_answers_echoing_the_token_do_not_leak_it(token: str) -> None:
    client = ArvadosClient(api_host="ctrl.example", token=token, retry_deadline=0.0, sleep=lambda s: None)
    for status, body in echoes(token):
        with FakeHttp() as mock:
            mock.get(BASE + f"containers/{UUID}", status=status, body=body)
            with pytest.raises(ArvadosAPIError) as info:
                client.get(UUID)
        assert_hidden(token, info.value)


class RaisingPool:
    """A connection pool that fails the way urllib3 or http.client can, quoting the header it was given."""

    def __init__(self, make_error: Any) -> None:
        self.make_error = make_error

    def urlopen(self, method: str, url: str, *, headers: dict[str, str], **kwargs: Any) -> Any:
        raise self.make_error(str(headers["Authorization"]))

    def close(self) -> None:
        pass


def _chained(header: str) -> BaseException:
    try:
        raise ValueError(header)
    except ValueError as inner:
        try:
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()) from inner
        except urllib3.exceptions.ProtocolError as outer:
            return outer


LIBRARY_ERRORS = {
    "protocol-repr": lambda h: urllib3.exceptions.ProtocolError(f"Invalid header value {h!r}"),
    "http-client-bytes": lambda h: ValueError("Invalid header value %r" % (h.encode(),)),  # noqa: UP031
    "unicode-encode": lambda h: UnicodeEncodeError("latin-1", h, 7, 8, "ordinal not in range(256)"),
    "chained-cause": _chained,
    "wrapped-argument": lambda h: urllib3.exceptions.ProtocolError("Connection aborted.", ValueError(h)),
    "header-parsing": lambda h: urllib3.exceptions.HeaderParsingError([], f"Invalid return character in {h!r}"),
    "json-escaped": lambda h: urllib3.exceptions.ProtocolError(json.dumps({"header": h})),
    "read-timeout": lambda h: urllib3.exceptions.ReadTimeoutError(None, f"/x?{quote(h)}", "Read timed out."),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("token", list(SENDABLE.values()), ids=list(SENDABLE))
@pytest.mark.parametrize("make_error", list(LIBRARY_ERRORS.values()), ids=list(LIBRARY_ERRORS))
def test_library_errors_quoting_the_header_do_not_leak_it(token: str, make_error: Any) -> None:
    client = ArvadosClient(api_host="ctrl.example", token=token, pool=RaisingPool(make_error), retry_deadline=0.0)
    with pytest.raises(ArvadosAPIError) as info:
        client.get(UUID)
    assert info.value.__cause__ is None, "a cause that shows the token is not chained"
    assert_hidden(token, info.value)


def test_a_clean_library_error_stays_the_cause_without_its_request() -> None:
    token = SENDABLE["v2"]
    refused = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    client = ArvadosClient(api_host="ctrl.example", token=token, pool=RaisingPool(lambda h: refused),
                           retry_deadline=0.0)
    with pytest.raises(ArvadosAPIError) as info:
        client.get(UUID)
    assert info.value.__cause__ is refused
    assert_hidden(token, info.value)


@pytest.mark.parametrize("token", list(SENDABLE.values()), ids=list(SENDABLE))
def test_refused_hostile_token_over_real_http(emulator: EmulatorServer, token: str) -> None:
    client = ArvadosClient(api_host=emulator.api_host, token=token, insecure=True, retry_deadline=0.0)
    with pytest.raises(ArvadosAuthError) as info:
        client.current_token_uuid()
    assert "refused our token" in str(info.value)
    assert_hidden(token, info.value)
