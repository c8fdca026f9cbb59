"""``adopt``'s scan (``cli.jobs.adopt_leftovers``) with FakeSlurm and the emulated Arvados API; the command line and
the real Slurm cluster are in test_cli_slurm_admin.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from plugins.fake_slurm import Call, FakeSlurm

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.cli.jobs import adopt_leftovers
from slurm_dispatch.errors import SlurmCommandError
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
    # Complete an hour ago, and just now: the second's job gets the grace crunch-run-wrapper may need
    done = str(emulator.create_container({"state": "Complete", "priority": 1,
                                          "modified_at": "2026-01-01T00:00:00Z"})["uuid"])
    just_done = str(emulator.create_container({"state": "Complete", "priority": 1})["uuid"])
    mine = str(emulator.create_container({"state": "Locked", "priority": 1})["uuid"])
    unknown = "zzzzz-dz642-unknowncontainr"
    for name in (done, just_done, mine, unknown, "yyyyy-dz642-othercluster000"):
        submit(slurm, name)
    scan = adopt_leftovers("zzzzz", backend=slurm, client=client, dry_run=False)
    assert {r["uuid"]: r["result"] for r in scan.records} == {
        done: "scancelled", just_done: "-", mine: "tracked by the service", unknown: "-"}
    assert next(r["reason"] for r in scan.records if r["uuid"] == just_done).endswith("its job may end by itself")
    assert scan.failed == 0
    assert sorted(slurm.names()) == sorted([just_done, mine, unknown, "yyyyy-dz642-othercluster000"])


def test_a_job_submitted_after_the_snapshot_is_not_scancelled(emulator: EmulatorServer, client: ArvadosClient) -> None:
    """The service may lock the Queued container again and submit a new job between adopt's squeue and its scancel:
    only the jobs of the snapshot go, by id."""
    slurm = FakeSlurm()
    queued = str(emulator.create_container({"state": "Queued", "priority": 1})["uuid"])
    old_pending = submit(slurm, queued)
    old_running = submit(slurm, queued)
    slurm.jobs[-1].state = "RUNNING"
    new: list[str] = []

    def the_service_submits(call: Call) -> None:
        if call.kind in ("cancel", "cancel_jobs") and not new:
            new.append(submit(slurm, queued))

    slurm.on_call = the_service_submits
    scan = adopt_leftovers("zzzzz", backend=slurm, client=client, dry_run=False)
    assert [r["result"] for r in scan.records] == ["scancelled"]
    assert [str(j.job_id) for j in slurm.jobs] == new, "the new job is still queued, the two old ones gone"
    assert [(c.kind, c.args) for c in slurm.calls if c.kind.startswith("cancel")] == [
        ("cancel_jobs", ("scancel", "--quiet", "--state=pending", old_pending)),
        ("cancel_jobs", ("scancel", "--quiet", "--batch", "--signal=TERM", old_running)),
    ]


def test_a_failed_scancel_is_the_rows_error(emulator: EmulatorServer, client: ArvadosClient) -> None:
    slurm = FakeSlurm()
    done = str(emulator.create_container({"state": "Cancelled", "priority": 1})["uuid"])
    submit(slurm, done)
    slurm.fail("cancel_jobs", error=SlurmCommandError(["scancel"], 1, "Access/permission denied"))
    scan = adopt_leftovers("zzzzz", backend=slurm, client=client, dry_run=False)
    assert [(r["result"], r["error"]) for r in scan.records] == [
        ("scancel failed", "scancel: exit 1: Access/permission denied")]
    assert scan.failed == 1
