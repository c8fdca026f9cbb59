"""crunch-run-wrapper in real Slurm jobs: it runs crunch-run (the stand-in) end to end, explains in words when
crunch-run or its environment is missing, passes `scancel --batch --signal=TERM` on to crunch-run, ends the job's
output with the exit record, and marks the job's Comment when crunch-run finds the node broken."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from plugins.e2e import E2E, RunningDispatcher, crunch_run_stub
from plugins.slurm_cluster import SlurmCluster, start_cluster, stop_cluster
from plugins.waiting import wait_until

from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

WRAPPER = Path(__file__).resolve().parents[2] / "crunch-run-wrapper" / "crunch-run-wrapper"
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
RECORD_PREFIX = "slurm-dispatch-exit: "


def exit_record(output: str) -> dict[str, object]:
    """The exit record of a job's output file: the last line with the record's prefix, as docs/crunch-run-wrapper.md
    says (slurmstepd may write after it, e.g. ``*** JOB n ON c1 CANCELLED ***`` when the dispatcher scancels the
    job of a container that has already finished)."""
    records = [line for line in output.splitlines() if line.startswith(RECORD_PREFIX)]
    assert records, output
    return json.loads(records[-1][len(RECORD_PREFIX):])  # type: ignore[no-any-return]


def test_dispatch_through_the_wrapper_completes(e2e: E2E) -> None:
    settings = replace(
        e2e.settings, crunch_run_command=str(WRAPPER),
        sbatch_environment={"CRUNCH_RUN_REAL": crunch_run_stub(), "CRUNCH_RUN_WRAPPER_PYTHON": sys.executable},
    )
    uuid = e2e.control.create_container(command=["sleep", "0.2"], runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    e2e.started.append(RunningDispatcher(settings, e2e.slurm.env).start())
    # (120 s: CI once failed this test on a loaded machine, its output cut off before the reason; the bound
    # only matters when something is wrong)
    wait_until(lambda: e2e.container(uuid).state is ContainerState.COMPLETE, timeout=120,
               what=f"container {uuid} to complete")
    jobs = e2e.jobs_named(uuid)
    assert len(jobs) == 1, f"expected one Slurm job for {uuid}, squeue shows {jobs}"
    (job,) = jobs
    wait_until(lambda: e2e.slurm.show_job(job).get("JobState") in FINAL, what=f"job {job} to end")
    output = (e2e.output_dir / f"{job}.out").read_text()
    assert f"crunch-run-wrapper: Slurm job {job} on node " in output
    assert f"for container {uuid}" in output
    assert e2e.settings.system_root_token not in output
    record = exit_record(output)
    assert (record["container"], record["job"], record["exit_status"], record["broken_node"]) == (uuid, job, 0, False), \
        output


@pytest.mark.parametrize(
    ("env", "exit_code", "words"),
    [
        pytest.param("CRUNCH_RUN_REAL=/nonexistent/crunch-run,ARVADOS_API_HOST=h,ARVADOS_API_TOKEN=t", 127,
                     "cannot find crunch-run ('/nonexistent/crunch-run')", id="crunch-run-missing"),
        pytest.param("CRUNCH_RUN_REAL=/bin/true", 78, "lacks ARVADOS_API_HOST ARVADOS_API_TOKEN", id="export-none"),
    ],
)
def test_wrapper_explains_what_is_missing(slurm_clean: object, tmp_path: Path, env: str, exit_code: int, words: str) -> None:
    cluster = slurm_clean
    out = tmp_path / "job.out"
    uuid = "zzzzz-dz642-wrappertest0001"
    script = f"#!/bin/sh\nexec '{WRAPPER}' '--runtime-engine=docker' '{uuid}'\n"
    job = cluster.run(  # type: ignore[attr-defined]
        ["sbatch", "--parsable", f"--export=NONE,{env}", f"--output={out}", "--job-name=wrapper-test"],
        input=script, check=True,
    ).stdout.strip()
    wait_until(lambda: cluster.show_job(job).get("JobState") in FINAL, what=f"job {job} to end")  # type: ignore[attr-defined]
    assert cluster.show_job(job)["ExitCode"] == f"{exit_code}:0"  # type: ignore[attr-defined]
    text = out.read_text()
    assert f"crunch-run-wrapper: Slurm job {job} on node c" in text
    assert words in text, text


STANDIN = r'''
import os, signal, subprocess, sys
d = os.environ["STANDIN_DIR"]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
if os.environ.get("STANDIN_MODE") == "hook":  # as crunch-run does when docker is dead
    hook = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--broken-node-hook=")][-1]
    sys.exit(1 if subprocess.call([hook]) == 0 else 2)
open(os.path.join(d, "ready"), "w").close()
got = signal.sigwait([signal.SIGTERM])
open(os.path.join(d, "signal"), "w").write(signal.Signals(got).name)
sys.exit(7)
'''


def submit_wrapper_job(cluster: object, tmp_path: Path, **env: str) -> tuple[str, Path]:
    """Submit a job whose script execs the wrapper, with the stand-in as crunch-run; return (job id, output)."""
    standin = tmp_path / "crunch-run"
    standin.write_text(f"#!{sys.executable}\n{STANDIN}")
    standin.chmod(0o755)
    out = tmp_path / "job.out"
    exports = {
        "CRUNCH_RUN_REAL": str(standin), "ARVADOS_API_HOST": "h", "ARVADOS_API_TOKEN": "t",
        "CRUNCH_RUN_WRAPPER_PYTHON": sys.executable, "CRUNCH_RUN_WRAPPER_GRACE": "1",
        "CRUNCH_RUN_WRAPPER_BROKEN_LOCK": str(tmp_path / "crunch-run-broken"), "STANDIN_DIR": str(tmp_path), **env,
    }
    assert not any("," in v for v in exports.values())
    script = f"#!/bin/sh\nexec '{WRAPPER}' '--runtime-engine=docker' 'zzzzz-dz642-wrapperslurm01'\n"
    job = cluster.run(  # type: ignore[attr-defined]
        ["sbatch", "--parsable", "--export=NONE," + ",".join(f"{k}={v}" for k, v in exports.items()),
         f"--output={out}", "--job-name=wrapper-test"],
        input=script, check=True,
    ).stdout.strip()
    return job, out


def test_scancel_batch_term_reaches_crunch_run_through_the_wrapper(slurm_clean: object, tmp_path: Path) -> None:
    cluster = slurm_clean
    job, out = submit_wrapper_job(cluster, tmp_path)

    def crunch_run_started() -> bool:
        if (tmp_path / "ready").exists():
            return True
        state = cluster.show_job(job).get("JobState")  # type: ignore[attr-defined]
        assert state not in FINAL, f"job {job} ended ({state}) first:\n{out.read_text() if out.exists() else ''}"
        return False

    # the cluster is shared: the job may wait for a node while other sessions' jobs run
    wait_until(crunch_run_started, timeout=120, what=f"crunch-run of job {job} to start")
    cluster.run(["scancel", "--batch", "--signal=TERM", job], check=True)  # type: ignore[attr-defined]
    wait_until(lambda: cluster.show_job(job).get("JobState") in FINAL, what=f"job {job} to end")  # type: ignore[attr-defined]
    assert (tmp_path / "signal").read_text() == "SIGTERM"
    shown = cluster.show_job(job)  # type: ignore[attr-defined]
    assert shown["ExitCode"] == "7:0"
    record = exit_record(out.read_text())
    assert record["job"] == job
    assert record["node"] == shown["NodeList"]
    assert record["container"] == "zzzzz-dz642-wrapperslurm01"
    assert (record["exit_status"], record["signal"], record["broken_node"]) == (7, None, False)
    assert "got SIGTERM; passed SIGTERM to crunch-run" in out.read_text()


def test_broken_node_hook_marks_the_jobs_comment(slurm_clean: object, tmp_path: Path) -> None:
    cluster = slurm_clean
    job, out = submit_wrapper_job(cluster, tmp_path, STANDIN_MODE="hook")
    wait_until(lambda: cluster.show_job(job).get("JobState") in FINAL, what=f"job {job} to end")  # type: ignore[attr-defined]
    node = cluster.show_job(job)["NodeList"]  # type: ignore[attr-defined]
    comment = cluster.run(  # type: ignore[attr-defined]
        ["squeue", "--noheader", "--states=all", f"--jobs={job}", "--Format=Comment:200"], check=True
    ).stdout.strip()
    assert comment == f"slurm-dispatch:broken-node:{node}"
    record = exit_record(out.read_text())
    assert (record["exit_status"], record["broken_node"]) == (1, True)


def test_a_job_owner_may_set_its_own_jobs_comment(slurm_cluster: object, throwaway_cluster_dir: Path) -> None:
    """Slurm 22.05 lets a plain user set the Comment of their own running job: the hook needs no privilege.

    On a cluster of its own, in a directory anyone may enter: nobody's sbatch and scontrol read its slurm.conf,
    and slurmd runs nobody's batch script from its spool directory, so a cluster kept inside a directory only
    root can enter (a checkout made under ``mktemp -d``) would fail the job with exit code 13 (EACCES).
    """
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")
    if shutil.which("runuser") is None:
        pytest.skip("no runuser here")
    throwaway_cluster_dir.chmod(0o755)
    started = start_cluster(throwaway_cluster_dir)
    assert started.returncode == 0, started.stderr
    cluster = SlurmCluster(conf_dir=throwaway_cluster_dir)
    try:
        as_nobody = ["runuser", "-u", "nobody", "--", "env", f"SLURM_CONF={cluster.conf_path}"]
        job = cluster.run(
            [*as_nobody, "sbatch", "--parsable", "--chdir=/tmp", "--output=/dev/null", "--job-name=wrapper-test",
             "--wrap", "scontrol update JobId=$SLURM_JOB_ID Comment=slurm-dispatch:broken-node:$SLURMD_NODENAME"],
            check=True, cwd="/tmp",
        ).stdout.strip()
        wait_until(lambda: cluster.show_job(job).get("JobState") in FINAL, what=f"job {job} to end")
        shown = cluster.show_job(job)
    finally:
        stop_cluster(throwaway_cluster_dir)
    assert shown["UserId"].startswith("nobody(")
    assert shown["ExitCode"] == "0:0"
    assert shown["Comment"] == f"slurm-dispatch:broken-node:{shown['NodeList']}"
    assert os.geteuid() == 0  # the test cluster runs as root; the job ran as nobody all the same
