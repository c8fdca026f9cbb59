"""The fault suite's invariant checks bite: each is fed a record of the failure it exists to catch (and the
legitimate look-alike it must let pass). Pure; no Slurm, no service."""

from __future__ import annotations

from typing import Any

import pytest
from fault.fault_api import crunch_run_trails
from fault.fault_invariants import (
    Job,
    Trail,
    crunch_run_problems,
    final_state_problems,
    job_problems,
    locked_without_job,
    stop_problems,
)
from fault.fault_slurm import ForeignJobs, jobs_changed_in_log, parse_watch_output

U = "zzzzz-dz642-000000000000001"


def _c(state: str, *, priority: int = 1, lock_count: int = 1, uuid: str = U) -> dict[str, Any]:
    return {"uuid": uuid, "state": state, "priority": priority, "lock_count": lock_count,
            "locked_by_uuid": None, "runtime_status": {}}


@pytest.mark.parametrize(
    ("container", "explained", "bites"),
    [
        pytest.param(_c("Complete"), None, False, id="complete"),
        pytest.param(_c("Queued", priority=0), None, False, id="queued-priority-0"),
        pytest.param(_c("Cancelled", priority=0), None, False, id="cancel-requested"),
        pytest.param(_c("Cancelled"), "its node died", False, id="cancelled-explained"),
        pytest.param(_c("Cancelled"), None, True, id="cancelled-unexplained"),
        pytest.param(_c("Locked"), None, True, id="left-locked"),
        pytest.param(_c("Running"), None, True, id="left-running"),
        pytest.param(_c("Queued"), None, True, id="left-queued-with-priority"),
    ],
)
def test_final_state(container: dict[str, Any], explained: str | None, bites: bool) -> None:
    assert bool(final_state_problems([container], may_cancel=lambda _: explained)) is bites


def _job(job_id: str, state: str = "COMPLETED", *, submitted: str = "", ended: str = "") -> Job:
    return Job(job_id, ("PENDING", "RUNNING", state) if state != "RUNNING" else ("RUNNING",),
               submitted=submitted, ended=ended)


@pytest.mark.parametrize(
    ("jobs", "trail", "strict", "bites"),
    [
        pytest.param([_job("1")], Trail(running=("1",)), True, False, id="one-job"),
        pytest.param([_job("1", ended="T10:00:05"), _job("2", submitted="T10:00:06")], Trail(running=("2",)),
                     False, False, id="resubmitted-after-the-first-ended-before-running"),
        pytest.param([_job("1", ended="T10:00:05"), _job("2", submitted="T10:00:06")], Trail(running=("2",)),
                     True, True, id="strict-two-jobs"),
        pytest.param([_job("1", ended="T10:00:09"), _job("2", submitted="T10:00:06")], Trail(), False, True,
                     id="second-submitted-while-first-ran"),
        pytest.param([_job("1", "RUNNING"), _job("2", "RUNNING")], Trail(), False, True, id="both-live"),
        pytest.param([_job("1", ended="T10:00:05"), _job("2", submitted="T10:00:06")], Trail(running=("1",)),
                     False, True, id="submitted-after-it-ran"),
    ],
)
def test_jobs(jobs: list[Job], trail: Trail, strict: bool, bites: bool) -> None:
    assert bool(job_problems([_c("Complete")], {U: jobs}, {U: trail}, [], strict=strict)) is bites


def test_jobs_reports_double_live_snapshots_and_a_queued_container_with_a_live_job() -> None:
    assert job_problems([], {}, {}, ["10:00:00: 2 live jobs named x"]) == ["10:00:00: 2 live jobs named x"]
    assert job_problems([_c("Queued", priority=0)], {U: [_job("1", "RUNNING")]}, {}, [])


@pytest.mark.parametrize(
    ("trail", "transitions", "bites"),
    [
        pytest.param(Trail(went_on=("1",), running=("1",)), ["Queued", "Locked", "Running", "Complete"], False,
                     id="ran-once"),
        pytest.param(Trail(went_on=("1", "2"), running=("2",)), ["Queued", "Locked", "Running", "Complete"], False,
                     id="first-crunch-run-died-before-running"),
        pytest.param(Trail(running=("1", "2")), [], True, id="two-crunch-runs-set-running"),
        pytest.param(Trail(refused=("job 2: dispatch error detected",)), [], True, id="a-job-that-should-not-run"),
        pytest.param(Trail(), ["Queued", "Locked", "Running", "Locked", "Running"], True, id="running-twice"),
    ],
)
def test_crunch_run(trail: Trail, transitions: list[str], bites: bool) -> None:
    assert bool(crunch_run_problems([_c("Complete")], {U: trail}, {U: transitions})) is bites


def test_locked_without_job_only_counts_our_locks_without_a_live_job() -> None:
    states = {"a": "Locked", "b": "Locked", "c": "Locked", "d": "Running"}
    locked_by = {"a": "me", "b": "me", "c": "someone else", "d": "me"}
    assert locked_without_job(states, {"b"}, me="me", locked_by=locked_by) == ["a"]


