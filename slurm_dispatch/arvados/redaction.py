"""Every form a secret can take in a text, and a redactor that removes them all. Pure; no I/O.

A token rarely leaks as itself. Python and the HTTP libraries print it escaped: ``repr`` turns a newline into
``\\n`` (and a ``repr`` of that message into ``\\\\n``), http.client and urllib3 print header values as bytes
reprs, JSON escapes quotes and backslashes, a URL percent-encodes ``/``, and HTTP Basic auth base64-encodes
``user:token``. ``secret_forms`` lists those forms (nested up to three escapes deep) and ``Redactor`` replaces them.
The API client scrubs its error messages with it, and the service's logging filter
(``slurm_dispatch.service.logging_setup.RedactingFilter``) every log record.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

_Escape = Callable[[str], str]


def _repr_inner(text: str) -> str:
    return repr(text)[1:-1]


def _repr_inner_both_quotes(text: str) -> str:
    # repr escapes a single quote only when the text also holds a double quote, as an enclosing message may.
    return repr(text + '"')[1:-2]


def _ascii_inner(text: str) -> str:
    return ascii(text)[1:-1]


def _bytes_repr(encoding: str) -> _Escape:
    def escape(text: str) -> str:
        try:
            return repr(text.encode(encoding))[2:-1]
        except UnicodeEncodeError:
            return text

    return escape


def _json_inner(text: str) -> str:
    return json.dumps(text)[1:-1]


def _json_inner_unicode(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _json_slash(text: str) -> str:
    return json.dumps(text)[1:-1].replace("/", "\\/")  # JSON may escape "/" too (Ruby's and PHP's encoders do)


def _url(safe: str, plus: bool) -> _Escape:
    def escape(text: str) -> str:
        return quote_plus(text, safe=safe) if plus else quote(text, safe=safe)

    return escape


def _url_lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text, safe=""))


ESCAPES: tuple[_Escape, ...] = (
    _repr_inner,
    _repr_inner_both_quotes,
    _ascii_inner,
    _bytes_repr("utf-8"),
    _bytes_repr("latin-1"),
    _json_inner,
    _json_inner_unicode,
    _json_slash,
    _url("", False),
    _url("/", False),
    _url("", True),
    _url("/", True),
    _url_lower_hex,
)
"""The ways a library may escape a text it prints: reprs (str, ASCII, bytes), JSON and URL encodings."""

BASE64_MIN_CHARS = 8
"""Base64 forms shorter than this are not listed: they would match ordinary text."""


def _base64_forms(secret: str) -> set[str]:
    """Return the base64 text that ``secret`` produces wherever it sits in a longer encoded byte string.

    Base64 encodes 3 bytes at a time, so the encoding of ``user:secret`` depends on where the secret starts
    within a 3-byte group. For each of the three alignments, the groups that hold only secret bytes encode
    to the same text, whatever surrounds them; those texts are returned (standard and URL-safe alphabets).
    """
    data = secret.encode("utf-8")
    forms: set[str] = set()
    for skip in range(3):
        whole = data[skip:]
        whole = whole[: len(whole) - len(whole) % 3]
        if not whole:
            continue
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(whole).decode("ascii")
            if len(text) >= BASE64_MIN_CHARS:
                forms.add(text)
    return forms


def secret_forms(secret: str) -> set[str]:
    """Return ``secret`` and every escaped form of it (``ESCAPES`` applied up to three times, base64). Pure.

    Args:
        secret: the secret; an empty one has no forms.
    """
    if not secret:
        return set()
    once = {secret} | {escape(secret) for escape in ESCAPES}
    twice = {escape(form) for form in once for escape in ESCAPES}
    # A third level only for the escapes that double backslashes: the repr of a message that holds
    # the repr of an exception that printed a header's bytes (``\\\\n``).
    thrice = {escape(form) for form in twice for escape in (_repr_inner, _json_inner)}
    return {form for form in once | twice | thrice | _base64_forms(secret) if form}


def token_secrets(token: str) -> list[str]:
    """Return the secrets in an Arvados token: the token, and for ``v2/<uuid>/<secret>[/...]`` its secret. Pure.

    The v2 secret alone grants as much as the whole token (crunch-run adds a fourth part, the container uuid).
    """
    parts = token.split("/")
    if len(parts) >= 3 and parts[0] == "v2" and parts[2]:
        return [token, parts[2]]
    return [token] if token else []


class Redactor:
    """Replaces every form of some secrets in a text with a marker. Pure; thread-safe once built."""

    def __init__(self, secrets: Iterable[str], *, marker: str) -> None:
        """Prepare the pattern; does no I/O.

        Args:
            secrets: the secrets (empty ones are ignored).
            marker: what each occurrence becomes.
        """
        forms = sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
        # Longest first: the alternation then takes the longest form that starts at a position.
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._longest = len(forms[0]) if forms else 0
        self._marker = marker

    def redact(self, text: str) -> str:
        """Return ``text`` with every form of every secret replaced by the marker. Pure."""
        return text if self._pattern is None else self._pattern.sub(self._marker, text)

    def found_in(self, text: str) -> bool:
        """Return True when some form of a secret occurs in ``text``. Pure."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def trimmed(self, text: str, limit: int) -> str:
        """Return ``text`` redacted and cut to ``limit`` characters (the last one then ``…``). Pure.

        A long text is first cut, before redaction, at a point that no secret form straddles, so that
        cutting never leaves part of a secret behind; then redacted; then cut to ``limit``.
        """
        window = 4 * limit + self._longest
        if len(text) > window:
            text = text[: self._safe_cut(text, window)]
        text = self.redact(text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text

    def _safe_cut(self, text: str, cut: int) -> int:
        """Return ``cut``, moved back to the start of any secret form that straddles it. Pure."""
        if self._pattern is None:
            return cut
        moved = True
        while moved and cut > 0:
            moved = False
            for m in self._pattern.finditer(text, max(0, cut - self._longest + 1), cut + self._longest):
                if m.start() < cut < m.end():
                    cut, moved = m.start(), True
                    break
        return cut
