"""Answers that are not what a call promises: a typed error for the whole answer, never a crash.

The contract with the dispatcher: ``list`` refuses a whole page (``ArvadosMalformedAnswer``, a failed
query: no information) unless it is a list of objects that each carry a container uuid, with a count;
any other problem in one item is left to ``Container.from_api``, which raises ValueError for that item.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from plugins.fake_http import FakeHttp

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosMalformedAnswer,
    ArvadosUnavailable,
    TransientError,
)
from slurm_dispatch.model import Container

BASE = "https://ctrl.example/arvados/v1/"
UUID = "zzzzz-dz642-queuedcontainer"
TOKEN = "v2/zzzzz-gj3su-000000000000000/malformed-test-token-0123456789"


@pytest.fixture
def mock() -> Iterator[FakeHttp]:
    with FakeHttp(assert_all_requests_are_fired=False) as m:
        yield m


@pytest.fixture
def client() -> ArvadosClient:
    return ArvadosClient(api_host="ctrl.example", token=TOKEN, retry_deadline=0.0, sleep=lambda s: None)


def record(**fields: Any) -> dict[str, Any]:
    return {"uuid": UUID, "state": "Queued", "priority": 1, **fields}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"items_available": 0}, "no items list", id="no-items"),
        pytest.param({"items": {"a": 1}, "items_available": 1}, "items is not a list", id="items-object"),
        pytest.param({"items": "[]", "items_available": 0}, "items is not a list", id="items-string"),
        pytest.param({"items": [record(), 1], "items_available": 2}, "items[1] is not an object", id="item-int"),
        pytest.param({"items": [None], "items_available": 1}, "items[0] is not an object", id="item-null"),
        pytest.param({"items": [[record()]], "items_available": 1}, "items[0] is not an object", id="item-list"),
        pytest.param({"items": [record(uuid="--help")], "items_available": 1}, "items[0].uuid is not a container uuid",
                     id="uuid-option"),
        pytest.param({"items": [{"state": "Queued"}], "items_available": 1}, "items[0].uuid", id="uuid-missing"),
        pytest.param({"items": [record(uuid=UUID + "\n")], "items_available": 1}, "items[0].uuid", id="uuid-newline"),
        pytest.param({"items": []}, "no items_available in a count=exact answer", id="count-missing"),
        pytest.param({"items": [], "items_available": -1}, "items_available is not a count", id="count-negative"),
        pytest.param({"items": [], "items_available": 1.0}, "items_available is not a count", id="count-float"),
        pytest.param({"items": [], "items_available": "7"}, "items_available is not a count", id="count-string"),
        pytest.param({"items": [], "items_available": True}, "items_available is not a count", id="count-bool"),
        pytest.param({"items": [], "items_available": 2**63}, "items_available is not a count", id="count-huge"),
    ],
)
def test_malformed_list_page_is_one_typed_error(
    client: ArvadosClient, mock: FakeHttp, body: Any, problem: str
) -> None:
    mock.get(BASE + "containers", json=body)
    with pytest.raises(ArvadosMalformedAnswer) as info:
        client.list(filters=[], count="exact")
    error = info.value
    assert isinstance(error, ArvadosAPIError) and isinstance(error, TransientError)
    assert (error.status, error.method, error.path) == (200, "GET", "/arvados/v1/containers")
    assert f"not a container list: {problem}" in str(error)
    assert "check the API server" in str(error)
    assert len(str(error)) < 300, "the message names the problem, it does not dump the answer"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[]", id="list"),
        pytest.param('"items"', id="string"),
        pytest.param("null", id="null"),
        pytest.param("7", id="number"),
    ],
)
def test_answer_that_is_not_an_object(client: ArvadosClient, mock: FakeHttp, body: str) -> None:
    mock.get(BASE + "containers", body=body)
    with pytest.raises(ArvadosMalformedAnswer, match="answer is not a JSON object"):
        client.list(filters=[])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"items": [], "items_available": NaN}', id="nan"),
        pytest.param('{"items": [], "items_available": Infinity}', id="infinity"),
        pytest.param("[" * 200_000 + "]" * 200_000, id="deep-nesting"),
        pytest.param(b'{"items": ["\xff"]}', id="not-utf8"),
        pytest.param("<html>502 Bad Gateway</html>", id="html"),
    ],
)
def test_answer_that_is_not_json(client: ArvadosClient, mock: FakeHttp, text: str | bytes) -> None:
    mock.get(BASE + "containers", body=text)
    with pytest.raises(ArvadosUnavailable, match="answer is not JSON") as info:
        client.list(filters=[])
    assert len(str(info.value)) < 300


def test_count_none_page_may_omit_items_available(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "containers", json={"items": [record()]})
    page = client.list(filters=[], count="none")
    assert page.items_available is None and page.items == [record()]


def test_select_without_uuid_does_not_need_uuids(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "containers", json={"items": [{"state": "Queued"}], "items_available": 1})
    assert client.list(filters=[], select=["state"]).items == [{"state": "Queued"}]


def test_one_bad_item_is_left_to_from_api(client: ArvadosClient, mock: FakeHttp) -> None:
    """A page of well-formed items with one bad field: the page is fine, that item's parse raises ValueError."""
    text = json.dumps({"items": [record(), record(uuid="zzzzz-dz642-badramcontainer")], "items_available": 2})
    mock.get(BASE + "containers", body=text.replace('"priority": 1}]', '"priority": 1, "runtime_constraints": '
                                                    '{"ram": 1e400}}]'))
    page = client.list(filters=[])
    assert [item["uuid"] for item in page.items] == [UUID, "zzzzz-dz642-badramcontainer"]
    assert Container.from_api(page.items[0]).uuid == UUID
    with pytest.raises(ValueError, match=r"runtime_constraints\.ram: must be an integer, not inf"):
        Container.from_api(page.items[1])


