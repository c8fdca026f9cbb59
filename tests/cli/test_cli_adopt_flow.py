"""``adopt``'s scan (``cli.jobs.adopt_leftovers``) with FakeSlurm and the emulated Arvados API; the command line and
the real Slurm cluster are in test_cli_slurm_admin.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from plugins.fake_slurm import FakeSlurm

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.jobs import adopt_leftovers
from slurm_dispatch.sandbox.api import EmulatorServer


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[ArvadosClient]:
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=2)
    try:
        yield api
    finally:
        api.close()


def submit(slurm: FakeSlurm, name: str) -> str:
    job_id = slurm.submit(args=[f"--job-name={name}"], script="#!/bin/sh\n", env={})
    return str(job_id)


def test_leftovers_are_scancelled_and_the_rest_left_alone(emulator: EmulatorServer, client: ArvadosClient) -> None:
    slurm = FakeSlurm()
    done = str(emulator.create_container({"state": "Complete", "priority": 1})["uuid"])
    mine = str(emulator.create_container({"state": "Locked", "priority": 1})["uuid"])
    unknown = "zzzzz-dz642-unknowncontainr"
    for name in (done, mine, unknown, "yyyyy-dz642-othercluster000"):
        submit(slurm, name)
    scan = adopt_leftovers("zzzzz", backend=slurm, client=client, dry_run=False)
    assert {r["uuid"]: r["result"] for r in scan.records} == {
        done: "scancelled", mine: "tracked by the service", unknown: "-"}
    assert scan.failed == 0
    assert sorted(slurm.names()) == sorted([mine, unknown, "yyyyy-dz642-othercluster000"])
