"""The emulator's small helpers: record copies and random uuid tails."""

from __future__ import annotations

import string
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.sandbox.api.jsonb import copy_json
from slurm_dispatch.sandbox.api.rules import random_tail

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_copy_json_is_equal_and_shares_no_container(value: object) -> None:
    copied = copy_json(value)
    assert copied == value

    def containers(v: object) -> list[object]:
        if isinstance(v, dict):
            return [v, *[c for x in v.values() for c in containers(x)]]
        if isinstance(v, list):
            return [v, *[c for x in v for c in containers(x)]]
        return []

    originals = {id(c) for c in containers(value)}
    assert not originals & {id(c) for c in containers(copied)}


def test_copy_json_detaches_a_record_and_deep_copies_other_types() -> None:
    stamp = datetime(2026, 1, 1)
    record = {"mounts": {"/out": {"kind": "tmp"}}, "command": ["true"], "odd": [stamp, {1, 2}]}
    copied = copy_json(record)
    copied["mounts"]["/out"]["kind"] = "collection"
    copied["command"].append("x")
    copied["odd"][1].add(3)
    assert record == {"mounts": {"/out": {"kind": "tmp"}}, "command": ["true"], "odd": [stamp, {1, 2}]}


def test_random_tail_is_base36_of_the_asked_length_and_varies() -> None:
    tails = [random_tail() for _ in range(2000)]
    assert all(len(t) == 15 and set(t) <= set(string.digits + string.ascii_lowercase) for t in tails)
    assert len(set(tails)) == len(tails)
    secret = random_tail(50)
    assert len(secret) == 50
    # every character turns up: no digit of the base-36 conversion is stuck
    assert set("".join(tails)) == set(string.digits + string.ascii_lowercase)
