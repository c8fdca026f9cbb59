"""The management API of a real ``slurm-dispatch run``: the queue with scheduling status, drain and resume over
HTTP, the token check, and the queue-to-sbatch histogram, with the emulated API and the real Slurm test cluster.

Routes and answers: slurm_dispatch/service/management.py.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import pytest
from plugins.service_process import ServiceFactory, ServiceProcess
from plugins.waiting import wait_until

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

CONTAINERS = "/arvados/v1/dispatch/containers"
CONTAINER = "/arvados/v1/dispatch/container"
DRAIN = "/arvados/v1/dispatch/drain"
RESUME = "/arvados/v1/dispatch/resume"
STATUS = "/arvados/v1/dispatch/status"
HISTOGRAM = "arvados_dispatchslurm_queue_to_sbatch_seconds"


def items(svc: ServiceProcess) -> dict[str, dict[str, Any]]:
    """The management API's queue, by container uuid."""
    answer = svc.request("GET", CONTAINERS)
    assert answer.status_code == 200, answer.text
    return {entry["container"]["uuid"]: entry for entry in answer.json()["items"]}


def test_queue_drain_resume_and_metrics_over_http(
    service_process: ServiceFactory, emulator: Any, emulator_control: Any, slurm_clean: Any, tmp_path: Path,
) -> None:
    svc = service_process(slurm_env=slurm_clean.env)
    wait_until(lambda: not svc.alive() or svc.answers(), timeout=60, what=f"the endpoint (log: {svc.log})")
    assert svc.alive(), svc.logs()
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=5)

    running = emulator_control.create_container(
        priority=5, command=["sleep", "600"], environment={"SANDBOX_CRUNCH_RUN": "hang"},
        runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    wait_until(lambda: api.get(running).state is ContainerState.RUNNING, timeout=60, what="the container to run")

    # the queue: the running container, with its record and a scheduling status
    # (the dispatcher sees the Running record at its next poll)
    entry = wait_until(lambda: (e := items(svc).get(running)) and e["container"]["state"] == "Running" and e,
                       timeout=30, what="the container in the management queue, Running")
    assert entry["scheduling_status"], entry
    one = svc.request("GET", CONTAINER, params={"container_uuid": running})
    assert one.status_code == 200 and one.json()["container"]["uuid"] == running, one.text
    missing = svc.request("GET", CONTAINER, params={"container_uuid": "zzzzz-dz642-000000000000000"})
    assert (missing.status_code, missing.json()) == (404, {"errors": ["container not found"]})

    # the token check, on the management routes as on /metrics
    for method, path in (("GET", CONTAINERS), ("POST", DRAIN), ("POST", RESUME), ("GET", STATUS)):
        assert svc.request(method, path, token=None).status_code == 401, path
        assert svc.request(method, path, token="wrong-token").status_code == 403, path
    assert not (svc.state_dir / "state.json").exists(), "a refused drain must change nothing"

    # the histogram has an observation: the container went from Queued to sbatch
    metrics = svc.request("GET", "/metrics")
    assert metrics.status_code == 200
    buckets = re.findall(rf'^{HISTOGRAM}_bucket{{le="([^"]+)"}} (\S+)$', metrics.text, re.MULTILINE)
    assert len(buckets) > 2 and buckets[-1][0] == "+Inf", metrics.text
    assert float(buckets[-1][1]) == 1.0, buckets
    assert re.search(rf"^{HISTOGRAM}_count 1\.0$", metrics.text, re.MULTILINE), metrics.text

    # drain: a new container waits, and the queue says why; the running one is followed as before
    drained = svc.request("POST", DRAIN, data={"reason": "kernel upgrade"})
    assert drained.status_code == 200, drained.text
    assert (drained.json()["drained"], drained.json()["drain_reason"]) == (True, "kernel upgrade")
    assert "kernel upgrade" in (svc.state_dir / "state.json").read_text()
    waiting = emulator_control.create_container(
        priority=5, command=["sleep", "1"], runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    held = wait_until(lambda: items(svc).get(waiting), timeout=30, what="the new container in the queue, held back")
    assert held["scheduling_status"].startswith("Waiting: the dispatcher is drained since "), held
    assert "(kernel upgrade)" in held["scheduling_status"]
    assert api.get(waiting).state is ContainerState.QUEUED
    status = svc.request("GET", STATUS).json()
    assert status["drained"] is True and "drain" in status["limits_reached"], status
    assert status["starting"] is False, "polls have worked: the counts are known"
    assert api.get(running).state is ContainerState.RUNNING

    # resume: the held container is locked, submitted and run
    resumed = svc.request("POST", RESUME)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["drained"] is False
    wait_until(lambda: api.get(waiting).state is ContainerState.COMPLETE, timeout=60, what="the resumed container")
    assert api.get(waiting).lock_count == 1
    assert svc.request("GET", STATUS).json()["drained"] is False

    logs = svc.logs()
    assert "drained through the management API: kernel upgrade" in logs
    assert "resumed through the management API" in logs
    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
    assert api.get(running).state is ContainerState.RUNNING, "stopping leaves running work alone"
    assert emulator.root_token not in svc.logs()
