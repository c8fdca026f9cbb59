"""HTTP contract of the emulated container list: filters, paging, order, select.

As services/api/lib/record_filters.rb and load_param.rb do it.
"""

from __future__ import annotations

from typing import Any

import pytest


def uuids(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {item["uuid"] for item in resp.json()["items"]}


@pytest.fixture
def three(emulator_control: Any, arv: Any) -> dict[str, str]:
    """Three containers: Queued priority 0, Queued priority 5, Locked (null exit_code everywhere)."""
    held = emulator_control.create_container(priority=0)["uuid"]
    ready = emulator_control.create_container(priority=5)["uuid"]
    locked = emulator_control.create_container(priority=2)["uuid"]
    assert arv.lock(locked).status_code == 200
    return {"held": held, "ready": ready, "locked": locked}


def test_string_priority_operand_compares_numerically(arv: Any, three: dict[str, str]) -> None:
    got = arv.list(filters=[["state", "=", "Queued"], ["priority", ">", "0"]])
    assert uuids(got) == {three["ready"]}
    assert uuids(arv.list(filters=[["priority", ">=", "10"]])) == set()  # "10" > "5" as text, not as numbers


def test_in_and_not_in_empty_lists(arv: Any, three: dict[str, str]) -> None:
    assert uuids(arv.list(filters=[["uuid", "in", []]])) == set()
    assert uuids(arv.list(filters=[["uuid", "not in", []]])) == set()
    # not in [] matches only NULLs: every exit_code here is NULL
    assert uuids(arv.list(filters=[["exit_code", "not in", []]])) == set(three.values())


def test_not_equal_and_not_in_match_nulls(arv: Any, three: dict[str, str]) -> None:
    me = "zzzzz-gj3su-000000000000000"
    assert uuids(arv.list(filters=[["locked_by_uuid", "!=", me]])) == {three["held"], three["ready"]}
    assert uuids(arv.list(filters=[["locked_by_uuid", "not in", [me]]])) == {three["held"], three["ready"]}
    assert uuids(arv.list(filters=[["locked_by_uuid", "=", None]])) == {three["held"], three["ready"]}
    assert uuids(arv.list(filters=[["locked_by_uuid", "!=", None]])) == {three["locked"]}
    assert uuids(arv.list(filters=[["locked_by_uuid", "not in", [me, None]]])) == set()


def test_in_rejects_strings_on_integer_columns(arv: Any, three: dict[str, str]) -> None:
    resp = arv.list(filters=[["priority", "in", ["5"]]])
    assert resp.status_code == 422
    assert resp.json()["errors"] == ["#<ArgumentError: Invalid element '5' in array for integer attribute 'priority'>"]
    assert uuids(arv.list(filters=[["priority", "in", [5, 2]]])) == {three["ready"], three["locked"]}


def test_like_on_integer_column_is_invalid_attribute(arv: Any, three: dict[str, str]) -> None:
    resp = arv.list(filters=[["priority", "like", "5%"]])
    assert resp.status_code == 422
    assert resp.json()["errors"] == ["#<ArgumentError: Invalid attribute 'priority' in filter>"]
    assert uuids(arv.list(filters=[["state", "ILIKE", "q%"]])) == {three["held"], three["ready"]}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (["uuid", "is_a", "arvados#container"], {"held", "ready", "locked"}),
        (["uuid", "is_a", ["arvados#log"]], set()),
        (["locked_by_uuid", "is_a", "arvados#apiClientAuthorization"], {"locked"}),
        (["runtime_auth_scopes", "contains", "all"], {"held", "ready", "locked"}),
        (["runtime_status", "exists", "error"], set()),
        (["runtime_status.error", "exists", False], {"held", "ready", "locked"}),
        (["runtime_status.error", "!=", "x"], {"held", "ready", "locked"}),
        ("(priority > lock_count)", {"ready", "locked"}),
        (["(priority <= lock_count)", "=", True], {"held"}),
        (["created_at", ">", "2000-01-01T00:00:00Z"], {"held", "ready", "locked"}),
        (["created_at", "<", "2000-01-01"], set()),
    ],
)
def test_other_operators(arv: Any, three: dict[str, str], flt: Any, expected: set[str]) -> None:
    assert uuids(arv.list(filters=[flt])) == {three[k] for k in expected}


