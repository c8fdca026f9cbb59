"""A Queued container whose old job is still in squeue, with no tracker of ours behind it, gets that job scancelled
(by a closed tracker, as a leftover found at startup does) and is then dispatched again; it does not wait for as
long as the job pends."""

from __future__ import annotations

import asyncio
from typing import Any

from plugins.fake_slurm import FakeSlurm

from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.settings import Settings


def test_an_untracked_job_of_a_queued_container_is_scancelled_and_the_container_runs(
    emulator: Any, emulator_control: Any,
) -> None:
    uuid = emulator_control.create_container(runtime_constraints={"ram": 100_000_000, "vcpus": 1},
                                             priority=0)["uuid"]
    settings = Settings(controller_url=emulator.base_url, system_root_token=emulator.root_token, tls_insecure=True,
                        poll_interval=0.2, crunch_run_command="crunch-run")
    fake_slurm = FakeSlurm()
    loop = DispatchLoop(settings, base_env={}, backend=fake_slurm)

    async def main() -> None:
        task = asyncio.create_task(loop.run())
        async with asyncio.timeout(20):
            while loop.adopted is None:  # startup's own clean-up has run, and found nothing
                await asyncio.sleep(0.01)
            # a job of the container appears late (an sbatch that timed out, then went through)
            stale = fake_slurm.submit(args=[f"--job-name={uuid}"], script="", env={})
            while uuid not in loop.squeue.snapshot().jobs:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(emulator_control.set_priority, uuid, 1)
            while len(fake_slurm.calls_of("submit")) < 2:
                await asyncio.sleep(0.01)
        loop.shutdown()
        await asyncio.wait_for(task, 20)
        assert str(stale) not in [job.job_id for job in fake_slurm.jobs], "the stale job was scancelled"

    asyncio.run(main())
    kinds = [call.kind for call in fake_slurm.calls if call.kind in ("submit", "cancel", "cancel_jobs")]
    assert kinds[0] == "submit" and kinds[-1] == "submit" and {"cancel", "cancel_jobs"} & set(kinds[1:-1])
    assert [job.name for job in fake_slurm.jobs] == [uuid], "one job: ours, submitted after the stale one went"
