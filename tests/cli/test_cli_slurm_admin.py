"""``status``, ``adopt`` and ``cancel`` against the emulated Arvados API and the real Slurm test cluster.

The emulator runs as cluster ``clit1`` so that jobs other tests submit to the shared Slurm cluster (cluster
``zzzzz``) never show up here. Jobs are submitted held (``--hold``): they stay PENDING with Slurm priority 0
and reason JobHeldUser, so whole outputs are stable; only job ids vary.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from slurm_dispatch.cli.control import who
from slurm_dispatch.service.state import StateStore
from slurm_dispatch.slurm.broken_nodes import BrokenNode
from slurm_dispatch.slurm.reasons import LEFTOVER

pytestmark = pytest.mark.slurm

CLUSTER = "clit1"
ME = f"{CLUSTER}-gj3su-000000000000000"
A = f"{CLUSTER}-dz642-aaaaaaaaaaaaaaa"  # Locked by us, with a job: fine
B = f"{CLUSTER}-dz642-bbbbbbbbbbbbbbb"  # Running by us, no job: flagged
C = f"{CLUSTER}-dz642-ccccccccccccccc"  # Complete, with a job: a leftover
D = f"{CLUSTER}-dz642-ddddddddddddddd"  # Locked by another token, with a job: not ours
E = f"{CLUSTER}-dz642-eeeeeeeeeeeeeee"  # Queued, no job: not shown
F = f"{CLUSTER}-dz642-fffffffffffffff"  # a job, no container
Z = "zzzzz-dz642-zzzzzzzzzzzzzzz"  # another cluster's job: never shown


def hold_job(slurm: Any, name: str, *, command: str = "sleep 600", hold: bool = True) -> str:
    """Submit a job named ``name`` (held unless told otherwise); return its id."""
    argv = ["sbatch", f"--job-name={name}", "--output=/dev/null", "--mem=10M", "--cpus-per-task=1", "--wrap", command]
    out = slurm.run(argv[:1] + (["--hold"] if hold else []) + argv[1:], check=True).stdout
    return out.split()[-1]


def start_job(slurm: Any, name: str) -> str:
    """Submit a job named ``name`` whose batch shell execs ``sleep`` (SIGTERM ends it), wait until it runs, return its
    id. The cluster is shared with other test sessions: jump the queue with a negative nice when we may (root or
    SlurmUser), else wait in line for a free CPU, however long that takes."""
    done = slurm.run(["sbatch", "--nice=-1000000", f"--job-name={name}", "--output=/dev/null", "--mem=10M",
                      "--cpus-per-task=1", "--wrap", "exec sleep 600"])
    job = done.stdout.split()[-1] if done.returncode == 0 else hold_job(slurm, name, command="exec sleep 600",
                                                                          hold=False)
    slurm.wait_for(lambda: slurm.show_job(job).get("JobState") == "RUNNING", timeout=240, what=f"job {job} to start")
    return job


def squeue_names(slurm: Any) -> list[str]:
    """The names of this file's jobs in squeue (other sessions share the cluster and come and go)."""
    out = slurm.run(["squeue", "--all", "--noheader", "--format=%j"], check=True).stdout
    return sorted(n for n in out.split() if n.startswith(f"{CLUSTER}-") or n == Z)


@pytest.fixture
def world(cli: Any, make_emulator: Callable[..., Any], slurm_clean: Any) -> dict[str, Any]:
    """Containers A-F in the emulator, held jobs for A, C, D, F and Z, and a config aimed at both."""
    server, _ = make_emulator(cluster_id=CLUSTER, root_token=cli.root_token)
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = server.base_url
    body["TLS"] = {"Insecure": True}
    cli.write_config(body, cluster_id=CLUSTER)
    cli.env["SLURM_CONF"] = str(slurm_clean.conf_path)
    other = server.api.store.new_token(owner_uuid=f"{CLUSTER}-tpzed-000000000000000", admin=True,
                                       scopes=["all"], now=server.api.clock())
    for uuid, state, locked_by in ((A, "Locked", ""), (B, "Running", ""), (C, "Complete", ""),
                                   (D, "Locked", other["uuid"]), (E, "Queued", "")):
        fields: dict[str, Any] = {"uuid": uuid, "state": state, "priority": 1}
        if state == "Complete":  # an hour ago: past the grace a just-completed container's job gets
            fields["modified_at"] = "2026-01-01T00:00:00.000000000Z"
        if locked_by:
            fields["locked_by_uuid"] = locked_by
        server.create_container(fields)
    jobs = {name: hold_job(slurm_clean, name) for name in (A, C, D, F, Z)}
    return {"server": server, "other": other["uuid"], "jobs": jobs, "slurm": slurm_clean}


