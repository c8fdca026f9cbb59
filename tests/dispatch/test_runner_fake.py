"""The Slurm runner against FakeSlurm and a real SqueueChecker, for the cases a real cluster cannot produce on
demand: a scancel that fails, an sbatch that times out after creating the job, API calls that fail while a gone
job is settled, and a container taken over by another dispatcher."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock
from runner_fakes import INLINE, OTHER, UUID, FakeApi, FakeDispatch, record, returned, scenario

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import (
    SlurmCommandError,
    SlurmUnavailable,
    UnsatisfiableContainer,
)
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.slurm.decide import FINISHED_JOB_GRACE_S, PARTITION_HOLD_RETRY_S, PERMANENT_REFUSALS
from slurm_dispatch.slurm.queue_view import view_status
from slurm_dispatch.slurm.squeue import SqueueChecker


def test_priority_zero_scancel_is_retried_until_the_job_is_gone(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record()})
    fake_slurm.fail("cancel_jobs", nth=1)
    fake_slurm.fail("cancel_jobs", nth=2)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: fake_slurm.names() == [UUID], "the job to be submitted")
        api.records[UUID]["priority"] = 0
        updates.put(Container.from_api(api.records[UUID]))  # one update, and no other: records don't change
        await returned(d, task)
        assert fake_slurm.count("cancel_jobs") == 3, "two failed scancels, then one that worked"
        assert fake_slurm.names() == []
        assert ("unlock", UUID) in api.calls
        # the container's log says why, not "Slurm job N was cancelled in Slurm (by an admin or the job's owner)"
        (job_id,) = [str(j.job_id) for j in fake_slurm.finished]
        assert api.logs == [(f"Slurm job {job_id} was scancelled because the container's priority went to 0 before "
                             "crunch-run started it; unlocking the container\n")]
        assert fake_slurm.count("job_ends") == 0, "nothing to ask Slurm"

    scenario(fake_slurm, api, body)


def test_a_locked_container_with_priority_0_is_unlocked_without_a_job_nor_a_word_about_one(
    fake_slurm: FakeSlurm,
) -> None:
    """Go submits it, then scancels; here nothing is submitted, and no "Slurm job ? ended ..." is made up."""
    api = FakeApi({UUID: record(priority=0)})

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await returned(d, task)
        assert ("unlock", UUID) in api.calls
        assert fake_slurm.count("submit") == 0 and fake_slurm.count("job_ends") == 0
        assert api.logs == []

    scenario(fake_slurm, api, body)


class SlowSlurm(FakeSlurm):
    """sbatch times out after slurmctld has created the job (the client gave up, the server did not)."""

    def submit(self, *, args: Any, script: str, env: Any) -> int | None:
        super().submit(args=args, script=script, env=env)
        raise SlurmUnavailable(["sbatch"], None, "no answer within 60 s (is slurmctld up?)")


def test_sbatch_timeout_with_the_job_created_is_followed_not_failed() -> None:
    slurm = SlowSlurm()
    api = FakeApi({UUID: record()})

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: slurm.names() == [UUID], "the job to exist")
        await d.clock.run_until(lambda: squeue.snapshot().jobs.get(UUID) is not None, "squeue to show it")
        assert not task.done(), "the runner gave up on a job that exists"
        slurm.start(UUID)
        slurm.finish(UUID)
        await returned(d, task)  # returned normally: no error, no second submission
        assert slurm.count("submit") == 1

    scenario(slurm, api, body)


def test_sbatch_timeout_without_a_job_raises(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record()})
    fake_slurm.fail("submit", error=SlurmUnavailable(["sbatch"], None, "no answer"))

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        try:
            await returned(d, task)
        except SlurmUnavailable:
            return
        raise AssertionError("expected SlurmUnavailable")

    scenario(fake_slurm, api, body)


FEATURE_REFUSAL = "sbatch: error: Batch job submission failed: Invalid feature specification"


def test_a_permanent_looking_refusal_cancels_only_when_it_repeats(fake_slurm: FakeSlurm) -> None:
    """The first refusals fail like any sbatch error (the container goes back to Queued and is retried):
    an instancetype feature the node-feature step has not set yet is refused for a while, then accepted."""
    api = FakeApi({UUID: record()})
    for nth in range(1, PERMANENT_REFUSALS + 1):
        fake_slurm.fail("submit", nth=nth, error=SlurmCommandError(["sbatch"], 1, FEATURE_REFUSAL))

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        container = Container.from_api(api.records[UUID])
        for _ in range(PERMANENT_REFUSALS - 1):
            with pytest.raises(SlurmCommandError) as info:
                await runner.submit(container)
            assert not isinstance(info.value, UnsatisfiableContainer)
        with pytest.raises(UnsatisfiableContainer) as final:
            await runner.submit(container)
        assert final.value.available is None, "an sbatch refusal is not about instance types"
        assert f"{PERMANENT_REFUSALS} times in a row" in final.value.reason
        assert "Invalid feature specification" in final.value.reason

    scenario(fake_slurm, api, body)


INACTIVE_PARTITION = "sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)"


def test_an_inactive_partition_keeps_the_container_locked_and_submits_it_again_later(fake_slurm: FakeSlurm) -> None:
    """Unlocking on each refusal (as Go) uses up MaxDispatchAttempts in seconds while an admin has the partition
    INACTIVE or DRAIN for a while: the container stays Locked and sbatch is tried again after 10 s, then 20 s."""
    api = FakeApi({UUID: record()})
    for nth in (1, 2):
        fake_slurm.fail("submit", nth=nth, error=SlurmCommandError(["sbatch"], 1, INACTIVE_PARTITION))

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        start = d.clock()
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: UUID in runner.views and bool(runner.views[UUID].partition_refused),
                                "the first refusal")
        assert view_status(runner.views[UUID]) == (
            "Locked; its partition is inactive or draining, and sbatch refused the job (sbatch: error: Batch job "
            "submission failed: Required partition not available (inactive or drain)): it is submitted again once "
            "the partition is up."), "what the management API and its queue say meanwhile"
        await d.clock.run_until(lambda: fake_slurm.names() == [UUID], "the third sbatch to be taken")
        assert fake_slurm.count("submit") == 3
        assert d.clock() - start >= PARTITION_HOLD_RETRY_S[0] + PARTITION_HOLD_RETRY_S[1]
        assert not task.done() and ("unlock", UUID) not in api.calls, "held Locked, not unlocked"
        fake_slurm.start(UUID)
        fake_slurm.finish(UUID)
        await returned(d, task)

    scenario(fake_slurm, api, body)


def test_a_container_held_for_its_partition_is_unlocked_when_its_priority_goes_to_0(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record()})
    fake_slurm.fail("submit", nth=1, error=SlurmCommandError(["sbatch"], 1, INACTIVE_PARTITION))

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: fake_slurm.count("submit") == 1, "the refused sbatch")
        api.records[UUID]["priority"] = 0
        updates.put(Container.from_api(api.records[UUID]))
        await returned(d, task)
        assert ("unlock", UUID) in api.calls and fake_slurm.count("submit") == 1, "not submitted again"

    scenario(fake_slurm, api, body)


def test_any_other_sbatch_failure_breaks_the_run_of_refusals(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record()})
    refusal = SlurmCommandError(["sbatch"], 1, FEATURE_REFUSAL)
    other = SlurmUnavailable(["sbatch"], None, "no answer within 60 s (is slurmctld up?)")
    outcomes = [refusal, other, *[refusal] * (PERMANENT_REFUSALS - 1)]
    for nth, error in enumerate(outcomes, start=1):
        fake_slurm.fail("submit", nth=nth, error=error)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        container = Container.from_api(api.records[UUID])
        for nth in range(1, len(outcomes) + 1):
            with pytest.raises(SlurmCommandError) as info:
                await runner.submit(container)
            assert not isinstance(info.value, UnsatisfiableContainer), f"call {nth}: the run was broken at 2"

    scenario(fake_slurm, api, body)


def test_a_submission_that_works_resets_the_refusal_count(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record()})
    refusals = [1, 2, 4, 5]  # two refusals, one success, two refusals: never PERMANENT_REFUSALS in a row
    for nth in refusals:
        fake_slurm.fail("submit", nth=nth, error=SlurmCommandError(["sbatch"], 1, FEATURE_REFUSAL))

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        container = Container.from_api(api.records[UUID])
        for nth in range(1, 6):
            if nth in refusals:
                with pytest.raises(SlurmCommandError) as info:
                    await runner.submit(container)
                assert not isinstance(info.value, UnsatisfiableContainer), f"call {nth}"
            else:
                assert await runner.submit(container) is not None

    scenario(fake_slurm, api, body)


def test_gone_job_of_a_running_container_is_cancelled_despite_failing_gets(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Running")}, get_failures=3)
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: squeue.snapshot().jobs.get(UUID) is not None, "squeue to show the job")
        fake_slurm.finish(UUID, "FAILED")  # crunch-run died without a word
        await returned(d, task)
        assert api.records[UUID]["state"] == "Cancelled"
        assert [c for c in api.calls if c[0] == "get"] == [("get", UUID)] * 4

    scenario(fake_slurm, api, body)


def test_gone_job_of_a_container_locked_by_another_dispatcher_is_left_alone(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Running")})
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: squeue.snapshot().jobs.get(UUID) is not None, "squeue to show the job")
        api.records[UUID]["locked_by_uuid"] = OTHER  # another dispatcher took it over
        updates.close()
        await returned(d, task)
        assert api.records[UUID]["state"] == "Running"
        assert not [c for c in api.calls if c[0] != "get"]

    scenario(fake_slurm, api, body)


class BrokenQueue(FakeSlurm):
    """squeue output the poller cannot digest (as a job name in another encoding once was)."""

    broken = True
    tries = 0

    def queue(self) -> str:
        self.tries += 1
        if self.broken:
            raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")
        return super().queue()


def test_an_unexpected_squeue_error_is_no_information_and_polling_goes_on() -> None:
    slurm = BrokenQueue()
    clock = FakeClock()

    async def main() -> None:
        squeue = SqueueChecker(backend=slurm, poll_interval_s=10, first_poll_immediately=True, clock=clock,
                               sleep=clock.sleep, executor=INLINE)
        assert await squeue.poll() is False
        poller = asyncio.create_task(squeue.run())
        try:
            await clock.run_until(lambda: slurm.tries >= 3, "a few more polls")
            assert not poller.done(), "the poller died"
            slurm.broken = False
            await clock.run_until(lambda: squeue.snapshot().generation >= 1, "a good poll")
        finally:
            poller.cancel()

    asyncio.run(main())


def test_a_job_that_never_leaves_after_scancel_is_reported(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi({UUID: record(state="Running")})
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID)
    fake_slurm.ignore_term(UUID)  # like a job stuck on a dead node: scancel changes nothing

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: squeue.snapshot().jobs.get(UUID) is not None, "squeue to show the job")
        updates.close()
        await d.clock.run_until(lambda: fake_slurm.count("cancel_jobs") >= 10, "ten scancel rounds")
        await d.clock.run_until(lambda: "still in squeue after 10 scancel rounds" in caplog.text, "the warning")
        fake_slurm.finish(UUID)
        await returned(d, task)

    with caplog.at_level(logging.WARNING, logger="slurm_dispatch.runner"):
        scenario(fake_slurm, api, body)


@pytest.mark.parametrize("ends_by_itself_after", [20.0, None])
def test_the_job_of_a_completed_container_gets_time_to_end_by_itself(
    fake_slurm: FakeSlurm, ends_by_itself_after: float | None
) -> None:
    """crunch-run set Complete and is exiting: no scancel (Slurm would record the job CANCELLED) unless the job is
    still there after the grace period."""
    api = FakeApi({UUID: record(state="Running")})
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: squeue.snapshot().jobs.get(UUID) is not None, "squeue to show the job")
        api.records[UUID]["state"] = "Complete"
        updates.put(Container.from_api(api.records[UUID]))
        updates.close()
        closed = d.clock.now
        if ends_by_itself_after is not None:
            await d.clock.run_until(lambda: d.clock.now >= closed + ends_by_itself_after, "the job to finish")
            fake_slurm.finish(UUID)
        await returned(d, task)
        if ends_by_itself_after is None:
            assert d.clock.now - closed >= FINISHED_JOB_GRACE_S

    scenario(fake_slurm, api, body)
    if ends_by_itself_after is not None:
        assert fake_slurm.count("cancel_jobs") == fake_slurm.count("cancel") == 0
        assert fake_slurm.finished[-1].state == "COMPLETED"
    else:
        assert fake_slurm.count("cancel_jobs") == 1
    assert api.records[UUID]["state"] == "Complete"
