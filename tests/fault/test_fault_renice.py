"""A finding of the fault suite: renicing a container's job by name fails while an ended job of the same name
is still known to slurmctld (for MinJobAge), which is the case each time a container is submitted again (its
crunch-run died before Running, its node died, a lock was lost and taken again)."""

from __future__ import annotations

import pytest
from fault.fault_slurm import ForeignJobs, PrivateCluster, wait_for

from slurm_dispatch.errors import SlurmCommandError
from slurm_dispatch.slurm.cli_backend import SlurmCLI

pytestmark = pytest.mark.slurm

NAME = "zzzzz-dz642-resubmittedjob1"


@pytest.mark.xfail(
    strict=True,
    raises=SlurmCommandError,
    reason="bug: SlurmCLI.renice runs `scontrol update JobName=<uuid> Nice=N`, which exits 1 with 'Job has already "
    "finished for job <old id>' when an ended job of that name is still in slurmctld (MinJobAge), although the "
    "live job IS reniced; the service then logs a WARNING and 'renice ... failed (ignored)' on every renice of a "
    "resubmitted container (seen in the API fault scenario). Renicing by job id (squeue has it) would not",
)
def test_fault_renice_of_a_resubmitted_container(fault_cluster: tuple[PrivateCluster, ForeignJobs]) -> None:
    cluster, _ = fault_cluster
    common = [f"--job-name={NAME}", "--mem=10M", "--output=/dev/null"]
    first = cluster.submit(*common, "--wrap=true")
    wait_for(lambda: cluster.run(["squeue", "--noheader", "--format=%i", f"--jobs={first}"]).stdout.strip() == "",
             timeout=60, what="the first job to end")
    second = cluster.submit(*common, "--begin=now+3600", "--nice=10000", "--wrap=true")  # pending for an hour
    try:
        SlurmCLI(env=cluster.env).renice(NAME, 5)
        nice = cluster.run(["squeue", "--noheader", "--format=%y", f"--jobs={second}"]).stdout.strip()
        assert nice == "5"
    finally:
        cluster.cancel([second])
