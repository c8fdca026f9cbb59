"""End to end, on the real Slurm cluster: a node crunch-run finds broken is kept off, with the real
crunch-run-wrapper as CrunchRunCommand.

The path under test: the stand-in crunch-run (mode ``broken-node``, broken on c1 only) runs its
``--broken-node-hook``, which is the wrapper; the wrapper sets the job's Comment
``slurm-dispatch:broken-node:c1``; the stand-in requeues the container; the dispatcher reads the Comment once the
job has gone (``runner._note_broken``), records c1 in its ``BrokenNodes`` and, by ``BrokenNodes.Action``, submits
the container's next job with ``--exclude=c1`` (``exclude``), drains c1 (``drain``), or only records it
(``none``).

To know where the first job runs, a plain job of the test holds node c2 whole (``BLOCKER``): the first job can
only go to c1. While the blocker holds c2, an excluded job pends although c1 is idle, which is the proof that the
exclusion is Slurm's and not luck; the test then ends the blocker and the container completes on c2.

The dispatcher shows the node, with when its hold ends, in ``DispatchLoop.status()``, which the management API
serves (``GET /arvados/v1/dispatch/status``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.e2e import E2E, RunningDispatcher, crunch_run_stub
from plugins.waiting import wait_until

from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

WRAPPER = Path(__file__).resolve().parents[2] / "crunch-run-wrapper" / "crunch-run-wrapper"
FINAL_JOB = {"COMPLETED", "FAILED", "CANCELLED"}
RECORD_PREFIX = "slurm-dispatch-exit: "
BROKEN = "c1"
"""The node the stand-in is broken on (SANDBOX_BROKEN_NODES)."""
OTHER = "c2"
BLOCKER = "e2e-broken-node-blocker"
"""The job name of the test's own job that holds node c2 (not a container uuid: the dispatcher ignores it)."""


