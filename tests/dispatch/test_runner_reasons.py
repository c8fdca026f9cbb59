"""The runner explains every failure: end-of-job reasons, never-runnable jobs, the stop at the time limit.

FakeSlurm plays Slurm's end states (a real cluster cannot produce OUT_OF_MEMORY without cgroups, nor forget a
job on demand); tests/integration/test_e2e_reasons.py shows the same against the real Slurm cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from plugins.fake_slurm import FakeSlurm
from runner_fakes import UUID, FakeApi, FakeDispatch, record, returned, scenario

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.squeue import SqueueChecker


def seen_by(runner: SlurmRunner, uuid: str) -> bool:
    view = runner.views.get(uuid)
    return view is not None and view.job is not None


def running_job(slurm: FakeSlurm, api: FakeApi, *, node: str = "c2") -> str:
    api.records[UUID]["state"] = "Running"
    job_id = slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    slurm.start(UUID, node=node)
    return str(job_id)


@pytest.mark.parametrize(
    ("state", "reason", "status", "error"),
    [
        pytest.param("NODE_FAIL", "NodeDown", 0,
                     "Slurm job {id} was killed because its node failed on node c2 while the container ran "
                     "(NODE_FAIL)", id="node-fail"),
        pytest.param("OUT_OF_MEMORY", "OutOfMemory", 9,
                     "Slurm job {id} ran out of memory on node c2 while the container ran (OUT_OF_MEMORY)",
                     id="out-of-memory"),
        pytest.param("TIMEOUT", "TimeLimit", 15,
                     "Slurm job {id} reached its time limit on node c2 while the container ran (TIMEOUT)",
                     id="timeout"),
        pytest.param("PREEMPTED", "None", 15,
                     "Slurm job {id} was preempted on node c2 while the container ran (PREEMPTED)", id="preempted"),
        pytest.param("CANCELLED", "None", 15,
                     "Slurm job {id} was cancelled in Slurm (by an admin or the job's owner) on node c2 while the "
                     "container ran (CANCELLED)", id="cancelled"),
        pytest.param("FAILED", "NonZeroExitCode", 3 << 8,
                     "Slurm job {id} failed with exit code 3 on node c2 while the container ran, without "
                     "crunch-run recording a final state (FAILED)", id="failed-exit-code"),
        pytest.param("FAILED", "JobLaunchFailure", 9,  # slurmctld's reason for every batch script killed by a signal
                     "Slurm job {id} was killed by signal 9 on node c2 while the container ran, without crunch-run "
                     "recording a final state (FAILED)", id="failed-signal"),
        pytest.param("BOOT_FAIL", "None", 0,
                     "Slurm job {id} could not start because its node failed to boot on node c2 while the container "
                     "ran (BOOT_FAIL)", id="boot-fail"),
        pytest.param("DEADLINE", "None", 0,
                     "Slurm job {id} reached its deadline on node c2 while the container ran (DEADLINE)",
                     id="deadline"),
    ],
)
def test_a_running_container_whose_job_ended_is_cancelled_with_slurms_reason(
    fake_slurm: FakeSlurm, state: str, reason: str, status: int, error: str
) -> None:
    api = FakeApi({UUID: record(state="Running")})
    job_id = running_job(fake_slurm, api)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.finish_with(UUID, state, reason=reason, exit_status=status)
        await returned(d, task)

    scenario(fake_slurm, api, body)
    final = api.records[UUID]
    assert final["state"] == "Cancelled"
    assert final["runtime_status"]["error"] == error.format(id=job_id)
    detail = final["runtime_status"]["errorDetail"]
    assert detail.startswith(f"JobId={job_id} JobState={state}") and "NodeList=c2" in detail, detail
    assert api.logs and api.logs[0].startswith(error.format(id=job_id)), "the same words in the dispatch log"
    assert fake_slurm.count("job_ends") == 1


def test_a_job_slurm_has_forgotten_says_so(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Running")})
    job_id = running_job(fake_slurm, api)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.finish(UUID, "FAILED")
        fake_slurm.forget(UUID)
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert api.records[UUID]["state"] == "Cancelled"
    assert api.records[UUID]["runtime_status"]["error"] == (
        f"Slurm job {job_id} ended while the container ran, and Slurm no longer knows how (it forgets ended jobs "
        "after MinJobAge, and sacct had no record of it or did not answer)")
    assert (fake_slurm.count("job_ends"), fake_slurm.count("sacct")) == (1, 1), "squeue first, then sacct"


def test_a_job_that_ended_before_the_runner_started_is_asked_about_by_name(fake_slurm: FakeSlurm) -> None:
    """After a restart the runner never saw the job's id (it ended while the service was down): Slurm still knows
    how it ended, by the container's name."""
    api = FakeApi({UUID: record(state="Running")})
    job_id = fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID, node="c2")
    fake_slurm.finish_with(UUID, "NODE_FAIL", reason="None", exit_status=0)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert api.records[UUID]["state"] == "Cancelled"
    error = api.records[UUID]["runtime_status"]["error"]
    assert error.startswith(f"Slurm job {job_id} ") and "NODE_FAIL" in error, error
    assert [c.name for c in fake_slurm.calls_of("job_ends")] == [UUID], "one question, by name"


