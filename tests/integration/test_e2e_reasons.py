"""End to end, on the real Slurm cluster: every failure is explained where users look (issue "Explain every
failure"). For each case: the container's final state, the exact reason on the container (runtime_status) and in
its dispatch log."""

from __future__ import annotations

import json
import logging
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from plugins.e2e import E2E, RunningDispatcher
from plugins.slurm_cluster import SlurmCluster, start_cluster, stop_cluster
from plugins.waiting import wait_until

from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

FINAL = (ContainerState.COMPLETE, ContainerState.CANCELLED)


def _new(e2e: E2E, *, mode: str = "complete", seconds: float = 0.5, **sched: Any) -> str:
    record = e2e.control.create_container(
        priority=5, command=["sleep", str(seconds)], environment={"SANDBOX_CRUNCH_RUN": mode},
        runtime_constraints={"ram": 100_000_000, "vcpus": 1}, scheduling_parameters=sched,
    )
    return str(record["uuid"])


def _job(e2e: E2E, uuid: str, slurm: SlurmCluster | None = None) -> tuple[str, str, str]:
    """(job id, state, nodes) of the container's job in squeue, or ("", "", "")."""
    out = (slurm or e2e.slurm).run(["squeue", "--all", "--noheader", "--format=%i|%T|%N|%j"], check=True).stdout
    for line in out.splitlines():
        job_id, state, nodes, name = line.split("|", 3)
        if name == uuid:
            return job_id, state, nodes
    return "", "", ""


def _status(e2e: E2E, uuid: str) -> dict[str, Any]:
    return dict(e2e.container(uuid).runtime_status)


def test_a_job_at_its_time_limit_is_stopped_cleanly_and_says_why(e2e: E2E) -> None:
    """max_run_time 30 s and Overhead 30 s make a one-minute limit, shorter than the stop window (StopSignalBefore
    + 60 s + two polls): the stop still waits until the job has run the container's max_run_time."""
    uuid = _new(e2e, mode="hang", max_run_time=30)
    e2e.dispatcher(sbatch_arguments=(*e2e.settings.sbatch_arguments, "--time=%W"), max_run_time_overhead=30,
                   time_limit_signal=1)
    job_id = wait_until(lambda: _job(e2e, uuid)[1] == "RUNNING" and _job(e2e, uuid)[0], what="the job to run")
    wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=120, what="the container to end")
    container = e2e.container(uuid)
    assert container.state is ContainerState.CANCELLED
    error = container.runtime_status["error"]
    assert error.startswith(f"Slurm job {job_id} reached the container's time limit (max_run_time 30 s) on node c")
    assert error.endswith(": crunch-run was asked to stop the container and save its logs (TIMEOUT)")
    assert e2e.logs(uuid)[0].startswith(error)
    # crunch-run (the stand-in) got SIGTERM and recorded Cancelled itself, before any SIGKILL
    output = wait_until(lambda: "state Cancelled" in e2e.output(job_id) and e2e.output(job_id), what="its output")
    assert "SIGTERM: stopping; setting state Cancelled" in output
    submitted = wait_until(lambda: (j := e2e.slurm.show_job(job_id)).get("JobState") != "RUNNING" and j,
                           what="the job to end")
    assert submitted["TimeLimit"] == "00:01:00"
    ran = sum(int(part) * unit for part, unit in zip(reversed(submitted["RunTime"].split(":")), (1, 60, 3600)))
    assert 30 <= ran < 60, f"stopped after {ran} s: not before max_run_time, and before Slurm's own limit"


def test_a_job_scancelled_by_an_admin_says_so(e2e: E2E) -> None:
    uuid = _new(e2e, mode="hang")
    e2e.dispatcher()
    job_id = wait_until(lambda: e2e.container(uuid).state is ContainerState.RUNNING and _job(e2e, uuid)[0],
                        what="the container to run")
    e2e.slurm.run(["scancel", job_id], check=True)  # an admin's plain scancel: SIGTERM to every step
    wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=60, what="the container to end")
    assert e2e.container(uuid).state is ContainerState.CANCELLED
    log = wait_until(lambda: [t for t in e2e.logs(uuid) if "cancelled in Slurm" in t], what="the dispatch log")
    assert log[0].startswith(f"Slurm job {job_id} was cancelled in Slurm (by an admin or the job's owner) on node c")
    assert "while the container ran (CANCELLED); crunch-run stopped the container and recorded Cancelled\n" in log[0]


WAITING = ("--begin=now+3600",)
"""Template arguments that keep a job PENDING (reason BeginTime) for an hour."""


