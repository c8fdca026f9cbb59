"""Running a whole ``DispatchLoop`` (against the emulator and FakeSlurm) until something has happened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from slurm_dispatch.assemble import DispatchLoop


async def run_loop_until(loop: DispatchLoop, done: Callable[[], bool], *, timeout: float = 20) -> None:
    """Run ``loop`` until ``done()`` (looked at every 10 ms), then shut it down and wait for it to return.

    Raises:
        TimeoutError: ``done()`` stayed false for ``timeout`` seconds.
    """
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        loop.shutdown()
        await asyncio.wait_for(task, 20)
