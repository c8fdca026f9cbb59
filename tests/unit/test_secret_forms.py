"""secret_forms and Redactor: every printed form of a secret is found, and trimming never leaves part of one."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm_dispatch.arvados.redaction import Redactor, secret_forms, token_secrets

SECRET = 'S3CRET-"quoted\'-back\\slash-ü-0123456789'


@pytest.mark.parametrize(
    "printed",
    [
        pytest.param(lambda s: s, id="raw"),
        pytest.param(lambda s: repr(s), id="repr"),
        pytest.param(lambda s: repr(repr(s)), id="repr-of-repr"),
        pytest.param(lambda s: repr(repr(repr(s))), id="repr-thrice"),
        pytest.param(lambda s: ascii(s), id="ascii"),
        pytest.param(lambda s: repr(s.encode()), id="bytes-utf8"),
        pytest.param(lambda s: repr(repr(s.encode())), id="repr-of-bytes"),
        pytest.param(lambda s: repr(s.encode("latin-1", "replace")), id="bytes-latin1"),
        pytest.param(lambda s: json.dumps(s), id="json"),
        pytest.param(lambda s: json.dumps(s, ensure_ascii=False), id="json-unicode"),
        pytest.param(lambda s: json.dumps(json.dumps(s)), id="json-of-json"),
        pytest.param(lambda s: json.dumps(s).replace("/", "\\/"), id="json-slash"),
        pytest.param(lambda s: quote(s, safe=""), id="url"),
        pytest.param(lambda s: re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(s, safe="")), id="url-lower-hex"),
        pytest.param(lambda s: repr(quote(s)), id="repr-of-url"),
    ],
)
def test_printed_forms_are_found_and_redacted(printed: object) -> None:
    secret = SECRET if "latin1" not in str(printed) else SECRET.replace("ü", "u")
    text = f"Authorization: Bearer {printed(secret)} (end)"  # type: ignore[operator]
    redactor = Redactor([secret], marker="<x>")
    assert redactor.found_in(text)
    assert "S3CRET" not in redactor.redact(text)


@pytest.mark.parametrize("user", ["", "u", "us", "use", "user", "admin-user"])
def test_basic_auth_base64_is_found_whatever_the_user_name(user: str) -> None:
    header = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    redactor = Redactor([SECRET], marker="<x>")
    assert redactor.found_in(f"Authorization: Basic {header}")
    assert len(redactor.redact(header)) < len(header) // 2, "all but a few edge characters are gone"


def test_v2_token_secrets() -> None:
    assert token_secrets("v2/zzzzz-gj3su-000000000000000/abc/zzzzz-dz642-queuedcontainer") == [
        "v2/zzzzz-gj3su-000000000000000/abc/zzzzz-dz642-queuedcontainer",
        "abc",
    ]
    assert token_secrets("v1secret") == ["v1secret"]
    assert token_secrets("") == []
    assert secret_forms("") == set()


def test_longest_form_wins() -> None:
    assert Redactor(["abc", "abcdef"], marker="<x>").redact("abcdef abc") == "<x> <x>"


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["x", "yy ", "\n", SECRET, repr(SECRET), "ü"]), max_size=60),
    limit=st.integers(min_value=8, max_value=200),
)
def test_trimming_never_leaves_part_of_a_secret(pieces: list[str], limit: int) -> None:
    text = "".join(pieces)
    out = Redactor([SECRET], marker="<x>").trimmed(text, limit)
    assert len(out) <= limit
    assert "S3CR" not in out, "a cut must not keep the start of a secret"
