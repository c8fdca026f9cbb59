"""Pure parts of the crunch-run stand-in: argv, behaviour from the record, fake PDHs."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from slurm_dispatch.sandbox.crunch_run import (
    Behaviour,
    Mode,
    behaviour_of,
    fake_pdh,
    node_name,
    on_node,
    take_gateway_secret,
    uuid_from_argv,
)

UUID = "zzzzz-dz642-queuedcontainer"


@pytest.mark.parametrize(
    "argv",
    [
        [UUID],
        ["--runtime-engine=docker", UUID],
        ["-runtime-engine=singularity", "--debug", "--list", UUID],
    ],
)
def test_uuid_from_argv(argv: list[str]) -> None:
    assert uuid_from_argv(argv) == UUID


@pytest.mark.parametrize("argv", [[], ["--runtime-engine=docker"], ["not-a-uuid"], [UUID, "extra"]])
def test_uuid_from_argv_rejects(argv: list[str]) -> None:
    with pytest.raises(ValueError, match="usage"):
        uuid_from_argv(argv)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param({"command": ["echo", "hello"]}, Behaviour(), id="default"),
        pytest.param({"command": ["sleep", "3"]}, Behaviour(duration=3.0), id="sleep"),
        pytest.param({"command": ["sleep", "0.25"]}, Behaviour(duration=0.25), id="fraction"),
        pytest.param(
            {"command": ["sleep", "1"], "environment": {"SANDBOX_CRUNCH_RUN": "fail"}},
            Behaviour(mode=Mode.FAIL, duration=1.0),
            id="fail",
        ),
        pytest.param(
            {"environment": {"SANDBOX_CRUNCH_RUN": "fail-before-running"}},
            Behaviour(mode=Mode.FAIL_BEFORE_RUNNING),
            id="fail-before-running",
        ),
        pytest.param({"environment": None, "command": None}, Behaviour(), id="nulls"),
        pytest.param({"environment": {"SANDBOX_CRUNCH_RUN": "broken-node"}}, Behaviour(mode=Mode.BROKEN_NODE),
                     id="broken-everywhere"),
        pytest.param({"environment": {"SANDBOX_CRUNCH_RUN": "broken-node", "SANDBOX_BROKEN_NODES": " c1  c3 "}},
                     Behaviour(mode=Mode.BROKEN_NODE, broken_nodes=("c1", "c3")), id="broken-on-some"),
        pytest.param({"environment": {"SANDBOX_CRUNCH_RUN": "broken-node", "SANDBOX_BROKEN_NODES": ""}},
                     Behaviour(mode=Mode.BROKEN_NODE, broken_nodes=()), id="broken-nowhere"),
        pytest.param({"environment": {"SANDBOX_CRUNCH_RUN": "complete", "SANDBOX_BROKEN_NODES": "c1"}},
                     Behaviour(), id="broken-nodes-only-with-its-mode"),
        pytest.param({"command": ["sleep", "-5"]}, Behaviour(), id="negative"),
    ],
)
def test_behaviour_of(record: dict[str, Any], expected: Behaviour) -> None:
    assert behaviour_of(record) == expected


def test_hang_works_forever() -> None:
    assert behaviour_of({"environment": {"SANDBOX_CRUNCH_RUN": "hang"}}).duration == math.inf


@pytest.mark.parametrize(
    "record", [{"environment": {"SANDBOX_CRUNCH_RUN": "explode"}}, {"command": ["sleep", "x"]}]
)
def test_unreadable_behaviour_warns_and_completes(record: dict[str, Any]) -> None:
    got = behaviour_of(record)
    assert got.mode is Mode.COMPLETE and got.duration == 0.0 and got.warning


def test_every_mode_name_is_documented() -> None:
    import slurm_dispatch.sandbox.crunch_run as module

    assert all(f"``{m.value}``" in (module.__doc__ or "") for m in Mode)


def test_fake_pdh_looks_like_a_pdh() -> None:
    pdh = fake_pdh(UUID, "log")
    assert re.fullmatch(r"[0-9a-f]{32}\+\d+", pdh)
    assert pdh == fake_pdh(UUID, "log") != fake_pdh(UUID, "output")


def test_take_gateway_secret_unsets_it() -> None:
    env = {"GatewayAuthSecret": "ab" * 32, "PATH": "/bin"}
    assert take_gateway_secret(env) == "ab" * 32
    assert env == {"PATH": "/bin"}
    assert take_gateway_secret(env) == ""


def test_broken_nodes_that_are_not_node_names_are_dropped_with_a_warning() -> None:
    got = behaviour_of({"environment": {"SANDBOX_CRUNCH_RUN": "broken-node",
                                        "SANDBOX_BROKEN_NODES": "c1 ;rm -rf c2 -x"}})
    assert got.broken_nodes == ("c1", "c2")
    assert got.warning.startswith("ignoring what is not a node name in SANDBOX_BROKEN_NODES=")


BROKEN_ON_C1 = Behaviour(mode=Mode.BROKEN_NODE, broken_nodes=("c1",))


@pytest.mark.parametrize(
    ("behaviour", "node", "mode", "warning"),
    [
        pytest.param(BROKEN_ON_C1, "c1", Mode.BROKEN_NODE, "", id="listed"),
        pytest.param(BROKEN_ON_C1, "c2", Mode.COMPLETE,
                     "node c2 is not broken (SANDBOX_BROKEN_NODES: c1); behaving as 'complete'", id="not-listed"),
        pytest.param(BROKEN_ON_C1, "c", Mode.COMPLETE,
                     "node c is not broken (SANDBOX_BROKEN_NODES: c1); behaving as 'complete'", id="not-a-prefix"),
        pytest.param(Behaviour(mode=Mode.BROKEN_NODE), "c2", Mode.BROKEN_NODE, "", id="every-node"),
        pytest.param(Behaviour(mode=Mode.BROKEN_NODE, broken_nodes=()), "c1", Mode.COMPLETE,
                     "node c1 is not broken (SANDBOX_BROKEN_NODES: none); behaving as 'complete'", id="no-node"),
        pytest.param(Behaviour(mode=Mode.FAIL), "c2", Mode.FAIL, "", id="other-mode"),
    ],
)
def test_on_node(behaviour: Behaviour, node: str, mode: Mode, warning: str) -> None:
    got = on_node(behaviour, node)
    assert (got.mode, got.warning) == (mode, warning)
    assert got.duration == behaviour.duration


def test_node_name_is_slurms_else_the_short_host_name() -> None:
    assert node_name({"SLURMD_NODENAME": "c7"}) == "c7"
    short = node_name({})
    assert short and "." not in short
