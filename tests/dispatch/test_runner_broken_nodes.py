"""A node crunch-run reports broken (through crunch-run-wrapper's mark in the job's Comment) is kept off."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock, InlineExecutor
from runner_fakes import UUID, FakeApi, FakeDispatch, record

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.runner import SlurmRunner
from slurm_dispatch.runner.explain import Explainer
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.broken_nodes import (
    BrokenNode,
    BrokenNodes,
    broken_node_in,
    in_hostlist,
    with_exclude,
)
from slurm_dispatch.slurm.reasons import JobEnd
from slurm_dispatch.slurm.squeue import SqueueChecker

INLINE = InlineExecutor()
NEXT = "zzzzz-dz642-brokennodenext1"


@pytest.mark.parametrize(
    ("comment", "nodes", "node", "refused"),
    [
        pytest.param("slurm-dispatch:broken-node:c1", "c1", "c1", "", id="named"),
        pytest.param("slurm-dispatch:broken-node:c2", "c[1-3]", "c2", "", id="one-of-the-jobs-nodes"),
        pytest.param("slurm-dispatch:broken-node", "c1", "c1", "", id="the-jobs-node"),
        pytest.param("slurm-dispatch:broken-node:", "c1", "c1", "", id="the-jobs-node-after-the-colon"),
        pytest.param("hello", "c1", None, "", id="another-comment"),
        pytest.param("", "c1", None, "", id="none"),
        # a job's owner can set its Comment: it must not reach other nodes, or several at once
        pytest.param("slurm-dispatch:broken-node:c7", "c1", None, "it names node c7, but the job ran on c1",
                     id="another-node"),
        pytest.param("slurm-dispatch:broken-node:c[1-99]", "c1", None, "'c[1-99]' is not one node name",
                     id="a-hostlist"),
        pytest.param("slurm-dispatch:broken-node:c1,c2", "c1", None, "'c1,c2' is not one node name", id="a-list"),
        pytest.param("slurm-dispatch:broken-node:c1 c2", "c1", None, "'c1 c2' is not one node name", id="words"),
        pytest.param("slurm-dispatch:broken-nodes", "c1", None, "does not have the form slurm-dispatch:broken-node:",
                     id="no-colon"),
        pytest.param("slurm-dispatch:broken-node", "c[1-2]", None, "names no node, and the job ran on several",
                     id="several-nodes-unnamed"),
        pytest.param("slurm-dispatch:broken-node:c1", "", None, "Slurm does not say which nodes", id="no-nodes"),
        pytest.param("slurm-dispatch:broken-node:c1", "c[1-2]-[3-4]", None, "cannot tell whether node c1",
                     id="hostlist-it-cannot-read"),
    ],
)
def test_broken_node_in(comment: str, nodes: str, node: str | None, refused: str) -> None:
    got, why = broken_node_in(comment, nodes)
    assert got == node
    assert (refused in why) if refused else why == ""


@pytest.mark.parametrize(
    ("node", "hostlist", "found"),
    [
        pytest.param("c1", "c1", True, id="one"),
        pytest.param("c1", "c10", False, id="one-other"),
        pytest.param("c3", "c[1-3,7]", True, id="in-a-range"),
        pytest.param("c7", "c[1-3,7],gpu2", True, id="a-single-in-brackets"),
        pytest.param("gpu2", "c[1-3,7],gpu2", True, id="a-later-item"),
        pytest.param("c5", "c[1-3,7]", False, id="between"),
        pytest.param("c07", "c[01-10]", True, id="zero-padded"),
        pytest.param("c7", "c[01-10]", False, id="zero-padded-needs-zeros"),
        pytest.param("c07", "c[1-10]", False, id="not-padded"),
        pytest.param("rack1-n04", "rack1-n[01-16]", True, id="prefix-with-digits"),
        pytest.param("c2", "c[1-2]-[3-4]", None, id="two-groups"),
        pytest.param("c", "c[1-3", None, id="unbalanced"),
    ],
)
def test_in_hostlist(node: str, hostlist: str, found: bool | None) -> None:
    assert in_hostlist(node, hostlist) is found


def test_a_refused_comment_is_logged_once_per_job_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    """The end of a job may be read again (an API call around it retried): its refused Comment is said once."""
    async def slurm(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    explainer = Explainer(settings=Settings(), backend=FakeSlurm(), ends=None, broken=None, slurm=slurm,
                          clock=FakeClock())
    refused = JobEnd(job_id="4711", state="COMPLETED", nodes="c1", comment="slurm-dispatch:broken-node:c7")
    accepted = JobEnd(job_id="4712", state="COMPLETED", nodes="c1", comment="slurm-dispatch:broken-node:c1")

    async def main() -> None:
        for end in (refused, refused, refused, accepted):
            await explainer._note_broken(UUID, end)

    with caplog.at_level(logging.WARNING, logger="slurm_dispatch.runner"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == [
        (f"ignoring the Comment 'slurm-dispatch:broken-node:c7' of Slurm job 4711 (nodes c1) of container {UUID}: it "
         "names node c7, but the job ran on c1; no node is held off")]
    assert caplog.records[0].levelno == logging.WARNING


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
        pytest.param(["-Hxc9"], ["c1"], ["-Hxc9,c1"], id="x-in-a-run-of-short-options"),
        pytest.param(["-Hx", "c9"], ["c1"], ["-Hx", "c9,c1"], id="x-in-a-run-two-words"),
        pytest.param(["--exclud=c9"], ["c1"], ["--exclud=c9,c1"], id="a-prefix-of-exclude"),
        pytest.param(["--exclude=c9", "--comment", "-xc8"], ["c1"], ["--exclude=c9,c1", "--comment", "-xc8"],
                     id="another-options-value-is-no-exclude"),
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
@pytest.mark.parametrize(
    ("comment", "held"),
    [
        pytest.param("slurm-dispatch:broken-node:c1", ["c1"], id="its-node"),
        pytest.param("slurm-dispatch:broken-node:c7", [], id="another-node-refused"),
        pytest.param("slurm-dispatch:broken-node:c[1-99]", [], id="a-hostlist-refused"),
    ],
)
def test_a_broken_node_report_keeps_the_next_jobs_off_it(fake_slurm: FakeSlurm, action: str, comment: str,
                                                          held: list[str], caplog: pytest.LogCaptureFixture) -> None:
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
            fake_slurm.jobs[0].comment = comment
            api.records[UUID].update(state="Queued", locked_by_uuid="")
            updates.put(Container.from_api(api.records[UUID]))
            updates.close()
            fake_slurm.finish(UUID, "COMPLETED")
            await clock.run_until(task.done, "the first runner to return")
            task.result()
            assert sorted(broken.current()) == held
            second = asyncio.create_task(runner.run_container(d, Container.from_api(api.records[NEXT]), UpdateChannel(
                Container.from_api(api.records[NEXT]))))
            await clock.run_until(lambda: NEXT in fake_slurm.names(), "the next job")
            (submit,) = [c for c in fake_slurm.calls_of("submit") if c.name == NEXT]
            assert [a for a in submit.args if a.startswith("--exclude")] == [f"--exclude={n}" for n in held]
            second.cancel()
        finally:
            poller.cancel()
            runner.close()

    asyncio.run(main())
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignoring the Comment")]
    assert len(refusals) == (0 if held else 1), refusals
    if not held:
        assert fake_slurm.drained == {}
        return
    if action == "drain":
        assert list(fake_slurm.drained) == ["c1"]
        assert fake_slurm.drained["c1"].startswith("slurm-dispatch: crunch-run reported node c1 broken (Slurm job ")
    else:
        assert fake_slurm.drained == {}
