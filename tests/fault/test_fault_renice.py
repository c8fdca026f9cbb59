"""A finding of the fault suite, kept as a regression test: renicing a container's job by name
(``scontrol update JobName=<uuid>``) exited 1 ('Job has already finished for job N') while an ended job of the
same name was still known to slurmctld (MinJobAge), which is the case each time a container is submitted again
(its crunch-run died before Running, its node died, a lock was lost and taken again), and the service warned on
every renice of it. Since 85be7de the renice pass names jobs by the id squeue showed for the live one."""

from __future__ import annotations

import pytest
from fault.fault_slurm import ForeignJobs, PrivateCluster, wait_for

from slurm_dispatch.slurm.cli_backend import SlurmCLI

pytestmark = pytest.mark.slurm

NAME = "zzzzz-dz642-resubmittedjob1"


def test_fault_renice_of_a_resubmitted_container(fault_cluster: tuple[PrivateCluster, ForeignJobs]) -> None:
    cluster, _ = fault_cluster
    common = [f"--job-name={NAME}", "--mem=10M", "--output=/dev/null"]
    first = cluster.submit(*common, "--wrap=true")
    wait_for(lambda: cluster.run(["squeue", "--noheader", "--format=%i", f"--jobs={first}"]).stdout.strip() == "",
             timeout=60, what="the first job to end")
    second = cluster.submit(*common, "--begin=now+3600", "--nice=10000", "--wrap=true")  # pending for an hour
    try:
        SlurmCLI(env=cluster.env).renice_jobs([second], 5)
        nice = cluster.run(["squeue", "--noheader", "--format=%y", f"--jobs={second}"]).stdout.strip()
        assert nice == "5"
    finally:
        cluster.cancel([second])