def test_list_all_refuses_a_page_with_an_invalid_record(client: ArvadosClient, mock: FakeHttp) -> None:
    bad = '{"items": [{"uuid": "%s", "state": "Queued", "runtime_constraints": {"ram": 1e400}}]}' % UUID  # noqa: UP031
    mock.get(BASE + "containers", json={"items": [], "items_available": 1})
    mock.get(BASE + "containers", body=bad)
    with pytest.raises(ArvadosMalformedAnswer, match=r"not a valid container record: runtime_constraints\.ram"):
        list(client.list_all(filters=[]))


def test_get_of_another_container_is_malformed(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + f"containers/{UUID}", json=record(uuid="zzzzz-dz642-othercontainer1"))
    with pytest.raises(ArvadosMalformedAnswer, match="about container zzzzz-dz642-othercontainer1, not " + UUID):
        client.get(UUID)


@pytest.mark.parametrize("uuid", [None, "", 5, "me", "zzzzz-gj3su-000000000000000\n"], ids=repr)
def test_current_token_uuid_must_be_a_uuid(client: ArvadosClient, mock: FakeHttp, uuid: Any) -> None:
    mock.get(BASE + "api_client_authorizations/current", json={"uuid": uuid})
    with pytest.raises(ArvadosMalformedAnswer, match="uuid"):
        client.current_token_uuid()


def test_a_uuid_argument_cannot_change_the_path(client: ArvadosClient, mock: FakeHttp) -> None:
    mock.get(BASE + "containers/..%2F..%2Fusers%2Fcurrent%3Fx", status=404, json={"errors": ["no"]})
    with pytest.raises(ArvadosAPIError) as info:
        client.get("../../users/current?x")
    assert info.value.status == 404
    assert mock.calls[0].request.path_url == "/arvados/v1/containers/..%2F..%2Fusers%2Fcurrent%3Fx"
