"""Hostile API answers at the record and list-page parsers: a clear refusal or a right result, nothing else.

Besides the config (test_config_fuzz.py), outside input enters at six parsers. Two are the API's: container
records (``Container.from_api``, ``routing_fields``) and list pages (``ArvadosClient.list`` and ``list_all``,
answered by an in-memory connection pool, so that the transport's decoding is part of each case); the other four, Slurm's
lines and the job script, are in test_lines_fuzz.py. For each, ``TARGETS`` holds a hypothesis strategy of hostile
cases (valid inputs mutated with huge numbers, floats, NaN, deep nesting, wrong types, long strings, control
characters, odd Unicode and missing keys, and random values) and a check that runs one case, asserts the
property, and returns how it ended, item by item (a record, a call, a line):

    the documented refusal (its exception type; a message naming the field and no longer than
    ``MAX_MESSAGE_CHARS``, so never a huge value), or a result that is right (the values given, within their
    types and ranges); no other exception; within ``Target.max_case_s``.

The property test below covers list pages, which had none; records have theirs in test_model_from_api.py, and
the smoke test runs the records target a little so that its generator keeps working. benchmarks/fuzz_records.py
runs every target of both files thousands of times and prints figures (docs/robustness.md).
"""

from __future__ import annotations

import collections
import copy
import functools
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosMalformedAnswer, ArvadosUnavailable
from slurm_dispatch.model import (
    ARVADOS_UUID_RE,
    CONTAINER_UUID_RE,
    INT64_MAX,
    MAX_IMAGE_CHARS,
    MAX_NAME_CHARS,
    Container,
    ContainerState,
    Mount,
    format_timestamp,
    routing_fields,
)

MAX_MESSAGE_CHARS = 300
"""The longest refusal message accepted: it names the field and shows an excerpt of the value, never all of it."""
OUR_UUID = "zzzzz-dz642-fuzzcontainer01"
TOKEN = "v2/zzzzz-gj3su-000000000000000/fuzzRecordsToken0123456789abcdef"
"""The token of the list-page client: it must never appear in a message."""
Outcomes = collections.Counter[str]

# -- hostile values ------------------------------------------------------------------------------------------


def _nested(depth: int, *, of: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if of == "list" else {"k": value}
    return value


LONG = ["x" * 300, "y" * 5_000, "é" * 50_000, "'" * 5_000, "9" * 5_000]
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, INT64_MAX, INT64_MAX + 1, -(2**63), -(2**63) - 1, 10**40, 10**5000,
    2.0, 1.5, -0.0, 1e300, math.nan, math.inf, -math.inf,
    "", " ", "0", "1", "-1", "1e400", "nan", "true", "null", "\0", "\n", "a\nb", "\r\n", "\t", "a,b", "a b", "a|b",
    "\x1b[2J", "\u202e", "\u2028", "\x85", "\ufeff", "\ud800", "é", "😀", "--help", "-", "%", "$(id)", "`id`",
    "Queued", "Locked", "queued", OUR_UUID, OUR_UUID + "\n", " " + OUR_UUID, "zzzzz-tpzed-000000000000000",
    "2016-01-11T11:11:11.111111000Z", "2016-13-45T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00",
    [], {}, [None], [""], ["a", 1], [[]], {"": None}, {"kind": "tmp", "capacity": -1},
    _nested(200, of="list"), _nested(200, of="dict"), list(range(10_000)), {str(i): i for i in range(2_000)},
    *LONG,
]
"""Values a record should never carry, or carry only at the right place."""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile = st.one_of(st.sampled_from(HOSTILE_VALUES), JSON, st.text(), st.integers(), st.floats())


def short(message: str) -> None:
    assert len(message) <= MAX_MESSAGE_CHARS, f"a message of {len(message)} characters: {message[:200]!r}"



@dataclass(frozen=True)
class Target:
    """One parser: its hostile cases, its check, and the longest one case may take."""

    cases: st.SearchStrategy[Any]
    check: Callable[[Any], Outcomes]
    max_case_s: float
    what: str
    """What each item counted is (records, lines, ...)."""


