"""Decision tables for the per-container rules: slurm_dispatch.slurm.decide and slurm_dispatch.dispatch.decide.

Each table is the rule, row by row, in the spirit of Go's sync.go switch; the property tests check what must
hold whatever the input: one action per record, and nothing destructive without a successful observation.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.dispatch.decide import RecordAction, TrackDecision, record_action, track_decision
from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.slurm.decide import (
    PERMANENT_REFUSALS,
    GoneKind,
    OrphanAction,
    StepKind,
    after_sbatch_failure,
    gone_action,
    is_our_job_name,
    next_step,
    orphan_action,
    our_job_names,
    stuck_cancel_warning_due,
)
from slurm_dispatch.slurm.priority import container_want

ME = "zzzzz-gj3su-000000000000000"
OTHER = "zzzzz-gj3su-otherdispatcher"
UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


def ctr(state: str, locked_by: str = "", priority: int = 1, uuid: str = UUID) -> Container:
    return Container.from_api({"uuid": uuid, "state": state, "locked_by_uuid": locked_by, "priority": priority,
                               "created_at": "2026-12-01T00:00:00.000000000Z"})


# -- is_our_job_name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        pytest.param("zzzzz-dz642-aaaaaaaaaaaaaaa", True, id="our-container"),
        pytest.param("yyyyy-dz642-aaaaaaaaaaaaaaa", False, id="another-cluster"),
        pytest.param("zzzzz-xvhdp-aaaaaaaaaaaaaaa", False, id="a-request-not-a-container"),
        pytest.param("zzzzz-dz642-aaaaaaaaaaaaaa", False, id="tail-too-short"),
        pytest.param("zzzzz-dz642-aaaaaaaaaaaaaaaa", False, id="tail-too-long"),
        pytest.param("zzzzz-dz642-AAAAAAAAAAAAAAA", False, id="upper-case"),
        pytest.param("zzzzz-dz642-aaaaaaaaaaaaaaa\n", False, id="trailing-newline"),
        pytest.param("bash", False, id="someone-elses-job"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_our_job_name(name: str, ours: bool) -> None:
    assert is_our_job_name(name, "zzzzz") is ours


@given(st.lists(st.from_regex(r"[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}|[a-z-]{1,30}", fullmatch=True)))
def test_our_job_names_are_sorted_unique_and_ours(names: list[str]) -> None:
    ours = our_job_names(names, "zzzzz")
    assert ours == sorted(set(ours))
    assert set(ours) == {n for n in names if is_our_job_name(n, "zzzzz")}


# -- next_step ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latest", "left", "present", "submitted", "kind"),
    [
        pytest.param(ctr("Locked", ME), False, False, False, StepKind.SUBMIT, id="locked-no-job: submit"),
        pytest.param(ctr("Locked", ME), False, False, True, StepKind.SETTLE, id="submitted-job-gone: settle"),
        pytest.param(ctr("Locked", ME, priority=0), False, False, False, StepKind.SETTLE,
                     id="locked-priority-0-no-job: settle, never submit"),
        pytest.param(ctr("Locked", ME), True, False, False, StepKind.SETTLE, id="left-no-job: settle"),
        pytest.param(ctr("Running", ME), False, False, False, StepKind.SETTLE, id="running-no-job: settle"),
        pytest.param(ctr("Queued"), True, False, False, StepKind.SETTLE, id="orphan-of-queued-gone: settle"),
        pytest.param(ctr("Locked", ME), False, True, False, StepKind.FOLLOW, id="locked-with-job: follow"),
        pytest.param(ctr("Running", ME), False, True, True, StepKind.FOLLOW, id="running-with-job: follow"),
        pytest.param(ctr("Running", ME, priority=0), False, True, True, StepKind.SCANCEL,
                     id="priority-0: scancel"),
        pytest.param(ctr("Complete", ME), True, True, True, StepKind.SCANCEL, id="left-with-job: scancel"),
        pytest.param(ctr("Queued"), True, True, False, StepKind.SCANCEL, id="orphan-of-queued: scancel"),
    ],
)
def test_next_step(latest: Container, left: bool, present: bool, submitted: bool, kind: StepKind) -> None:
    step = next_step(latest=latest, left=left, job_present=present, submitted=submitted)
    assert step.kind is kind, step.reason
    assert step.want == (container_want(latest) if kind is StepKind.FOLLOW else 0)


@given(
    state=st.sampled_from(list(ContainerState)),
    priority=st.integers(0, 2000),
    left=st.booleans(),
    present=st.booleans(),
    submitted=st.booleans(),
)
def test_next_step_properties(state: ContainerState, priority: int, left: bool, present: bool,
                              submitted: bool) -> None:
    step = next_step(latest=ctr(state.value, ME, priority), left=left, job_present=present, submitted=submitted)
    if step.kind is StepKind.SUBMIT:  # never a second job, never for a container that left or needs no job
        assert not present and not submitted and not left and state is ContainerState.LOCKED and priority > 0
    if step.kind is StepKind.SCANCEL:  # only a job squeue shows is scancelled
        assert present and (left or priority == 0)
    if step.kind is StepKind.FOLLOW:
        assert present and not left and priority > 0
    if step.kind is StepKind.SETTLE:  # the container's state is settled only once its job is gone
        assert not present


def test_stuck_cancel_warnings_come_rarely() -> None:
    due = [n for n in range(1, 1001) if stuck_cancel_warning_due(n)]
    assert due == [10, *range(100, 1001, 100)]


# -- gone_action ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "kind"),
    [
        pytest.param(ctr("Locked", ME), GoneKind.UNLOCK, id="locked-mine: unlock"),
        pytest.param(ctr("Running", ME), GoneKind.CANCEL, id="running-mine: cancel"),
        pytest.param(ctr("Locked", OTHER), GoneKind.LEAVE, id="locked-other: leave"),
        pytest.param(ctr("Running", OTHER), GoneKind.LEAVE, id="running-other: leave"),
        pytest.param(ctr("Queued"), GoneKind.NOTHING, id="queued: nothing"),
        pytest.param(ctr("Complete"), GoneKind.NOTHING, id="complete: nothing"),
        pytest.param(ctr("Cancelled"), GoneKind.NOTHING, id="cancelled: nothing"),
    ],
)
def test_gone_action(current: Container, kind: GoneKind) -> None:
    assert gone_action(current, ME).kind is kind


# -- orphan_action (a job found at startup) and the core's track_decision ---------------------------------------


@pytest.mark.parametrize(
    ("container", "action", "reason", "track"),
    [
        pytest.param(ctr("Locked", ME), OrphanAction.ADOPT, "Locked by this token", TrackDecision.TRACK,
                     id="locked-mine"),
        pytest.param(ctr("Running", ME), OrphanAction.ADOPT, "Running by this token", TrackDecision.TRACK,
                     id="running-mine"),
        pytest.param(ctr("Queued"), OrphanAction.SCANCEL, "container is Queued", TrackDecision.TRACK_CLOSED,
                     id="queued"),
        pytest.param(ctr("Complete"), OrphanAction.SCANCEL, "container is Complete", TrackDecision.TRACK_CLOSED,
                     id="complete"),
        pytest.param(ctr("Cancelled"), OrphanAction.SCANCEL, "container is Cancelled",
                     TrackDecision.TRACK_CLOSED, id="cancelled"),
        pytest.param(ctr("Locked", OTHER), OrphanAction.LEAVE, f"locked by {OTHER}", TrackDecision.IGNORE,
                     id="locked-other"),
        pytest.param(ctr("Running", OTHER), OrphanAction.LEAVE, f"locked by {OTHER}", TrackDecision.IGNORE,
                     id="running-other"),
        pytest.param(None, OrphanAction.LEAVE, "container not found", None, id="not-found"),
    ],
)
def test_orphan_action_is_the_core_track_decision(container: Container | None, action: OrphanAction, reason: str,
                                                  track: TrackDecision | None) -> None:
    decision = orphan_action(UUID, container, my_token_uuid=ME)
    assert (decision.uuid, decision.action, decision.reason) == (UUID, action, reason)
    if container is not None:
        assert track_decision(container, ME) is track


# -- record_action (the dispatch core's per-record switch) --------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "locked_by", "tracked", "action"),
    [
        pytest.param("Queued", "", False, RecordAction.LOCK, id="queued-untracked: lock"),
        pytest.param("Queued", "", True, RecordAction.CLOSE, id="queued-tracked: close, lock later"),
        pytest.param("Locked", ME, False, RecordAction.ADOPT, id="locked-mine-untracked: adopt"),
        pytest.param("Running", ME, False, RecordAction.ADOPT, id="running-mine-untracked: adopt"),
        pytest.param("Locked", ME, True, RecordAction.OFFER, id="locked-mine-tracked: offer"),
        pytest.param("Running", ME, True, RecordAction.OFFER, id="running-mine-tracked: offer"),
        pytest.param("Complete", "", True, RecordAction.CLOSE, id="complete-tracked: close"),
        pytest.param("Cancelled", "", True, RecordAction.CLOSE, id="cancelled-tracked: close"),
        pytest.param("Complete", "", False, RecordAction.IGNORE, id="complete-untracked: ignore"),
        pytest.param("Locked", OTHER, False, RecordAction.IGNORE, id="other-dispatcher: ignore"),
        pytest.param("Running", OTHER, True, RecordAction.CLOSE, id="taken-by-other: close"),
        pytest.param("Locked", "", False, RecordAction.IGNORE, id="locked-by-nobody: never adopt"),
        pytest.param("Weird", "", True, RecordAction.IGNORE, id="unknown-state-tracked: ignore"),
        pytest.param("Weird", "", False, RecordAction.IGNORE, id="unknown-state: ignore"),
        pytest.param(["Queued"], "", False, RecordAction.IGNORE, id="malformed-state: ignore"),
    ],
)
def test_record_action(state: object, locked_by: str, tracked: bool, action: RecordAction) -> None:
    assert record_action(state=state, locked_by=locked_by, me=ME, tracked=tracked).action is action


@given(state=st.one_of(st.sampled_from([s.value for s in ContainerState]), st.text(max_size=10)),
       locked_by=st.sampled_from(["", ME, OTHER]), tracked=st.booleans())
def test_record_action_never_locks_or_adopts_what_is_not_ours(state: str, locked_by: str, tracked: bool) -> None:
    action = record_action(state=state, locked_by=locked_by, me=ME, tracked=tracked).action
    if action is RecordAction.LOCK:
        assert state == "Queued" and not tracked and locked_by in ("", ME)
    if action is RecordAction.ADOPT:
        assert locked_by == ME and not tracked
    if action in (RecordAction.OFFER, RecordAction.CLOSE):
        assert tracked


# -- after_sbatch_failure -------------------------------------------------------------------------------------------


def refusal(text: str = "sbatch: error: Invalid partition name specified") -> SlurmCommandError:
    return SlurmCommandError(["sbatch"], 1, text)


def test_permanent_refusals_give_up_after_a_run_of_them() -> None:
    count = 0
    for _ in range(PERMANENT_REFUSALS - 1):
        verdict = after_sbatch_failure(UUID, refusal(), refusals_before=count)
        assert verdict.give_up is None
        count = verdict.refusals
    verdict = after_sbatch_failure(UUID, refusal(), refusals_before=count)
    assert verdict.give_up is not None
    assert verdict.give_up.reason == (f"sbatch refused the job {PERMANENT_REFUSALS} times in a row: "
                                      "sbatch: error: Invalid partition name specified")
    assert verdict.give_up.available is None  # not about instance types: no type list in the log


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(SlurmCommandError(["sbatch"], 1, "sbatch: error: Batch job submission failed: Socket timed out"),
                     id="other-error"),
        pytest.param(SlurmUnavailable(["sbatch"], None, "Invalid partition name specified"),
                     id="unavailable-even-with-the-words"),
    ],
)
def test_other_sbatch_failures_break_the_run(exc: SlurmCommandError) -> None:
    verdict = after_sbatch_failure(UUID, exc, refusals_before=PERMANENT_REFUSALS - 1)
    assert (verdict.refusals, verdict.give_up) == (0, None)