@pytest.mark.parametrize(
    ("seconds", "returncode", "cancelled", "states", "bites"),
    [
        pytest.param(0.3, 0, [], {U: ("Running", 1)}, False, id="clean"),
        pytest.param(0.3, 1, [], {U: ("Running", 1)}, True, id="exit-1"),
        pytest.param(None, None, [], {U: ("Running", 1)}, True, id="killed-after-the-bound"),
        pytest.param(80.0, 0, [], {U: ("Running", 1)}, True, id="too-slow"),
        pytest.param(0.3, 0, ["7"], {U: ("Running", 1)}, True, id="scancelled-a-running-job"),
        pytest.param(0.3, 0, ["7"], {U: ("Complete", 1)}, False, id="scancelled-a-finished-containers-job"),
        pytest.param(0.3, 0, ["7"], {U: ("Locked", 0)}, False, id="scancelled-for-priority-0"),
    ],
)
def test_stop(seconds: float | None, returncode: int | None, cancelled: list[str],
              states: dict[str, tuple[str, int]], bites: bool) -> None:
    problems = stop_problems(seconds=seconds or 75.0, returncode=returncode, bound=75.0, live_before=[("7", U)],
                             states_after=states, cancelled_during=cancelled)
    assert bool(problems) is bites


def test_slurmctld_log_cancels_and_updates_are_found_by_job_id() -> None:
    log = (
        "[2026-12-07T11:31:09.443] _slurm_rpc_submit_batch_job: JobId=1 InitPrio=4294901759 usec=2435\n"
        "[2026-12-07T11:32:41.928] sched: _update_job: nice changed from 2147483648 to 2147483748, "
        "setting priority to 4294901658 for JobId=2\n"
        "[2026-12-07T11:32:41.928] _slurm_rpc_update_job: complete JobId=2 uid=0 usec=409\n"
        "[2026-12-07T11:32:41.987] _slurm_rpc_kill_job: REQUEST_KILL_JOB JobId=3 uid 0\n"
        "[2026-12-07T11:32:42.027] _job_complete: JobId=3 WTERMSIG 15\n"
    )
    changed = jobs_changed_in_log(log)
    assert sorted(changed) == ["2", "3"]
    assert len(changed["2"]) == 2


def test_foreign_jobs_touched_in_the_log_are_reported() -> None:
    class Quiet:  # a cluster whose squeue shows the jobs as expected
        def run(self, argv: list[str]) -> Any:
            fmt = argv[-1].split("|", 1)[1]
            out = "9|PENDING\n" if fmt == "%T" else "9|0\n"
            return type("R", (), {"stdout": out})()

    jobs = ForeignJobs(expected={"9": "PENDING"}, names={"9": "foreign-held"}, nices={"9": "0"})
    assert jobs.problems(Quiet(), ctld_log_text="") == []  # type: ignore[arg-type]
    touched = jobs.problems(Quiet(), ctld_log_text="_slurm_rpc_kill_job: REQUEST_KILL_JOB JobId=9 uid 0")  # type: ignore[arg-type]
    assert len(touched) == 1 and "foreign-held" in touched[0]


def test_watch_output_keeps_names_with_the_separator_and_reads_end_times() -> None:
    snap = parse_watch_output("5|RUNNING|0|c1|2026-12-07T10:00:00|NONE|a|b\n"
                              "6|COMPLETED|0|c2|2026-12-07T10:00:00|2026-12-07T10:00:03|x\n", at=1.0)
    assert snap.jobs["5"].name == "a|b" and snap.jobs["5"].ended == ""
    assert snap.jobs["6"].ended == "2026-12-07T10:00:03"
    assert snap.live_names() == {"a|b"}


def test_crunch_run_trails_read_the_stub_lines(tmp_path: Any) -> None:
    (tmp_path / "12.out").write_text(
        f"2026-12-07T10:00:00.1Z {U} crunch-run-stub starting on 127.0.0.1:1, runtime engine docker\n"
        f"2026-12-07T10:00:00.2Z {U} container is Locked; mode complete, work 1 s\n"
        f"2026-12-07T10:00:00.3Z {U} state Running\n")
    (tmp_path / "13.out").write_text(
        f"2026-12-07T10:00:01.1Z {U} crunch-run-stub starting on 127.0.0.1:1, runtime engine docker\n"
        f'dispatch error detected: container "{U}" has state "Running"\n')
    (tmp_path / "14.out").write_text(
        f"2026-12-07T10:00:00.2Z {U} cannot set state Running: HTTP 503\n")
    trail = crunch_run_trails(tmp_path)[U]
    assert trail.starts == ["12", "13"]
    assert trail.went_on == ["12"] and trail.running == ["12"]
    assert len(trail.refused) == 1 and len(trail.api_errors) == 1
