"""``cancel``'s flow (``cli.cancel.cancel_container``) with FakeSlurm and the emulated Arvados API.

The real-Slurm cases (the command line, the prompt, scancel's passes on the test cluster) are in
test_cli_slurm_admin.py; these cover what needs a container in a given state, crunch-run's own update, a failing
API, or a clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from plugins.fake_slurm import FakeSlurm
from plugins.fake_time import FakeClock

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.cancel import Wait, cancel_container
from slurm_dispatch.cli.common import ExitCode, exit_code_for
from slurm_dispatch.errors import ArvadosUnavailable, DispatchError, SlurmUnavailable
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.crunch_run import fake_pdh

PASSES = [
    "ran: scancel --name={u} --state=pending",
    "ran: scancel --name={u} --batch --signal=TERM --state=running",
    "ran: scancel --name={u} --batch --signal=TERM --state=suspended",
]


def passes(uuid: str) -> list[str]:
    return [line.format(u=uuid) for line in PASSES]


@dataclass
class Rig:
    """The emulated API, FakeSlurm, and a client with the root token (the lock holder of what the emulator
    creates Locked or Running)."""

    emulator: EmulatorServer
    slurm: FakeSlurm
    client: ArvadosClient
    said: list[str] = field(default_factory=list)

    def container(self, state: str, **fields: Any) -> str:
        """Create a container in ``state`` and return its uuid."""
        return str(self.emulator.create_container({"state": state, "priority": 1, **fields})["uuid"])

    def job(self, uuid: str, *, running: bool = False) -> int:
        """Submit a job named ``uuid`` (started when ``running``) and return its id."""
        job_id = self.slurm.submit(args=[f"--job-name={uuid}"], script="#!/bin/sh\n", env={})
        assert job_id is not None
        if running:
            self.slurm.start(uuid)
        return job_id

    def record(self, uuid: str) -> dict[str, Any]:
        record = self.emulator.api.store.container(uuid)
        assert record is not None
        return record

    def cancel(self, uuid: str, *, reason: str = "", slurm_only: bool = False, wait: Wait | None = None
               ) -> list[str]:
        """Run the flow without a prompt; return what it said."""
        self.said.clear()
        cancel_container(uuid, reason=reason, backend=self.slurm, client=None if slurm_only else self.client,
                         confirm=None, say=self.said.append, wait=wait)
        return self.said


@pytest.fixture
def rig(emulator: EmulatorServer) -> Iterator[Rig]:
    client = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=2)
    try:
        yield Rig(emulator=emulator, slurm=FakeSlurm(), client=client)
    finally:
        client.close()


def test_a_locked_container_is_cancelled_in_arvados_then_its_pending_job_removed(rig: Rig) -> None:
    uuid = rig.container("Locked")
    job = rig.job(uuid)
    assert rig.cancel(uuid, reason="bad input data") == [
        f"Slurm jobs named {uuid}: {job} (PENDING)",
        f"Container {uuid}: Locked, priority 1",
        f"cancelled container {uuid} in Arvados: bad input data",
        *passes(uuid),
        f"job {job} (PENDING): removed (it had not started)",
    ]
    record = rig.record(uuid)
    assert (record["state"], record["runtime_status"]) == ("Cancelled", {"error": "bad input data"})
    assert rig.slurm.names() == []


def test_a_uuid_the_api_does_not_know_says_so_and_how_to_remove_its_jobs(rig: Rig) -> None:
    uuid = "zzzzz-dz642-unknowncontainr"
    job = rig.job(uuid)
    with pytest.raises(DispatchError) as raised:
        rig.cancel(uuid)
    assert str(raised.value) == (
        f"no container {uuid} in Arvados (or not readable by this token); its Slurm job(s) {job} are in squeue: "
        f"`slurm-dispatch cancel --slurm-only {uuid}` removes them")
    assert exit_code_for(raised.value) == ExitCode.PROBLEM
    assert rig.slurm.names() == [uuid], "nothing scancelled"


def test_a_uuid_the_api_does_not_know_and_no_job(rig: Rig) -> None:
    uuid = "zzzzz-dz642-unknowncontainr"
    with pytest.raises(DispatchError) as raised:
        rig.cancel(uuid)
    assert str(raised.value) == f"no container {uuid} in Arvados (or not readable by this token)"


def test_a_put_that_may_have_landed_says_so(rig: Rig) -> None:
    """The API applies the change and the answer is lost: the error must not read as "nothing happened"."""
    uuid = rig.container("Locked")
    rig.emulator.faults.add({"mode": "drop_after", "method": "PUT", "path_prefix": f"/arvados/v1/containers/{uuid}"})
    with pytest.raises(ArvadosUnavailable) as raised:
        rig.cancel(uuid, reason="bad input data")
    assert str(raised.value).startswith(f"PUT /arvados/v1/containers/{uuid}: no response: ")
    assert str(raised.value).endswith(
        f"; the change may or may not have been made: check with `slurm-dispatch explain {uuid}`")
    assert exit_code_for(raised.value) == ExitCode.UNREACHABLE
    assert rig.record(uuid)["state"] == "Cancelled", "here it was made"


class CrunchRun:
    """Plays crunch-run for one Running container: on SIGTERM (FakeSlurm's ``cancel``) it sends its final update
    (state, log, exit code, cost) with the dispatcher's token, which the job's environment gives it, as
    lib/crunchrun/crunchrun.go: UpdateContainerFinal does, and keeps the outcome."""

    def __init__(self, rig: Rig, uuid: str) -> None:
        self.uuid = uuid
        self.client = ArvadosClient(api_host=rig.emulator.base_url, token=rig.emulator.root_token, insecure=True,
                                    retry_deadline=2)
        self.log = fake_pdh(uuid, "log")
        self.error: Exception | None = None
        rig.slurm.on_call = self.on_call

    def on_call(self, call: Any) -> None:
        if call.kind != "cancel" or call.name != self.uuid:
            return
        try:
            self.client.update(self.uuid, {"state": "Cancelled", "log": self.log, "exit_code": None, "cost": 0.25},
                               select=["uuid"])
        except DispatchError as exc:
            self.error = exc

    def close(self) -> None:
        self.client.close()


def running(rig: Rig, **fields: Any) -> tuple[str, int]:
    uuid = rig.container("Running", **fields)
    return uuid, rig.job(uuid, running=True)


def test_a_running_container_is_left_to_crunch_run_which_records_its_final_state_and_log(rig: Rig) -> None:
    uuid, job = running(rig, runtime_status={"activity": "running the command"})
    crunch_run = CrunchRun(rig, uuid)
    clock = FakeClock()
    try:
        said = rig.cancel(uuid, reason="bad input data", wait=Wait(seconds=60, clock=clock, sleep=clock.blocking_sleep))
    finally:
        crunch_run.close()
    assert crunch_run.error is None, "crunch-run's final update must be accepted"
    assert said == [
        f"Slurm jobs named {uuid}: {job} (RUNNING)",
        f"Container {uuid}: Running, priority 1",
        f"wrote the reason on container {uuid} (runtime_status.error): bad input data",
        *passes(uuid),
        (f"job {job} (RUNNING): SIGTERM sent to its batch shell (crunch-run stops the container and records the final "
        "state)"),
        ("waiting up to 60 s for crunch-run to record the final state (until the job leaves squeue or the container "
        "is final)"),
        f"container {uuid} is Cancelled after 0 s: crunch-run recorded the final state",
    ]
    record = rig.record(uuid)
    assert (record["state"], record["log"], record["cost"]) == ("Cancelled", crunch_run.log, 0.25)
    assert record["runtime_status"] == {"activity": "running the command", "error": "bad input data"}
    assert clock.sleeps == []


def test_a_running_container_whose_job_ends_without_an_update_is_cancelled_then(rig: Rig) -> None:
    """crunch-run died (or the job was not crunch-run): the job leaves squeue, the container stays Running."""
    uuid, _job = running(rig)
    clock = FakeClock()
    said = rig.cancel(uuid, reason="bad input data", wait=Wait(seconds=60, clock=clock, sleep=clock.blocking_sleep))
    assert said[-2:] == [
        ("waiting up to 60 s for crunch-run to record the final state (until the job leaves squeue or the container "
        "is final)"),
        (f"cancelled container {uuid} in Arvados: its Slurm job left squeue after 0 s, but the container is still "
        "Running"),
    ]
    record = rig.record(uuid)
    assert (record["state"], record["runtime_status"]) == ("Cancelled", {"error": "bad input data"})


def test_a_running_container_whose_job_ignores_sigterm_is_cancelled_after_the_wait(rig: Rig) -> None:
    uuid, job = running(rig)
    rig.slurm.ignore_term(uuid)
    clock = FakeClock()
    said = rig.cancel(uuid, reason="stuck", wait=Wait(seconds=5, clock=clock, sleep=clock.blocking_sleep))
    assert said[-1] == (f"cancelled container {uuid} in Arvados: after 5 s, job(s) {job} still in squeue and the "
                        "container still Running (crunch-run cannot record its final state or log any more)")
    assert sum(clock.sleeps) == 5 and len(clock.sleeps) == 5
    assert rig.record(uuid)["state"] == "Cancelled"
    assert rig.slurm.names() == [uuid], "one SIGTERM only: the job is left to end on its own"


def test_a_failed_squeue_while_waiting_is_not_the_job_leaving(rig: Rig) -> None:
    uuid, job = running(rig)
    rig.slurm.ignore_term(uuid)
    rig.slurm.fail("queue", nth=2, error=SlurmUnavailable(["squeue"], 1, "Unable to contact slurm controller"))
    clock = FakeClock()
    said = rig.cancel(uuid, wait=Wait(seconds=2, clock=clock, sleep=clock.blocking_sleep))
    assert ("squeue failed (squeue: exit 1: Unable to contact slurm controller): not taken as the job having left"
            in said)
    assert said[-1].startswith(f"cancelled container {uuid} in Arvados: after 2 s, job(s) {job} still in squeue")


def test_wait_zero_cancels_right_after_the_sigterm(rig: Rig) -> None:
    uuid, job = running(rig)
    rig.slurm.ignore_term(uuid)
    clock = FakeClock()
    said = rig.cancel(uuid, wait=Wait(seconds=0, clock=clock, sleep=clock.blocking_sleep))
    assert said[-1].startswith(f"cancelled container {uuid} in Arvados: after 0 s, job(s) {job} still in squeue")
    assert clock.sleeps == []


def test_a_running_container_another_dispatcher_holds_gets_no_reason_but_is_still_stopped_first(rig: Rig) -> None:
    other = rig.emulator.new_token()
    uuid, _job = running(rig, locked_by_uuid=other["uuid"])
    clock = FakeClock()
    said = rig.cancel(uuid, reason="bad input data", wait=Wait(seconds=60, clock=clock, sleep=clock.blocking_sleep))
    assert said[2] == (f"the reason was not written: it is locked by {other['uuid']}, and Arvados lets only the lock "
                       "holder write runtime_status; it is cancelled after its job, without it")
    assert said[-1] == (f"cancelled container {uuid} in Arvados: its Slurm job left squeue after 0 s, but the "
                        "container is still Running")
    record = rig.record(uuid)
    assert (record["state"], record["runtime_status"]) == ("Cancelled", {})


def test_a_running_container_without_a_job_is_cancelled_at_once(rig: Rig) -> None:
    uuid = rig.container("Running")
    assert rig.cancel(uuid, reason="no job") == [
        f"No Slurm job is named {uuid}.",
        f"Container {uuid}: Running, priority 1",
        f"cancelled container {uuid} in Arvados: no job",
    ]
    record = rig.record(uuid)
    assert (record["state"], record["runtime_status"]) == ("Cancelled", {"error": "no job"})


def test_a_failed_read_of_the_container_while_waiting_is_waited_through(rig: Rig) -> None:
    """The reason is written and SIGTERM sent by then: an API that fails one read must not leave the container
    Running with the command exited; the wait goes on, and the container is cancelled."""
    uuid, _job = running(rig)
    original = rig.client.get
    reads: list[str] = []

    def flaky(got: str) -> Any:
        reads.append(got)
        if len(reads) == 3:  # the first read while waiting (after the two before the SIGTERM)
            raise ArvadosUnavailable(503, "GET", f"/arvados/v1/containers/{got}", "busy")
        return original(got)

    rig.client.get = flaky  # type: ignore[method-assign]
    clock = FakeClock()
    said = rig.cancel(uuid, reason="bad input data", wait=Wait(seconds=60, clock=clock, sleep=clock.blocking_sleep))
    assert any(line.startswith("reading the container failed (") and line.endswith("): trying again")
               for line in said), said
    assert said[-1] == (f"cancelled container {uuid} in Arvados: its Slurm job left squeue after 1 s, but the "
                        "container is still Running")
    assert rig.record(uuid)["state"] == "Cancelled"
