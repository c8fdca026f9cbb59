"""The end reasons of slurm/reasons.py for what a review against the real Slurm cluster found misleading."""

from __future__ import annotations

from slurm_dispatch.slurm.reasons import JobEnd, end_reason


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
