"""The dispatcher reads the fields that change each tick and the rest once (issue "Efficiency at scale").

A container's command, mounts, runtime constraints and scheduling parameters cannot change once it exists, so the
queries select what can (``queries.TRACKED_FIELDS``, ``QUEUED_FIELDS``) and each RunContainer still sees whole
records: built at lock from the Queued record plus the large fields read just before locking, or at adoption from
one read of the whole record.
"""

from __future__ import annotations

from typing import Any

from dispatch_fakes import ME, FakeArvados, Recorder, until
from test_dispatcher_fake import run, unavailable

from slurm_dispatch.dispatch import Dispatcher
from slurm_dispatch.dispatch.queries import QUEUED_FIELDS, TRACKED_FIELDS
from slurm_dispatch.model import ContainerState

WHOLE: dict[str, Any] = {
    "command": ["echo", "hello"],
    "mounts": {"/tmp": {"kind": "tmp", "capacity": 1 << 30}},
    "runtime_constraints": {"ram": 1 << 30, "vcpus": 2},
    "scheduling_parameters": {"partitions": ["p1"], "supervisor": False},
    "container_image": "fa3c1a9cb6783f85f2ecda037e07b8c3+167",
    "created_at": "2026-01-01T00:00:00.000000000Z",
    "log": "ea10d51bcf88862dbcc36eb292017dfd+45",
}


def fail_the_first_uuid_read(fake: FakeArvados) -> None:
    """Make the fake's next ``uuid in [...]`` list fail once (the API unavailable), as a flaky read would."""
    original = fake.list
    failed: list[int] = []

    def list_failing_uuid_reads(**kwargs: Any) -> Any:
        if kwargs["filters"][0][:2] == ["uuid", "in"] and not failed:
            failed.append(1)
            raise unavailable()
        return original(**kwargs)

    fake.list = list_failing_uuid_reads  # type: ignore[method-assign]


def _lists(fake: FakeArvados) -> list[tuple[Any, ...]]:
    return [args for m, args in fake.calls if m == "list"]


def test_ticks_select_the_fields_that_change_and_a_runner_still_sees_whole_records() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5, **WHOLE)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        first = rec.seen[uuid][0]
        assert first.command == ("echo", "hello")
        assert first.mounts["/tmp"].capacity == 1 << 30
        assert first.runtime_constraints.vcpus == 2 and first.scheduling_parameters.partitions == ("p1",)
        fake.calls.clear()
        fake.set(uuid, state="Running")
        await d.tick()
        await until(lambda: len(rec.seen[uuid]) == 2)
        running = rec.seen[uuid][1]
        assert running.state is ContainerState.RUNNING
        assert running.command == ("echo", "hello") and running.mounts["/tmp"].capacity == 1 << 30
        selects = {args[0][0][0]: args[4] for args in _lists(fake) if args[1] != 0}  # pages, not count probes
        assert selects == {"locked_by_uuid": TRACKED_FIELDS}, "an idle Queued query reads no page"
        assert all(args[4] in (TRACKED_FIELDS, QUEUED_FIELDS, None) for args in _lists(fake))

    run(scenario)


def test_the_queued_query_selects_what_admission_needs_and_large_fields_are_read_once_before_the_lock() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5, **WHOLE)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        pages = [args for args in _lists(fake) if args[1] != 0]
        queued = [a for a in pages if a[0][0] == ["state", "=", "Queued"]]
        assert [a[4] for a in queued] == [QUEUED_FIELDS]
        before_lock = [a for a in pages if a[0][0][:2] == ["uuid", "in"]]
        assert [(a[0][0][2], a[4]) for a in before_lock] == [([uuid], ("uuid", "command", "mounts"))]
        assert rec.seen[uuid][0].mounts["/tmp"].kind == "tmp"

    run(scenario)