def _wrapper_settings(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """Settings changes that make every job run the real wrapper around the stand-in."""
    return {
        "crunch_run_command": str(WRAPPER),
        "sbatch_environment": {
            "CRUNCH_RUN_REAL": crunch_run_stub(),
            "CRUNCH_RUN_WRAPPER_PYTHON": sys.executable,
            "CRUNCH_RUN_WRAPPER_GRACE": "1",
            # the host's /var/lock/crunch-run-broken is no business of a test
            "CRUNCH_RUN_WRAPPER_BROKEN_LOCK": str(tmp_path / "crunch-run-broken"),
        },
        **changes,
    }


def _broken_container(e2e: E2E) -> str:
    record = e2e.control.create_container(
        priority=5, command=["sleep", "0.5"],
        environment={"SANDBOX_CRUNCH_RUN": "broken-node", "SANDBOX_BROKEN_NODES": BROKEN},
        runtime_constraints={"ram": 100_000_000, "vcpus": 1},
    )
    return str(record["uuid"])


def _fine_container(e2e: E2E) -> str:
    record = e2e.control.create_container(priority=5, command=["sleep", "0.5"],
                                          runtime_constraints={"ram": 100_000_000, "vcpus": 1})
    return str(record["uuid"])


def _jobs(e2e: E2E, uuid: str) -> list[str]:
    """The container's Slurm jobs, oldest first (finished ones too, for MinJobAge)."""
    return sorted(e2e.jobs_named(uuid), key=int)


def _status(d: RunningDispatcher) -> dict[str, Any]:
    """DispatchLoop.status() (what the management API's GET /arvados/v1/dispatch/status serves), on its loop."""
    assert d.loop is not None and d.dispatch is not None
    return dict(asyncio.run_coroutine_threadsafe(d.dispatch.status(), d.loop).result(timeout=10))


def _exit_record(output: str) -> dict[str, Any]:
    """The wrapper's exit record: the last line that starts with the prefix (docs/crunch-run-wrapper.md). Not
    always the last line: the dispatcher scancels the job of a requeued container, and slurmstepd may add its
    ``*** JOB n ON c1 CANCELLED ***`` after the record."""
    lines = [line for line in output.splitlines() if line.startswith(RECORD_PREFIX)]
    assert lines, output
    return json.loads(lines[-1][len(RECORD_PREFIX):])  # type: ignore[no-any-return]


@pytest.fixture
def blocker(e2e: E2E) -> Iterator[str]:
    """A job of the test's own holding node c2 whole, running; yields its id and scancels it at the end."""
    job = e2e.slurm.run(
        ["sbatch", "--parsable", f"--nodelist={OTHER}", "--exclusive", f"--job-name={BLOCKER}", "--output=/dev/null",
         "--wrap", "sleep 900"], check=True,
    ).stdout.strip()
    try:
        wait_until(lambda: e2e.slurm.show_job(job).get("JobState") == "RUNNING", what=f"the blocker {job} on {OTHER}")
        yield job
    finally:
        e2e.slurm.run(["scancel", job])


def _end_blocker(e2e: E2E, job: str) -> None:
    e2e.slurm.run(["scancel", job], check=True)
    wait_until(lambda: e2e.slurm.show_job(job).get("JobState") in FINAL_JOB, what=f"the blocker {job} to end")


def _first_job_marked(e2e: E2E, uuid: str) -> str:
    """Wait for the container's first job to end with the wrapper's mark; return its id."""
    first = wait_until(lambda: _jobs(e2e, uuid)[:1], timeout=60, what="the first job")[0]
    wait_until(lambda: e2e.slurm.show_job(first).get("JobState") in FINAL_JOB, timeout=60, what=f"job {first} to end")
    shown = e2e.slurm.show_job(first)
    assert shown["NodeList"] == BROKEN, "c2 is held by the blocker"
    assert shown["Comment"] == f"slurm-dispatch:broken-node:{BROKEN}", e2e.output(first)
    return str(first)


def _second_job(e2e: E2E, uuid: str) -> str:
    return str(wait_until(lambda: _jobs(e2e, uuid)[1:2], timeout=60, what="the container's next job")[0])


def test_a_broken_node_is_excluded_from_the_next_job_which_completes_elsewhere(
    e2e: E2E, tmp_path: Path, blocker: str, caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = _broken_container(e2e)
    d = e2e.dispatcher(**_wrapper_settings(tmp_path))
    first = _first_job_marked(e2e, uuid)

    # the wrapper's side: crunch-run ran the hook (the wrapper), which marked the job; the exit record says so
    output = e2e.output(first)
    assert f"crunch-run-wrapper: Slurm job {first} on node {BROKEN} for container {uuid}" in output
    assert f"broken-node hook: marked Slurm job {first} with Comment=slurm-dispatch:broken-node:{BROKEN}" in output
    assert "broken node: setting state Queued" in output
    record = _exit_record(output)
    assert (record["container"], record["job"], record["node"], record["broken_node"]) == (uuid, first, BROKEN, True)

    # the dispatcher's side: c1 recorded, the next job excluded from it
    wait_until(lambda: BROKEN in _status(d)["broken_nodes"], what="the dispatcher to record c1")
    noted = _status(d)["broken_nodes"][BROKEN]
    assert noted["reason"] == f"crunch-run reported node {BROKEN} broken (Slurm job {first}, container {uuid})"
    assert abs(noted["since"] - time.time()) < 120
    assert [r.getMessage() for r in caplog.records if "reported node" in r.getMessage()] == [
        (f"crunch-run reported node {BROKEN} broken (Slurm job {first}, container {uuid}): new jobs avoid it "
         "(--exclude)")]
    second = _second_job(e2e, uuid)
    shown = e2e.slurm.show_job(second)
    assert shown["ExcNodeList"] == BROKEN
    # c1 is idle, c2 is the blocker's: the excluded job waits rather than go back to the broken node
    assert shown["JobState"] == "PENDING", shown
    idle = e2e.slurm.run(["sinfo", "--noheader", "--Node", f"--nodes={BROKEN}", "--format=%t"], check=True).stdout
    assert set(idle.split()) == {"idle"}  # one line per partition

    _end_blocker(e2e, blocker)
    wait_until(lambda: e2e.container(uuid).state is ContainerState.COMPLETE, timeout=90, what="the container")
    assert e2e.slurm.show_job(second)["NodeList"] == OTHER
    assert "is not broken (SANDBOX_BROKEN_NODES: c1); behaving as 'complete'" in e2e.output(second)
    assert _jobs(e2e, uuid) == [first, second]
    assert e2e.container(uuid).lock_count == 2
    assert list(_status(d)["broken_nodes"]) == [BROKEN], "held for the hour"


def test_status_shows_how_long_a_broken_node_is_still_held_off(
    e2e: E2E, tmp_path: Path, blocker: str,
) -> None:
    uuid = _broken_container(e2e)
    d = e2e.dispatcher(**_wrapper_settings(tmp_path))
    _first_job_marked(e2e, uuid)
    noted = wait_until(lambda: _status(d)["broken_nodes"].get(BROKEN), what="the dispatcher to record c1")
    assert noted["until"] == pytest.approx(noted["since"] + e2e.settings.broken_node_hold)
    assert 3500 < noted["hold_left_s"] <= 3600


def test_the_hold_ends_and_later_jobs_may_use_the_node_again(
    e2e: E2E, tmp_path: Path, blocker: str,
) -> None:
    hold_s = 10.0
    uuid = _broken_container(e2e)
    d = e2e.dispatcher(**_wrapper_settings(tmp_path, broken_node_hold=hold_s))
    _first_job_marked(e2e, uuid)
    since = wait_until(lambda: _status(d)["broken_nodes"].get(BROKEN), what="the dispatcher to record c1")["since"]
    second = _second_job(e2e, uuid)
    assert e2e.slurm.show_job(second)["ExcNodeList"] == BROKEN, "submitted within the hold"

    wait_until(lambda: not _status(d)["broken_nodes"], timeout=hold_s + 30, what="the hold to end")
    assert time.time() >= since + hold_s
    later = _fine_container(e2e)
    (job,) = wait_until(lambda: _jobs(e2e, later), timeout=60, what="the later container's job")
    wait_until(lambda: e2e.container(later).state is ContainerState.COMPLETE, timeout=60, what="the later one")
    shown = e2e.slurm.show_job(job)
    assert shown["ExcNodeList"] == "(null)"
    assert shown["NodeList"] == BROKEN, "c2 is still the blocker's: only c1, no longer held off, could take it"
    # a job submitted during the hold keeps its --exclude: Slurm has it, the dispatcher does not resubmit
    assert e2e.slurm.show_job(second)["ExcNodeList"] == BROKEN

    _end_blocker(e2e, blocker)
    wait_until(lambda: e2e.container(uuid).state is ContainerState.COMPLETE, timeout=90, what="the broken one")
    assert e2e.slurm.show_job(second)["NodeList"] == OTHER


def test_action_none_records_the_node_and_excludes_nothing(
    e2e: E2E, tmp_path: Path, blocker: str, caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = _broken_container(e2e)
    d = e2e.dispatcher(**_wrapper_settings(tmp_path, broken_node_action="none"))
    first = _first_job_marked(e2e, uuid)
    noted = wait_until(lambda: _status(d)["broken_nodes"].get(BROKEN), what="the dispatcher to record c1")
    assert noted["reason"] == f"crunch-run reported node {BROKEN} broken (Slurm job {first}, container {uuid})"
    assert [r.getMessage() for r in caplog.records if "reported node" in r.getMessage()] == [
        f"crunch-run reported node {BROKEN} broken (Slurm job {first}, container {uuid}): recorded only"]
    second = _second_job(e2e, uuid)
    wait_until(lambda: e2e.slurm.show_job(second).get("NodeList") not in ("", "(null)", None),
               what=f"job {second} to start")
    shown = e2e.slurm.show_job(second)
    assert shown["ExcNodeList"] == "(null)"
    assert shown["NodeList"] == BROKEN, "sent back to the broken node (c2 is the blocker's)"
    drained = e2e.slurm.run(["sinfo", "--noheader", "--Node", f"--nodes={BROKEN}", "--format=%t"], check=True).stdout
    assert "drain" not in drained
    e2e.control.set_priority(uuid, 0)  # it would break on c1 for ever: let the dispatcher scancel and let go


def _node_state(e2e: E2E, node: str) -> set[tuple[str, str]]:
    """{(sinfo's short state, its reason)} of ``node``, one per partition."""
    out = e2e.slurm.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%t|%E"], check=True).stdout
    return {(state, reason) for state, _, reason in (line.partition("|") for line in out.splitlines())}


def test_action_drain_drains_the_node_in_slurm_and_keeps_the_next_job_off_it(
    e2e: E2E, tmp_path: Path, blocker: str,
) -> None:
    uuid = _broken_container(e2e)
    d = e2e.dispatcher(**_wrapper_settings(tmp_path, broken_node_action="drain"))
    try:
        first = _first_job_marked(e2e, uuid)
        wait_until(lambda: BROKEN in _status(d)["broken_nodes"], what="the dispatcher to record c1")
        reason = f"slurm-dispatch: crunch-run reported node {BROKEN} broken (Slurm job {first}, container {uuid})"
        wait_until(lambda: _node_state(e2e, BROKEN) == {("drain", reason)}, what="c1 to be drained")
        second = _second_job(e2e, uuid)
        assert e2e.slurm.show_job(second)["ExcNodeList"] == BROKEN
        _end_blocker(e2e, blocker)
        wait_until(lambda: e2e.container(uuid).state is ContainerState.COMPLETE, timeout=90, what="the container")
        assert e2e.slurm.show_job(second)["NodeList"] == OTHER
        assert _node_state(e2e, BROKEN) == {("drain", reason)}, "drained until an admin resumes it"
    finally:
        e2e.slurm.run(["scontrol", "update", f"NodeName={BROKEN}", "State=RESUME"])
    wait_until(lambda: {state for state, _ in _node_state(e2e, BROKEN)} == {"idle"}, what="c1 to be resumed")
