"""A node crunch-run reports broken (through crunch-run-wrapper's mark in the job's Comment) is kept off."""

from __future__ import annotations

import asyncio

import pytest
from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock, InlineExecutor
from runner_fakes import UUID, FakeApi, FakeDispatch, record

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.broken_nodes import BrokenNode, BrokenNodes, broken_node_of, with_exclude
from slurm_dispatch.slurm.squeue import SqueueChecker

INLINE = InlineExecutor()
NEXT = "zzzzz-dz642-brokennodenext1"


@pytest.mark.parametrize(
    ("comment", "nodes", "node"),
    [
        pytest.param("slurm-dispatch:broken-node:c2", "c1", "c2", id="named"),
        pytest.param("slurm-dispatch:broken-node", "c1", "c1", id="the-jobs-node"),
        pytest.param("slurm-dispatch:broken-node", "c[1-2]", None, id="several-nodes-unnamed"),
        pytest.param("hello", "c1", None, id="another-comment"),
        pytest.param("", "c1", None, id="none"),
    ],
)
def test_broken_node_of(comment: str, nodes: str, node: str | None) -> None:
    assert broken_node_of(comment, nodes) == node


@pytest.mark.parametrize(
    ("args", "nodes", "expected"),
    [
        pytest.param(["--mem=5"], ["c1", "c2"], ["--mem=5", "--exclude=c1,c2"], id="added"),
        pytest.param(["--exclude=c9", "--mem=5"], ["c1"], ["--exclude=c9,c1", "--mem=5"], id="merged"),
        pytest.param(["-xc9"], ["c9", "c1"], ["-xc9,c1"], id="short-form-no-repeat"),
        pytest.param(["--mem=5"], [], ["--mem=5"], id="nothing-to-exclude"),
        # sbatch takes the last --exclude, in any form: the site's own list must not be overridden by a new one
        pytest.param(["--exclude", "c9", "--mem=5"], ["c1"], ["--exclude", "c9,c1", "--mem=5"], id="two-words"),
        pytest.param(["-x", "c9"], ["c1"], ["-x", "c9,c1"], id="short-two-words"),
        pytest.param(["--exclude=c8", "-x", "c9"], ["c1"], ["--exclude=c8", "-x", "c9,c1"], id="the-last-one"),
    ],
)
def test_with_exclude(args: list[str], nodes: list[str], expected: list[str]) -> None:
    assert with_exclude(args, nodes) == expected


def test_nodes_are_held_off_for_the_hold_then_forgotten() -> None:
    clock = FakeClock()
    saved: list[dict[str, BrokenNode]] = []
    broken = BrokenNodes(action="exclude", hold_s=3600, clock=clock, persist=saved.append)
    assert broken.report("c1", "docker is dead") is True
    assert broken.report("c1", "docker is dead again") is False
    assert broken.excluded() == ["c1"] and len(saved) == 2
    clock.advance(3600)
    assert broken.excluded() == [] and saved[-1] == {}
    assert BrokenNodes(action="none", hold_s=60, clock=clock, known={"c2": BrokenNode("c2", clock.now, "x")}
                       ).excluded() == []


@pytest.mark.parametrize("action", ["exclude", "drain"])
def test_a_broken_node_report_keeps_the_next_jobs_off_it(fake_slurm: FakeSlurm, action: str) -> None:
    clock = FakeClock()
    api = FakeApi({UUID: record(state="Locked"), NEXT: {**record(state="Locked"), "uuid": NEXT}})
    broken = BrokenNodes(action=action, hold_s=3600, clock=clock)

    async def main() -> None:
        squeue = SqueueChecker(backend=fake_slurm, poll_interval_s=10, first_poll_immediately=True, clock=clock,
                               sleep=clock.sleep, executor=INLINE)
        runner = SlurmRunner(settings=Settings(crunch_run_command="crunch-run"), backend=fake_slurm, squeue=squeue,
                             client=api, broken=broken, clock=clock, sleep=clock.sleep, executor=INLINE)
        d = FakeDispatch(api, clock)
        poller = asyncio.create_task(squeue.run())
        try:
            updates = UpdateChannel(Container.from_api(api.records[UUID]))
            task = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[UUID]), updates))
            await clock.run_until(lambda: UUID in fake_slurm.names(), "the first job")
            fake_slurm.start(UUID, node="c1")
            await clock.run_until(lambda: runner.views[UUID].job is not None and runner.views[UUID].job.state
                                  == "RUNNING", "the runner to see it run")
            # crunch-run finds docker dead: its hook (crunch-run-wrapper) marks the job, crunch-run requeues the
            # container itself and exits
            fake_slurm.jobs[0].comment = "slurm-dispatch:broken-node:c1"
            api.records[UUID].update(state="Queued", locked_by_uuid="")
            updates.put(Container.from_api(api.records[UUID]))
            updates.close()
            fake_slurm.finish(UUID, "COMPLETED")
            await clock.run_until(task.done, "the first runner to return")
            task.result()
            assert sorted(broken.current()) == ["c1"]
            second = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[NEXT]), UpdateChannel(
                Container.from_api(api.records[NEXT]))))
            await clock.run_until(lambda: NEXT in fake_slurm.names(), "the next job")
            (submit,) = [c for c in fake_slurm.calls_of("submit") if c.name == NEXT]
            assert "--exclude=c1" in submit.args
            second.cancel()
        finally:
            poller.cancel()
            runner.close()

    asyncio.run(main())
    if action == "drain":
        assert list(fake_slurm.drained) == ["c1"]
        assert fake_slurm.drained["c1"].startswith("slurm-dispatch: crunch-run reported node c1 broken (Slurm job ")
    else:
        assert fake_slurm.drained == {}