def squeezed(text: str) -> list[str]:
    """The lines of ``text`` with runs of spaces squeezed: job ids vary in width, and so do rich's columns."""
    return [" ".join(line.split()) for line in text.splitlines()]


def test_status_flags_mismatches(cli: Any, world: dict[str, Any]) -> None:
    result = cli("status")
    assert result.exit_code == 1, result.output
    j, other = world["jobs"], world["other"]
    assert squeezed(result.stdout) == [
        f"Cluster {CLUSTER}, token {ME}: 5 row(s), 4 with problems",
        "",
        "container state priority job slurm state nice slurm prio reason !",
        "─" * len(result.stdout.splitlines()[3].strip()),
        f"{A} Locked 1 {j[A]} PENDING 0 0 JobHeldUser",
        f"{B} Running 1 - !",
        f"{C} Complete 1 {j[C]} PENDING 0 0 JobHeldUser !",
        f"{D} Locked 1 {j[D]} PENDING 0 0 JobHeldUser !",
        f"{F} (unknown) {j[F]} PENDING 0 0 JobHeldUser !",
        "",
        (f"! {B}: Running by this dispatcher with no Slurm job (after a submission this lasts at most one poll; "
        "otherwise the dispatcher unlocks or cancels it)"),
        f"! {C} (job {j[C]}): Slurm job for a Complete container ({LEFTOVER})",
        f"! {D} (job {j[D]}): Slurm job of ours for a container locked by another token ({other})",
        f"! {F} (job {j[F]}): a Slurm job is named after this container, but the API does not know it",
        "",
        "Scheduling status:",
        f"{A}: Waiting in Slurm: held (released by `scontrol release`) (job {j[A]}, reason JobHeldUser).",
        f"{B}: Running; no Slurm job.",
        f"{C}: Complete; its Slurm job {j[C]} is still in squeue (PENDING): {LEFTOVER}.",
        f"{D}: Waiting in Slurm: held (released by `scontrol release`) (job {j[D]}, reason JobHeldUser).",
    ]
    assert result.stderr == ""


