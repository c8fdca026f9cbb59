"""Request parameters as the Arvados controller reads them.

As in lib/controller/router/request.go: loadRequestParams and guessAndParse, and
lib/controller/router/router.go (``_method``, ``X-Http-Method-Override``, PUT as PATCH).

Parameters come from the query string, a form-encoded body (values JSON-encoded,
as the Go SDK sends them: ``container={"state":"Cancelled"}``) or a JSON body.
Strings are decoded loosely, as the controller does: one starting with ``[``, ``{``
or ``"`` is JSON; ``"null"`` and ``""`` mean null. When the resource key
(``container``, ``log``) is missing from a JSON body, the body itself is the
resource. ``_method=`` and ``X-Http-Method-Override`` override the method. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from slurm_dispatch.sandbox.api.apierrors import ApiError

RESERVED = frozenset({"api_token", "oauth_token", "_method", "select", "filters", "order", "limit", "offset",
                      "count", "where", "distinct", "cluster_id", "ensure_unique_name", "reader_tokens"})


@dataclass
class Request:
    """A parsed request: effective method, path, parameters, and the raw JSON body if any."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json_body: dict[str, Any] | None = None

    def resource(self, key: str) -> dict[str, Any]:
        """Return the resource attributes under ``key`` (or the JSON body itself when it is missing).

        Raises:
            ApiError: 422 when the attributes are not a JSON object.
        """
        if key in self.params and self.params[key] is not None:
            value = self.params[key]
        elif self.json_body is not None:
            value = {k: v for k, v in self.json_body.items() if k not in RESERVED}
        else:
            value = {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ApiError(422, f"{key} parameter is not a JSON object") from None
        if not isinstance(value, dict):
            raise ApiError(422, f"{key} parameter is not a JSON object")
        return value


def loose(value: str) -> Any:
    """Return a query/form string decoded as the controller decodes it. Pure."""
    if value in ("", "null"):
        return None
    if value[:1] in ("[", "{", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_request(
    *, method: str, path: str, query: str, content_type: str, body: bytes, override: str | None
) -> Request:
    """Return the parsed request. Pure.

    Raises:
        ApiError: 400 for a body that is neither form-encoded nor JSON.
    """
    params: dict[str, Any] = {k: loose(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    json_body: dict[str, Any] | None = None
    ctype = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace") if body else ""
    if text.strip():
        if ctype == "application/x-www-form-urlencoded":
            params.update({k: loose(v) for k, v in parse_qsl(text, keep_blank_values=True)})
        elif ctype in ("", "application/json", "text/json") or text.lstrip()[:1] == "{":
            try:
                decoded = json.loads(text)
            except ValueError:
                raise ApiError(400, "request body is not valid JSON") from None
            if not isinstance(decoded, dict):
                raise ApiError(400, "request body must be a JSON object")
            json_body = decoded
            for k, v in decoded.items():
                params[k] = loose(v) if isinstance(v, str) and k in RESERVED else v
        else:
            raise ApiError(400, f"unsupported content type {ctype!r}")
    effective = method.upper()
    forced = override or params.pop("_method", None)
    if isinstance(forced, str) and forced.strip():
        effective = forced.strip().upper()
    if effective == "PATCH":
        effective = "PUT"  # the controller treats PUT and PATCH alike
    return Request(method=effective, path=path, params=params, json_body=json_body)