def test_subproperty_filters(arv: Any, three: dict[str, str]) -> None:
    uuid = three["locked"]
    assert arv.update(uuid, {"runtime_status": {"error": "boom", "n": 3}}).status_code == 200
    assert uuids(arv.list(filters=[["runtime_status.error", "=", "boom"]])) == {uuid}
    assert uuids(arv.list(filters=[["runtime_status", "exists", "error"]])) == {uuid}
    assert uuids(arv.list(filters=[["runtime_status.n", ">", 2]])) == {uuid}
    assert uuids(arv.list(filters=[["runtime_status.error", "like", "bo%"]])) == {uuid}
    assert uuids(arv.list(filters=[["runtime_status.error", "in", ["boom", "x"]]])) == {uuid}
    resp = arv.list(filters=[["state.x", "=", "y"]])
    assert resp.status_code == 422
    assert resp.json()["errors"] == ["#<ArgumentError: Invalid attribute 'state' for subproperty filter>"]


def test_limit_zero_counts_and_count_none_omits(arv: Any, three: dict[str, str]) -> None:
    body = arv.list(limit=0, count="exact", filters=[["state", "=", "Queued"]]).json()
    assert body["items"] == [] and body["items_available"] == 2
    assert arv.list(count="").json()["items_available"] == 3
    body = arv.list(count="none", limit=1).json()
    assert "items_available" not in body and len(body["items"]) == 1
    assert set(arv.list().json()) == {"kind", "items", "items_available", "offset", "limit"}
    assert arv.list().json()["limit"] == 100


def test_limit_is_clamped(make_emulator: Any) -> None:
    emu, arv = make_emulator(max_items_per_response=2)
    for _ in range(3):
        emu.create_container({})
    body = arv.list(limit=50).json()
    assert body["limit"] == 2 and len(body["items"]) == 2 and body["items_available"] == 3


def test_a_page_ends_at_max_index_database_read_bytes(make_emulator: Any) -> None:
    """application_controller.rb: limit_database_read: the record whose text and JSON columns reach the cap is left
    out (unless it is the first); limits 0 and 1 are not cut; with ``select`` only the selected columns count."""
    emu, arv = make_emulator(max_index_database_read=10_000)
    big = {"/in": {"kind": "json", "content": {"x": "a" * 3000}}}
    made = [emu.create_container({"priority": 9 - i, "mounts": big})["uuid"] for i in range(6)]
    order = ["priority desc"]
    assert [i["uuid"] for i in arv.list(limit=6, order=order).json()["items"]] == made[:2], "3 × 3 kB + the rest"
    assert len(arv.list(limit=1, order=order).json()["items"]) == 1
    assert arv.list(limit=0, count="exact").json()["items_available"] == 6
    small = arv.list(limit=6, order=order, select=["uuid", "priority", "state"]).json()["items"]
    assert [i["uuid"] for i in small] == made, "mounts not selected: not read, not counted"
    emu_one, arv_one = make_emulator(max_index_database_read=100)
    first = emu_one.create_container({"priority": 2, "mounts": big})["uuid"]
    emu_one.create_container({"priority": 1, "mounts": big})
    assert [i["uuid"] for i in arv_one.list(limit=5, order=order).json()["items"]] == [first], (
        "a page always holds one record")