def test_status_json(cli: Any, world: dict[str, Any]) -> None:
    result = cli("status", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert (data["token_uuid"], data["cluster_id"], data["problems"]) == (ME, CLUSTER, 4)
    by_uuid = {row["uuid"]: row for row in data["containers"]}
    assert sorted(by_uuid) == [A, B, C, D, F]
    assert by_uuid[A] == {"uuid": A, "state": "Locked", "priority": 1, "locked_by_uuid": ME,
                          "job_id": int(world["jobs"][A]), "slurm_state": "PENDING", "nice": 0,
                          "slurm_priority": 0, "reason": "JobHeldUser", "problems": [],
                          "scheduling_status": f"Waiting in Slurm: held (released by `scontrol release`) (job "
                                               f"{world['jobs'][A]}, reason JobHeldUser)."}
    assert data["drained"] is False and data["broken_nodes"] == {}
    assert by_uuid[B]["job_id"] is None and len(by_uuid[B]["problems"]) == 1


def test_status_shows_a_record_the_service_cannot_read_and_the_rest(cli: Any, world: dict[str, Any]) -> None:
    """One bad record (here a negative RAM, which the service ignores) must not hide every other container."""
    h = f"{CLUSTER}-dz642-hhhhhhhhhhhhhhh"
    world["server"].create_container({"uuid": h, "state": "Locked", "priority": 1,
                                      "runtime_constraints": {"ram": -1, "vcpus": 1}})
    job = hold_job(world["slurm"], h)  # its job: reported with the record, not as a job the API does not know
    result = cli("status", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert sorted(row["uuid"] for row in data["containers"]) == [A, B, C, D, F]
    assert data["malformed_records"] == [
        {"uuid": h, "problem": "runtime_constraints.ram: must be at least 0, not -1",
         "jobs": [{"job_id": job, "state": "PENDING"}]}]
    assert data["problems"] == 5
    assert (f"warning: container {h}: not a valid container record (runtime_constraints.ram: must be at least 0, "
            f"not -1): the service ignores it; check the API server's answer for it; its Slurm job {job} is "
            "PENDING\n") in result.stderr


def test_status_shows_broken_nodes_with_their_hold_and_not_those_whose_hold_ended(
    cli: Any, world: dict[str, Any]
) -> None:
    now = time.time()
    StateStore(cli.state_dir).set_broken({
        "c1": BrokenNode(node="c1", since=now - 600, reason="crunch-run reported it broken"),
        "c2": BrokenNode(node="c2", since=now - 7200, reason="an old report"),  # the default hold is 1 h
    })
    data = json.loads(cli("status", "--json").stdout)
    assert list(data["broken_nodes"]) == ["c1"], "a hold that has ended is not shown"
    c1 = data["broken_nodes"]["c1"]
    assert c1["until"] == pytest.approx(now - 600 + 3600)
    assert 2990 < c1["hold_left_s"] <= 3000
    text = cli("status").stdout
    assert "Broken node c1 (since " in text and ", held off until " in text and "50 min left" in text
    assert "Broken node c2" not in text and "an old report" not in text  # not bare "c2": random uuids may hold it


def test_status_says_who_drained_and_why(cli: Any, world: dict[str, Any]) -> None:
    assert cli("drain", "--reason", "kernel upgrade").exit_code == 0
    data = json.loads(cli("status", "--json").stdout)
    assert (data["drained"], data["drain_reason"]) == (True, "kernel upgrade")
    assert data["drained_by"] == who() and data["drained_since"]
    assert f" by {who()} (kernel upgrade): no new container is locked" in cli("status").stdout


def test_adopt_dry_run_changes_nothing(cli: Any, world: dict[str, Any]) -> None:
    before = squeue_names(world["slurm"])
    result = cli("adopt", "--dry-run")
    assert result.exit_code == 0, result.output
    other = world["other"]
    assert squeezed(result.stdout) == [
        f"Cluster {CLUSTER}: 4 Slurm job(s) named like our containers (dry run)",
        "",
        "container action why result",
        "─" * len(result.stdout.splitlines()[3].strip()),
        f"{A} adopt Locked by this token tracked by the service",
        f"{C} scancel leftover job container is Complete would scancel (dry run)",
        f"{D} leave alone locked by {other} -",
        f"{F} leave alone container not found -",
    ]
    assert result.stderr == ""
    assert squeue_names(world["slurm"]) == before
    data = json.loads(cli("adopt", "--dry-run", "--json").stdout)
    assert data == {
        "cluster_id": CLUSTER, "token_uuid": ME, "dry_run": True,
        "jobs": [
            {"uuid": A, "state": "Locked", "locked_by_uuid": ME, "action": "adopt",
             "reason": "Locked by this token", "result": "tracked by the service", "error": None},
            {"uuid": C, "state": "Complete", "locked_by_uuid": "", "action": "scancel leftover job",
             "reason": "container is Complete", "result": "would scancel (dry run)", "error": None},
            {"uuid": D, "state": "Locked", "locked_by_uuid": other, "action": "leave alone",
             "reason": f"locked by {other}", "result": "-", "error": None},
            {"uuid": F, "state": None, "locked_by_uuid": None, "action": "leave alone",
             "reason": "container not found", "result": "-", "error": None},
        ],
    }
    assert squeue_names(world["slurm"]) == before


def test_adopt_scancels_only_leftovers(cli: Any, world: dict[str, Any]) -> None:
    result = cli("adopt")
    assert result.exit_code == 0, result.output
    assert squeezed(result.stdout)[4:] == [
        f"{A} adopt Locked by this token tracked by the service",
        f"{C} scancel leftover job container is Complete scancelled",
        f"{D} leave alone locked by {world['other']} -",
        f"{F} leave alone container not found -",
    ]
    names = squeue_names(world["slurm"])
    assert C not in names
    assert {A, D, F, Z} <= set(names)


def test_cancel_with_yes_cancels_in_arvados_and_removes_the_pending_job(cli: Any, world: dict[str, Any]) -> None:
    result = cli("cancel", "--yes", "--reason", "bad input data", A)
    assert result.exit_code == 0, result.output
    job = world["jobs"][A]
    assert result.stdout == (
        f"Slurm jobs named {A}: {job} (PENDING)\n"
        f"Container {A}: Locked, priority 1\n"
        f"cancelled container {A} in Arvados: bad input data\n"
        f"ran: scancel --name={A} --state=pending\n"
        f"ran: scancel --name={A} --batch --signal=TERM --state=running\n"
        f"ran: scancel --name={A} --batch --signal=TERM --state=suspended\n"
        f"job {job} (PENDING): removed (it had not started)\n"
    )
    assert A not in squeue_names(world["slurm"])
    assert {C, D, F, Z} <= set(squeue_names(world["slurm"]))
    record = world["server"].api.store.container(A)
    assert record["state"] == "Cancelled", "so that it is not dispatched again"
    assert record["runtime_status"] == {"error": "bad input data"}


def test_cancel_keeps_the_other_runtime_status_keys(cli: Any, world: dict[str, Any]) -> None:
    """Arvados replaces runtime_status whole: the warning already there must be sent back with the error (and an
    older errorDetail, which would now sit beside another error, is dropped)."""
    g = f"{CLUSTER}-dz642-ggggggggggggggg"
    world["server"].create_container({"uuid": g, "state": "Locked", "priority": 1,
                                      "runtime_status": {"warning": "slow node", "activity": "loading image",
                                                         "errorDetail": "an older error's detail"}})
    result = cli("cancel", "--yes", "--reason", "bad input data", g)
    assert result.exit_code == 0, result.output
    assert world["server"].api.store.container(g)["runtime_status"] == {
        "warning": "slow node", "activity": "loading image", "error": "bad input data"}


def test_cancel_of_a_container_another_dispatcher_holds_cancels_it_without_the_reason(
    cli: Any, world: dict[str, Any],
) -> None:
    """Only the lock holder may write runtime_status (container.rb: validate_change); the state change alone is
    allowed to any admin, and the output says why the reason is missing."""
    result = cli("cancel", "--yes", "--reason", "bad input data", D)
    assert result.exit_code == 0, result.output
    assert (f"cancelled container {D} in Arvados; the reason was not written: it is locked by {world['other']}, "
            "and Arvados lets only the lock holder write runtime_status\n") in result.stdout
    record = world["server"].api.store.container(D)
    assert record["state"] == "Cancelled" and not record["runtime_status"]


def test_cancel_slurm_only_leaves_the_container_alone(cli: Any, world: dict[str, Any]) -> None:
    result = cli("cancel", "--yes", "--slurm-only", A)
    assert result.exit_code == 0, result.output
    assert "in Arvados" not in result.stdout
    assert A not in squeue_names(world["slurm"])
    assert world["server"].api.store.container(A)["state"] == "Locked"


def test_cancel_asks_and_can_be_refused(cli: Any, world: dict[str, Any]) -> None:
    result = cli("cancel", A, input="n\n")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(
        f"Slurm jobs named {A}: {world['jobs'][A]} (PENDING)\nContainer {A}: Locked, priority 1\n"
        "Cancel the container in Arvados and scancel the jobs? [y/N]: ")
    assert A in squeue_names(world["slurm"])
    assert world["server"].api.store.container(A)["state"] == "Locked"


def test_cancel_of_a_final_container_with_no_job(cli: Any, world: dict[str, Any]) -> None:
    store = world["server"].api.store
    store.put_container({**store.container(E), "state": "Complete"})
    result = cli("cancel", "--yes", E)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"No Slurm job is named {E}.\nContainer {E}: Complete, priority 1 (already final: "
                             "nothing to cancel in Arvados)\nNothing to cancel.\n")


def test_cancel_slurm_only_of_nothing(cli: Any, slurm_clean: Any) -> None:
    cli.write_config(cli.cluster(), cluster_id=CLUSTER)  # cancel refuses another cluster's uuid
    result = cli("cancel", "--yes", "--slurm-only", E, env={"SLURM_CONF": str(slurm_clean.conf_path)})
    assert result.exit_code == 0, result.output
    assert result.stdout == f"No Slurm job is named {E}.\nNothing to cancel.\n"


def test_cancel_running_job_signals_its_batch_shell(cli: Any, slurm_clean: Any) -> None:
    cli.write_config(cli.cluster(), cluster_id=CLUSTER)  # cancel refuses another cluster's uuid
    name = f"{CLUSTER}-dz642-runningjob00000"
    job = start_job(slurm_clean, name)
    result = cli("cancel", "--yes", "--slurm-only", name, env={"SLURM_CONF": str(slurm_clean.conf_path)})
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        f"job {job} (RUNNING): SIGTERM sent to its batch shell (crunch-run stops the container and records the "
        "final state)\n")
    slurm_clean.wait_for(lambda: name not in squeue_names(slurm_clean), timeout=60, what=f"job {job} to end")


