"""Any user may name a job anything, and squeue --all shows every job: a name that is not UTF-8 must not stop us."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.squeue import SqueueChecker

pytestmark = pytest.mark.slurm


def test_a_job_name_in_latin1_does_not_break_squeue(slurm_clean: Any) -> None:
    job = slurm_clean.run(
        ["sbatch", "--parsable", "--hold", "--output=/dev/null", "-J", b"caf\xe9-latin1"], input="#!/bin/sh\ntrue\n",
        check=True,
    ).stdout.strip()
    assert job
    cli = SlurmCLI(env=slurm_clean.env)
    text = cli.queue()
    assert "|caf\ufffd-latin1|" in text

    async def poll() -> bool:
        return await SqueueChecker(backend=cli, poll_interval_s=1).poll()

    assert asyncio.run(poll()) is True
