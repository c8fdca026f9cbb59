"""The Dispatcher holds Queued containers back by the admission rules: drain, caps, supervisors, overload, busy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from dispatch_fakes import FakeArvados, Recorder
from plugins.fake_time import FakeClock

from slurm_dispatch.dispatch import Dispatcher
from slurm_dispatch.dispatch.admission import PREVIOUS_ATTEMPT, Admission, Drain, Limits
from slurm_dispatch.errors import ArvadosUnavailable
from slurm_dispatch.model import Container

Scenario = Callable[[Dispatcher, FakeArvados, Recorder], Awaitable[None]]


def run(scenario: Scenario, **kwargs: Any) -> None:
    fake = FakeArvados()
    recorder = Recorder()

    async def main() -> None:
        d = Dispatcher(fake, recorder, poll_period=10.0, **kwargs)
        try:
            await scenario(d, fake, recorder)
        finally:
            await d.aclose()

    asyncio.run(main())


def test_over_the_cap_stays_queued_with_its_position() -> None:
    clock = FakeClock()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuids = [fake.add("Queued", priority=10 - i) for i in range(5)]
        report = await d.tick()
        assert report.locked == 2
        assert [fake.state(u) for u in uuids] == ["Locked", "Locked", "Queued", "Queued", "Queued"]
        assert {u: w.reason for u, w in d.waiting.items()} == {
            uuids[2]: "Waiting in queue at position 1.  This dispatcher is at its limit of 2 containers in Slurm.",
            uuids[3]: "Waiting in queue at position 2.  This dispatcher is at its limit of 2 containers in Slurm.",
            uuids[4]: "Waiting in queue at position 3.  This dispatcher is at its limit of 2 containers in Slurm.",
        }
        assert d.capped == frozenset({"cap"})
        report = await d.tick()
        assert report.locked == 0, "still at the cap"
        fake.set(uuids[0], state="Complete", locked_by_uuid="")
        await d.tick()  # closes the finished one's tracker
        await asyncio.sleep(0)
        await d.tick()
        assert fake.state(uuids[2]) == "Locked", "room again: the next in priority order"

    run(scenario, admission=Admission(Limits(max_in_slurm=2), clock=clock))


def test_drain_locks_nothing_new_and_resume_locks_again() -> None:
    drain: list[Drain | None] = [Drain("maintenance", "2026-12-07T10:00:00.000000000Z")]

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        running = fake.add("Running", locked_by="zzzzz-gj3su-000000000000000")
        queued = fake.add("Queued", priority=5)
        await d.tick()
        assert fake.state(queued) == "Queued" and queued in d.waiting
        assert d.is_tracking(running), "what already runs is still followed"
        drain[0] = None
        await d.tick()
        assert fake.state(queued) == "Locked" and not d.waiting

    run(scenario, drain=lambda: drain[0])


def test_a_busy_container_is_not_locked_until_its_old_job_is_gone() -> None:
    busy: set[str] = set()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        busy.add(uuid)
        await d.tick()
        assert fake.state(uuid) == "Queued" and d.waiting[uuid].reason == PREVIOUS_ATTEMPT
        assert fake.count("lock") == 0
        busy.clear()
        await d.tick()
        assert fake.state(uuid) == "Locked"

    run(scenario, busy=lambda c: PREVIOUS_ATTEMPT if c.uuid in busy else None)


def test_held_back_containers_do_not_use_up_their_min_retry_period() -> None:
    clock = FakeClock()
    drain: list[Drain | None] = [Drain("x", "t")]

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        await d.tick()
        drain[0] = None
        await d.tick()  # no time has passed: a throttled attempt would have to wait MinRetryPeriod
        assert fake.state(uuid) == "Locked"

    run(scenario, drain=lambda: drain[0], min_retry_period=60.0, clock=clock)


def test_an_overloaded_api_gets_fewer_locks_per_tick() -> None:
    clock = FakeClock()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuids = [fake.add("Queued", priority=100 - i) for i in range(20)]
        fake.fail("lock", *(ArvadosUnavailable(503, "POST", "/x", "Service Unavailable") for _ in range(20)))
        report = await d.tick()
        assert report.locked == 0 and fake.count("lock") == 20
        report = await d.tick()
        assert fake.count("lock") == 20 + 10, "half as many tried after the 503s"
        assert report.locked == 10
        assert sum(1 for w in d.waiting.values() if "overloaded" in w.reason) == 10
        locked_before = sum(fake.state(u) == "Locked" for u in uuids)
        assert locked_before == 10

    run(scenario, admission=Admission(Limits(), clock=clock), clock=clock)


def test_waiting_containers_keep_their_first_seen_time() -> None:
    wall = [1000.0]
    drain = Drain("x", "t")

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5)
        await d.tick()
        wall[0] = 2000.0
        await d.tick()
        assert d.waiting[uuid].first_seen == 1000.0
        assert isinstance(d.waiting[uuid].container, Container)

    run(scenario, drain=lambda: drain, wall_clock=lambda: wall[0])
