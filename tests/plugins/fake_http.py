"""A scripted API server at the API client's connection pool, for unit tests of the client.

The client sends its requests through urllib3 (``slurm_dispatch.arvados.transport``). Inside ``with FakeHttp() as
mock:``, every request a client's own pool would send goes to ``mock`` instead, which answers from the answers
registered for its method and URL and records the request; everything above the pool (headers, the body read,
decompression, deadlines, retries, error mapping) runs as in production. The registering calls follow the
``responses`` library's, which these tests used while the client was built on ``requests``:

* ``mock.get(url, json=..., status=200, body=..., headers=...)`` (and ``post``, ``put``, ``add(method, url,
  ...)``): ``body`` is bytes or text, or an exception to raise instead of answering; ``headers`` are sent as
  they are (a ``Content-Encoding: gzip`` body must be gzipped already).
* ``mock.add_callback(method, url, callback=f)``: ``f(request)`` returns ``(status, headers, body)``.
* A URL matches whatever its query string. When several answers match, the first is used and dropped, except
  the last one, which answers every later request.
* ``mock.calls[i].request`` has ``method``, ``url`` (with the query), ``path_url``, ``headers`` and ``body``.
* Leaving the block fails the test if a request found no registered answer (the client saw a failed connection,
  which a test expecting an error could take for the failure it meant to provoke), or if an answer was never
  used, unless ``FakeHttp(assert_all_requests_are_fired=False)`` (the ``responses`` default and opt-out).
"""

from __future__ import annotations

import http.client
import io
import json as jsonlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import pytest
import urllib3

from slurm_dispatch.arvados import transport

GET, POST, PUT = "GET", "POST", "PUT"
_MISSING = object()


def _without_query(url: str) -> str:
    """Return ``url`` without its query, and without the scheme's default port."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port not in (None, {"https": 443, "http": 80}.get(parts.scheme)) else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass
class Request:
    """A request the client sent."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None

    @property
    def path_url(self) -> str:
        """The request target: the path and the query."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Call:
    """One request and what answered it."""

    request: Request
    response: urllib3.HTTPResponse | None = None


Answer = Callable[[Request], tuple[int, Mapping[str, str], bytes | str]]


@dataclass
class _Route:
    method: str
    url: str
    answer: Answer | BaseException
    used: bool = False


@dataclass
class FakeHttp:
    """Answers the requests of every client's own pool while it is entered (a context manager)."""

    assert_all_requests_are_fired: bool = True
    calls: list[Call] = field(default_factory=list)
    unmatched: list[Request] = field(default_factory=list)
    _routes: list[_Route] = field(default_factory=list)
    _patch: pytest.MonkeyPatch | None = None

    def __enter__(self) -> Self:
        self._patch = pytest.MonkeyPatch()
        fake = self

        def urlopen(pool: urllib3.HTTPConnectionPool, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
            default = 443 if pool.scheme == "https" else 80
            port = f":{pool.port}" if pool.port not in (None, default) else ""
            return fake.urlopen(method, f"{pool.scheme}://{pool.host}{port}{url}", **kwargs)

        for cls in (transport._GuardedHTTPConnectionPool, transport._GuardedHTTPSConnectionPool):
            self._patch.setattr(cls, "urlopen", urlopen)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._patch is not None:
            self._patch.undo()
        if exc_type is not None:
            return  # the test failed already: that is the error to see
        if self.unmatched:
            wrong = ", ".join(f"{r.method} {r.url}" for r in self.unmatched)
            pytest.fail(f"FakeHttp: requests no answer was registered for: {wrong}")
        unused = [f"{r.method} {r.url}" for r in self._routes if not r.used]
        if self.assert_all_requests_are_fired and unused:
            pytest.fail(f"FakeHttp: answers registered but never requested: {', '.join(unused)}")

    def add(
        self,
        method: str,
        url: str,
        *,
        json: Any = _MISSING,
        body: bytes | str | BaseException = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``method`` request to ``url`` with this status, headers and body (or raise ``body``)."""
        if isinstance(body, BaseException):
            self._routes.append(_Route(method, url, body))
            return
        sent = dict(headers or {})
        if json is not _MISSING:
            body = jsonlib.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        content = body

        def answer(request: Request) -> tuple[int, Mapping[str, str], bytes | str]:
            return status, sent, content

        self._routes.append(_Route(method, url, answer))

    def get(self, url: str, **kwargs: Any) -> None:
        self.add(GET, url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> None:
        self.add(POST, url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> None:
        self.add(PUT, url, **kwargs)

    def add_callback(self, method: str, url: str, *, callback: Answer) -> None:
        """Answer every ``method`` request to ``url`` with ``callback(request)``."""
        self._routes.append(_Route(method, url, callback))

    def urlopen(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> urllib3.HTTPResponse:
        """Record the request and return the registered answer, its body not yet read (as the pool does)."""
        request = Request(method, url, dict(headers or {}), body)
        call = Call(request)
        self.calls.append(call)
        base = _without_query(url)
        matches = [r for r in self._routes if r.method == method and _without_query(r.url) == base]
        if not matches:
            self.unmatched.append(request)
            raise urllib3.exceptions.ProtocolError(f"FakeHttp: no answer registered for {method} {base}")
        route = matches[0]
        route.used = True
        if len(matches) > 1:
            self._routes.remove(route)
        if isinstance(route.answer, BaseException):
            raise route.answer
        status, answer_headers, content = route.answer(request)
        data = content.encode() if isinstance(content, str) else content
        call.response = urllib3.HTTPResponse(
            body=io.BytesIO(data), headers=dict(answer_headers), status=status,
            reason=http.client.responses.get(status, ""), preload_content=False,
            decode_content=kwargs.get("decode_content", True), request_method=method, request_url=url,
        )
        return call.response
