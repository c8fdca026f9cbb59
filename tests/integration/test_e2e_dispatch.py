"""End to end: the real dispatcher, the emulated Arvados API over HTTPS, the real Slurm cluster, and the
crunch-run stand-in as CrunchRunCommand (issue 5's "Done when")."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from plugins.e2e import E2E, RunningDispatcher
from plugins.slurm_cluster import SlurmCluster, start_cluster, stop_cluster
from plugins.waiting import wait_until

from slurm_dispatch.model import ContainerState
from slurm_dispatch.slurm.decide import PERMANENT_REFUSALS

pytestmark = pytest.mark.slurm

FINAL = (ContainerState.COMPLETE, ContainerState.CANCELLED)


def _pending_dispatcher(e2e: E2E):  # type: ignore[no-untyped-def]
    """A dispatcher whose jobs stay PENDING (reason BeginTime) with a normal Slurm priority, for an hour."""
    return e2e.dispatcher(sbatch_arguments=(*e2e.settings.sbatch_arguments, "--begin=now+3600"))


def _new(e2e: E2E, *, priority: int = 1, seconds: float = 0.5, mode: str = "complete", **constraints: int) -> str:
    rc = {"ram": 100_000_000, "vcpus": 1, **constraints}
    record = e2e.control.create_container(
        priority=priority,
        command=["sleep", str(seconds)],
        environment={"SANDBOX_CRUNCH_RUN": mode},
        runtime_constraints=rc,
    )
    return str(record["uuid"])


def _state(e2e: E2E, uuid: str) -> ContainerState:
    return e2e.container(uuid).state


def test_containers_run_to_complete_with_one_job_each(e2e: E2E) -> None:
    uuids = [_new(e2e, priority=p) for p in (1, 2, 3)]
    e2e.dispatcher()
    for uuid in uuids:
        wait_until(lambda u=uuid: _state(e2e, u) in FINAL, timeout=90, what=f"{uuid} to finish")
    for uuid in uuids:
        c = e2e.container(uuid)
        assert c.state is ContainerState.COMPLETE, c
        assert c.exit_code == 0
        assert c.lock_count == 1
        assert len(e2e.jobs_named(uuid)) == 1


def test_a_job_still_tidying_up_after_complete_ends_by_itself(e2e: E2E) -> None:
    """crunch-run sets Complete, then keeps running a few seconds (as it does while it tidies up): the job is not
    scancelled, so Slurm records it COMPLETED. The tick that sees Complete hands the record to the RunContainer
    before closing its tracker; without it the job was scancelled at once (CI saw it through the wrapper test)."""
    record = e2e.control.create_container(
        priority=1, command=["sleep", "0.2"], runtime_constraints={"ram": 100_000_000, "vcpus": 1},
        environment={"SANDBOX_CRUNCH_RUN": "complete", "SANDBOX_EXIT_AFTER": "4"},
    )
    uuid = str(record["uuid"])
    e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.COMPLETE, timeout=90, what="the container to complete")
    (job,) = e2e.jobs_named(uuid)
    assert e2e.slurm.show_job(job).get("JobState") in ("RUNNING", "COMPLETING", "COMPLETED"), \
        "the job tidies up for 4 s after Complete"
    wait_until(lambda: e2e.slurm.show_job(job).get("JobState") in ("COMPLETED", "CANCELLED", "FAILED"),
               timeout=60, what=f"job {job} to end")
    assert e2e.slurm.show_job(job)["JobState"] == "COMPLETED", "the job was scancelled"
    assert "tidying up for 4 s" in e2e.output(job)
    assert "SIGTERM" not in e2e.output(job)


def test_priority_zero_while_pending_unlocks_and_holds(e2e: E2E) -> None:
    uuid = _new(e2e)
    _pending_dispatcher(e2e)
    wait_until(lambda: e2e.jobs_named(uuid, states="PENDING"), what="the job to be pending")
    assert _state(e2e, uuid) is ContainerState.LOCKED
    e2e.control.set_priority(uuid, 0)
    wait_until(lambda: _state(e2e, uuid) is ContainerState.QUEUED, what="the container to be unlocked")
    assert e2e.jobs_named(uuid, states="PENDING") == []
    c = e2e.container(uuid)
    assert (c.priority, c.lock_count) == (0, 1)
    # "on hold": several polls later it has not been locked again
    polls = e2e.control.stats()
    wait_until(lambda: _lists(e2e.control.stats()) >= _lists(polls) + 6, what="three more dispatcher ticks")
    assert e2e.container(uuid).lock_count == 1
    e2e.control.set_priority(uuid, 5)
    wait_until(lambda: e2e.container(uuid).lock_count == 2, what="the container to be locked again")
    wait_until(lambda: e2e.jobs_named(uuid, states="PENDING"), what="a new pending job")


def _lists(stats: dict) -> int:
    counters = stats.get("requests", stats)
    return sum(v for k, v in counters.items() if k.startswith("GET") and k.rstrip("/").endswith("/containers"))


def test_priority_zero_while_running_sigterms_crunch_run(e2e: E2E) -> None:
    uuid = _new(e2e, mode="hang")
    e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.RUNNING, what="the container to run")
    e2e.control.set_priority(uuid, 0)
    wait_until(lambda: _state(e2e, uuid) is ContainerState.CANCELLED, what="crunch-run to cancel it")
    wait_until(lambda: not e2e.jobs_named(uuid, states="PENDING,RUNNING,COMPLETING"), what="the job to end")
    (job,) = e2e.jobs_named(uuid)
    output = (e2e.output_dir / f"{job}.out").read_text()
    assert re.search(r"SIGTERM|signal 15|TERM", output), output


def test_job_scancelled_behind_our_back_while_locked_is_retried(e2e: E2E) -> None:
    uuid = _new(e2e)
    _pending_dispatcher(e2e)
    (job,) = wait_until(lambda: e2e.jobs_named(uuid, states="PENDING"), what="the job to be pending")
    e2e.slurm.run(["scancel", job], check=True)
    wait_until(lambda: e2e.container(uuid).lock_count == 2, what="the container to be locked again")
    wait_until(
        lambda: [j for j in e2e.jobs_named(uuid, states="PENDING") if j != job], what="a second job for it"
    )
    assert _state(e2e, uuid) is ContainerState.LOCKED


def test_job_gone_while_running_cancels_the_container(e2e: E2E) -> None:
    uuid = _new(e2e, mode="exit-silently-while-running")
    e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.CANCELLED, what="the dispatcher to cancel it")
    assert len(e2e.jobs_named(uuid)) == 1


def test_startup_scancels_job_of_cancelled_container_and_leaves_others_alone(e2e: E2E) -> None:
    cancelled = _new(e2e)
    e2e.api.update_state(cancelled, ContainerState.CANCELLED)
    strangers = ["yyyyy-dz642-otherclusterjob", "not-a-container", "zzzzz-xvhdp-notacontainerjob"]
    for name in [cancelled, *strangers]:
        e2e.slurm.run(["sbatch", "--hold", f"--job-name={name}", "--output=/dev/null"], input="#!/bin/sh\ntrue\n", check=True)
    d = e2e.dispatcher()
    wait_until(lambda: not e2e.jobs_named(cancelled, states="PENDING"), what="the orphan to be scancelled")
    wait_until(lambda: d.dispatch is not None and d.dispatch.adopted is not None, what="adoption to finish")
    assert d.dispatch is not None and d.dispatch.adopted == [cancelled]
    for name in strangers:
        assert e2e.jobs_named(name, states="PENDING"), f"{name} was touched"


def test_pending_slurm_order_follows_arvados_priority(e2e: E2E) -> None:
    # created lowest first, so Slurm's own order (by submission) starts out wrong
    by_priority = {p: _new(e2e, priority=p) for p in (10, 20, 30, 40)}
    _pending_dispatcher(e2e)

    def slurm_order() -> list[str]:
        out = e2e.slurm.run(["squeue", "--all", "--noheader", "--states=PENDING", "--format=%Q %j"], check=True).stdout
        rows = sorted((int(line.split()[0]), line.split()[1]) for line in out.splitlines() if line.strip())
        return [name for _, name in reversed(rows) if name in by_priority.values()]

    wanted = [by_priority[p] for p in (40, 30, 20, 10)]
    wait_until(lambda: slurm_order() == wanted, what="Slurm priorities to follow Arvados priorities")


def test_shutdown_leaves_jobs_running_and_a_restart_adopts_them(e2e: E2E) -> None:
    uuid = _new(e2e, mode="hang")
    first = e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.RUNNING, what="the container to run")
    first.stop()
    e2e.started.remove(first)
    (job,) = e2e.jobs_named(uuid, states="RUNNING")
    assert _state(e2e, uuid) is ContainerState.RUNNING
    second = e2e.dispatcher()
    wait_until(lambda: second.dispatch is not None and second.dispatch.adopted == [uuid], what="adoption")
    e2e.control.set_priority(uuid, 0)
    wait_until(lambda: _state(e2e, uuid) is ContainerState.CANCELLED, what="the adopted container to be cancelled")
    assert e2e.jobs_named(uuid) == [job]


def test_job_no_node_can_run_cancels_the_container_with_the_reason(e2e: E2E) -> None:
    uuid = _new(e2e, vcpus=3)  # the test nodes have 2 CPUs each: sbatch refuses the job outright
    e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.CANCELLED, what="the container to be cancelled")
    # Refused like that PERMANENT_REFUSALS times in a row, not MaxDispatchAttempts (10) times as Go would.
    assert e2e.container(uuid).lock_count == PERMANENT_REFUSALS
    texts = [entry["properties"]["text"] for entry in e2e.control.logs(uuid) if entry["event_type"] == "dispatch"]
    assert len(texts) == PERMANENT_REFUSALS
    assert all("Requested node configuration is not available" in text for text in texts)
    assert texts[-1].startswith(f"cannot run container {uuid}: sbatch refused the job {PERMANENT_REFUSALS} times")
    assert "instance types" not in texts[-1]


def _changes(stats: dict) -> int:
    """Requests that change a container (unlock, lock, PUT): none may come from a dispatcher that lost squeue."""
    return sum(
        n for k, n in stats.items()
        if k.startswith(("PUT ", "PATCH ")) or k.endswith(("/unlock", "/lock"))
    )


def test_squeue_failing_unlocks_and_cancels_nothing(e2e: E2E, throwaway_cluster_dir: Path) -> None:
    """slurmctld stopped for a while: squeue fails, which is "no information", never "the job is gone".

    It runs on a private cluster of its own: restarting the shared cluster's slurmctld would disturb other
    tests (priority/basic recomputes its base priority from the jobs it recovers).
    """
    conf_dir = throwaway_cluster_dir
    started = start_cluster(conf_dir)
    assert started.returncode == 0, started.stderr
    private = SlurmCluster(conf_dir=conf_dir)
    try:
        uuid = _new(e2e, mode="hang")
        d = RunningDispatcher(e2e.settings, private.env).start()
        e2e.started.append(d)
        wait_until(lambda: _state(e2e, uuid) is ContainerState.RUNNING, what="the container to run")
        pid = int((conf_dir / "slurmctld.pid").read_text())
        before = _changes(e2e.control.stats())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), timeout=30, what="slurmctld to stop")
        lists = _lists(e2e.control.stats())
        # the dispatcher keeps polling the API (ten ticks) while every squeue fails
        wait_until(lambda: _lists(e2e.control.stats()) >= lists + 20, timeout=60, what="ten more dispatcher ticks")
        assert d.dispatch is not None and uuid in d.dispatch.squeue.snapshot().jobs
        assert _changes(e2e.control.stats()) == before, "a container was changed while squeue was failing"
        assert _state(e2e, uuid) is ContainerState.RUNNING
        restarted = start_cluster(conf_dir)
        assert restarted.returncode == 0, restarted.stderr
        running = private.run(["squeue", "--all", "--noheader", "--states=RUNNING", "--format=%j"], check=True)
        assert uuid in running.stdout.split()
        e2e.control.set_priority(uuid, 0)
        wait_until(lambda: _state(e2e, uuid) is ContainerState.CANCELLED, what="the container to be cancelled after")
    finally:
        for d in list(e2e.started):
            d.stop()
            e2e.started.remove(d)
        stop_cluster(conf_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
