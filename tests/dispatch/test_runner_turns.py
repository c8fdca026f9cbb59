"""Containers ready for sbatch at the same time reach it highest want first, so Slurm ranks their jobs in Arvados's
order from the start and the renice pass need not move them (FakeSlurm ranks jobs as priority/basic does: each
submission one point below the one before, which the second test shows going wrong without turns)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock
from runner_fakes import UUID, FakeApi, FakeDispatch, record

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner, Superseded
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.squeue import SqueueChecker

PRIORITIES = [3, 9, 1, 7, 5, 10, 2, 8, 4, 6]


def container(i: int, priority: int) -> Container:
    return Container.from_api({
        "uuid": f"zzzzz-dz642-turnstest{i:06d}", "state": "Locked", "priority": priority,
        "locked_by_uuid": "zzzzz-gj3su-000000000000000", "created_at": "2026-12-01T00:00:00.000000000Z",
        "runtime_constraints": {"ram": 1 << 28, "vcpus": 1},
    })


async def until(predicate: object, what: str) -> None:
    """Wait on the event loop for ``predicate()`` (the sbatch thread moves it along), 10 s at most."""
    for _ in range(1000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_burst_reaches_sbatch_by_want() -> None:
    slurm = FakeSlurm()
    gate = slurm.gate("submit")
    containers = [container(i, p) for i, p in enumerate(PRIORITIES)]

    async def main() -> None:
        # One sbatch thread: the order in which sbatch runs is the order in which turns were given.
        runner = SlurmRunner(settings=Settings(crunch_run_command="crunch-run", poll_interval=10), backend=slurm,
                             squeue=SqueueChecker(backend=slurm, poll_interval_s=10), client=FakeApi(),
                             executor=ThreadPoolExecutor(1))
        try:
            tasks = [asyncio.create_task(runner.submit(c)) for c in containers]  # in the order their locks came
            await until(lambda: slurm.waiting.get("submit") == 1, "the first sbatch to start")
            assert runner.submitting == len(containers)
            gate.set()
            await asyncio.gather(*tasks)
        finally:
            runner.close()

    asyncio.run(main())
    submitted = [c.name for c in slurm.calls_of("submit")]
    by_uuid = {c.uuid: c for c in containers}
    # All asked in the same round of the event loop: even the first three slots went to the highest wants.
    assert [by_uuid[u].priority for u in submitted] == sorted(PRIORITIES, reverse=True)


def slurm_order(slurm: FakeSlurm, names: list[str]) -> list[str]:
    """``names`` by Slurm priority, highest first."""
    priority = {job.name: job.slurm_priority for job in slurm.jobs}
    return sorted(names, key=lambda name: priority[name], reverse=True)


def test_without_turns_the_same_burst_would_be_out_of_order_in_slurm() -> None:
    """The premise of the test above: the same jobs, submitted in the order their locks came, are out of order."""
    slurm = FakeSlurm()
    containers = [container(i, p) for i, p in enumerate(PRIORITIES)]
    for c in containers:
        slurm.submit(args=(f"--job-name={c.uuid}",), script="#!/bin/sh\n", env={})
    by_want = [c.uuid for c in sorted(containers, key=lambda c: c.priority, reverse=True)]
    assert slurm_order(slurm, by_want) != by_want


def test_a_container_whose_priority_went_to_0_while_it_waited_for_its_turn_is_not_submitted() -> None:
    """Cancelling a workflow in the middle of a burst: its children still waiting for a turn at sbatch are not
    submitted (then scancelled); they are decided again with the new record."""
    slurm = FakeSlurm()
    gate = slurm.gate("submit")
    busy = [container(i, 9) for i in range(3)]
    late = container(3, 5)
    changed = [False]

    async def main() -> None:
        runner = SlurmRunner(settings=Settings(crunch_run_command="crunch-run", poll_interval=10), backend=slurm,
                             squeue=SqueueChecker(backend=slurm, poll_interval_s=10), client=FakeApi(),
                             executor=ThreadPoolExecutor(3))
        try:
            tasks = [asyncio.create_task(runner.submit(c)) for c in busy]  # the three turns, held in sbatch
            await until(lambda: slurm.waiting.get("submit") == 3, "three sbatch to start")
            waiting = asyncio.create_task(runner.submit(late, superseded=lambda: changed[0]))
            await until(lambda: runner.submitting == 4, "the fourth to wait for its turn")
            changed[0] = True  # its priority went to 0 meanwhile
            gate.set()
            await asyncio.gather(*tasks)
            try:
                await waiting
            except Superseded:
                pass
            else:
                raise AssertionError("submitted although superseded")
            assert runner.submitting == 0
        finally:
            runner.close()

    asyncio.run(main())
    assert sorted(c.name for c in slurm.calls_of("submit")) == sorted(c.uuid for c in busy)


def _wait_for_a_turn_while(change: Callable[[FakeApi, UpdateChannel], None]) -> tuple[FakeSlurm, FakeApi, int]:
    """Run the RunContainer of a Locked container while three other submissions hold every sbatch turn; once it
    waits for a turn, ``change`` its record and channel, then let sbatch go. Return the Slurm and API fakes and how
    many submissions the runner began."""
    slurm = FakeSlurm()
    gate = slurm.gate("submit")
    busy = [container(i, 9) for i in range(3)]
    api = FakeApi({UUID: record(priority=5)})
    began = 0

    async def main() -> None:
        nonlocal began
        squeue = SqueueChecker(backend=slurm, poll_interval_s=0.05, first_poll_immediately=True)
        runner = SlurmRunner(settings=Settings(crunch_run_command="crunch-run", poll_interval=10), backend=slurm,
                             squeue=squeue, client=api, executor=ThreadPoolExecutor(3))
        poller = asyncio.create_task(squeue.run())
        try:
            tasks = [asyncio.create_task(runner.submit(c)) for c in busy]
            await until(lambda: slurm.waiting.get("submit") == 3, "three sbatch to start")
            first = Container.from_api(api.records[UUID])
            updates = UpdateChannel(first)  # as the dispatcher starts it: the first record, unread
            run = asyncio.create_task(runner.run_container(FakeDispatch(api, FakeClock()), first, updates))
            await until(lambda: runner.submitting == 4, "the container to wait for its turn")
            change(api, updates)
            gate.set()
            await asyncio.gather(*tasks)
            await asyncio.wait_for(run, 10)
            began = runner.submissions
        finally:
            poller.cancel()
            runner.close()

    asyncio.run(main())
    return slurm, api, began


def test_a_runcontainer_that_waited_for_its_turn_reads_the_newer_record_and_unlocks_instead() -> None:
    """The same, through run_container: the priority-0 record that came during the wait is applied, nothing is
    submitted for it, and the container is unlocked (Go submits it, then scancels)."""
    def priority_0(api: FakeApi, updates: UpdateChannel) -> None:
        api.records[UUID]["priority"] = 0
        updates.put(Container.from_api(api.records[UUID]))

    slurm, api, _ = _wait_for_a_turn_while(priority_0)
    assert UUID not in [c.name for c in slurm.calls_of("submit")]
    assert ("unlock", UUID) in api.calls


def test_a_container_that_left_while_it_waited_for_its_turn_is_decided_once_without_a_second_turn() -> None:
    """The channel closed (the container was cancelled and left this dispatcher) with the first record still unread:
    one look at the turn is enough, the runner does not queue for a second turn to find out."""
    def cancelled(api: FakeApi, updates: UpdateChannel) -> None:
        api.records[UUID].update(state="Cancelled", priority=0, locked_by_uuid="")
        updates.close()

    slurm, _, began = _wait_for_a_turn_while(cancelled)
    assert UUID not in [c.name for c in slurm.calls_of("submit")]
    assert began == 4, "one turn for it, not two"
