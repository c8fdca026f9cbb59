"""The job of a container the service locks asks for the scratch its tmp mounts need (``--tmp=%T`` in the default
template), with or without InstanceTypes: a tick reads no mounts, so they are read once before the lock."""

from __future__ import annotations

import asyncio
from typing import Any

from loop_helpers import run_loop_until
from plugins.fake_slurm import FakeSlurm

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.model import MiB
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.jobs import job_for

GiB = 1 << 30


def test_a_locked_containers_job_asks_for_its_tmp_mounts_scratch(emulator: Any, emulator_control: Any) -> None:
    assert "--tmp=%T" in DEFAULT_SBATCH_ARGUMENTS
    uuid = emulator_control.create_container(
        runtime_constraints={"ram": 100_000_000, "vcpus": 1},
        mounts={"/tmp": {"kind": "tmp", "capacity": 10 * GiB}, "/var/spool/cwl": {"kind": "tmp", "capacity": 2 * GiB}},
    )["uuid"]
    settings = Settings(controller_url=emulator.base_url, system_root_token=emulator.root_token, tls_insecure=True,
                        poll_interval=0.2, crunch_run_command="crunch-run")
    assert not settings.instance_types
    fake_slurm = FakeSlurm()
    loop = DispatchLoop(settings, base_env={}, backend=fake_slurm)

    asyncio.run(run_loop_until(loop, lambda: uuid in fake_slurm.names()))
    (submit,) = fake_slurm.calls_of("submit")
    tmp = [a for a in submit.args if a.startswith("--tmp=")]
    assert len(tmp) == 1 and int(tmp[0].removeprefix("--tmp=")) >= 12 * GiB // MiB, tmp
    client = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
    try:
        whole = client.get(uuid)
    finally:
        client.close()
    assert list(submit.args) == list(job_for(whole, settings).args), "the job Go's sbatchArgs would build"
