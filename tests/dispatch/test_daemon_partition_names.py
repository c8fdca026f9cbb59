"""A container whose partition name no Slurm partition can have is cancelled with the reason, not left Queued.

Arvados accepts any list of strings as ``scheduling_parameters.partitions``; such a record used to be refused as
malformed, so the container waited for ever while only the dispatcher's log said why.
"""

from __future__ import annotations

import asyncio
from typing import Any

from plugins.fake_slurm import FakeSlurm

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.model import ContainerState
from slurm_dispatch.settings import Settings


def test_a_partition_name_with_a_space_cancels_the_container_with_the_reason(
    emulator: Any, emulator_control: Any,
) -> None:
    uuid = emulator_control.create_container(
        runtime_constraints={"ram": 100_000_000, "vcpus": 1},
        scheduling_parameters={"partitions": ["gpu large"]},
    )["uuid"]
    settings = Settings(controller_url=emulator.base_url, system_root_token=emulator.root_token, tls_insecure=True,
                        poll_interval=0.2, crunch_run_command="crunch-run")
    fake_slurm = FakeSlurm()
    loop = DispatchLoop(settings, base_env={}, backend=fake_slurm)
    client = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)

    async def main() -> None:
        task = asyncio.create_task(loop.run())
        async with asyncio.timeout(20):
            while (await asyncio.to_thread(client.get, uuid)).state is not ContainerState.CANCELLED:
                await asyncio.sleep(0.05)
        loop.shutdown()
        await asyncio.wait_for(task, 20)

    try:
        asyncio.run(main())
        final = client.get(uuid)
    finally:
        client.close()
    assert fake_slurm.calls_of("submit") == []
    assert final.runtime_status["error"] == (
        f"cannot run container {uuid}: scheduling_parameters.partitions[0] is 'gpu large', which no Slurm partition "
        "is named (a name holds no whitespace or control character)")
