"""Decision tables for the per-container rules: slurm_dispatch.slurm.decide and slurm_dispatch.dispatch.decide.

Each table is the rule, row by row, in the spirit of Go's sync.go switch; the property tests check what must
hold whatever the input: one action per record, and nothing destructive without a successful observation.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.dispatch.decide import RecordAction, TrackDecision, record_action, track_decision
from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.model import Container, ContainerState, SlurmJob
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.backend import SQUEUE_ARGV, squeue_argv
from slurm_dispatch.slurm.decide import (
    FINISHED_JOB_GRACE_S,
    PERMANENT_REFUSALS,
    GoneKind,
    OrphanAction,
    Policy,
    RunnerView,
    StepKind,
    after_sbatch_failure,
    gone_action,
    is_our_job_name,
    next_step,
    orphan_action,
    other_owners_of_container_jobs,
    our_job_names,
    stuck_cancel_warning_due,
)
from slurm_dispatch.slurm.priority import container_want
from slurm_dispatch.slurm.reasons import EndReason

ME = "zzzzz-gj3su-000000000000000"
OTHER = "zzzzz-gj3su-otherdispatcher"
UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


def ctr(state: str, locked_by: str = "", priority: int = 1, uuid: str = UUID, **extra: Any) -> Container:
    return Container.from_api({"uuid": uuid, "state": state, "locked_by_uuid": locked_by, "priority": priority,
                               "created_at": "2026-12-01T00:00:00.000000000Z", **extra})


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


def job(state: str = "RUNNING", reason: str = "None", time_left: int | None = None, job_id: str = "7") -> SlurmJob:
    return SlurmJob(UUID, 0, 100, state, reason, job_id=job_id, nodes="c1" if state == "RUNNING" else "",
                    time_left_s=time_left)


def view(latest: Container, j: SlurmJob | None = None, **kw: Any) -> RunnerView:
    return RunnerView(latest=latest, job=j, last_job=kw.pop("last_job", j), **kw)


POLICY = Policy.from_settings(Settings(poll_interval=10, never_runnable_grace=300, time_limit_signal=120,
                                       max_run_time_overhead=300,
                                       sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--time=%W")))
LIMITED = {"scheduling_parameters": {"max_run_time": 3600}}
GIVEN_UP = EndReason(error="x", detail="y", state="PENDING")


@pytest.mark.parametrize(
    ("v", "now", "kind"),
    [
        pytest.param(view(ctr("Locked", ME), last_job=None), 0, StepKind.SUBMIT, id="locked-no-job: submit"),
        pytest.param(view(ctr("Locked", ME), submitted=True), 0, StepKind.SETTLE,
                     id="submitted-job-gone: settle"),
        pytest.param(view(ctr("Locked", ME), last_job=job()), 0, StepKind.SETTLE,
                     id="a-job-seen-then-gone: settle, not a second submission"),
        pytest.param(view(ctr("Locked", ME, priority=0)), 0, StepKind.SETTLE,
                     id="locked-priority-0-no-job: settle, never submit"),
        pytest.param(view(ctr("Locked", ME), left=True), 0, StepKind.SETTLE, id="left-no-job: settle"),
        pytest.param(view(ctr("Locked", ME), give_up=GIVEN_UP), 0, StepKind.SETTLE,
                     id="given-up-no-job: settle, never submit"),
        pytest.param(view(ctr("Running", ME)), 0, StepKind.SETTLE, id="running-no-job: settle"),
        pytest.param(view(ctr("Queued"), left=True), 0, StepKind.SETTLE, id="orphan-of-queued-gone: settle"),
        pytest.param(view(ctr("Locked", ME), job("PENDING", "Priority")), 0, StepKind.FOLLOW,
                     id="locked-with-job: follow"),
        pytest.param(view(ctr("Running", ME), job(), submitted=True), 0, StepKind.FOLLOW,
                     id="running-with-job: follow"),
        pytest.param(view(ctr("Running", ME, priority=0), job()), 0, StepKind.SCANCEL, id="priority-0: scancel"),
        pytest.param(view(ctr("Complete", ME), job(), left=True), 0, StepKind.SCANCEL,
                     id="left-with-job: scancel"),
        pytest.param(view(ctr("Queued"), job(), left=True), 0, StepKind.SCANCEL, id="orphan-of-queued: scancel"),
        pytest.param(view(ctr("Locked", ME), job("PENDING", "PartitionConfig"), give_up=GIVEN_UP), 0,
                     StepKind.SCANCEL, id="given-up-with-job: scancel"),
        pytest.param(view(ctr("Locked", ME), job("PENDING", "PartitionConfig"), never_since=100.0), 399,
                     StepKind.FOLLOW, id="never-runnable-within-grace: follow"),
        pytest.param(view(ctr("Locked", ME), job("PENDING", "PartitionConfig"), never_since=100.0), 400,
                     StepKind.GIVE_UP, id="never-runnable-past-grace: give up"),
        pytest.param(view(ctr("Locked", ME, priority=0), job("PENDING", "PartitionConfig"), never_since=100.0),
                     400, StepKind.SCANCEL, id="priority-0-first: scancel, not give up"),
        pytest.param(view(ctr("Running", ME, **LIMITED), job(time_left=200)), 0, StepKind.STOP_AT_LIMIT,
                     id="time-limit-within-the-stop-window: stop"),
        pytest.param(view(ctr("Running", ME, **LIMITED), job(time_left=201)), 0, StepKind.FOLLOW,
                     id="time-limit-outside-the-window: follow"),
        pytest.param(view(ctr("Running", ME, **LIMITED), job(time_left=10), stop_sent=True), 0, StepKind.FOLLOW,
                     id="already-stopped: follow"),
        pytest.param(view(ctr("Running", ME), job(time_left=10)), 0, StepKind.FOLLOW,
                     id="no-max-run-time-no-stop: a site's own --time is not ours to act on"),
        pytest.param(view(ctr("Locked", ME, **LIMITED), job(time_left=10)), 0, StepKind.FOLLOW,
                     id="still-locked-at-the-limit: Slurm's limit, not a requeue loop"),
    ],
)
def test_next_step(v: RunnerView, now: float, kind: StepKind) -> None:
    step = next_step(v, POLICY, now)
    assert step.kind is kind, step.reason
    assert step.want == (container_want(v.latest) if kind is StepKind.FOLLOW else 0)


SHORT_OVERHEAD = Policy.from_settings(Settings(poll_interval=2, time_limit_signal=10, max_run_time_overhead=60,
                                              sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--time=%W")))


@pytest.mark.parametrize(
    ("max_run_time", "time_left", "kind"),
    [
        pytest.param(60, 74, StepKind.FOLLOW, id="in the stop window (74 s), but max_run_time not yet run"),
        pytest.param(60, 61, StepKind.FOLLOW, id="59 s run of 60"),
        pytest.param(60, 60, StepKind.STOP_AT_LIMIT, id="max_run_time run: a 2-minute limit, 60 s left"),
        pytest.param(90, 90, StepKind.FOLLOW, id="90 s run of 90, but 90 s left: outside the 74 s window"),
        pytest.param(90, 70, StepKind.STOP_AT_LIMIT,
                     id="limit rounded up to 3 minutes: 110 s run at 70 s left (without the rounding: 80 s run)"),
        pytest.param(100, 70, StepKind.STOP_AT_LIMIT, id="a 3-minute limit: 110 s run of 100 at 70 s left"),
        pytest.param(90, 74, StepKind.STOP_AT_LIMIT, id="the window is the nearer bound when Overhead is ample"),
    ],
)
def test_a_short_overhead_never_stops_a_job_before_its_max_run_time(max_run_time: int, time_left: int,
                                                                     kind: StepKind) -> None:
    """Overhead 60 s is shorter than the stop window (10 + 60 + 2 × 2 s): the stop waits for max_run_time."""
    latest = ctr("Running", ME, scheduling_parameters={"max_run_time": max_run_time})
    step = next_step(view(latest, job(time_left=time_left)), SHORT_OVERHEAD, 0)
    assert step.kind is kind, step.reason
    if kind is StepKind.FOLLOW:  # the squeue watch wakes it at the stop: max_run_time run, or the window
        assert step.time_left_below == {60: 60, 90: 74}[max_run_time]


def test_follow_asks_to_wake_for_the_grace_period_and_the_time_limit() -> None:
    pending = next_step(view(ctr("Locked", ME), job("PENDING", "BadConstraints"), never_since=50.0), POLICY, 60)
    assert (pending.kind, pending.wake_at) == (StepKind.FOLLOW, 350.0)
    running = next_step(view(ctr("Running", ME, **LIMITED), job(time_left=3000)), POLICY, 0)
    assert (running.kind, running.time_left_below) == (StepKind.FOLLOW, 120 + 60 + 20)
    plain = next_step(view(ctr("Running", ME), job(time_left=3000)), POLICY, 0)
    assert (plain.wake_at, plain.time_left_below) == (None, None)


@given(
    state=st.sampled_from(list(ContainerState)),
    priority=st.integers(0, 2000),
    left=st.booleans(),
    slurm_state=st.sampled_from([None, "PENDING", "RUNNING", "COMPLETING", "UNKNOWN"]),
    reason=st.sampled_from(["None", "Resources", "PartitionConfig", "BadConstraints", "JobHeldUser"]),
    seen_before=st.booleans(),
    submitted=st.booleans(),
    given_up=st.booleans(),
    stop_sent=st.booleans(),
    limited=st.booleans(),
    time_left=st.one_of(st.none(), st.integers(0, 10_000)),
    now=st.floats(0, 10_000),
    never_since=st.one_of(st.none(), st.floats(0, 10_000)),
)
def test_next_step_properties(state: ContainerState, priority: int, left: bool, slurm_state: str | None,
                              reason: str, seen_before: bool, submitted: bool, given_up: bool, stop_sent: bool,
                              limited: bool, time_left: int | None, now: float, never_since: float | None) -> None:
    j = None if slurm_state is None else job(slurm_state, reason, time_left)
    latest = ctr(state.value, ME, priority, **(LIMITED if limited else {}))
    v = RunnerView(latest=latest, job=j, last_job=j or (job() if seen_before else None), left=left,
                   submitted=submitted, give_up=GIVEN_UP if given_up else None, stop_sent=stop_sent,
                   never_since=never_since)
    step = next_step(v, POLICY, now)
    if step.kind is StepKind.SUBMIT:  # never a second job, never for a container that left, is given up or needs none
        assert j is None and not seen_before and not submitted and not left and not given_up
        assert state is ContainerState.LOCKED and priority > 0
    if step.kind in (StepKind.SCANCEL, StepKind.GIVE_UP, StepKind.STOP_AT_LIMIT):  # only a job squeue shows
        assert j is not None
    if step.kind is StepKind.SCANCEL:
        assert left or priority == 0 or given_up
    if step.kind is StepKind.STOP_AT_LIMIT:
        assert not stop_sent and limited and j is not None and j.state == "RUNNING"
        assert state is ContainerState.RUNNING
    if step.kind is StepKind.FOLLOW:  # a job that should go is only left alone while Slurm is ending it already
        assert j is not None
        assert (not left and priority > 0 and not given_up) or j.state == "COMPLETING"
    if step.kind is StepKind.SETTLE:  # the container's state is settled only once its job is gone
        assert j is None


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


def test_a_container_given_up_is_cancelled_not_unlocked() -> None:
    assert gone_action(ctr("Locked", ME), ME, gave_up=True).kind is GoneKind.CANCEL
    assert gone_action(ctr("Locked", OTHER), ME, gave_up=True).kind is GoneKind.LEAVE
    assert gone_action(ctr("Queued"), ME, gave_up=True).kind is GoneKind.NOTHING


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
    decision = orphan_action(UUID, container, my_token_uuid=ME, now=datetime(2026, 12, 2, tzinfo=UTC))
    assert (decision.uuid, decision.action, decision.reason) == (UUID, action, reason)
    if container is not None:
        assert track_decision(container, ME) is track


@pytest.mark.parametrize(
    ("seconds_ago", "action", "reason"),
    [
        pytest.param(5, OrphanAction.LEAVE, "Complete 5 s ago: its job may end by itself", id="just-complete"),
        pytest.param(59, OrphanAction.LEAVE, "Complete 59 s ago: its job may end by itself", id="within-grace"),
        pytest.param(60, OrphanAction.SCANCEL, "container is Complete", id="grace-over"),
        pytest.param(-3, OrphanAction.LEAVE, "Complete 0 s ago: its job may end by itself", id="server-clock-ahead"),
    ],
)
def test_orphan_action_leaves_a_just_completed_containers_job_its_grace(seconds_ago: int, action: OrphanAction,
                                                                          reason: str) -> None:
    """As the service's ``next_step``: crunch-run-wrapper may still be cleaning up after crunch-run."""
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
    modified = (now - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    decision = orphan_action(UUID, ctr("Complete", modified_at=modified), my_token_uuid=ME, now=now)
    assert (decision.action, decision.reason) == (action, reason)
    assert FINISHED_JOB_GRACE_S == 60


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
    assert verdict.give_up.log_text().splitlines()[1] == f"the refused command: {shlex.join(refusal().argv)}", (
        "what was asked for goes into errorDetail")


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


def test_a_site_s_fixed_time_in_the_template_is_not_the_container_s_limit() -> None:
    """Without %W in the template the job's limit is the site's --time, not max_run_time: no stop in its name."""
    fixed = Policy.from_settings(Settings(poll_interval=10, time_limit_signal=120,
                                          sbatch_arguments=("--job-name=%U", "--time=60")))
    v = view(ctr("Running", ME, **LIMITED), job(time_left=10))
    assert next_step(v, fixed, 0).kind is StepKind.FOLLOW
    assert next_step(v, POLICY, 0).kind is StepKind.STOP_AT_LIMIT


@pytest.mark.parametrize(
    ("latest", "j", "now", "kind"),
    [
        pytest.param(ctr("Complete"), job("RUNNING"), 159.0, StepKind.FOLLOW, id="complete-within-grace: wait"),
        pytest.param(ctr("Complete"), job("RUNNING"), 160.0, StepKind.SCANCEL, id="complete-past-grace: scancel"),
        # the last poll may predate the job's start: a short container runs and completes between two polls
        pytest.param(ctr("Complete"), job("PENDING"), 100.0, StepKind.FOLLOW, id="complete-last-seen-pending: wait"),
        pytest.param(ctr("Complete"), job("PENDING"), 160.0, StepKind.SCANCEL, id="complete-still-pending: scancel"),
        pytest.param(ctr("Cancelled"), job("RUNNING"), 100.0, StepKind.SCANCEL, id="cancelled: scancel at once"),
        pytest.param(ctr("Queued"), job("RUNNING"), 100.0, StepKind.SCANCEL, id="requeued: scancel at once"),
    ],
)
def test_the_job_of_a_container_crunch_run_completed_may_end_by_itself(
    latest: Container, j: SlurmJob, now: float, kind: StepKind
) -> None:
    """Go scancels it at once, so Slurm records a successful job as CANCELLED; here it gets a grace period."""
    step = next_step(view(latest, j, left=True, left_at=100.0), POLICY, now)
    assert step.kind is kind, step.reason
    if kind is StepKind.FOLLOW:
        assert step.wake_at == 100.0 + FINISHED_JOB_GRACE_S


@pytest.mark.parametrize("kw", [{"left": True, "left_at": 0.0}, {"give_up": GIVEN_UP}], ids=["left", "given-up"])
def test_a_completing_job_is_not_scancelled_again(kw: dict[str, Any]) -> None:
    """Slurm is already ending it: rounds of scancel (and the stuck-job warning after ten) would be noise."""
    step = next_step(view(ctr("Cancelled"), job("COMPLETING"), **kw), POLICY, 10_000.0)
    assert step.kind is StepKind.FOLLOW, step.reason
    assert next_step(view(ctr("Running", ME, priority=0), job("COMPLETING")), POLICY, 0).kind is StepKind.FOLLOW
    assert next_step(view(ctr("Cancelled"), job("RUNNING"), **kw), POLICY, 10_000.0).kind is StepKind.SCANCEL


# --- narrowing squeue to our own jobs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "others"),
    [
        ("", []),
        ("65534|zzzzz-dz642-000000000000001\n65534|zzzzz-dz642-000000000000002\n", []),
        ("0|another users job\n1000|my analysis\n65534|zzzzz-dz642-000000000000001\n", []),
        ("0|zzzzz-dz642-000000000000001\n", ["0"]),  # e.g. the Go dispatcher's, left running as root
        ("0|yyyyy-dz642-000000000000001\n1000|zzzzz-dz642-000000000000002\n", ["0", "1000"]),  # any cluster's
        ("garbled zzzzz-dz642-000000000000001\n", ["?"]),  # unreadable but about a container: not known ours
        ("x|zzzzz-dz642-000000000000001\n", ["?"]),
        ("65534|zzzzz-dz642-000000000000001 and more\n", ["?"]),
        ("CLUSTER: sdalpha\n", []),
    ],
)
def test_other_owners_of_container_jobs(text: str, others: list[str]) -> None:
    assert other_owners_of_container_jobs(text, 65534) == others


def test_squeue_argv_asks_for_one_users_jobs_only_for_a_non_zero_uid() -> None:
    assert squeue_argv() == list(SQUEUE_ARGV) == squeue_argv(0)
    assert squeue_argv(999) == [*SQUEUE_ARGV, "--user=999"]
