"""On the real Slurm: another user's job whose name holds a newline and a made-up squeue line cannot pass for a job
of ours. squeue prints job names as they are (22.05); without the line marker, this name read as a RUNNING job of
the container with another job's id, which the service would have scancelled or reniced by id."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.slurm.backend import SQUEUE_ARGV
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all

pytestmark = pytest.mark.slurm

OURS = "zzzzz-dz642-forgedlinetest01"


def _held(cluster: Any, name: str) -> str:
    out = cluster.run(["sbatch", "--parsable", "--hold", "--output=/dev/null", "-J", name],
                      input="#!/bin/sh\ntrue\n", check=True).stdout.strip()
    assert out
    return str(out)


def test_a_made_up_line_in_a_job_name_is_read_as_part_of_that_name(slurm_clean: Any) -> None:
    ours = _held(slurm_clean, OURS)
    victim = _held(slurm_clean, "someone elses job")
    forged_name = f"evil\n{victim}|0|5|RUNNING|1:00|c1|{OURS}|None"
    forged = _held(slurm_clean, forged_name)
    raw = slurm_clean.run(list(SQUEUE_ARGV), check=True).stdout
    assert f"\n{victim}|0|5|RUNNING|1:00|c1|{OURS}|None|" in raw, "squeue prints the newline as it is"
    unmarked, _ = parse_squeue_all(raw)
    assert [(j.job_id, j.state) for j in unmarked if j.name == OURS and j.job_id == victim] == [(victim, "RUNNING")], \
        "read without the marker, the made-up line is a running job of ours"

    jobs, errors = parse_squeue_all(SlurmCLI(env=slurm_clean.env).queue())
    assert errors == []
    assert [(j.job_id, j.state, j.reason) for j in jobs if j.name == OURS] == [(ours, "PENDING", "JobHeldUser")]
    assert [j.job_id for j in jobs if j.name == "evil\\n" + victim] == [forged]