def test_a_locked_container_whose_job_ended_is_unlocked_with_the_reason_in_its_log(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Locked")})
    job_id = fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.start(UUID, node="c1")

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.finish_with(UUID, "NODE_FAIL", reason="NodeDown")
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert ("unlock", UUID) in api.calls
    assert "runtime_status" not in api.records[UUID], "an unlock clears runtime_status: only the log says why"
    assert api.logs == [(
        f"Slurm job {job_id} was killed because its node failed on node c1 before crunch-run started the container "
        f"(NODE_FAIL); unlocking the container so that it can be dispatched again\n"
        f"JobId={job_id} JobState=NODE_FAIL Reason=NodeDown ExitCode=0:0 NodeList=c1 StartTime=2026-12-07T10:00:00 "
        "EndTime=2026-12-07T10:00:05 TimeLimit=UNLIMITED (from squeue)\n")]


def test_jobs_that_vanish_together_share_one_query(fake_slurm: FakeSlurm) -> None:
    """Ten containers whose jobs all leave in the same poll cost one squeue --jobs, not ten."""
    uuids = [f"zzzzz-dz642-batchendtst{i:04d}" for i in range(10)]
    api = FakeApi({u: {**record(state="Running"), "uuid": u} for u in uuids})
    for u in uuids:
        fake_slurm.submit(args=[f"--job-name={u}"], script="", env={})
        fake_slurm.start(u)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        tasks = [asyncio.create_task(runner.run_container(d, Container.from_api(api.records[u]), UpdateChannel(
            Container.from_api(api.records[u])))) for u in uuids]
        await d.clock.run_until(lambda: all(seen_by(runner, u) for u in uuids), "the runners to see the jobs")
        for u in uuids:
            fake_slurm.finish_with(u, "NODE_FAIL", reason="NodeDown")
        for task in tasks:
            await returned(d, task)

    api.records[UUID] = record()  # the scenario's own container, unused here
    scenario(fake_slurm, api, body)
    assert all(api.records[u]["state"] == "Cancelled" for u in uuids)
    assert fake_slurm.count("job_ends") == 1


GRACE = Settings(crunch_run_command="crunch-run", poll_interval=10, never_runnable_grace=60)


def test_a_job_that_can_never_start_is_cancelled_after_the_grace_period(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Locked")})
    job_id = fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.jobs[0].reason = "PartitionTimeLimit"

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        started = d.clock.now
        await d.clock.run_until(lambda: fake_slurm.count("cancel_jobs") > 0, "the scancel")
        waited = d.clock.now - started
        assert 60 <= waited <= 60 + 2 * 10, waited
        await returned(d, task)

    scenario(fake_slurm, api, body, settings=GRACE)
    final = api.records[UUID]
    assert final["state"] == "Cancelled", "given up: cancelled, not unlocked to be dispatched again"
    assert ("unlock", UUID) not in api.calls
    assert final["runtime_status"]["error"].startswith(
        f"Slurm job {job_id} can never start: PartitionTimeLimit (its time limit is longer than its partition's "
        "MaxTime); it was cancelled after waiting 6")
    assert sum("can never start" in text for text in api.logs) == 1, "the reason is logged once"
    assert final["runtime_status"]["errorDetail"] == f"JobId={job_id} JobState=PENDING Reason=PartitionTimeLimit"


TIME_LIMITED = Settings(crunch_run_command="crunch-run", poll_interval=10, never_runnable_grace=60,
                        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--time=%W"))


def test_the_partition_time_limit_give_up_says_the_jobs_time_limit(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: {**record(state="Locked"),
                          "scheduling_parameters": {"max_run_time": 7200, "partitions": ["short"]}}})
    job_id = fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.job(UUID).reason = "PartitionTimeLimit"

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await returned(d, task)

    scenario(fake_slurm, api, body, settings=TIME_LIMITED)
    error = api.records[UUID]["runtime_status"]["error"]
    # max_run_time 7200 s + TimeLimit.Overhead 300 s = 125 min (%W)
    assert error.startswith(f"Slurm job {job_id} can never start: PartitionTimeLimit (its time limit, 125 min, is "
                            "longer than the MaxTime of partition short); it was cancelled after waiting"), error


@pytest.mark.parametrize("reason", ["Resources", "Priority", "JobHeldUser", "ReqNodeNotAvail, UnavailableNodes:c1"])
def test_a_job_that_may_start_later_is_never_given_up(fake_slurm: FakeSlurm, reason: str) -> None:
    api = FakeApi({UUID: record(state="Locked")})
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.jobs[0].reason = reason

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: d.clock.elapsed > 3600, "an hour of virtual time", limit_s=4000)
        assert not task.done() and fake_slurm.count("cancel_jobs") == 0
        view = runner.views[UUID]
        assert view.job is not None and view.job.reason == reason
        task.cancel()

    scenario(fake_slurm, api, body, settings=GRACE)


def test_a_reason_that_clears_restarts_the_grace_period(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: record(state="Locked")})
    fake_slurm.submit(args=[f"--job-name={UUID}"], script="", env={})
    fake_slurm.jobs[0].reason = "BadConstraints"

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: UUID in runner.views and runner.views[UUID].never_since is not None,
                                "the reason to be seen")
        await d.clock.run_until(lambda: d.clock.elapsed > 20, "20 s")
        fake_slurm.jobs[0].reason = "Resources"  # an admin fixed the node features
        await d.clock.run_until(lambda: runner.views[UUID].never_since is None, "the reason to clear")
        await d.clock.run_until(lambda: d.clock.elapsed > 600, "ten minutes")
        assert not task.done() and fake_slurm.count("cancel_jobs") == 0
        task.cancel()

    scenario(fake_slurm, api, body, settings=GRACE)


