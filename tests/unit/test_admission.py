"""admission.admit: which Queued containers are locked this tick, and why the others wait. Table tests and the
stateful rate limiter and overload backoff, on a fake clock."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugins.fake_time import FakeClock

from slurm_dispatch.dispatch.admission import (
    PREVIOUS_ATTEMPT,
    QUIET_AFTER_OVERLOAD_S,
    Admission,
    Drain,
    Limits,
    admit,
)
from slurm_dispatch.model import Container


def ctr(n: int, *, supervisor: bool = False, priority: int = 100) -> Container:
    return Container.from_api({"uuid": f"zzzzz-dz642-{n:015d}", "state": "Queued", "priority": priority,
                               "scheduling_parameters": {"supervisor": supervisor}})


def nobody_busy(container: Container) -> str | None:
    return None


def run(candidates: list[Container], **kw: Any) -> tuple[list[int], dict[int, str]]:
    kw.setdefault("in_slurm", 0)
    kw.setdefault("supervisors_in_slurm", 0)
    kw.setdefault("limits", Limits())
    kw.setdefault("drain", None)
    kw.setdefault("budget", None)
    kw.setdefault("busy", nobody_busy)
    verdict = admit(candidates, **kw)
    return ([int(c.uuid[-15:]) for c in verdict.lock], {int(u[-15:]): r for u, r in verdict.waiting.items()})


def test_no_limits_locks_everything_in_order() -> None:
    assert run([ctr(1), ctr(2), ctr(3)]) == ([1, 2, 3], {})


def test_drained_locks_nothing_and_says_so() -> None:
    locked, waiting = run([ctr(1), ctr(2)], drain=Drain("upgrading Slurm", "2026-12-07T10:00:00.000000000Z"))
    assert locked == []
    assert waiting[1] == ("Waiting: the dispatcher is drained since 2026-12-07T10:00:00.000000000Z (upgrading "
                          "Slurm); it locks no new container until it is resumed.")


def test_the_cap_counts_what_is_already_in_slurm() -> None:
    locked, waiting = run([ctr(1), ctr(2), ctr(3), ctr(4)], in_slurm=1, limits=Limits(max_in_slurm=3))
    assert locked == [1, 2]
    assert waiting == {
        3: "Waiting in queue at position 1.  This dispatcher is at its limit of 3 containers in Slurm.",
        4: "Waiting in queue at position 2.  This dispatcher is at its limit of 3 containers in Slurm.",
    }


def test_supervisors_over_their_cap_wait_in_the_workflow_queue_and_children_pass() -> None:
    cands = [ctr(1, supervisor=True), ctr(2, supervisor=True), ctr(3), ctr(4, supervisor=True), ctr(5)]
    locked, waiting = run(cands, supervisors_in_slurm=0, limits=Limits(max_supervisors=1))
    assert locked == [1, 3, 5]
    assert waiting == {
        2: ("Waiting in workflow queue at position 1.  Cluster is at capacity and cannot start any new workflows "
            "right now."),
        4: ("Waiting in workflow queue at position 2.  Cluster is at capacity and cannot start any new workflows "
            "right now."),
    }


def test_a_busy_container_waits_for_its_previous_attempt() -> None:
    locked, waiting = run([ctr(1), ctr(2)], busy=lambda c: PREVIOUS_ATTEMPT if c.uuid.endswith("1") else None,
                          limits=Limits(max_in_slurm=1))
    assert (locked, waiting) == ([2], {1: "Waiting for previous container attempt to exit."})


def test_the_budget_says_rate_or_overload() -> None:
    locked, waiting = run([ctr(1), ctr(2)], budget=1, limits=Limits(locks_per_minute=6))
    assert locked == [1] and waiting[2].endswith("Submissions are limited to 6 a minute.")
    _, waiting = run([ctr(1), ctr(2)], budget=1, overloaded=True)
    assert waiting[2].endswith("The Arvados API is overloaded: this dispatcher locks fewer containers until it "
                               "recovers.")


@pytest.mark.parametrize(
    ("cap", "fraction", "given", "expected"),
    [
        pytest.param(0, 0.5, 0, 0, id="no-cap-no-supervisor-limit-as-the-cloud-dispatcher"),
        pytest.param(10, 0.5, 0, 5, id="half-of-the-cap"),
        pytest.param(3, 0.1, 0, 1, id="at-least-one"),
        pytest.param(10, 0.0, 0, 0, id="fraction-0-off"),
        pytest.param(0, 0.5, 2, 2, id="an-absolute-number-without-a-cap"),
        pytest.param(10, 0.5, 2, 2, id="an-absolute-number-wins"),
    ],
)
def test_supervisor_limit_from_settings(cap: int, fraction: float, given: int, expected: int) -> None:
    limits = Limits.from_settings(max_in_slurm=cap, max_supervisors=given, supervisor_fraction=fraction,
                                  locks_per_minute=0)
    assert limits.max_supervisors == expected


@given(
    n=st.integers(0, 30),
    supervisors=st.lists(st.booleans(), min_size=30, max_size=30),
    in_slurm=st.integers(0, 10),
    sup_in_slurm=st.integers(0, 10),
    cap=st.integers(0, 20),
    max_sup=st.integers(0, 5),
    budget=st.one_of(st.none(), st.integers(0, 10)),
    drained=st.booleans(),
)
def test_admit_never_exceeds_a_limit(n: int, supervisors: list[bool], in_slurm: int, sup_in_slurm: int, cap: int,
                                     max_sup: int, budget: int | None, drained: bool) -> None:
    cands = [ctr(i, supervisor=supervisors[i]) for i in range(n)]
    verdict = admit(cands, in_slurm=in_slurm, supervisors_in_slurm=min(sup_in_slurm, in_slurm),
                    limits=Limits(max_in_slurm=cap, max_supervisors=max_sup), drain=Drain("x", "t") if drained else None,
                    budget=budget, busy=nobody_busy)
    locked = verdict.lock
    assert {c.uuid for c in locked} | set(verdict.waiting) == {c.uuid for c in cands}, "each one decided"
    assert not {c.uuid for c in locked} & set(verdict.waiting), "never both"
    if drained:
        assert locked == []
    if cap:
        assert in_slurm + len(locked) <= max(cap, in_slurm)
    if max_sup:
        assert min(sup_in_slurm, in_slurm) + sum(c.scheduling_parameters.supervisor for c in locked) <= max(
            max_sup, min(sup_in_slurm, in_slurm))
    if budget is not None:
        assert len(locked) <= budget
    assert [c.uuid for c in locked] == [c.uuid for c in cands if c.uuid not in verdict.waiting], "in order"


def test_rate_limit_refills_with_time() -> None:
    clock = FakeClock()
    adm = Admission(Limits(locks_per_minute=60), clock=clock)
    assert adm.budget() == 10  # a burst of ten seconds' worth
    adm.locked(10)
    assert adm.budget() == 0
    clock.advance(3)
    assert adm.budget() == 3
    clock.advance(600)
    assert adm.budget() == 10, "never more than the burst"


def test_overload_halves_and_recovers_after_a_quiet_minute() -> None:
    clock = FakeClock()
    adm = Admission(Limits(), clock=clock)
    assert adm.budget() is None
    adm.tick_ended(overloaded=True, locks_tried=40)
    assert (adm.budget(), adm.overloaded) == (20, True)
    adm.tick_ended(overloaded=True, locks_tried=20)
    assert adm.budget() == 10
    clock.advance(30)
    adm.tick_ended(overloaded=False, locks_tried=10)
    assert adm.budget() == 10, "not before a quiet minute"
    clock.advance(QUIET_AFTER_OVERLOAD_S)
    budgets = []
    for _ in range(20):
        adm.tick_ended(overloaded=False, locks_tried=adm.budget() or 0)
        budgets.append(adm.budget())
    assert budgets[:3] == [11, 12, 13], "a tenth at a time (at least one)"
    assert all(b is not None and a is not None and b >= a for a, b in itertools.pairwise(budgets))
    adm.tick_ended(overloaded=False, locks_tried=1)
    assert adm.budget() is None, "no longer binding: back to no limit"


def test_an_overload_in_a_tick_that_tried_no_lock_keeps_the_budget() -> None:
    """Only the queries met the overload (a tick whose first query failed locks nothing): the budget is not halved
    from nothing to 1, which would take dozens of quiet ticks to grow back; the quiet minute starts again."""
    clock = FakeClock()
    adm = Admission(Limits(), clock=clock)
    adm.tick_ended(overloaded=True, locks_tried=0)
    assert (adm.budget(), adm.overloaded) == (None, False), "no lock tried: nothing to limit yet"
    adm.tick_ended(overloaded=True, locks_tried=40)
    assert adm.budget() == 20
    clock.advance(QUIET_AFTER_OVERLOAD_S - 1)
    adm.tick_ended(overloaded=True, locks_tried=0)
    assert adm.budget() == 20, "kept, not 1"
    clock.advance(QUIET_AFTER_OVERLOAD_S - 1)
    adm.tick_ended(overloaded=False, locks_tried=20)
    assert adm.budget() == 20, "the quiet minute counts from the last overload"
