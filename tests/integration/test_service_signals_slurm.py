"""SIGHUP on a real ``slurm-dispatch run`` with the real Slurm test cluster: it keeps dispatching.

tests/service/test_service_signals.py checks the SIGHUP line and the state file re-read with fake Slurm
commands; here a container queued after the SIGHUP is dispatched to Slurm and completes.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from plugins.service_process import ServiceFactory
from plugins.waiting import wait_until

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm


def test_sighup_leaves_the_service_dispatching(
    service_process: ServiceFactory, emulator: Any, emulator_control: Any, slurm_clean: Any,
) -> None:
    svc = service_process(slurm_env=slurm_clean.env)
    wait_until(lambda: not svc.alive() or (svc.answers() and svc.request("GET", "/_health/ping").json()
                                           == {"health": "OK"}),
               timeout=60, what=f"the service to be healthy (log: {svc.log})")
    assert svc.alive(), svc.logs()

    svc.send(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: re-read the state file" in svc.logs(), timeout=10, what="the SIGHUP line")
    assert svc.alive(), svc.logs()

    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=5)
    uuid = emulator_control.create_container(
        command=["sleep", "1"], runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    wait_until(lambda: api.get(uuid).state is ContainerState.COMPLETE, timeout=90,
               what="a container queued after SIGHUP to complete")
    status = svc.request("GET", "/arvados/v1/dispatch/status")
    assert status.status_code == 200 and status.json()["drained"] is False, status.text
    assert "arvados_dispatchslurm_sbatch_submits_total 1.0" in svc.request("GET", "/metrics").text

    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
    assert "Traceback" not in svc.logs()
