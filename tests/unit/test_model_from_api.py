"""Container.from_api on hostile records: only ValueError, naming the field, never dumping the record."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm_dispatch.model import CONTAINER_UUID_RE, INT64_MAX, Container, ContainerState, routing_fields

UUID = "zzzzz-dz642-queuedcontainer"

# The controller's view of the `queued` fixture (nulls where Go encodes empty slices as null).
CONTROLLER_RECORD: dict[str, Any] = json.loads("""
{"kind":"arvados#container","uuid":"zzzzz-dz642-queuedcontainer","owner_uuid":"zzzzz-tpzed-000000000000000",
 "state":"Queued","priority":1,"locked_by_uuid":"","auth_uuid":"","lock_count":0,
 "created_at":"2016-01-11T11:11:11.111111000Z","modified_at":"2016-01-11T11:11:11.111111000Z",
 "container_image":"test","cwd":"/tmp","output_path":"/tmp","command":["echo","hello"],
 "runtime_constraints":{"ram":12000000000,"vcpus":4,"keep_cache_ram":0,"keep_cache_disk":0,"API":false,
   "gpu":{"stack":"","device_count":0,"driver_version":"","hardware_target":null,"vram":0}},
 "scheduling_parameters":{"partitions":null,"preemptible":false,"max_run_time":0,"supervisor":false},
 "mounts":{"/tmp":{"kind":"tmp","capacity":24000000000}},
 "exit_code":0,"runtime_status":{},"started_at":null,"finished_at":null,"log":"","output":""}
