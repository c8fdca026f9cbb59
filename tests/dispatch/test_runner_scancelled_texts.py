"""What the runner writes when the dispatcher itself scancelled a job, or anyone cancelled one that never started
(FakeSlurm; tests/integration/test_e2e_reasons.py shows it against the real Slurm cluster)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from plugins.fake_slurm import FakeSlurm
from runner_fakes import UUID, FakeApi, FakeDispatch, record, returned, scenario

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container, SlurmJob
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.runner.explain import Explainer
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.decide import RunnerView
from slurm_dispatch.slurm.reasons import JobEnd
from slurm_dispatch.slurm.squeue import SqueueChecker


def seen_by(runner: SlurmRunner, uuid: str) -> bool:
    view = runner.views.get(uuid)
    return view is not None and view.job is not None


def pending_job(slurm: FakeSlurm, uuid: str = UUID) -> str:
    job_id = slurm.submit(args=[f"--job-name={uuid}"], script="", env={})
    slurm.job(uuid).reason = "Priority"
    return str(job_id)


def test_a_job_the_dispatcher_scancelled_for_a_container_cancelled_in_arvados_says_so(fake_slurm: FakeSlurm) -> None:
    """The container is cancelled in Arvados while its job waits: the dispatcher scancels the job (it ends
    CANCELLED without a node), and neither an admin nor crunch-run had a part in it."""
    api = FakeApi({UUID: record(state="Locked")})
    job_id = pending_job(fake_slurm)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        api.records[UUID].update(state="Cancelled", priority=0, locked_by_uuid="")
        updates.put(Container.from_api(api.records[UUID]))
        updates.close()
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert fake_slurm.count("cancel_jobs") >= 1
    assert len(api.logs) == 1, api.logs
    assert api.logs[0].startswith(
        f"Slurm job {job_id} was scancelled by the dispatcher before it started, because the container was "
        f"cancelled in Arvados\nJobId={job_id} JobState=CANCELLED"), api.logs[0]
    assert "admin" not in api.logs[0] and "crunch-run" not in api.logs[0] and "ran" not in api.logs[0].split("\n")[0]


def test_after_a_restart_a_job_of_a_container_cancelled_meanwhile_says_so_too(fake_slurm: FakeSlurm) -> None:
    """Startup adoption: the container was cancelled while the service was down; its tracker is closed at once and
    the runner scancels the waiting job."""
    api = FakeApi({UUID: record(state="Cancelled", priority=0, locked_by="")})
    job_id = pending_job(fake_slurm)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        updates.close()
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert [text.split("\n")[0] for text in api.logs] == [
        (f"Slurm job {job_id} was scancelled by the dispatcher before it started, because the container was "
         "cancelled in Arvados")]


def test_an_admins_scancel_of_a_waiting_job_does_not_say_crunch_run_stopped_the_container(
    fake_slurm: FakeSlurm,
) -> None:
    """The job never started: whoever cancelled it, crunch-run never ran."""
    api = FakeApi({UUID: record(state="Locked")})
    job_id = pending_job(fake_slurm)

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
        await d.clock.run_until(lambda: seen_by(runner, UUID), "the runner to see the job")
        fake_slurm.finish_with(UUID, "CANCELLED", reason="Priority")
        api.records[UUID].update(state="Cancelled", priority=0, locked_by_uuid="")
        await returned(d, task)

    scenario(fake_slurm, api, body)
    assert [text.split("\n")[0] for text in api.logs] == [
        f"Slurm job {job_id} was cancelled in Slurm (by an admin or the job's owner) before it started (CANCELLED)"]


def test_a_cancel_sacct_credits_to_another_user_is_not_said_to_be_the_dispatchers() -> None:
    """An admin scancelled the waiting job just before the container was cancelled in Arvados and the dispatcher's
    own scancel round: sacct's "CANCELLED by <uid>" names the admin, and the record follows it."""
    explainer = Explainer(settings=Settings(), backend=FakeSlurm(), ends=None, broken=None,
                          slurm=_not_called, clock=lambda: 0.0)
    admin_uid = str(os.geteuid() + 1000)
    end = JobEnd(job_id="7", state="CANCELLED", reason="Priority", cancelled_by=admin_uid, source="sacct")

    async def job_end(view: RunnerView) -> JobEnd:
        return end

    explainer.job_end = job_end  # type: ignore[method-assign]
    logs: list[str] = []

    class Logs:
        async def log(self, uuid: str, text: str) -> None:
            logs.append(text)

    waiting = SlurmJob(name=UUID, nice=0, slurm_priority=0, state="PENDING", reason="Priority", job_id="7")
    view = RunnerView(latest=Container.from_api(record(state="Cancelled", priority=0, locked_by="")),
                      last_job=waiting, cancel_rounds=1)
    scancelled = "the container was cancelled in Arvados"
    asyncio.run(explainer.log_slurm_end(Logs(), UUID, view, scancelled=scancelled))  # type: ignore[arg-type]
    assert logs[0].startswith(f"Slurm job 7 was cancelled in Slurm by {admin_uid} before it started"), logs
    logs.clear()
    end = replace(end, cancelled_by=str(os.geteuid()))
    asyncio.run(explainer.log_slurm_end(Logs(), UUID, view, scancelled=scancelled))  # type: ignore[arg-type]
    assert logs[0].startswith("Slurm job 7 was scancelled by the dispatcher before it started"), logs


async def _not_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("no Slurm command is run")
