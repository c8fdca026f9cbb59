"""End to end, on the real Slurm cluster: the operator's levers (issue "Operator controls and workflow safety").

Drain and resume, the cap on containers in Slurm, the supervisor cap (and the deadlock it prevents), the API
overload backoff, no second lock while a previous job lingers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from plugins.e2e import E2E
from plugins.waiting import wait_until

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.model import ContainerState
from slurm_dispatch.service.state import StateStore

pytestmark = pytest.mark.slurm

FINAL = (ContainerState.COMPLETE, ContainerState.CANCELLED)


def _new(e2e: E2E, *, priority: int = 5, seconds: float = 0.5, mode: str = "complete", vcpus: int = 1,
         env: dict[str, str] | None = None, **sched: Any) -> str:
    record = e2e.control.create_container(
        priority=priority, command=["sleep", str(seconds)],
        environment={"SANDBOX_CRUNCH_RUN": mode, **(env or {})},
        runtime_constraints={"ram": 100_000_000, "vcpus": vcpus}, scheduling_parameters=sched,
    )
    return str(record["uuid"])


def _state(e2e: E2E, uuid: str) -> ContainerState:
    return e2e.container(uuid).state


def _ours_in_squeue(e2e: E2E, uuids: set[str]) -> list[tuple[str, str]]:
    out = e2e.slurm.run(["squeue", "--all", "--noheader", "--format=%j|%T|%r"], check=True).stdout
    return [(n, s) for n, s, _ in (line.split("|", 2) for line in out.splitlines()) if n in uuids]


def test_drain_stops_new_locks_within_a_tick_and_resume_restarts_them(e2e: E2E, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    running = _new(e2e, seconds=3)
    d = e2e.dispatcher(loop_kwargs={"drain": store.drain})
    wait_until(lambda: _state(e2e, running) is ContainerState.RUNNING, what="the first container to run")
    store.set_drain(Drain(reason="upgrading Slurm", since="2026-12-07T00:00:00.000000000Z"))
    assert d.dispatch is not None
    ticks = d.dispatch.dispatcher.ticks
    waiting = _new(e2e)
    wait_until(lambda: d.dispatch is not None and d.dispatch.dispatcher.ticks >= ticks + 2, what="two more ticks")
    assert _state(e2e, waiting) is ContainerState.QUEUED, "drained: no new lock"
    assert d.dispatch.dispatcher.waiting[waiting].reason.startswith("Waiting: the dispatcher is drained since ")
    wait_until(lambda: _state(e2e, running) is ContainerState.COMPLETE, what="the running one to finish")
    store.set_drain(None)
    wait_until(lambda: _state(e2e, waiting) is ContainerState.COMPLETE, timeout=60, what="the resumed one to run")
    assert e2e.container(waiting).lock_count == 1


def test_a_cap_of_two_never_has_more_than_two_jobs_in_squeue(e2e: E2E) -> None:
    uuids = [_new(e2e, seconds=1.5, priority=10 + i) for i in range(6)]
    e2e.dispatcher(max_containers_in_slurm=2)
    most = 0
    deadline = time.monotonic() + 120
    while not all(_state(e2e, u) in FINAL for u in uuids):
        assert time.monotonic() < deadline, "the containers did not all finish"
        most = max(most, len(_ours_in_squeue(e2e, set(uuids))))
        time.sleep(0.1)
    assert most <= 2, f"{most} jobs in squeue at once"
    assert most == 2, "the cap was used"
    assert all(e2e.container(u).state is ContainerState.COMPLETE for u in uuids)


def _workflows(e2e: E2E, *, children_priority: int = 5) -> tuple[list[str], list[str]]:
    """Three supervisors, each waiting for its own child. A supervisor takes a whole node (2 CPUs): without a cap
    two of them fill the two-node cluster and no child can ever start."""
    children = [_new(e2e, priority=children_priority, seconds=1) for _ in range(3)]
    supervisors = [_new(e2e, priority=50, mode="wait-for", vcpus=2, env={"SANDBOX_WAIT_FOR": child},
                        supervisor=True) for child in children]
    return supervisors, children


def test_without_a_supervisor_cap_supervisors_fill_the_cluster_and_stall(e2e: E2E) -> None:
    supervisors, children = _workflows(e2e, children_priority=0)  # the children are submitted once both nodes
    d = e2e.dispatcher()                                              # are taken, as a workflow submits them
    wait_until(lambda: sum(_state(e2e, s) is ContainerState.RUNNING for s in supervisors) == 2,
               what="two supervisors to fill both nodes")
    for child in children:
        e2e.control.set_priority(child, 5)
    wait_until(lambda: all(_state(e2e, c) is ContainerState.LOCKED for c in children), what="the children's locks")
    assert d.dispatch is not None
    ticks = d.dispatch.dispatcher.ticks  # a stall is the absence of progress: watch ten polls of the queue
    wait_until(lambda: d.dispatch is not None and d.dispatch.dispatcher.ticks >= ticks + 10, what="ten more ticks")
    assert all(_state(e2e, c) is ContainerState.LOCKED for c in children), "no child could start"
    assert sum(_state(e2e, s) is ContainerState.RUNNING for s in supervisors) == 2
    assert {s for _, s in _ours_in_squeue(e2e, set(children))} == {"PENDING"}
    for uuid in [*supervisors, *children]:
        e2e.control.set_priority(uuid, 0)  # end the deadlock


def test_a_supervisor_cap_of_one_lets_every_workflow_finish(e2e: E2E) -> None:
    supervisors, children = _workflows(e2e)
    d = e2e.dispatcher(max_supervisors=1)
    wait_until(lambda: any(_state(e2e, s) is ContainerState.RUNNING for s in supervisors), what="a supervisor")
    assert d.dispatch is not None
    wait_until(lambda: any("Waiting in workflow queue at position 1." in w.reason
                           for w in d.dispatch.dispatcher.waiting.values()), what="the workflow queue")
    wait_until(lambda: all(_state(e2e, u) is ContainerState.COMPLETE for u in [*supervisors, *children]),
               timeout=180, what="every workflow to finish")


def test_api_overload_lowers_the_lock_rate_and_it_recovers(e2e: E2E) -> None:
    uuids = [_new(e2e, seconds=0.2, priority=100 - i) for i in range(40)]
    e2e.control.faults(mode="status", status=503, method="POST", path_prefix="/arvados/v1/containers/",
                       fraction=0.5, duration=30, seed=7)
    d = e2e.dispatcher(max_containers_in_slurm=20, loop_kwargs={"overload_quiet_s": 3.0})
    assert d.dispatch is not None
    admission = d.dispatch.admission
    wait_until(lambda: admission.overloaded, what="the backoff to start")
    lowest = wait_until(lambda: (b := admission.budget()) is not None and b <= 5 and b, timeout=60,
                        what="the lock budget to fall")
    wait_until(lambda: not admission.overloaded or (admission.budget() or 0) > lowest, timeout=90,
               what="the lock budget to grow again after the faults")
    wait_until(lambda: all(_state(e2e, u) in FINAL for u in uuids), timeout=240, what="every container to end")
    assert all(e2e.container(u).state is ContainerState.COMPLETE for u in uuids), "nothing lost"
    assert max(e2e.container(u).lock_count for u in uuids) <= 2


def test_a_container_requeued_while_its_old_job_lingers_is_not_locked_until_the_job_is_gone(e2e: E2E) -> None:
    uuid = _new(e2e, mode="ignore-term")
    d = e2e.dispatcher()
    wait_until(lambda: _state(e2e, uuid) is ContainerState.RUNNING, what="the container to run")
    stub = wait_until(lambda: next((p for p in psutil.process_iter(["cmdline"])
                                    if uuid in " ".join(p.info.get("cmdline") or [])), None), what="the stand-in")
    e2e.emulator.api.store.put_container({**e2e.emulator.api.store.container(uuid), "state": "Queued",
                                          "locked_by_uuid": None, "auth_uuid": None})
    assert d.dispatch is not None
    ticks = d.dispatch.dispatcher.ticks
    wait_until(lambda: d.dispatch is not None and d.dispatch.dispatcher.ticks >= ticks + 4, what="four ticks")
    assert _ours_in_squeue(e2e, {uuid}), "the old job lingers (its crunch-run ignores SIGTERM)"
    assert e2e.container(uuid).lock_count == 1, "not locked again while its old job is in squeue"
    stub.kill()
    wait_until(lambda: e2e.container(uuid).lock_count == 2, timeout=60, what="the lock once the old job is gone")
    for p in psutil.process_iter(["cmdline"]):
        if uuid in " ".join(p.info.get("cmdline") or []):
            p.kill()
