"""The Dispatcher holds Queued containers back by the admission rules: drain, caps, supervisors, overload, busy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dispatch_fakes import ME, FakeArvados, Recorder
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


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_an_overloaded_api_gets_fewer_locks_per_tick(status: int) -> None:
    """429 and 503 from the API, 502 and 504 from the proxy in front of it when it does not keep up."""
    clock = FakeClock()

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuids = [fake.add("Queued", priority=100 - i) for i in range(20)]
        fake.fail("lock", *(ArvadosUnavailable(status, "POST", "/x", "busy") for _ in range(20)))
        report = await d.tick()
        assert report.locked == 0 and fake.count("lock") == 20
        report = await d.tick()
        assert fake.count("lock") == 20 + 10, f"half as many tried after the {status}s"
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


def test_a_container_seen_on_two_pages_takes_one_place_by_its_later_priority() -> None:
    """Offset paging is not a snapshot: a priority lowered between two pages moves a container from the page read
    to the next one, so it is seen twice (and another is skipped until the next tick). It takes one place under
    the cap, by the priority it has now, not two places."""

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuids = [fake.add("Queued", priority=10 - i) for i in range(4)]
        original = fake.list

        def lower_the_first_between_pages(**kwargs: Any) -> Any:
            page = original(**kwargs)
            if kwargs["filters"][0] == ["state", "=", "Queued"] and kwargs["limit"] and kwargs["offset"] == 0:
                fake.set(uuids[0], priority=1)  # read on the first page, and now the last of the second
            return page

        fake.list = lower_the_first_between_pages  # type: ignore[method-assign]
        fake.short_pages = 2
        await d.tick()
        assert [u for u in uuids if fake.state(u) == "Locked"] == [uuids[1], uuids[3]], (
            "the two places went to the highest priorities as last read; uuids[2] was skipped by the paging")
        assert fake.count("lock") == 2
        assert set(d.waiting) == {uuids[0]}

    run(scenario, admission=Admission(Limits(max_in_slurm=2), clock=FakeClock()))


def test_no_lock_in_a_tick_whose_locked_by_me_query_failed() -> None:
    """Right after a restart the trackers come from the "locked by me" query: if it fails, the caps would count
    none of the containers already in Slurm, so that tick locks nothing."""

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        ours = [fake.add("Running", priority=5, locked_by=ME) for _ in range(3)]
        queued = [fake.add("Queued", priority=5) for _ in range(5)]
        fake.fail("list", ArvadosUnavailable(503, "GET", "/arvados/v1/containers", "busy"))
        report = await d.tick()
        assert report.locked == 0 and fake.count("lock") == 0
        report = await d.tick()
        assert all(d.is_tracking(u) for u in ours) and report.locked == 0, "the cap of 3 is reached by ours"
        assert all(fake.state(u) == "Queued" for u in queued)

    run(scenario, admission=Admission(Limits(max_in_slurm=3), clock=FakeClock()))


def test_the_limits_reached_are_those_of_the_last_whole_tick_while_the_next_one_runs() -> None:
    """The management API reads ``capped`` between awaits, mid-tick: it must not see it emptied."""
    seen: list[frozenset[str]] = []

    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        fake.add("Queued", priority=5)
        await d.tick()
        assert d.capped == {"drain"}
        original = fake.list

        def watching(**kwargs: Any) -> Any:
            seen.append(frozenset(d.capped))
            return original(**kwargs)

        fake.list = watching  # type: ignore[method-assign]
        await d.tick()
        assert seen and all(c == {"drain"} for c in seen), seen

    run(scenario, drain=lambda: Drain("x", "t"))
