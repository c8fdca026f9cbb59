"""A batch script whose command cannot be run (a wrong Containers.CrunchRunCommand) fails each job with exit code
127 (not found) or 126 (not executable) before crunch-run starts: the reason says so and names the setting, and the
runner logs it at ERROR once it repeats (FakeSlurm; tests/integration/test_e2e_reasons.py shows it against the real
Slurm cluster)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from plugins.fake_slurm import FakeSlurm
from runner_fakes import UUID, FakeApi, FakeDispatch, record, returned, scenario

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.runner.explain import CommandFailures
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.squeue import SqueueChecker


def seen_by(runner: SlurmRunner, uuid: str) -> bool:
    view = runner.views.get(uuid)
    return view is not None and view.job is not None


NOT_FOUND = Settings(crunch_run_command="/nonexistent/crunch-run", poll_interval=10)


def test_a_command_that_cannot_be_run_is_explained_and_logged_at_error_once(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    uuids = [f"zzzzz-dz642-notfoundtst{i:04d}" for i in range(4)]
    api = FakeApi({u: {**record(state="Locked"), "uuid": u} for u in uuids})
    api.records[UUID] = record()  # the scenario's own container, unused here

    async def body(runner: SlurmRunner, d: FakeDispatch, updates: UpdateChannel, squeue: SqueueChecker) -> None:
        for u in uuids:  # one after the other, as a node with a broken CrunchRunCommand fails each in turn
            fake_slurm.submit(args=[f"--job-name={u}"], script="", env={})
            fake_slurm.start(u, node="c1")
            channel = UpdateChannel(Container.from_api(api.records[u]))
            task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[u]), channel))
            await d.clock.run_until(lambda u=u: seen_by(runner, u), "the runner to see the job")  # type: ignore[misc]
            fake_slurm.finish_with(u, "FAILED", reason="NonZeroExitCode", exit_status=127 << 8)
            await returned(d, task)

    with caplog.at_level(logging.INFO, logger="slurm_dispatch.runner"):
        scenario(fake_slurm, api, body, settings=NOT_FOUND)
    assert len(api.logs) == 4
    assert all("the command could not be run on node c1: exit code 127 means not found; check "
               "Containers.CrunchRunCommand ('/nonexistent/crunch-run') (FAILED)" in text for text in api.logs), api.logs
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [(f"the jobs' command could not be run 3 times in a row (exit code 127, last on container "
                       f"{uuids[2]}): check Containers.CrunchRunCommand ('/nonexistent/crunch-run') on the compute "
                       "nodes")]


def test_command_failures_count_the_same_exit_code_in_a_row() -> None:
    failures = CommandFailures(threshold=2)
    assert [failures.note(127), failures.note(126), failures.note(126), failures.note(126)] == [0, 0, 2, 0]
    assert [failures.note(None), failures.note(126), failures.note(126)] == [0, 0, 2], "another end breaks the row"
    failures.reset()
    assert failures.note(126) == 0, "a container crunch-run started breaks the row too"
