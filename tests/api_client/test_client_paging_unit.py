"""list_all paging against a tiny in-test list endpoint (a ``FakeHttp`` callback).

The end-to-end version runs against the emulator in test_client_emulator.py; this one
pins the exact calls (probe, then count=none pages, offset += len(items)).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from plugins.fake_http import GET, FakeHttp

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosUnavailable

BASE = "https://ctrl.example/arvados/v1/"


class ListServer:
    """Serves ``total`` containers, clamping pages to ``max_page`` rows; can fail one call."""

    def __init__(self, total: int, max_page: int = 1000, fail_call: int = -1) -> None:
        self.records = [
            {"uuid": f"zzzzz-dz642-{i:015d}", "state": "Queued", "priority": total - i} for i in range(total)
        ]
        self.max_page = max_page
        self.fail_call = fail_call
        self.queries: list[dict[str, str]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.queries.append(q)
        if len(self.queries) - 1 == self.fail_call:
            return 500, {}, json.dumps({"errors": ["database went away"]})
        offset, limit = int(q.get("offset", "0")), min(int(q.get("limit", "100")), self.max_page)
        body: dict[str, Any] = {"items": self.records[offset : offset + limit]}
        if q.get("count", "exact") == "exact":
            body["items_available"] = len(self.records)
        return 200, {}, json.dumps(body)


@pytest.fixture
def client() -> Iterator[ArvadosClient]:
    c = ArvadosClient(api_host="ctrl.example", token="t0ken", retry_deadline=0.0, sleep=lambda s: None)
    yield c
    c.close()


def serve(mock: FakeHttp, server: ListServer) -> None:
    mock.add_callback(GET, BASE + "containers", callback=server)


@pytest.mark.parametrize(
    ("total", "batch", "max_page", "pages"),
    [
        pytest.param(0, 10, 1000, [], id="empty"),
        pytest.param(25, 10, 1000, [10, 10, 5], id="three-pages"),
        pytest.param(20, 10, 1000, [10, 10], id="exact-multiple"),
        pytest.param(25, 10, 4, [4, 4, 4, 4, 4, 4, 1], id="server-clamps"),
    ],
)
def test_list_all_pages(
    client: ArvadosClient, total: int, batch: int, max_page: int, pages: list[int]
) -> None:
    server = ListServer(total, max_page=max_page)
    with FakeHttp() as mock:
        serve(mock, server)
        got = list(client.list_all(filters=[["state", "=", "Queued"]], batch_size=batch))
    assert [len(p) for p in got] == pages
    assert [c.uuid for p in got for c in p] == [r["uuid"] for r in server.records]
    probe, *rest = server.queries
    assert (probe["count"], probe["limit"], probe["order"]) == ("exact", "0", '["priority desc"]')
    assert all(q["count"] == "none" and q["limit"] == str(batch) for q in rest)
    assert [int(q.get("offset", "0")) for q in rest] == [sum(pages[:i]) for i in range(len(rest))]
    assert len(rest) == len(pages), "stops at items_available without an extra empty page"


def test_list_all_stops_on_an_empty_page_when_rows_vanish(client: ArvadosClient) -> None:
    server = ListServer(30)
    with FakeHttp() as mock:
        serve(mock, server)
        pages = client.list_all(filters=[], batch_size=10)
        first = next(pages)
        del server.records[5:]  # containers left the queue between pages
        rest = list(pages)
    assert len(first) == 10 and rest == []


def test_list_all_error_raises_mid_iteration(client: ArvadosClient) -> None:
    server = ListServer(30, fail_call=2)
    got: list[int] = []
    with FakeHttp() as mock:
        serve(mock, server)
        with pytest.raises(ArvadosUnavailable, match="database went away"):
            for page in client.list_all(filters=[], batch_size=10):
                got.append(len(page))
    assert got == [10], "a failed listing is an exception, never a short or empty result"


def test_list_all_rejects_batch_size_zero(client: ArvadosClient) -> None:
    with pytest.raises(ValueError):
        next(client.list_all(filters=[], batch_size=0))