def test_a_container_cancelled_while_its_job_waits_says_the_dispatcher_scancelled_it(e2e: E2E) -> None:
    uuid = _new(e2e)
    e2e.dispatcher(sbatch_arguments=(*e2e.settings.sbatch_arguments, *WAITING))
    job_id = wait_until(lambda: _job(e2e, uuid)[1] == "PENDING" and _job(e2e, uuid)[0], what="the job to wait")
    e2e.api.update_state(uuid, ContainerState.CANCELLED)
    log = wait_until(lambda: [t for t in e2e.logs(uuid) if "scancelled" in t], timeout=60, what="the dispatch log")
    assert log[0].startswith(f"Slurm job {job_id} was scancelled by the dispatcher before it started, because the "
                             f"container was cancelled in Arvados\nJobId={job_id} JobState=CANCELLED"), log
    assert not any("crunch-run" in t or "while the container ran" in t for t in e2e.logs(uuid)), e2e.logs(uuid)


def test_a_container_cancelled_while_the_service_was_down_says_the_dispatcher_scancelled_its_job(e2e: E2E) -> None:
    uuid = _new(e2e)
    settings = {"sbatch_arguments": (*e2e.settings.sbatch_arguments, *WAITING)}
    first = e2e.dispatcher(**settings)
    job_id = wait_until(lambda: _job(e2e, uuid)[1] == "PENDING" and _job(e2e, uuid)[0], what="the job to wait")
    first.stop()  # a shutdown leaves the job alone
    e2e.started.remove(first)
    e2e.api.update_state(uuid, ContainerState.CANCELLED)
    e2e.dispatcher(**settings)  # startup adoption scancels the job of a finished container
    log = wait_until(lambda: [t for t in e2e.logs(uuid) if "scancelled" in t], timeout=60, what="the dispatch log")
    assert log[0].startswith(f"Slurm job {job_id} was scancelled by the dispatcher before it started, because the "
                             "container was cancelled in Arvados\n"), log


def test_a_crunch_run_command_that_does_not_exist_is_named_and_logged_at_error(
    e2e: E2E, caplog: pytest.LogCaptureFixture,
) -> None:
    uuids = [_new(e2e) for _ in range(3)]
    caplog.set_level(logging.INFO, logger="slurm_dispatch.runner")
    e2e.dispatcher(crunch_run_command="/nonexistent/crunch-run")
    for uuid in uuids:
        log = wait_until(lambda uuid=uuid: [t for t in e2e.logs(uuid) if "could not be run" in t], timeout=90,
                         what="the dispatch log")
        first = log[0].split("\n")[0]
        assert " failed before crunch-run started the container: the command could not be run on node c" in first
        assert first.endswith(": exit code 127 means not found; check Containers.CrunchRunCommand "
                              "('/nonexistent/crunch-run') (FAILED); unlocking the container so that it can be "
                              "dispatched again"), first
    errors = wait_until(lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
                                 and "CrunchRunCommand" in r.getMessage()], timeout=60, what="the ERROR line")
    assert "could not be run 3 times in a row (exit code 127" in errors[0], errors
    assert len(errors) == 1, errors


SHORT_PARTITION = pytest.mark.xdist_group("partition_short")
"""The tests that use, or change the state of, the test cluster's partition "short" run in one worker."""


@SHORT_PARTITION
def test_a_job_that_can_never_start_is_cancelled_after_the_grace_period(e2e: E2E) -> None:
    # The test cluster's partition "short" allows one minute: an hour can never start there (PartitionTimeLimit).
    uuid = _new(e2e, partitions=["short"], max_run_time=3600)
    e2e.dispatcher(sbatch_arguments=(*e2e.settings.sbatch_arguments, "--time=%W"), never_runnable_grace=2)
    job_id = wait_until(lambda: _job(e2e, uuid)[0], what="the job to be submitted")
    wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=60, what="the container to be cancelled")
    container = e2e.container(uuid)
    assert container.state is ContainerState.CANCELLED
    # Slurm 22.05 gives this job either reason, whichever of its checks ran last (src/slurmctld/job_mgr.c):
    # job_limits_check, at submission and at each update (our renice among them), says PartitionTimeLimit; a refused
    # scheduling attempt says PartitionConfig (CI saw it once, when the renice came after the grace period).
    minutes = -(-(3600 + int(e2e.settings.max_run_time_overhead)) // 60)  # %W: max_run_time plus the Overhead
    reasons = {"PartitionTimeLimit": f"its time limit, {minutes} min, is longer than the MaxTime of partition short",
               "PartitionConfig": "it asks for more than its partition's limits allow"}
    reason = container.runtime_status["errorDetail"].rpartition("Reason=")[2]
    assert reason in reasons, container.runtime_status
    assert container.runtime_status["error"].startswith(
        f"Slurm job {job_id} can never start: {reason} ({reasons[reason]}); it was cancelled after waiting ")
    assert container.runtime_status["errorDetail"] == f"JobId={job_id} JobState=PENDING Reason={reason}"
    assert e2e.logs(uuid)[0].startswith(container.runtime_status["error"])
    assert sum("can never start" in text for text in e2e.logs(uuid)) == 1, "the reason is logged once"
    wait_until(lambda: not _job(e2e, uuid)[0], what="the job to be scancelled")


@SHORT_PARTITION
def test_an_inactive_partition_holds_the_container_locked_until_it_is_up_again(
    e2e: E2E, caplog: pytest.LogCaptureFixture,
) -> None:
    """sbatch refuses a job for an INACTIVE (or DRAIN) partition, which an admin sets for a while: the container
    stays Locked, without using up MaxDispatchAttempts, and runs once the partition is UP again."""
    e2e.slurm.run(["scontrol", "update", "PartitionName=short", "State=INACTIVE"], check=True)
    try:
        uuid = _new(e2e, partitions=["short"])
        e2e.dispatcher()
        caplog.set_level(logging.INFO, logger="slurm_dispatch.runner")

        def refusals() -> int:
            return sum(uuid in r.getMessage() and "its partition is inactive or draining" in r.getMessage()
                       for r in caplog.records)

        # two sbatch refusals (10 s apart): still Locked, and locked once
        wait_until(lambda: refusals() >= 2, timeout=60, what="a second refused sbatch")
        container = e2e.container(uuid)
        assert container.state is ContainerState.LOCKED and container.lock_count == 1
        assert not _job(e2e, uuid)[0]
    finally:
        e2e.slurm.run(["scontrol", "update", "PartitionName=short", "State=UP"], check=True)
    wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=90, what="the container to run and end")
    assert e2e.container(uuid).state is ContainerState.COMPLETE and e2e.container(uuid).lock_count == 1