def smoke(target: Target, examples: int = 20) -> None:
    """Run a few cases of ``target`` (for a target whose property is tested elsewhere)."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def run(case: Any) -> None:
        target.check(case)

    run()


CI = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""The examples a property test runs in CI."""


# -- container records -----------------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def uuids(infix: str) -> st.SearchStrategy[str]:
    part = st.text(ALNUM, min_size=5, max_size=5)
    return st.builds(lambda a, b: f"{a}-{infix}-{b}", part, st.text(ALNUM, min_size=15, max_size=15))


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


counts = st.one_of(st.sampled_from([0, 1, INT64_MAX]), st.integers(0, INT64_MAX))
names = st.text(max_size=40)
timestamps = st.one_of(
    st.none(), st.just(""),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
        format_timestamp),
)
token_uuids = st.one_of(st.none(), st.just(""), uuids("gj3su"))
gpu = st.fixed_dictionaries({}, optional={
    "stack": nullable(names), "device_count": nullable(counts), "driver_version": nullable(names),
    "hardware_target": nullable(st.lists(names, max_size=3)), "vram": nullable(counts)})
runtime_constraints = st.fixed_dictionaries({}, optional={
    "ram": nullable(counts), "vcpus": nullable(counts), "keep_cache_ram": nullable(counts),
    "keep_cache_disk": nullable(counts), "API": nullable(st.booleans()), "gpu": nullable(gpu), "cuda": JSON})
scheduling_parameters = st.fixed_dictionaries({}, optional={
    "partitions": nullable(st.lists(st.one_of(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True),
                                              st.sampled_from(["", None])), max_size=3)),
    "max_run_time": nullable(counts), "preemptible": nullable(st.booleans()), "supervisor": nullable(st.booleans())})
mount = st.fixed_dictionaries({}, optional={"kind": nullable(names), "capacity": nullable(counts), "path": JSON})
valid_records = st.fixed_dictionaries(
    {"uuid": st.one_of(st.just(OUR_UUID), uuids("dz642")), "state": st.sampled_from([s.value for s in ContainerState])},
    optional={
        "kind": st.just("arvados#container"), "priority": nullable(counts), "locked_by_uuid": token_uuids,
        "auth_uuid": token_uuids, "lock_count": nullable(counts), "created_at": timestamps, "modified_at": timestamps,
        "container_image": nullable(st.text(max_size=60)), "command": nullable(st.lists(st.text(max_size=20), max_size=4)),
        "runtime_constraints": nullable(runtime_constraints), "scheduling_parameters": nullable(scheduling_parameters),
        "mounts": nullable(st.dictionaries(st.text(max_size=20), nullable(mount), max_size=3)),
        "exit_code": nullable(st.integers(-(2**63), INT64_MAX)),
        "runtime_status": nullable(st.dictionaries(st.text(max_size=10), JSON, max_size=3)), "log": JSON,
    },
)
"""Records the controller (Go) or Rails could send: nulls and missing keys included."""

RECORD_PATHS = [
    "uuid", "state", "priority", "locked_by_uuid", "auth_uuid", "lock_count", "created_at", "modified_at",
    "container_image", "command", "command.0", "runtime_constraints", "runtime_constraints.ram",
    "runtime_constraints.vcpus", "runtime_constraints.keep_cache_ram", "runtime_constraints.keep_cache_disk",
    "runtime_constraints.API", "runtime_constraints.gpu", "runtime_constraints.gpu.stack",
    "runtime_constraints.gpu.device_count", "runtime_constraints.gpu.driver_version",
    "runtime_constraints.gpu.hardware_target", "runtime_constraints.gpu.hardware_target.0",
    "runtime_constraints.gpu.vram", "scheduling_parameters", "scheduling_parameters.partitions",
    "scheduling_parameters.partitions.0", "scheduling_parameters.max_run_time", "scheduling_parameters.preemptible",
    "scheduling_parameters.supervisor", "mounts", "mounts./tmp", "mounts./tmp.kind", "mounts./tmp.capacity",
    "mounts.\u202e\n", "exit_code", "runtime_status", "runtime_status.error", "output", "unknown_key",
]
"""Where a mutation lands: every field the dispatcher reads, their containers, list items, and keys it ignores."""


