"""What goes on the wire to the Arvados API, as pure functions: the base URL, the request id, query
parameters, the token's form, and strict JSON. No HTTP library here; ``transport.py`` uses these.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_BASE36 = string.digits + string.ascii_lowercase

_REQUEST_ID_RNG = random.Random()  # seeded from the OS once, at import


def new_request_id() -> str:
    """Return a fresh ``req-<20 base-36 chars>`` request id, as the Go SDK sends. Pure but random.

    A request id only has to be unique enough to find one request in the logs, not unguessable: it comes
    from a pseudo-random generator seeded once, not from the OS's random source (choosing each character
    with ``secrets.choice`` made twenty system calls, the largest CPU cost of a lock request). 104 random bits
    cover 20 base-36 digits.
    """
    n = _REQUEST_ID_RNG.getrandbits(104)
    chars = []
    for _ in range(20):
        n, digit = divmod(n, 36)
        chars.append(_BASE36[digit])
    return "req-" + "".join(chars)


def parse_api_host(api_host: str) -> tuple[str, str]:
    """Return ``(base_url, host)`` for an ARVADOS_API_HOST-style value. Pure.

    ``api_host`` is normally ``host[:port]`` with no scheme, which means https. A URL is
    accepted too: ``https://`` is stripped, and ``http://host:port`` is kept as a plain-HTTP
    base (the sandbox emulator may run without TLS). Any path is dropped.

    Raises:
        ValueError: ``api_host`` is empty, has another scheme, or a port that is not one.
    """
    text = api_host.strip()
    scheme = "https"
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"Arvados API host {api_host!r}: scheme must be http or https")
    host = text.split("/", 1)[0]
    if not host:
        raise ValueError("Arvados API host is empty: set Services.Controller.ExternalURL or ARVADOS_API_HOST")
    try:
        _ = urlsplit(f"//{host}").port
    except ValueError:
        raise ValueError(f"Arvados API host {api_host!r}: the port must be a number from 0 to 65535") from None
    return f"{scheme}://{host}/arvados/v1/", host


def encode_query(params: Mapping[str, Any]) -> dict[str, str]:
    """Return GET parameters as the Go SDK sends them: strings as-is, the rest as JSON; None dropped. Pure."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in params.items()
        if v is not None
    }


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(body: bytes) -> Any:
    """Return the JSON value of ``body``: strict (no NaN or Infinity literals). Pure.

    Raises:
        ValueError: not JSON, not UTF-8, or nested too deep to decode.
    """
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None


def check_token(token: str) -> None:
    """Check that ``token`` can go in an ``Authorization`` header. Pure.

    Arvados tokens are printable ASCII (``v2/<uuid>/<secret>``). A space, newline or other control
    character (a token read from a file with its final newline), or a non-ASCII character, would make
    http.client refuse the header, printing it, token and all, in its error.

    Raises:
        ValueError: the token is empty or holds such a character; the message says which kind and where,
            never the token.
    """
    if not token:
        raise ValueError("no Arvados API token: set SystemRootToken or ARVADOS_API_TOKEN")
    for i, ch in enumerate(token):
        if not "!" <= ch <= "~":
            kind = (
                "a newline" if ch in "\r\n"
                else "a space" if ch.isspace()
                else "a control character" if ch < " " or ch == "\x7f"
                else "a non-ASCII character"
            )
            raise ValueError(
                f"the Arvados API token holds {kind} (character {i + 1} of {len(token)}), which cannot go in an "
                "HTTP header: check SystemRootToken or ARVADOS_API_TOKEN (a stray space or final newline?)"
            )