def test_a_partition_that_does_not_exist_cancels_with_slurms_message(e2e: E2E) -> None:
    uuid = _new(e2e, partitions=["nope"])
    e2e.dispatcher()
    wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=90, what="the container to be cancelled")
    container = e2e.container(uuid)
    assert container.state is ContainerState.CANCELLED
    assert container.runtime_status["error"] == (
        f"cannot run container {uuid}: sbatch refused the job 3 times in a row: sbatch: error: invalid partition "
        "specified: nope; sbatch: error: Batch job submission failed: Invalid partition name specified")
    assert container.lock_count == 3
    assert e2e.logs(uuid)[-1].startswith(container.runtime_status["error"])
    detail = container.runtime_status["errorDetail"].splitlines()
    assert detail[0] == container.runtime_status["error"]
    assert detail[1].startswith("the refused command: sbatch ") and "--partition=nope" in detail[1].split(), detail


def _kill_leftovers(uuid: str, job_id: str, conf_dir: Path) -> None:
    """SIGKILL what a killed slurmd leaves behind: the job's slurmstepd and the stand-in (by pid). A slurmstepd is
    this cluster's when it holds a file under ``conf_dir`` open: other clusters on the host (other test workers)
    have jobs with the same ids."""
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        try:
            ours = uuid in cmd or ((f"[{job_id}." in cmd or f"[{job_id}]" in cmd)
                                   and any(f.path.startswith(f"{conf_dir.resolve()}/") for f in proc.open_files()))
            if ours:
                proc.kill()
        except psutil.Error:
            pass


def test_a_node_that_fails_cancels_with_the_node_failure_named(e2e: E2E, throwaway_cluster_dir: Path) -> None:
    """slurmd of the job's node killed: slurmctld marks the node DOWN (SlurmdTimeout) and the job NODE_FAIL. On a
    private cluster: killing a node of the shared one would disturb other tests."""
    conf_dir = throwaway_cluster_dir
    started = start_cluster(conf_dir)
    assert started.returncode == 0, started.stderr
    private = SlurmCluster(conf_dir=conf_dir)
    uuid = _new(e2e, mode="hang")
    job_id = ""
    try:
        d = RunningDispatcher(e2e.settings, private.env).start()
        e2e.started.append(d)
        job_id, _, node = wait_until(lambda: (j := _job(e2e, uuid, private))[1] == "RUNNING" and j,
                                     what="the job to run")
        wait_until(lambda: e2e.container(uuid).state is ContainerState.RUNNING, what="the container to run")
        os.kill(int((conf_dir / f"slurmd-{node}.pid").read_text()), signal.SIGKILL)
        _kill_leftovers(uuid, job_id, conf_dir)
        wait_until(lambda: e2e.container(uuid).state in FINAL, timeout=150, what="the node failure to end the job")
        container = e2e.container(uuid)
        assert container.state is ContainerState.CANCELLED
        assert container.runtime_status["error"] == (
            f"Slurm job {job_id} was killed because its node failed on node {node} while the container ran "
            "(NODE_FAIL)")
        assert container.runtime_status["errorDetail"].startswith(f"JobId={job_id} JobState=NODE_FAIL")
        assert e2e.logs(uuid)[0].startswith(container.runtime_status["error"])
    finally:
        for d in list(e2e.started):
            d.stop()
            e2e.started.remove(d)
        if job_id:
            _kill_leftovers(uuid, job_id, conf_dir)
        stop_cluster(conf_dir)


def _get(url: str, token: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