def mutated(record: dict[str, Any], mutations: list[tuple[str, bool, Any]]) -> dict[str, Any]:
    """Return a copy of ``record`` with each (path, delete, value) applied (skipped where the path cannot go)."""
    record = copy.deepcopy(record)
    for path, delete, value in mutations:
        *parents, last = path.split(".")
        node: Any = record
        for key in parents:
            if isinstance(node, dict):
                node = node.setdefault(key, {}) if node.get(key) is None else node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                break
        else:
            if isinstance(node, dict):
                if delete:
                    node.pop(last, None)
                else:
                    node[last] = value
            elif isinstance(node, list) and last.isdigit() and int(last) < len(node) and not delete:
                node[int(last)] = value
    return record


mutation = st.tuples(st.sampled_from(RECORD_PATHS), st.integers(0, 5).map(lambda n: n == 0), hostile)
records = st.one_of(
    st.builds(mutated, valid_records, st.lists(mutation, min_size=1, max_size=3)),
    st.builds(mutated, valid_records, st.lists(mutation, min_size=1, max_size=3)),
    valid_records,
    hostile,
)
"""A valid record mutated (weighted twice), a valid record, or any value at all."""

TOP_FIELDS = frozenset(RECORD_PATHS[:8] + ["container_image", "command", "runtime_constraints",
                                            "scheduling_parameters", "mounts", "exit_code", "runtime_status"])


def field_of(message: str) -> str:
    """Return the field a ``from_api`` refusal names (dotted, without indices), asserting it names one."""
    if message.startswith("container record has no uuid"):
        return "uuid"
    if message.startswith("container record: "):
        return "container record"
    m = re.match(r"[a-z_]+(?:\.[A-Za-z_]+)*", message)
    assert m and m.group(0).split(".")[0] in TOP_FIELDS and message[m.end():].startswith(("[", ": ")), \
        f"the message does not start with the field: {message[:200]!r}"
    return m.group(0)


