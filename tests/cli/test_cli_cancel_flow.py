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

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.cancel import cancel_container
from slurm_dispatch.cli.common import ExitCode, exit_code_for
from slurm_dispatch.errors import ArvadosUnavailable, DispatchError
from slurm_dispatch.sandbox.api import EmulatorServer

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

    def cancel(self, uuid: str, *, reason: str = "", slurm_only: bool = False) -> list[str]:
        """Run the flow without a prompt; return what it said."""
        self.said.clear()
        cancel_container(uuid, reason=reason, backend=self.slurm, client=None if slurm_only else self.client,
                         confirm=None, say=self.said.append)
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