def test_pages_cut_short_by_the_api_still_lock_and_adopt_every_container_in_one_tick() -> None:
    """Rails ends a page early once it has read ``API.MaxIndexDatabaseRead`` bytes (large mounts reach it): the
    uuids a ``uuid in`` page left out are asked for again, not left for a later tick."""
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        fake.short_pages = 2
        queued = [fake.add("Queued", priority=50 - i, **WHOLE) for i in range(5)]
        ours = [fake.add("Running", locked_by=ME, **WHOLE) for _ in range(3)]
        report = await d.tick()
        assert report.locked == 5 and all(fake.state(u) == "Locked" for u in queued)
        assert all(d.is_tracking(u) for u in ours), "adopted from whole records read in short pages"
        await until(lambda: all(u in rec.seen for u in queued + ours))
        assert all(rec.seen[u][0].mounts["/tmp"].capacity == 1 << 30 for u in queued + ours)
        reads = [a[0][0][2] for a in _lists(fake) if a[0][0][:2] == ["uuid", "in"]]
        assert sorted(queued) in [sorted(r) for r in reads], "one read asked for all five"
        assert len(reads) == 3 + 2, "each short page was followed by a read of the uuids it left out"

    run(scenario)


def test_without_large_fields_wanted_no_read_comes_before_the_lock() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5, **WHOLE)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        assert not [a for a in _lists(fake) if a[0][0][:2] == ["uuid", "in"]]
        assert rec.seen[uuid][0].runtime_constraints.ram == 1 << 30

    run(scenario, read_before_lock=())


def test_a_container_whose_large_fields_cannot_be_read_is_not_locked_this_tick() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5, **WHOLE)
        fail_the_first_uuid_read(fake)
        report = await d.tick()
        assert report.locked == 0 and fake.state(uuid) == "Queued"
        report = await d.tick()
        assert report.locked == 1 and fake.state(uuid) == "Locked"

    run(scenario)


def test_a_container_whose_mounts_are_malformed_is_never_locked() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Queued", priority=5, **{**WHOLE, "mounts": {"/tmp": {"kind": "tmp", "capacity": -1}}})
        await d.tick()
        await d.tick()
        assert fake.count("lock") == 0 and fake.state(uuid) == "Queued"

    run(scenario)


def test_adoption_reads_the_whole_record_once() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", priority=5, locked_by=ME, **WHOLE)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        assert rec.seen[uuid][0].mounts["/tmp"].capacity == 1 << 30
        reads = [a for a in _lists(fake) if a[0][0][:2] == ["uuid", "in"]]
        assert len(reads) == 1 and "mounts" in reads[0][4] and "command" in reads[0][4]
        fake.calls.clear()
        await d.tick()
        assert not [a for a in _lists(fake) if a[0][0][:2] == ["uuid", "in"]], "read once"

    run(scenario)


def test_adoption_waits_for_a_tick_whose_read_works() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", priority=5, locked_by=ME, **WHOLE)
        fail_the_first_uuid_read(fake)
        report = await d.tick()
        assert report.started == 0 and not d.is_tracking(uuid)
        report = await d.tick()
        assert report.started == 1
        await until(lambda: uuid in rec.seen)

    run(scenario)


def test_a_change_of_etag_alone_wakes_no_tracker() -> None:
    async def scenario(d: Dispatcher, fake: FakeArvados, rec: Recorder) -> None:
        uuid = fake.add("Running", priority=5, locked_by=ME, **WHOLE)
        await d.tick()
        await until(lambda: uuid in rec.seen)
        await d.tick()
        fake.set(uuid, log="0cc175b9c0f1b6a831c399e269772661+1")  # a field no tick reads: only the etag changes
        report = await d.tick()
        assert report.woken == 0 and len(rec.seen[uuid]) == 1
        fake.set(uuid, priority=7)
        report = await d.tick()
        assert report.woken == 1 and rec.seen[uuid][-1].priority == 7
        assert rec.seen[uuid][-1].mounts["/tmp"].capacity == 1 << 30

    run(scenario)
