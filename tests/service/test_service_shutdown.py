"""SIGTERM stops ``slurm-dispatch run`` within a bound, whatever the Arvados API or Slurm does meanwhile.

The real service runs as a child process against the emulated API, with fake Slurm commands first on PATH (no
real Slurm is needed: no container is queued, so only squeue ever runs).

The bound, ``STOP_BOUND_S``: systemd SIGKILLs the service ``TimeoutStopSec`` (75 s,
contrib/systemd/slurm-dispatch.service) after SIGTERM, and that budget is for an sbatch already under way,
which may take up to its 60 s cap (``slurm_dispatch.slurm.cli_backend.DEFAULT_TIMEOUT_S``) to finish. Neither
an API fault nor a query that only reads (squeue) may use it: the API client's own deadlines (60 s of retries,
120 s per attempt: ``slurm_dispatch.arvados.transport``) are longer than the whole budget, so stopping must cut
them short, not wait for them. What is left, 75 - 60 = 15 s, is the bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.service_process import ServiceFactory, ServiceProcess, fake_slurm_commands
from plugins.waiting import wait_until

TIMEOUT_STOP_S = 75.0
"""TimeoutStopSec of contrib/systemd/slurm-dispatch.service."""
SBATCH_CAP_S = 60.0
"""The longest a Slurm command may run (slurm_dispatch.slurm.cli_backend.DEFAULT_TIMEOUT_S)."""
STOP_BOUND_S = TIMEOUT_STOP_S - SBATCH_CAP_S


def ready(svc: ServiceProcess) -> None:
    """Wait until the service answers its health check with OK (its first poll of the API worked)."""
    wait_until(lambda: not svc.alive() or (svc.answers() and svc.request("GET", "/_health/ping").json()
                                           == {"health": "OK"}),
               timeout=60, what=f"the service to be healthy (log: {svc.log})")
    assert svc.alive(), svc.logs()


def assert_clean_exit(svc: ServiceProcess, code: int, took: float) -> None:
    logs = svc.logs()
    assert code == 0, logs
    assert took < STOP_BOUND_S, f"took {took:.1f} s\n{logs}"
    assert "Traceback" not in logs, logs


@pytest.mark.parametrize("fault", [
    pytest.param({"mode": "status", "status": 500}, id="api-500"),
    pytest.param({"mode": "hang", "seconds": 600}, id="api-hang"),
])
def test_sigterm_stops_within_the_bound_while_the_api_fails(
    service_process: ServiceFactory, emulator_control: Any, tmp_path: Path, fault: dict[str, Any],
) -> None:
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"))
    ready(svc)
    emulator_control.faults(**fault)
    before = sum(emulator_control.stats().values())
    # a request met the fault (a 500 being retried, or a request hanging) before the signal
    wait_until(lambda: sum(emulator_control.stats().values()) > before, timeout=30,
               what="the service to send requests into the fault")
    code, took = svc.stop(signal.SIGTERM, within=TIMEOUT_STOP_S)
    assert_clean_exit(svc, code, took)


@pytest.mark.parametrize("fault", [
    pytest.param({"mode": "status", "status": 500}, id="api-500"),
    pytest.param({"mode": "hang", "seconds": 600}, id="api-hang"),
])
def test_sigterm_stops_within_the_bound_when_the_api_never_worked(
    service_process: ServiceFactory, emulator_control: Any, tmp_path: Path, fault: dict[str, Any],
) -> None:
    emulator_control.faults(**fault)
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"))
    wait_until(lambda: not svc.alive() or sum(emulator_control.stats().values()) > 0, timeout=30,
               what="the service's first request")
    wait_until(lambda: not svc.alive() or svc.answers(), timeout=30, what="the health endpoint")
    assert svc.alive(), svc.logs()
    code, took = svc.stop(signal.SIGTERM, within=TIMEOUT_STOP_S)
    assert_clean_exit(svc, code, took)


@pytest.fixture
def hanging_squeue(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Fake Slurm commands whose squeue writes its pid and never answers; the sleepers are killed afterwards.

    The service does not wait for a query when it stops, so the sleeper outlives it (systemd's KillMode=mixed
    would SIGKILL it with the rest of the unit's cgroup).
    """
    pids = tmp_path / "squeue-pids"
    env = fake_slurm_commands(tmp_path / "bin", squeue=f"echo $$ >> {pids}\nexec sleep 1000000")
    yield env, pids
    for pid in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def test_sigterm_stops_within_the_bound_while_squeue_hangs(
    service_process: ServiceFactory, hanging_squeue: tuple[dict[str, str], Path],
) -> None:
    env, pids = hanging_squeue
    svc = service_process(slurm_env=env)
    wait_until(lambda: not svc.alive() or pids.exists(), timeout=30, what="squeue to start")
    assert svc.alive(), svc.logs()
    code, took = svc.stop(signal.SIGTERM, within=TIMEOUT_STOP_S)
    assert_clean_exit(svc, code, took)
    assert "SIGTERM: stopping" in svc.logs()