LIMIT = Settings(crunch_run_command="crunch-run", poll_interval=10, max_run_time_overhead=300, time_limit_signal=120,
                 sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--time=%W"))


def test_at_its_time_limit_the_reason_is_written_before_crunch_run_gets_sigterm(fake_slurm: FakeSlurm) -> None:
    api = FakeApi({UUID: {**record(state="Running"), "scheduling_parameters": {"max_run_time": 3600}}})
    job_id = running_job(fake_slurm, api, node="c1")
    fake_slurm.jobs[0].time_left_s = 3900
    order: list[str] = []
    fake_slurm.on_call = lambda call: order.append("scancel") if call.kind == "cancel_jobs" else None

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        real_update = d.update

        async def update(uuid: str, fields: Any) -> None:
            order.append("runtime_status")
            await real_update(uuid, fields)

        d.update = update  # type: ignore[method-assign]
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.jobs[0].time_left_s = 1000  # far from the limit: nothing happens
        await d.clock.run_until(lambda: d.clock.elapsed > 60, "a minute")
        assert order == []
        # crunch-run writes its activity; the runner's record is one poll old and does not have it
        api.records[UUID]["runtime_status"] = {"activity": "running the container"}
        fake_slurm.jobs[0].time_left_s = 120 + 60 + 20  # within the stop window (signal + Slurm's minute + 2 polls)
        await d.clock.run_until(lambda: "scancel" in order, "the stop")
        assert order == ["runtime_status", "scancel"], "the reason is on the container before the SIGTERM"
        (job,) = [j for j in [*fake_slurm.jobs, *fake_slurm.finished] if j.name == UUID]
        assert job.signals == ["TERM"], "SIGTERM to the batch shell (crunch-run), not a kill"
        # crunch-run stops the container and records Cancelled itself; the job ends
        api.records[UUID]["state"] = "Cancelled"
        updates.put(Container.from_api(api.records[UUID]))
        updates.close()
        fake_slurm.finish(UUID)
        await returned(d, task)

    scenario(fake_slurm, api, body, settings=LIMIT)
    status = api.records[UUID]["runtime_status"]
    assert status["error"] == (
        f"Slurm job {job_id} reached the container's time limit (max_run_time 3600 s) on node c1: crunch-run was "
        "asked to stop the container and save its logs (TIMEOUT)")
    assert status["errorDetail"] == f"JobId={job_id} JobState=RUNNING NodeList=c1 TimeLeft=200s"
    assert status["activity"] == "running the container", "read before writing: Arvados replaces the hash whole"
    assert api.logs[0].startswith(status["error"])


@pytest.mark.parametrize(("state", "logged"), [("CANCELLED", True), ("TIMEOUT", True), ("COMPLETED", False)])
def test_when_slurm_ended_the_job_and_crunch_run_recorded_cancelled_the_log_says_why(
    fake_slurm: FakeSlurm, state: str, logged: bool
) -> None:
    """An admin's scancel: crunch-run gets SIGTERM, stops the container and records Cancelled itself, so
    runtime_status is final; the dispatch log record says what Slurm did."""
    api = FakeApi({UUID: record(state="Running")})
    job_id = running_job(fake_slurm, api, node="c1")

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.finish_with(UUID, state, reason="None", exit_status=15)
        api.records[UUID].update(state="Cancelled", locked_by_uuid="")
        updates.put(Container.from_api(api.records[UUID]))
        updates.close()
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert api.records[UUID]["state"] == "Cancelled"
    assert ("runtime_status", UUID) not in api.calls, "a final container's runtime_status is never written"
    if logged:
        assert len(api.logs) == 1 and api.logs[0].startswith(f"Slurm job {job_id} ")
        assert "; crunch-run stopped the container and recorded Cancelled\n" in api.logs[0]
    else:
        assert api.logs == []