def test_cancel_of_a_running_container_signals_its_job_first_and_cancels_it_once_the_job_is_gone(
    cli: Any, world: dict[str, Any],
) -> None:
    """A Running container: the reason first, then SIGTERM to the job (crunch-run's), then the wait; here the job
    is a plain sleep that writes no final state, so the container is cancelled once its job has left squeue."""
    r = f"{CLUSTER}-dz642-rrrrrrrrrrrrrrr"
    world["server"].create_container({"uuid": r, "state": "Running", "priority": 1})
    job = start_job(world["slurm"], r)
    result = cli("cancel", "--yes", "--reason", "bad input data", "--wait", "60", r)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:-1] == [
        f"Slurm jobs named {r}: {job} (RUNNING)",
        f"Container {r}: Running, priority 1",
        f"wrote the reason on container {r} (runtime_status.error): bad input data",
        f"ran: scancel --name={r} --state=pending",
        f"ran: scancel --name={r} --batch --signal=TERM --state=running",
        f"ran: scancel --name={r} --batch --signal=TERM --state=suspended",
        (f"job {job} (RUNNING): SIGTERM sent to its batch shell (crunch-run stops the container and records the final "
        "state)"),
        ("waiting up to 60 s for crunch-run to record the final state (until the job leaves squeue or the container is "
        "final)"),
    ]
    assert re.fullmatch(rf"cancelled container {r} in Arvados: its Slurm job left squeue after \d+ s, but the "
                        r"container is still Running", lines[-1]), lines[-1]
    assert r not in squeue_names(world["slurm"])
    record = world["server"].api.store.container(r)
    assert (record["state"], record["runtime_status"]) == ("Cancelled", {"error": "bad input data"})


def test_slurm_not_installed_exits_3(cli: Any) -> None:
    cli.write_config(cli.cluster(), cluster_id=CLUSTER)  # cancel refuses another cluster's uuid
    result = cli("cancel", "--yes", A, env={"PATH": "/nonexistent"})
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert re.match(r"error: squeue --all --noheader --format=[0-9a-f]{16}\|%i\|%y\|%Q\|%T\|%L\|%N\|%j\|%r: timed out "
                    "or did not start: cannot run: ", result.stderr), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_token_never_printed(cli: Any, world: dict[str, Any]) -> None:
    for args in (["status"], ["status", "--json"], ["adopt", "--dry-run"], ["adopt", "--dry-run", "--json"]):
        result = cli(*args)
        assert cli.root_token not in result.output, args


