"""scancel by job id, batched (issue "Efficiency at scale"): which jobs go by id and how, one command for the jobs
cancelled together, errors handed to every container of the command, and a whole workflow's children cancelled
with one scancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock
from runner_fakes import INLINE, FakeApi, FakeDispatch

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import SlurmUnavailable
from slurm_dispatch.model import Container, SlurmJob
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.cancels import CancelBatcher, CancelMode, cancel_mode
from slurm_dispatch.slurm.squeue import SqueueChecker


def _job(state: str, job_id: str = "42") -> SlurmJob:
    return SlurmJob(name="zzzzz-dz642-aaaaaaaaaaaaaaa", nice=0, slurm_priority=1, state=state, reason="None",
                    job_id=job_id)


@pytest.mark.parametrize(
    ("job", "mode"),
    [
        (None, CancelMode.BY_NAME),
        (_job("PENDING"), CancelMode.PENDING),
        (_job("RUNNING"), CancelMode.RUNNING),
        (_job("SUSPENDED"), CancelMode.RUNNING),
        (_job("CONFIGURING"), CancelMode.RUNNING),
        (_job("COMPLETING"), CancelMode.BY_NAME),
        (_job("UNKNOWN"), CancelMode.BY_NAME),
        (_job("PENDING", job_id=""), CancelMode.BY_NAME),
        (_job("PENDING", job_id="12_3"), CancelMode.BY_NAME),
        (_job("RUNNING", job_id="--help"), CancelMode.BY_NAME),
    ],
)
def test_cancel_mode(job: SlurmJob | None, mode: CancelMode) -> None:
    assert cancel_mode(job) is mode


class Recording:
    """A backend whose cancel_jobs records its commands (and can fail them)."""

    def __init__(self, fail: Callable[[Sequence[str], bool], Exception | None] = lambda ids, running: None) -> None:
        self.commands: list[tuple[tuple[str, ...], bool]] = []
        self.clusters: list[str] = []
        self._fail = fail

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        self.commands.append((tuple(job_ids), running))
        self.clusters.append(cluster)
        error = self._fail(job_ids, running)
        if error is not None:
            raise error


async def _inline(call: Callable[[], Any]) -> Any:
    await asyncio.sleep(0)  # a command takes at least a turn of the loop, like a thread hop
    return call()


def _batcher(backend: Recording, per_command: int = 200) -> CancelBatcher:
    return CancelBatcher(backend, run=_inline, per_command=per_command)  # type: ignore[arg-type]


def test_cancels_asked_together_go_in_one_command_per_kind() -> None:
    backend = Recording()

    async def main() -> None:
        batcher = _batcher(backend)
        await asyncio.gather(batcher.cancel("11", running=False), batcher.cancel("12", running=True),
                             batcher.cancel("13", running=False), batcher.cancel("14", running=True),
                             batcher.cancel("13", running=False))  # asked twice: named once
        assert batcher.commands == 2

    asyncio.run(main())
    assert backend.commands == [(("11", "13"), False), (("12", "14"), True)]


def test_cancels_asked_while_a_command_runs_go_in_the_next_one() -> None:
    backend = Recording()

    async def main() -> None:
        started, gate = asyncio.Event(), asyncio.Event()

        async def run(call: Callable[[], Any]) -> Any:
            started.set()
            await gate.wait()
            return call()

        batcher = CancelBatcher(backend, run=run)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.cancel("1", running=True))
        await started.wait()  # the command for "1" is under way
        later = [asyncio.ensure_future(batcher.cancel(i, running=True)) for i in ("2", "3")]
        gate.set()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    assert backend.commands == [(("1",), True), (("2", "3"), True)]


def test_jobs_on_different_clusters_go_in_different_commands() -> None:
    backend = Recording()

    async def main() -> None:
        batcher = _batcher(backend)
        await asyncio.gather(batcher.cancel("7", running=True, cluster="beta"),
                             batcher.cancel("7", running=True, cluster="alpha"),
                             batcher.cancel("8", running=True, cluster="beta"))

    asyncio.run(main())
    assert sorted(zip(backend.clusters, backend.commands, strict=True)) == [
        ("alpha", (("7",), True)), ("beta", (("7", "8"), True))]


def test_a_long_list_is_split() -> None:
    backend = Recording()

    async def main() -> None:
        batcher = _batcher(backend, per_command=2)
        await asyncio.gather(*(batcher.cancel(str(i), running=False) for i in range(1, 6)))

    asyncio.run(main())
    assert [ids for ids, _ in backend.commands] == [("1", "2"), ("3", "4"), ("5",)]


def test_a_failed_command_fails_each_of_its_cancels_and_no_other() -> None:
    backend = Recording(fail=lambda ids, running: SlurmUnavailable(["scancel"], 1, "down") if running else None)

    async def main() -> None:
        batcher = _batcher(backend)
        results = await asyncio.gather(batcher.cancel("1", running=True), batcher.cancel("2", running=True),
                                       batcher.cancel("3", running=False), return_exceptions=True)
        assert [type(r) for r in results] == [SlurmUnavailable, SlurmUnavailable, type(None)]

    asyncio.run(main())


def test_an_id_that_is_not_a_job_id_is_refused_before_any_command() -> None:
    backend = Recording()

    async def main() -> None:
        batcher = _batcher(backend)
        with pytest.raises(ValueError):
            await batcher.cancel("--help", running=False)

    asyncio.run(main())
    assert backend.commands == []


def test_a_cancelled_wait_leaves_the_others_served() -> None:
    backend = Recording()

    async def main() -> None:
        batcher = _batcher(backend)
        gone = asyncio.ensure_future(batcher.cancel("1", running=True))
        kept = asyncio.ensure_future(batcher.cancel("2", running=True))
        await asyncio.sleep(0)
        gone.cancel()
        await kept
        assert gone.cancelled()

    asyncio.run(main())
    assert backend.commands == [(("1", "2"), True)]


def _running_containers_whose_channels_close(fake_slurm: FakeSlurm, uuids: list[str]) -> None:
    """Run a runner for each Running container (its job running), close every channel once squeue shows the jobs
    (the containers left this dispatcher), and wait, on virtual time, until every runner has returned."""
    api = FakeApi({u: {"uuid": u, "state": "Running", "priority": 1, "locked_by_uuid": FakeDispatch.token_uuid,
                       "runtime_constraints": {"ram": 1 << 28, "vcpus": 1}} for u in uuids})
    for u in uuids:
        fake_slurm.submit(args=[f"--job-name={u}"], script="", env={})
        fake_slurm.start(u)
    settings = Settings(crunch_run_command="crunch-run", poll_interval=10)
    clock = FakeClock()

    async def main() -> None:
        squeue = SqueueChecker(backend=fake_slurm, poll_interval_s=10, first_poll_immediately=True, clock=clock,
                               sleep=clock.sleep, executor=INLINE)
        runner = SlurmRunner(settings=settings, backend=fake_slurm, squeue=squeue, client=api, clock=clock,
                             sleep=clock.sleep, executor=INLINE)
        poller = asyncio.create_task(squeue.run())
        d = FakeDispatch(api, clock)
        try:
            channels = {u: UpdateChannel(Container.from_api(api.records[u])) for u in uuids}
            tasks = [asyncio.create_task(runner.run_container(d, Container.from_api(api.records[u]), channels[u]))
                     for u in uuids]
            await clock.run_until(lambda: all(squeue.snapshot().jobs.get(u) for u in uuids), "squeue to show them")
            for channel in channels.values():
                channel.close()
            await clock.run_until(lambda: all(t.done() for t in tasks), "every runner to return")
            for t in tasks:
                t.result()
        finally:
            poller.cancel()
            runner.close()

    asyncio.run(main())


def test_a_workflow_cancelled_at_once_costs_one_scancel(fake_slurm: FakeSlurm) -> None:
    """Five Running containers whose channels close together (a cancelled workflow's children): one scancel."""
    _running_containers_whose_channels_close(fake_slurm, [f"zzzzz-dz642-runnerbatch{i:04d}" for i in range(5)])
    cancels = fake_slurm.calls_of("cancel_jobs")
    assert len(cancels) == 1 and sorted(cancels[0].name.split(",")) == sorted(
        str(j.job_id) for j in fake_slurm.finished)
    assert "--batch" in cancels[0].args and fake_slurm.count("cancel") == 0
    assert all(j.signals == ["TERM"] for j in fake_slurm.finished)


def test_a_job_whose_cluster_the_backend_cannot_tell_is_scancelled_by_name(fake_slurm: FakeSlurm) -> None:
    """With several clusters and no cluster known for a job, an id alone is ambiguous: Go's passes by name."""

    def ambiguous(job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        raise ValueError("jobs may be on any of alpha,beta: a job id alone is ambiguous")

    fake_slurm.cancel_jobs = ambiguous  # type: ignore[method-assign]
    _running_containers_whose_channels_close(fake_slurm, ["zzzzz-dz642-runnerbatch0099"])
    assert fake_slurm.count("cancel") == 1 and fake_slurm.finished[-1].signals == ["TERM"]
