"""Which typed error an Arvados API answer means: the status table, the server's error text, ``Retry-After``.

Pure functions over plain values (status, reason phrase, decoded body), so that the table can be read and
tested without a network library; ``transport.py`` feeds them what ``requests`` received.

====================  =========================================================
HTTP status           error
====================  =========================================================
401                   ``ArvadosAuthError`` (the token is refused: fatal at startup)
403                   ``ArvadosPermissionDenied`` (a per-container rule), except on
                      ``api_client_authorizations/current``: ``ArvadosAuthError``
404                   ``ArvadosNotFound``
422                   ``ArvadosConflict`` (normal on a lost lock race)
429, 5xx but 501      ``ArvadosUnavailable`` (transient)
anything else         ``ArvadosAPIError``
====================  =========================================================

The transient set is the Go SDK's (sdk/go/arvados/client.go: Client.Do, which retries what
go-retryablehttp's DefaultRetryPolicy retries: connection errors, 429, and 5xx other than 501).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosPermissionDenied,
    ArvadosUnavailable,
)

SYSTEM_ROOT_HINT = "check SystemRootToken (ARVADOS_API_TOKEN)"


def status_error(
    *,
    status: int,
    method: str,
    path: str,
    text: str,
    api_host: str,
    auth_call: bool,
    scrub: Callable[[str], str],
) -> ArvadosAPIError:
    """Return the typed error for a non-2xx answer (see the module's table). Pure.

    Args:
        status: the HTTP status.
        method: the request's method.
        path: the request's path (no query string).
        text: the server's error text (already scrubbed), from ``error_text``.
        api_host: the API host, named in the message of a refused token.
        auth_call: the call checks our own token (``api_client_authorizations/current``): a 403
            there means the token is useless, not that one container is out of reach.
        scrub: removes our token from a text (for the message built here).
    """
    if status == 401 or (status == 403 and auth_call):
        return ArvadosAuthError(
            status, method, path, scrub(f"Arvados API at {api_host} refused our token ({text}): {SYSTEM_ROOT_HINT}")
        )
    cls: type[ArvadosAPIError]
    if status == 403:
        cls = ArvadosPermissionDenied
    elif status == 404:
        cls = ArvadosNotFound
    elif status == 422:
        cls = ArvadosConflict
    elif status == 429 or (status >= 500 and status != 501):
        cls = ArvadosUnavailable
    else:
        cls = ArvadosAPIError
    return cls(status, method, path, text)


def error_text(body: Any, *, reason: str, status: int) -> str:
    """Return the server's ``errors`` strings joined, else the reason phrase, else ``HTTP <status>``. Pure.

    ``body`` is the decoded JSON answer (None when it was not JSON). Arvados answers an error with
    ``{"errors": ["..."], "error_token": "..."}``. The result is not scrubbed or trimmed.
    """
    text = ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            text = "; ".join(str(e) for e in errors)
        elif isinstance(errors, str):
            text = errors
    return text or reason or f"HTTP {status}"


def retry_after_s(value: str | None, *, now_epoch: float) -> float | None:
    """Return the delay a ``Retry-After`` header asks for (seconds or an HTTP date), or None. Pure."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)
