"""SIGHUP keeps ``slurm-dispatch run`` running and logs what it did; SIGTERM and SIGINT stop it with exit 0.

The real service runs as a child process against the emulated API, with fake Slurm commands (an empty queue)
first on PATH. tests/integration/test_service_signals_slurm.py checks the same against real Slurm, with a
container dispatched after the SIGHUP.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from plugins.service_process import ServiceFactory, ServiceProcess, fake_slurm_commands
from plugins.waiting import wait_until

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.model import format_timestamp
from slurm_dispatch.service.serve import hangup_message
from slurm_dispatch.service.state import State, StateStore
from slurm_dispatch.slurm.broken_nodes import BrokenNode

REST = ("; the config is read only at start (restart to apply a change: Slurm jobs keep running and are adopted); "
        "logs go to stderr, nothing to reopen")


@pytest.mark.parametrize(("state", "expected"), [
    pytest.param(State(), "not drained", id="not-drained"),
    pytest.param(State(drain=Drain(reason="upgrade", since="2024-05-01T12:00:00.000000000Z")),
                 "drained since 2024-05-01T12:00:00.000000000Z (upgrade)", id="drained"),
    pytest.param(State(broken={"c1": BrokenNode(node="c1", since=1.0, reason="docker")}),
                 "not drained, 1 broken node(s) recorded", id="broken"),
    pytest.param(State(drain=Drain(reason="x", since="?"), problem="cannot read /s/state.json: bad JSON"),
                 "unreadable (cannot read /s/state.json: bad JSON), so drained", id="unreadable"),
])
def test_hangup_message(state: State, expected: str) -> None:
    assert hangup_message(state, "/s/state.json") == f"SIGHUP: re-read the state file /s/state.json: {expected}{REST}"


def healthy(svc: ServiceProcess) -> None:
    wait_until(lambda: not svc.alive() or (svc.answers() and svc.request("GET", "/_health/ping").json()
                                           == {"health": "OK"}),
               timeout=60, what=f"the service to be healthy (log: {svc.log})")
    assert svc.alive(), svc.logs()


def test_sighup_keeps_the_service_dispatching_and_rereads_the_state_file(
    service_process: ServiceFactory, emulator_control: Any, tmp_path: Path,
) -> None:
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"))
    healthy(svc)

    svc.send(signal.SIGHUP)
    line = (f"INFO slurm_dispatch.service: SIGHUP: re-read the state file {svc.state_dir / 'state.json'}: "
            f"not drained{REST}")
    wait_until(lambda: line in svc.logs(), timeout=10, what="the SIGHUP line")
    assert svc.alive(), svc.logs()

    # what `slurm-dispatch drain` does, from another process: the next SIGHUP reports it at once
    since = format_timestamp(datetime.now(UTC))
    StateStore(svc.state_dir).set_drain(Drain(reason="kernel upgrade", since=since))
    svc.send(signal.SIGHUP)
    wait_until(lambda: f"drained since {since} (kernel upgrade)" in svc.logs(), timeout=10,
               what="the second SIGHUP line")
    assert svc.alive(), svc.logs()

    # still polling the API, and still answering the management API
    polls = emulator_control.stats()
    wait_until(lambda: sum(emulator_control.stats().values()) > sum(polls.values()), timeout=10,
               what="another poll of the API after SIGHUP")
    status = svc.request("GET", "/arvados/v1/dispatch/status")
    assert status.status_code == 200, status.text
    assert (status.json()["drained"], status.json()["drain_reason"]) == (True, "kernel upgrade")
    assert svc.request("GET", "/_health/ping").json() == {"health": "OK"}

    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
    assert "Traceback" not in svc.logs()


def test_sighup_while_waiting_for_the_lock_is_logged_not_fatal(
    service_process: ServiceFactory, tmp_path: Path,
) -> None:
    env = fake_slurm_commands(tmp_path / "bin")
    lock = tmp_path / "shared.lock"
    first = service_process(slurm_env=env, name="first", lock=lock)
    healthy(first)
    second = service_process(slurm_env=env, name="second", lock=lock)
    wait_until(lambda: "waiting for another instance to exit" in second.logs(), timeout=30,
               what="the second instance to wait for the file lock")
    second.send(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: re-read the state file" in second.logs(), timeout=10, what="the SIGHUP line")
    assert second.alive(), second.logs()
    code, _ = second.stop(signal.SIGTERM, within=15)
    assert code == 0, second.logs()
    assert first.alive(), first.logs()


def test_sigint_stops_like_sigterm(service_process: ServiceFactory, tmp_path: Path) -> None:
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"))
    healthy(svc)
    code, _ = svc.stop(signal.SIGINT, within=15)
    logs = svc.logs()
    assert code == 0, logs
    assert "INFO slurm_dispatch.service: SIGINT: stopping; Slurm jobs keep running, the next start adopts them" in logs
    assert "Traceback" not in logs