def test_select_drops_the_order_terms_of_columns_not_selected(arv: Any, emulator_control: Any) -> None:
    """load_param.rb: load_select_param: ordering by a column not selected would be an SQL error, so Rails drops
    that term, the default ``modified_at desc`` too: equal priorities then fall to ``uuid desc``."""
    made = [emulator_control.create_container(priority=3)["uuid"] for _ in range(6)]
    whole = [i["uuid"] for i in arv.list(order=["priority desc"]).json()["items"]]
    assert whole == made[::-1], "modified_at desc: the latest first"
    selected = [i["uuid"] for i in arv.list(order=["priority desc"], select=["uuid", "priority"]).json()["items"]]
    assert selected == sorted(made, reverse=True), "priority desc, uuid desc"


def test_select_keeps_kind_and_etag(arv: Any, three: dict[str, str]) -> None:
    body = arv.list(select=["uuid", "priority"]).json()
    assert all(set(item) == {"kind", "etag", "uuid", "priority"} for item in body["items"])
    one = arv.get(f"/arvados/v1/containers/{three['ready']}", params={"select": '["state"]'}).json()
    assert set(one) == {"kind", "etag", "state"}


def test_order_defaults_and_parsing(arv: Any, emulator_control: Any) -> None:
    made = [emulator_control.create_container(priority=p)["uuid"] for p in (3, 1, 3, 2)]
    by_prio = [i["uuid"] for i in arv.list(order=["priority desc"]).json()["items"]]
    prios = [arv.container(u)["priority"] for u in by_prio]
    assert prios == sorted(prios, reverse=True)
    # ties (same priority) fall back to modified_at desc: the later-created 3 comes first
    assert by_prio[:2] == [made[2], made[0]]
    assert [i["uuid"] for i in arv.list(order="priority desc, bogus asc, uuid sideways").json()["items"]] == by_prio
    by_uuid = [i["uuid"] for i in arv.list(order="uuid asc, priority desc").json()["items"]]
    assert by_uuid == sorted(made)


def _page_all(arv: Any, between: Any, *, limit: int) -> list[str]:
    seen: list[str] = []
    total = arv.list(limit=0, order=["priority desc"]).json()["items_available"]
    offset = 0
    while offset < total:
        items = arv.list(limit=limit, offset=offset, count="none", order=["priority desc"]).json()["items"]
        if not items:
            break
        seen += [i["uuid"] for i in items]
        offset += len(items)
        between(seen)
    return seen


def test_offset_paging_is_stable_while_priorities_change(emulator_control: Any, arv: Any) -> None:
    made = [emulator_control.create_container(priority=1 + i % 7)["uuid"] for i in range(35)]
    prio = {u: arv.container(u)["priority"] for u in made}

    def churn(seen: list[str]) -> None:
        # Swap priorities within the already-seen prefix and within the unseen rest: records
        # move, but none crosses the paging cursor, so every unchanged record keeps its rank
        # relative to the cursor.
        unseen = [u for u in made if u not in seen]
        for group in (seen[:2], unseen[-2:]):
            if len(group) == 2:
                a, b = group
                prio[a], prio[b] = prio[b], prio[a]
                emulator_control.set_priority(a, prio[a])
                emulator_control.set_priority(b, prio[b])

    seen = _page_all(arv, churn, limit=7)
    assert len(seen) == len(set(seen)) == len(made)


def test_offset_paging_without_snapshot_like_postgres(emulator_control: Any, arv: Any) -> None:
    # Offset paging over a changing table is not a snapshot: a record that jumps from after
    # the cursor to before it shifts the others by one, so one unchanged record is seen twice.
    # The emulator reproduces this (the Go dispatcher's next poll heals it).
    made = [emulator_control.create_container(priority=10 + i)["uuid"] for i in range(6)]
    page1 = [i["uuid"] for i in arv.list(limit=3, order=["priority desc"]).json()["items"]]
    emulator_control.set_priority(made[0], 100)  # lowest jumps to the top
    page2 = [i["uuid"] for i in arv.list(limit=3, offset=3, order=["priority desc"]).json()["items"]]
    assert page1[-1] in page2 and made[0] not in page1 + page2
