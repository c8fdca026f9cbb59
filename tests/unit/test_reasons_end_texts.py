"""The end reasons of slurm/reasons.py for what a review against the real Slurm cluster found misleading."""

from __future__ import annotations

import pytest

from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.reasons import JobEnd, end_reason, never_runnable_reason


def test_a_job_cancelled_while_pending_did_not_end_while_the_container_ran() -> None:
    """Slurm's record of a job scancelled while PENDING: no node, StartTime = EndTime."""
    end = JobEnd(job_id="19", state="CANCELLED", exit_status=0, start="2026-12-08T03:00:00",
                 end="2026-12-08T03:00:00", reason="Priority")
    reason = end_reason(end, job_id="19", container_state="Running")
    assert reason.error == "Slurm job 19 was cancelled in Slurm (by an admin or the job's owner) before it started " \
                           "(CANCELLED)"
    ran = end_reason(JobEnd(job_id="19", state="CANCELLED", nodes="c1", start="2026-12-08T03:00:00",
                            end="2026-12-08T03:05:00"), job_id="19", container_state="Running")
    assert "on node c1 while the container ran (CANCELLED)" in ran.error


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(127, "exit code 127 means not found"), (126, "exit code 126 means found but not executable")],
)
def test_a_command_that_could_not_be_run_names_the_setting(code: int, meaning: str) -> None:
    end = JobEnd(job_id="31", state="FAILED", exit_status=code, nodes="c1", start="2026-12-08T03:00:00",
                 end="2026-12-08T03:00:00", reason="NonZeroExitCode")
    reason = end_reason(end, job_id="31", container_state="Locked", command="/nonexistent/crunch-run")
    assert reason.error == (f"Slurm job 31 failed before crunch-run started the container: the command could not be "
                            f"run on node c1: {meaning}; check Containers.CrunchRunCommand ('/nonexistent/crunch-run') "
                            "(FAILED)")
    assert reason.command_exit == code


def test_exit_code_127_of_a_running_container_is_crunch_runs_own() -> None:
    end = JobEnd(job_id="31", state="FAILED", exit_status=127, nodes="c1")
    reason = end_reason(end, job_id="31", container_state="Running", command="crunch-run")
    assert reason.command_exit is None
    assert reason.error.startswith("Slurm job 31 failed with exit code 127 on node c1 while the container ran")


def test_partition_time_limit_says_the_jobs_limit_and_partition() -> None:
    job = SlurmJob(name="zzzzz-dz642-aaaaaaaaaaaaaaa", nice=0, slurm_priority=1, state="PENDING",
                   reason="PartitionTimeLimit", job_id="10")
    reason = never_runnable_reason(job, waited_s=30, time_limit_min=125, partitions=("short",))
    assert reason.error == ("Slurm job 10 can never start: PartitionTimeLimit (its time limit, 125 min, is longer than "
                            "the MaxTime of partition short); it was cancelled after waiting 30 s")
    assert "the MaxTime of its partition" in never_runnable_reason(job, waited_s=30, time_limit_min=125).error
    assert never_runnable_reason(job, waited_s=30).error == (
        "Slurm job 10 can never start: PartitionTimeLimit (its time limit is longer than its partition's MaxTime); "
        "it was cancelled after waiting 30 s"), "no %W: the limit is not known"