def _get(raw: Mapping[str, Any], path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _z(value: Any, zero: Any) -> Any:
    return zero if value is None else value


def assert_container_right(raw: Mapping[str, Any], c: Container) -> None:
    """Assert that ``c`` holds what ``raw`` says, null and missing meaning zero, and nothing out of range."""
    assert (c.uuid, c.state.value) == (raw["uuid"], raw["state"]) and CONTAINER_UUID_RE.fullmatch(c.uuid)
    for path, zero in [("priority", 0), ("lock_count", 0), ("locked_by_uuid", ""), ("auth_uuid", ""),
                       ("container_image", ""), ("exit_code", None)]:
        assert getattr(c, path) == _z(_get(raw, path), zero), path
    rc, gpu_, sp = c.runtime_constraints, c.runtime_constraints.gpu, c.scheduling_parameters
    for obj, prefix, fields in [
        (rc, "runtime_constraints", [("ram", 0), ("vcpus", 0), ("keep_cache_ram", 0), ("keep_cache_disk", 0)]),
        (gpu_, "runtime_constraints.gpu", [("stack", ""), ("device_count", 0), ("driver_version", ""), ("vram", 0)]),
        (sp, "scheduling_parameters", [("max_run_time", 0), ("preemptible", False), ("supervisor", False)]),
    ]:
        for name, zero in fields:
            assert getattr(obj, name) == _z(_get(raw, f"{prefix}.{name}"), zero), f"{prefix}.{name}"
    assert rc.api == _z(_get(raw, "runtime_constraints.API"), False)
    assert gpu_.hardware_target == tuple(_z(t, "") for t in _z(_get(raw, "runtime_constraints.gpu.hardware_target"), []))
    assert c.command == tuple(_z(w, "") for w in _z(raw.get("command"), []))
    assert sp.partitions == tuple(p for p in _z(_get(raw, "scheduling_parameters.partitions"), []) if p)
    assert c.mounts == {k: Mount(kind=_z(_get(v or {}, "kind"), ""), capacity=_z(_get(v or {}, "capacity"), 0))
                        for k, v in _z(raw.get("mounts"), {}).items()}
    assert c.runtime_status == _z(raw.get("runtime_status"), {})
    for n in (c.priority, c.lock_count, rc.ram, rc.vcpus, rc.keep_cache_ram, rc.keep_cache_disk, gpu_.device_count,
              gpu_.vram, sp.max_run_time, *(m.capacity for m in c.mounts.values())):
        assert type(n) is int and 0 <= n <= INT64_MAX
    assert c.exit_code is None or (type(c.exit_code) is int and -(2**63) <= c.exit_code <= INT64_MAX)
    for text in (c.locked_by_uuid, c.auth_uuid):
        assert not text or ARVADOS_UUID_RE.fullmatch(text)
    assert all(not re.search(r"[\s,\x00-\x1f\x7f]", p) and len(p) <= MAX_NAME_CHARS for p in sp.partitions)
    assert len(c.container_image) <= MAX_IMAGE_CHARS and len(gpu_.stack) <= MAX_NAME_CHARS
    for stamp in (c.created_at, c.modified_at):
        assert stamp is None or stamp.utcoffset() == timedelta(0)


def check_record(raw: Any) -> Outcomes:
    """Run one record through ``routing_fields`` and ``Container.from_api`` and assert the property."""
    try:
        routing = routing_fields(raw)
    except ValueError as exc:
        short(str(exc))
        field_of(str(exc))
        routing = None
    try:
        c = Container.from_api(raw)
    except ValueError as exc:
        short(str(exc))
        return Outcomes({f"refused: {field_of(str(exc))}": 1})
    assert routing == (c.uuid, c.state, c.locked_by_uuid), "routing_fields must agree with from_api"
    assert_container_right(raw, c)
    return Outcomes({"accepted": 1})


# -- list pages ------------------------------------------------------------------------------------------------


class AnswerPool:
    """A connection pool that answers each request with the next of ``answers`` (status 200, JSON), then with an
    empty page."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def urlopen(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        body = self.answers.pop(0) if self.answers else b'{"items": []}'
        return urllib3.HTTPResponse(body=io.BytesIO(body), headers={"Content-Type": "application/json"}, status=200,
                                    preload_content=False)

    def close(self) -> None:
        pass


@functools.cache
def page_client() -> tuple[ArvadosClient, AnswerPool]:
    """Return one client, shared by the cases, whose requests the returned pool answers."""
    pool = AnswerPool()
    return ArvadosClient(api_host="ctrl.example", token=TOKEN, pool=pool, retry_deadline=0.0,
                         sleep=lambda s: None), pool


def _finite(value: Any) -> Any:
    """Return ``value`` with NaN and the infinities as strings: json.dumps would write literals JSON has not, and
    the whole page would be refused as not JSON (RAW_PAGES has such pages; the records target, such values)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(_finite(value), allow_nan=False).encode()
    except (ValueError, RecursionError):  # an integer of more than 4300 digits
        return b'{"items": [], "items_available": ' + b"9" * 5000 + b"}"


page_items = st.lists(st.one_of(records, valid_records, valid_records, valid_records, valid_records), max_size=5)
structured_pages = st.builds(
    mutated,
    st.fixed_dictionaries({"items": page_items}, optional={
        "items_available": st.one_of(counts, counts, counts, hostile), "kind": st.just("arvados#containerList"),
        "offset": hostile, "limit": hostile}),
    st.lists(st.tuples(st.sampled_from(["items", "items_available", "items.0", "items.0.uuid", "items.1"]),
                       st.booleans(), hostile), max_size=1),
).map(_dumps)
RAW_PAGES = [
    b"", b"null", b"[]", b"{}", b'"items"', b"1", b"<html>502 Bad Gateway</html>", b'{"items": [], "items_available": NaN}',
    b'{"items": [], "items_available": Infinity}', b'{"items": [], "items_available": 1e400}',
    b'{"items": [], "items_available": ' + b"1" * 5000 + b"}", b'{"items": [], "items_available": -' + b"1" * 4000 + b"}",
    b'{"items": [{"uuid": "' + OUR_UUID.encode() + b'", "state": "Queued", "priority": ' + b"7" * 4400 + b"}]}",
    b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"items": [' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]}",
    b'\xef\xbb\xbf{"items": [], "items_available": 0}', '{"items": [], "items_available": 0}'.encode("utf-16"),
    b'{"items": ["\xff\xfe"], "items_available": 1}', b'{"items": [{"uuid": "\\ud800"}], "items_available": 1}',
    b'{"items": [], "items": {}, "items_available": 0}', b'{"items": [], "items_available": 0',
    b'{"items": [' + (b'{"uuid": "' + OUR_UUID.encode() + b'", "state": "Queued"},') * 20_000 + b"1]}",
]
"""Answers no JSON encoder writes: not JSON, truncated, literals JSON has not, numbers past Python's digit limit,
nesting past the recursion limit, a BOM, UTF-16, bad UTF-8, a lone surrogate, duplicate keys, a long page."""
page_bodies = st.builds(
    lambda pick, page, raw, binary, cut: page if pick < 6 else raw if pick == 6 else binary if pick == 7 else page[:cut],
    st.integers(0, 9), structured_pages, st.sampled_from(RAW_PAGES), st.binary(max_size=200), st.integers(0, 200),
)
"""Six in ten a page (mutated or not), one a body no encoder writes, one random bytes, two a page cut short."""
page_cases = st.fixed_dictionaries({
    "body": page_bodies,
    "call": st.sampled_from(["list", "list", "list_all", "list_all_probe"]),
    "count": st.sampled_from(["exact", "none"]),
    "select": st.sampled_from([None, None, ["uuid", "state", "priority"], ["state"]]),
})
"""A body, and the call it answers: one ``list`` page, or ``list_all``'s page after a valid probe, or its probe."""
VALID_PROBE = b'{"items": [], "items_available": 1000}'


def check_page(case: Mapping[str, Any]) -> Outcomes:
    """Answer one call with ``case["body"]`` and assert the property (a ListPage or Containers, or a typed error)."""
    api, pool = page_client()
    select = case["select"]
    if case["call"] == "list":
        pool.answers = [case["body"]]
    else:
        pool.answers = [VALID_PROBE, case["body"]] if case["call"] == "list_all" else [case["body"]]
    try:
        if case["call"] == "list":
            result: Any = api.list(filters=[["state", "=", "Queued"]], count=case["count"], select=select)
        else:
            result = [c for page in api.list_all(filters=[], select=select) for c in page]
    except ArvadosMalformedAnswer as exc:
        text = str(exc)
        short(text)
        assert TOKEN not in text and exc.status == 200
        m = re.search(r": (not a container list: [^;\[]+|answer is not a JSON object|not a valid container record)", text)
        assert m, f"an unknown problem: {text!r}"
        return Outcomes({"refused: " + re.sub(r"\d+", "N", m.group(1)): 1})
    except ArvadosUnavailable as exc:
        text = str(exc)
        short(text)
        assert TOKEN not in text and "answer is not JSON" in text, text
        return Outcomes({"refused: not JSON (ArvadosUnavailable)": 1})
    body = json.loads(case["body"])
    if case["call"] == "list":
        assert result.items == body["items"] and all(isinstance(i, dict) for i in result.items)
        if select is None or "uuid" in select:
            assert all(CONTAINER_UUID_RE.fullmatch(i["uuid"]) for i in result.items)
        n = result.items_available
        assert (n is None and case["count"] == "none") or (type(n) is int and 0 <= n <= INT64_MAX)
    else:
        assert all(isinstance(c, Container) for c in result)
        page = body["items"] if case["call"] == "list_all" else []
        assert [c.uuid for c in result] == [i["uuid"] for i in page]
    return Outcomes({"accepted": 1})


TARGETS: dict[str, Target] = {
    "container record": Target(records, check_record, 1.0, "records"),
    "list page": Target(page_cases, check_page, 2.0, "calls"),
}


@CI
@given(case=page_cases)
def test_a_list_answer_is_a_checked_page_or_a_typed_error(case: dict[str, Any]) -> None:
    check_page(case)


def test_the_records_target_still_runs() -> None:
    smoke(TARGETS["container record"])