""")


def with_field(path: str, value: Any) -> dict[str, Any]:
    """Return the controller record with the dotted ``path`` set to ``value``."""
    record = json.loads(json.dumps(CONTROLLER_RECORD))
    *parents, last = path.split(".")
    node = record
    for key in parents:
        node = node[key]
    node[last] = value
    return record


def test_controller_record_parses() -> None:
    c = Container.from_api(CONTROLLER_RECORD)
    assert (c.uuid, c.state, c.priority, c.runtime_constraints.ram) == (UUID, ContainerState.QUEUED, 1, 12000000000)
    assert c.scheduling_parameters.partitions == () and c.runtime_constraints.gpu.hardware_target == ()
    assert c.mounts["/tmp"].capacity == 24000000000


def test_nulls_and_missing_keys_are_zero_values() -> None:
    c = Container.from_api(
        {"uuid": UUID, "state": "Locked", "priority": None, "locked_by_uuid": None, "exit_code": None,
         "runtime_constraints": None, "scheduling_parameters": {"partitions": ["", "a"], "max_run_time": None},
         "mounts": None, "runtime_status": None, "created_at": ""}
    )
    assert (c.priority, c.locked_by_uuid, c.exit_code, c.created_at) == (0, "", None, None)
    assert c.scheduling_parameters.partitions == ("a",)
    assert c.runtime_constraints.ram == 0 and c.mounts == {}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param("runtime_constraints.ram", json.loads("1e400"), "runtime_constraints.ram: must be an integer, not inf",
                     id="ram-1e400"),
        pytest.param("runtime_constraints.ram", math.nan, "runtime_constraints.ram: must be an integer, not nan", id="nan"),
        pytest.param("runtime_constraints.vcpus", 2.0, "runtime_constraints.vcpus: must be an integer, not 2.0",
                     id="integral-float"),
        pytest.param("runtime_constraints.vcpus", 2.5, "must be an integer", id="fraction"),
        pytest.param("runtime_constraints.vcpus", True, "runtime_constraints.vcpus: must be an integer, not True",
                     id="bool-as-int"),
        pytest.param("runtime_constraints.vcpus", "4", "must be an integer, not '4'", id="string-as-int"),
        pytest.param("runtime_constraints.ram", -1, "runtime_constraints.ram: must be at least 0, not -1", id="neg-ram"),
        pytest.param("runtime_constraints.vcpus", -4, "runtime_constraints.vcpus: must be at least 0", id="neg-vcpus"),
        pytest.param("runtime_constraints.keep_cache_ram", -1, "keep_cache_ram: must be at least 0", id="neg-kcr"),
        pytest.param("runtime_constraints.keep_cache_disk", -1, "keep_cache_disk: must be at least 0", id="neg-kcd"),
        pytest.param("runtime_constraints.gpu.device_count", -1, "runtime_constraints.gpu.device_count: must be at least 0",
                     id="neg-gpus"),
        pytest.param("scheduling_parameters.max_run_time", -60, "scheduling_parameters.max_run_time: must be at least 0",
                     id="neg-max-run-time"),
        pytest.param("priority", INT64_MAX + 1, "priority: must fit in a 64-bit integer", id="beyond-int64"),
        pytest.param("priority", -1, "priority: must be at least 0", id="neg-priority"),
        pytest.param("runtime_constraints.ram", 10**40, "must fit in a 64-bit integer, not an integer of 133 bits",
                     id="huge-int"),
        pytest.param("scheduling_parameters.partitions", [1, None], "scheduling_parameters.partitions[0]: must be a string",
                     id="partition-int"),
        pytest.param("scheduling_parameters.partitions", "a", "partitions: must be a list of strings, not 'a'",
                     id="partitions-string"),
        pytest.param("scheduling_parameters.preemptible", "false", "preemptible: must be true or false", id="bool-str"),
        pytest.param("runtime_constraints.API", 1, "runtime_constraints.API: must be true or false", id="bool-int"),
        pytest.param("uuid", "--help", "uuid: must be a container uuid (xxxxx-dz642-xxxxxxxxxxxxxxx), not '--help'",
                     id="uuid-option"),
        pytest.param("uuid", UUID + "\n", "uuid: must be a container uuid", id="uuid-newline"),
        pytest.param("uuid", "zzzzz-tpzed-000000000000000", "uuid: must be a container uuid", id="uuid-user"),
        pytest.param("uuid", 12, "uuid: must be a container uuid", id="uuid-int"),
        pytest.param("uuid", None, "container record has no uuid", id="uuid-null"),
        pytest.param("state", "Waiting", "state: must be one of Queued, Locked, Running, Complete, Cancelled, not 'Waiting'",
                     id="state-unknown"),
        pytest.param("state", ["Queued"], "state: must be one of", id="state-list"),
        pytest.param("state", None, "state: must be one of", id="state-null"),
        pytest.param("locked_by_uuid", "me", "locked_by_uuid: must be an Arvados uuid, not 'me'", id="locked-by-junk"),
        pytest.param("locked_by_uuid", 5, "locked_by_uuid: must be a string, not 5", id="locked-by-int"),
        pytest.param("runtime_constraints", [], "runtime_constraints: must be an object, not a list of 0 items",
                     id="rc-list"),
        pytest.param("runtime_constraints", "big", "runtime_constraints: must be an object", id="rc-string"),
        pytest.param("runtime_constraints.gpu", 1, "runtime_constraints.gpu: must be an object, not 1", id="gpu-int"),
        pytest.param("scheduling_parameters", 0, "scheduling_parameters: must be an object", id="sp-int"),
        pytest.param("mounts", ["/tmp"], "mounts: must be an object", id="mounts-list"),
        pytest.param("mounts", {"/tmp": "tmp"}, "mounts['/tmp']: must be an object, not 'tmp'", id="mount-string"),
        pytest.param("mounts", {"/tmp": {"kind": "tmp", "capacity": -5}}, "mounts['/tmp'].capacity: must be at least 0",
                     id="mount-neg"),
        pytest.param("runtime_status", "error", "runtime_status: must be an object", id="rs-string"),
        pytest.param("command", "echo hello", "command: must be a list of strings", id="command-string"),
        pytest.param("command", ["echo", 1], "command[1]: must be a string, not 1", id="command-int"),
        pytest.param("exit_code", 1.5, "exit_code: must be an integer", id="exit-float"),
        pytest.param("created_at", 1700000000, "created_at: not an Arvados timestamp: 1700000000", id="ts-int"),
        pytest.param("created_at", "2016-13-45T00:00:00Z", "created_at: not an Arvados timestamp", id="ts-month-13"),
        pytest.param("created_at", "0001-01-01T00:00:00+01:00", "created_at: not an Arvados timestamp", id="ts-year-0"),
        pytest.param("container_image", "x" * 5000, "container_image: is longer than 1024 characters", id="huge-image"),
        pytest.param("runtime_constraints.gpu.stack", "c" * 10**6, "gpu.stack: is longer than 256 characters",
                     id="huge-stack"),
        pytest.param("scheduling_parameters.partitions", ["p" * 300], "is longer than 256 characters", id="huge-partition"),
    ],
)
def test_bad_field_is_a_value_error_naming_it(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        Container.from_api(with_field(path, value))
    message = str(info.value)
    assert expected in message
    assert len(message) < 200, "the message shows an excerpt, never the whole value or record"


@pytest.mark.parametrize(
    "raw", [None, 1, "x", [], [CONTROLLER_RECORD], True, 1.5], ids=["null", "int", "str", "empty", "list", "bool", "float"]
)
def test_record_that_is_not_an_object(raw: Any) -> None:
    with pytest.raises(ValueError, match="container record: must be an object"):
        Container.from_api(raw)


def test_routing_fields() -> None:
    assert routing_fields(CONTROLLER_RECORD) == (UUID, ContainerState.QUEUED, "")
    locked = {"uuid": UUID, "state": "Locked", "locked_by_uuid": "zzzzz-gj3su-000000000000000", "priority": "junk"}
    assert routing_fields(locked) == (UUID, ContainerState.LOCKED, "zzzzz-gj3su-000000000000000")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param([], "container record: must be an object", id="not-object"),
        pytest.param({"uuid": "x", "state": "Queued"}, "uuid: must be a container uuid", id="uuid"),
        pytest.param({"uuid": UUID, "state": "queued"}, "state: must be one of", id="state"),
        pytest.param({"uuid": UUID, "state": "Locked", "locked_by_uuid": 5}, "locked_by_uuid: must be a string",
                     id="locked-by-number"),
        pytest.param({"uuid": UUID, "state": "Locked", "locked_by_uuid": ["x"]}, "locked_by_uuid: must be a string",
                     id="locked-by-list"),
    ],
)
def test_routing_fields_refuses(raw: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        routing_fields(raw)


def test_null_partition_is_dropped_as_go_decodes_it_to_empty() -> None:
    c = Container.from_api(with_field("scheduling_parameters.partitions", ["a", None, ""]))
    assert c.scheduling_parameters.partitions == ("a",)


@pytest.mark.parametrize("name", ["a,b", "a b", "a\n", " gpu"])
def test_any_partition_string_is_read_as_arvados_accepts_it(name: str) -> None:
    """Rails checks only that partitions are strings: refusing the record here would leave the container Queued for
    ever, unexplained. Building its job says why it cannot run (tests/unit/test_sbatch_args.py)."""
    c = Container.from_api(with_field("scheduling_parameters.partitions", ["p1", name]))
    assert c.scheduling_parameters.partitions == ("p1", name)


def test_uuid_pattern_refuses_a_trailing_newline() -> None:
    assert CONTAINER_UUID_RE.match(UUID)
    assert not CONTAINER_UUID_RE.match(UUID + "\n")


def test_ram_of_1e400_read_from_json_text() -> None:
    raw = json.loads('{"uuid": "' + UUID + '", "state": "Queued", "runtime_constraints": {"ram": 1e400}}')
    with pytest.raises(ValueError, match=r"^runtime_constraints\.ram: must be an integer, not inf$"):
        Container.from_api(raw)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "uuid", "state", "priority", "locked_by_uuid", "auth_uuid", "lock_count", "created_at", "modified_at",
    "container_image", "command", "runtime_constraints", "runtime_constraints.ram", "runtime_constraints.vcpus",
    "runtime_constraints.API", "runtime_constraints.gpu", "runtime_constraints.gpu.device_count",
    "runtime_constraints.gpu.hardware_target", "runtime_constraints.gpu.stack", "scheduling_parameters",
    "scheduling_parameters.partitions", "scheduling_parameters.max_run_time", "scheduling_parameters.preemptible",
    "mounts", "mounts./tmp", "mounts./tmp.capacity", "exit_code", "runtime_status",
]


@settings(max_examples=300, deadline=None)
@given(raw=JSON)
def test_any_json_value_gives_a_container_or_a_value_error(raw: Any) -> None:
    try:
        Container.from_api(raw)
    except ValueError:
        pass


@settings(max_examples=600, deadline=None)
@given(path=st.sampled_from(FIELDS), value=JSON)
def test_any_json_value_in_any_field_gives_a_container_or_a_value_error(path: str, value: Any) -> None:
    try:
        c = Container.from_api(with_field(path, value))
    except ValueError as exc:
        assert len(str(exc)) < 300
        return
    rc = c.runtime_constraints
    for n in (c.priority, rc.ram, rc.vcpus, rc.gpu.device_count, c.scheduling_parameters.max_run_time):
        assert isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= INT64_MAX
    assert all(isinstance(p, str) and p and "," not in p for p in c.scheduling_parameters.partitions)
    assert CONTAINER_UUID_RE.fullmatch(c.uuid)
