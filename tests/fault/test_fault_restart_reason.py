"""A finding of the fault suite: a job that ended while the service was down is reported, after the restart, as
"Slurm job ? ended ..., and Slurm no longer knows how", although slurmctld still shows it (``squeue
--states=all``) and nobody asked: the restarted service never saw the job's id, so it never looked. Fixed: such a
job is asked about by its name (``JobEndReader.lookup_named``).

Made deterministic with the test's own jobs: they fill every free CPU, so the container's job pends until the
service has been stopped; then they are cancelled, the job runs, and its crunch-run sets the container Running
and exits without a word (crunch-run-stub's ``exit-silently-while-running``)."""

from __future__ import annotations

import pytest
from fault.fault_rig import Rig
from fault.fault_slurm import wait_for

pytestmark = pytest.mark.slurm

FREE_CPUS = 3
"""CPUs the private cluster has free: c1's 2 and c2's 2, less the foreign job running on c2."""


class MisleadingReason(Exception):
    """The reason written on the container says Slurm forgot a job it has not forgotten."""


def test_fault_reason_for_a_job_that_ended_while_the_service_was_down(fault_rig: Rig) -> None:
    rig = fault_rig
    blockers = [rig.cluster.submit("--job-name=fault-blocker", "--cpus-per-task=1", "--mem=10M",
                                   f"--output={rig.out_dir}/blocker-%j.out", "--wrap=sleep 600")
                for _ in range(FREE_CPUS)]
    try:
        wait_for(lambda: all(rig.watcher.record(b) is not None and rig.watcher.record(b).state == "RUNNING"
                             for b in blockers), timeout=60, what="the blockers to run")
        uuid = rig.emulator.create_container({
            "priority": 1, "command": ["sleep", "0"], "runtime_constraints": {"ram": 100_000_000, "vcpus": 1},
            "environment": {"SANDBOX_CRUNCH_RUN": "exit-silently-while-running"},
        })["uuid"]
        rig.uuids.append(uuid)
        rig.explained[uuid] = "its crunch-run exited without a word (the test's doing)"
        rig.start_service()
        wait_for(lambda: any(j.state == "PENDING" for j in rig.watcher.jobs_named(uuid)), timeout=30,
                 what="its job to pend")
        rig.sigterm("its job pending")
    finally:
        rig.cluster.cancel(blockers)
    [job] = wait_for(lambda: [j for j in rig.watcher.jobs_named(uuid) if not j.live], timeout=60,
                     what="its job to run and end")
    assert rig.history.current()[uuid].state == "Running"
    rig.start_service()
    wait_for(lambda: rig.records()[uuid]["state"] == "Cancelled", timeout=30, what="the service to cancel it")
    assert not rig.finish(), rig.report()
    error = rig.records()[uuid]["runtime_status"]["error"]
    if job.job_id not in error or "no longer knows" in error:
        raise MisleadingReason(f"job {job.job_id} is in squeue --states=all, yet the reason is: {error}")
