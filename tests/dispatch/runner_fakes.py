"""The Slurm runner's test kit: a fake API, the part of the Dispatcher a RunContainer uses, and a scenario that
runs a runner with a real SqueueChecker and FakeSlurm on virtual time (no thread, no sleep)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock, InlineExecutor

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import ArvadosUnavailable
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.squeue import SqueueChecker

T = TypeVar("T")
ME = "zzzzz-gj3su-000000000000000"
OTHER = "zzzzz-gj3su-someoneelse0000"
UUID = "zzzzz-dz642-runnerfaketest1"
INLINE = InlineExecutor()


@dataclass
class FakeApi:
    """Containers by uuid; ``get`` can be made to fail; every call recorded."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    get_failures: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, uuid: str) -> Container:
        with self._lock:
            self.calls.append(("get", uuid))
            if self.get_failures:
                self.get_failures -= 1
                raise ArvadosUnavailable(503, "GET", f"/arvados/v1/containers/{uuid}", "down")
            return Container.from_api(self.records[uuid])


@dataclass
class FakeDispatch:
    """The part of the Dispatcher a RunContainer uses; its blocking calls run inline, on virtual time."""

    api: FakeApi
    clock: FakeClock
    token_uuid: str = ME

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    async def unlock(self, uuid: str) -> None:
        self.api.calls.append(("unlock", uuid))
        self.api.records[uuid].update(state="Queued", locked_by_uuid="")

    async def update_state(self, uuid: str, state: ContainerState) -> None:
        self.api.calls.append(("update_state:" + state.value, uuid))
        self.api.records[uuid]["state"] = state.value

    async def update(self, uuid: str, fields: Mapping[str, Any]) -> None:
        if "state" in fields:
            self.api.calls.append(("update_state:" + fields["state"], uuid))
            self.api.records[uuid]["state"] = fields["state"]
        if "runtime_status" in fields:
            self.api.calls.append(("runtime_status", uuid))
            self.api.records[uuid]["runtime_status"] = dict(fields["runtime_status"])

    async def log(self, uuid: str, text: str) -> None:
        self.api.logs.append(text)

    async def track_container(self, uuid: str) -> None:
        raise AssertionError("not used here")


def record(state: str = "Locked", priority: int = 1, locked_by: str = ME) -> dict[str, Any]:
    return {"uuid": UUID, "state": state, "priority": priority, "locked_by_uuid": locked_by,
            "created_at": "2026-12-01T00:00:00.000000000Z", "runtime_constraints": {"ram": 1 << 28, "vcpus": 1}}


def scenario(slurm: FakeSlurm, api: FakeApi, body: Callable[[SlurmRunner, FakeDispatch, UpdateChannel, SqueueChecker],
                                                                  Awaitable[None]], *, settings: Settings | None = None
             ) -> None:
    """Run ``body`` with a runner and a squeue poller (PollInterval 10 s) on virtual time: no thread, no sleep."""
    clock = FakeClock()
    settings = settings or Settings(crunch_run_command="crunch-run", poll_interval=10)

    async def main() -> None:
        squeue = SqueueChecker(backend=slurm, poll_interval_s=settings.poll_interval, first_poll_immediately=True,
                               clock=clock, sleep=clock.sleep, executor=INLINE)
        runner = SlurmRunner(settings=settings, backend=slurm, squeue=squeue, client=api, clock=clock,
                             sleep=clock.sleep, executor=INLINE)
        poller = asyncio.create_task(squeue.run())
        try:
            channel = UpdateChannel(Container.from_api(api.records[UUID]))
            await body(runner, FakeDispatch(api, clock), channel, squeue)
        finally:
            poller.cancel()
            runner.close()

    asyncio.run(main())


async def returned(d: FakeDispatch, task: asyncio.Task[None]) -> None:
    """Wait (on virtual time) for the runner's task to return, and re-raise what it raised."""
    await d.clock.run_until(task.done, "the runner to return")
    task.result()
