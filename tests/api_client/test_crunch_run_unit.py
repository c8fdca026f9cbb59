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
