"""The foundation: the project's own Slurm test cluster is real, usable, and stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plugins.slurm_cluster import SlurmCluster, start_cluster, stop_cluster

pytestmark = pytest.mark.slurm

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def _submit(cluster: SlurmCluster, *args: str, script: str) -> str:
    out = cluster.run(["sbatch", "--parsable", *args], input=script, check=True).stdout
    return out.strip().split(";")[0]


def _state(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.show_job(job_id).get("JobState", "")


def test_trivial_batch_job_runs_to_completion(slurm_clean: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    job = _submit(slurm_clean, f"--output={out}", "--job-name=foundation-trivial", script="#!/bin/sh\necho hello from $SLURMD_NODENAME\n")
    slurm_clean.wait_for(lambda: _state(slurm_clean, job) in FINAL_STATES, what=f"job {job} to finish")
    info = slurm_clean.show_job(job)
    assert info["JobState"] == "COMPLETED", info
    assert info["ExitCode"] == "0:0"
    assert out.read_text().startswith("hello from c"), out.read_text()


@pytest.mark.parametrize(("instance_type", "node"), [("a1.small", "c1"), ("a1.large", "c2")])
def test_instance_type_constraint_lands_on_the_right_node(
    slurm_clean: SlurmCluster, tmp_path: Path, instance_type: str, node: str
) -> None:
    out = tmp_path / "node.txt"
    job = _submit(
        slurm_clean,
        f"--constraint=instancetype={instance_type}",
        f"--output={out}",
        script="#!/bin/sh\necho $SLURMD_NODENAME\n",
    )
    slurm_clean.wait_for(lambda: _state(slurm_clean, job) in FINAL_STATES, what=f"job {job} to finish")
    assert _state(slurm_clean, job) == "COMPLETED"
    assert out.read_text().strip() == node
    assert slurm_clean.show_job(job)["NodeList"] == node


def test_unknown_instance_type_is_refused_at_submission(slurm_clean: SlurmCluster) -> None:
    result = slurm_clean.run(["sbatch", "--constraint=instancetype=nope"], input="#!/bin/sh\ntrue\n")
    assert result.returncode != 0
    assert "Invalid feature specification" in result.stderr


def _pids_of_slurmstepd_in(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "exe").rsplit("/", 1)[-1] != "slurmstepd":
                continue
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(str(directory)) for link in links):
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_leaves_no_daemon_or_slurmstepd_behind(
    slurm_cluster: SlurmCluster, tmp_path: Path, throwaway_cluster_dir: Path
) -> None:
    """A second, throwaway cluster (own dir, own ports) with a running job is stopped without leftovers.

    It depends on ``slurm_cluster`` only so that packages and munged are known to be there.
    """
    conf_dir = throwaway_cluster_dir
    started = start_cluster(conf_dir)
    assert started.returncode == 0, started.stderr
    second = SlurmCluster(conf_dir=conf_dir)
    try:
        assert second.conf_path.read_text() != slurm_cluster.conf_path.read_text()
        pid_file = tmp_path / "job.pid"
        job = _submit(second, "--output=/dev/null", script=f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
        second.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what=f"job {job} to start")
        job_pid = int(pid_file.read_text())
        daemons = [int((conf_dir / f).read_text()) for f in ("slurmctld.pid", "slurmd-c1.pid", "slurmd-c2.pid")]
        assert all(_alive(p) for p in daemons + [job_pid])
        # the first cluster must be unaffected by what follows
        first_daemons = [int((slurm_cluster.conf_dir / f).read_text()) for f in ("slurmctld.pid", "slurmd-c1.pid")]
    finally:
        stopped = stop_cluster(conf_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert [p for p in daemons if _alive(p)] == []
    assert _pids_of_slurmstepd_in(conf_dir) == []
    second.wait_for(lambda: not _alive(job_pid), timeout=10, what="the job's process to end")
    assert all(_alive(p) for p in first_daemons)


def test_start_is_idempotent(slurm_cluster: SlurmCluster) -> None:
    pid_before = (slurm_cluster.conf_dir / "slurmctld.pid").read_text()
    again = start_cluster(slurm_cluster.conf_dir)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert (slurm_cluster.conf_dir / "slurmctld.pid").read_text() == pid_before
    assert f"export SLURM_CONF={slurm_cluster.conf_path}" in again.stdout


def test_stop_leaves_a_shared_munged_running(
    slurm_cluster: SlurmCluster, tmp_path: Path, throwaway_cluster_dir: Path
) -> None:
    """munged serves every Slurm on the host: stopping one test cluster must not take it from the others."""
    conf_dir = throwaway_cluster_dir
    started = start_cluster(conf_dir)
    assert started.returncode == 0, started.stderr
    # pretend this cluster had started munged: without --munge, stop must still leave it alone
    munged_pid = int(Path("/run/munge/munged.pid").read_text())
    assert _alive(munged_pid)
    (conf_dir / "munged.pid").write_text(f"{munged_pid}\n")
    stopped = stop_cluster(conf_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert _alive(munged_pid)
    assert "leaving munged" in stopped.stderr
    ok = slurm_cluster.run(["squeue", "--all", "--noheader"])
    assert ok.returncode == 0, ok.stderr
