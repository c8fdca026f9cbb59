"""crunch-run-wrapper in real Slurm jobs: it runs crunch-run (the stand-in) end to end, and explains in words
when crunch-run or its environment is missing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from plugins.e2e import E2E, RunningDispatcher, crunch_run_stub, wait_until

from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

WRAPPER = Path(__file__).resolve().parents[2] / "crunch-run-wrapper" / "crunch-run-wrapper"
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def test_dispatch_through_the_wrapper_completes(e2e: E2E) -> None:
    settings = replace(
        e2e.settings, crunch_run_command=str(WRAPPER), sbatch_environment={"CRUNCH_RUN_REAL": crunch_run_stub()}
    )
    uuid = e2e.control.create_container(command=["sleep", "0.2"], runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    e2e.started.append(RunningDispatcher(settings, e2e.slurm.env).start())
    wait_until(lambda: e2e.container(uuid).state is ContainerState.COMPLETE, what="the container to complete")
    (job,) = e2e.jobs_named(uuid)
    output = (e2e.output_dir / f"{job}.out").read_text()
    assert f"crunch-run-wrapper: Slurm job {job} on node " in output
    assert f"for container {uuid}" in output
    assert e2e.settings.system_root_token not in output


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
