"""UpdateChannel ("latest wins"), Tracker.offer, Throttle and failure_report: pure-ish units."""

from __future__ import annotations

import asyncio

import pytest
from plugins.fake_time import FakeClock

from slurm_dispatch.dispatch import Throttle, Tracker, UpdateChannel, failure_report
from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import Container, ContainerState

UUID = "zzzzz-dz642-000000000000001"


def rec(priority: int = 1, state: str = "Running") -> dict[str, object]:
    return {"uuid": UUID, "state": state, "priority": priority}


def container(priority: int = 1, state: str = "Running") -> Container:
    return Container.from_api(rec(priority, state))


def test_newer_update_replaces_unread_one() -> None:
    async def main() -> None:
        chan = UpdateChannel(container(1))
        assert chan.put(container(2)) and chan.put(container(3))
        got = await chan.next()
        assert got is not None and got.priority == 3
        assert not chan.pending

    asyncio.run(main())


def test_close_delivers_the_unread_record_then_none_forever() -> None:
    async def main() -> None:
        chan = UpdateChannel(container(1))
        chan.close()
        assert chan.closed and not chan.put(container(2))
        got = await chan.next()
        assert got is not None and got.priority == 1
        assert await chan.next() is None
        assert await chan.next() is None
        assert [c async for c in chan] == []

    asyncio.run(main())


def test_waiting_reader_is_woken_by_put_and_by_close() -> None:
    async def main() -> None:
        chan = UpdateChannel()
        reader = asyncio.create_task(chan.next())
        await asyncio.sleep(0)
        assert not reader.done()
        chan.put(container(5))
        got = await reader
        assert got is not None and got.priority == 5
        reader = asyncio.create_task(chan.next())
        await asyncio.sleep(0)
        chan.close()
        assert await reader is None

    asyncio.run(main())


def test_cancelled_wait_loses_no_record() -> None:
    async def main() -> None:
        chan = UpdateChannel()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(chan.next(), 0.001)
        chan.put(container(9))
        got = await asyncio.wait_for(chan.next(), 1)
        assert got is not None and got.priority == 9

    asyncio.run(main())


def test_offer_wakes_only_on_change_until_draining() -> None:
    async def main() -> None:
        first = rec(1)
        tracker = Tracker(UUID, UpdateChannel(Container.from_api(first)), first)
        await tracker.channel.next()
        assert not tracker.offer(dict(first), Container.from_api)
        assert tracker.offer(rec(2), Container.from_api)
        assert not tracker.offer(rec(2), Container.from_api)
        tracker.draining = True
        assert tracker.offer(rec(2), Container.from_api)
        assert tracker.close() and not tracker.close()
        assert not tracker.offer(rec(3), Container.from_api)

    asyncio.run(main())


def test_holds_means_an_offer_would_deliver_nothing() -> None:
    """The dispatcher's shortcut for an unchanged record (``Tracker.holds``) never says yes where ``offer`` would
    deliver: not for a changed field, not once draining or closed; the etag counts, unlike in ``offer``."""
    async def main() -> None:
        first = {**rec(1), "etag": "e1"}
        tracker = Tracker(UUID, UpdateChannel(Container.from_api(first)), first)
        await tracker.channel.next()
        selected = {k: first[k] for k in ("uuid", "state", "etag")}
        assert tracker.holds(selected) and not tracker.offer(selected, Container.from_api)
        assert not tracker.holds({**selected, "priority": 2})
        assert not tracker.holds({**selected, "etag": "e2"})
        assert not tracker.holds({**selected, "runtime_status": {"error": "x"}})  # a field it never had
        tracker.draining = True
        assert not tracker.holds(selected) and tracker.offer(selected, Container.from_api)
        tracker.draining = False
        refused = {**selected, "priority": "high"}
        with pytest.raises(ValueError):
            tracker.offer(refused, Container.from_api)
        assert not tracker.holds(refused)  # a record build refused was never taken
        tracker.close()
        assert not tracker.holds(selected)

    asyncio.run(main())


def test_throttle_first_sight_allowed_then_held() -> None:
    clock = FakeClock()
    t = Throttle(10.0, clock)
    assert t.check("a") and not t.check("a") and t.check("b")
    clock.now += 9
    assert not t.check("a")
    clock.now += 1
    assert t.check("a") and not t.check("a")
    t.sweep()
    assert len(t) == 1  # "b" was last allowed a full hold ago: forgotten
    assert t.check("b") and not t.check("b")
    clock.now += 10
    t.sweep()
    assert len(t) == 0


def test_throttle_zero_hold_allows_everything_and_remembers_nothing() -> None:
    t = Throttle(0.0, FakeClock())
    assert all(t.check("a") for _ in range(5)) and len(t) == 0


@pytest.mark.parametrize(
    ("error", "text", "fallback"),
    [
        pytest.param(
            RuntimeError("boom"), f"Error running container {UUID}: boom", ContainerState.QUEUED, id="other"
        ),
        pytest.param(
            UnsatisfiableContainer(UUID, "constraints not satisfiable by any configured instance type"),
            f"cannot run container {UUID}: constraints not satisfiable by any configured instance type\n"
            "No instance types are configured.\n",
            ContainerState.CANCELLED,
            id="unsatisfiable-no-types",
        ),
        pytest.param(
            UnsatisfiableContainer(
                UUID,
                "constraints not satisfiable by any configured instance type",
                [
                    'Type "a": 1 VCPUs, 1 RAM, 1 Scratch, 0.010000 Price',
                    'Type "b": 2 VCPUs, 2 RAM, 2 Scratch, 0.020000 Price',
                ],
            ),
            f"cannot run container {UUID}: constraints not satisfiable by any configured instance type\n"
            "Available instance types:\n"
            'Type "a": 1 VCPUs, 1 RAM, 1 Scratch, 0.010000 Price\n'
            'Type "b": 2 VCPUs, 2 RAM, 2 Scratch, 0.020000 Price\n',
            ContainerState.CANCELLED,
            id="unsatisfiable-types",
        ),
    ],
)
def test_failure_report(error: BaseException, text: str, fallback: ContainerState) -> None:
    report = failure_report(UUID, error)
    assert (report.log_text, report.fallback) == (text, fallback)
    if fallback is ContainerState.CANCELLED:
        assert report.runtime_status == {"error": str(error), "errorDetail": text.rstrip("\n")}
    else:
        assert report.runtime_status is None
