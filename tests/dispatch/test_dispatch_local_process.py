"""A second, tiny RunContainer (one local process per container) proves the core is generic.

It knows nothing of Slurm: on a Locked container it starts a local process, sets the
container Running, and sets Complete/Cancelled when the process exits; when the update
channel closes it terminates the process. On shutdown (task cancelled) it leaves the
process running, as the Slurm backend leaves its jobs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

from dispatch_fakes import ME, FakeArvados, until

from slurm_dispatch.dispatch import Dispatcher, UpdateChannel
from slurm_dispatch.model import Container, ContainerState

QUICK = "import sys; sys.exit(0)"
SLOW = "import time; time.sleep(60)"


POLL_S = 0.02
"""How often the backend checks its processes (a real backend would use one poller for all)."""


class LocalProcesses:
    """RunContainer: the container's command is a Python snippet run by a local interpreter.

    Processes run in their own session, so they outlive the dispatcher (as Slurm jobs do).
    """

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.terminated: set[str] = set()

    async def __call__(self, d: Dispatcher, container: Container, updates: UpdateChannel) -> None:
        uuid = container.uuid
        first = await updates.next()
        if first is None or first.state is not ContainerState.LOCKED:
            return  # nothing of ours to start (adoption of leftovers is not this backend's job)
        argv = [sys.executable, "-c", container.command[0]]
        proc = await d.call(subprocess.Popen, argv, start_new_session=True)
        self.procs[uuid] = proc
        await d.update_state(uuid, ContainerState.RUNNING)
        while True:
            try:
                update = await asyncio.wait_for(updates.next(), POLL_S)
            except TimeoutError:
                code = proc.poll()
                if code is not None:
                    final = ContainerState.COMPLETE if code == 0 else ContainerState.CANCELLED
                    await d.update_state(uuid, final)
                    return
                continue
            if update is None:  # the container left us: stop its process
                proc.terminate()
                await d.call(proc.wait, 10)
                self.terminated.add(uuid)
                return


def test_local_process_backend_runs_completes_and_stops_containers() -> None:
    fake = FakeArvados()
    backend = LocalProcesses()

    async def main() -> None:
        d = Dispatcher(fake, backend)
        quick = fake.add("Queued", command=[QUICK])
        slow = fake.add("Queued", command=[SLOW])
        await d.tick()
        await until(lambda: fake.state(quick) == "Complete", timeout=20)
        await until(lambda: fake.state(slow) == "Running" and slow in backend.procs, timeout=20)
        fake.set(slow, state="Cancelled", locked_by_uuid="")  # a user cancels it
        await d.tick()
        await until(lambda: slow in backend.terminated, timeout=20)
        await d.tick()
        await until(lambda: not d.tracked(), timeout=20)
        await d.aclose()

    asyncio.run(main())


def test_local_process_backend_leaves_processes_running_on_shutdown() -> None:
    fake = FakeArvados()
    backend = LocalProcesses()

    async def fast_sleep(delay: float) -> None:
        await asyncio.sleep(0)

    async def main() -> int:
        d = Dispatcher(fake, backend, sleep=fast_sleep)
        uuid = fake.add("Queued", command=[SLOW])
        task = asyncio.create_task(d.run())
        await until(lambda: fake.state(uuid) == "Running", timeout=20)
        d.shutdown()
        await asyncio.wait_for(task, 10)
        assert fake.state(uuid) == "Running" and fake.records[uuid]["locked_by_uuid"] == ME
        return backend.procs[uuid].pid

    pid = asyncio.run(main())
    proc = backend.procs[next(iter(backend.procs))]
    try:
        assert proc.poll() is None  # still alive after shutdown: a restart would adopt it
        os.kill(pid, 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
