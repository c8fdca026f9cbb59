"""``slurm-dispatch run`` as a real process: sd_notify, SIGTERM, the PostgreSQL advisory lock takeover, and the
authenticated /metrics endpoint, with the emulated Arvados API and the real Slurm test cluster.

Each process gets slurm-dispatch's own file with ``Service.StateDirectory`` in the test's tmp (never the default
/var/lib/slurm-dispatch, where a drain left by another run would hold every container back), and skips the legacy
file, as tests/plugins/service_process.py does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from plugins.e2e import crunch_run_stub
from plugins.waiting import wait_until

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import ContainerState

pytestmark = pytest.mark.slurm

MANAGEMENT_TOKEN = "management-token-for-tests-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(path: Path, *, emulator: Any, out_dir: Path, port: int, pg: dict[str, str] | None = None) -> Path:
    cluster: dict[str, Any] = {
        "SystemRootToken": emulator.root_token,
        "ManagementToken": MANAGEMENT_TOKEN,
        "Services": {
            "Controller": {"ExternalURL": emulator.base_url},
            "DispatchSLURM": {"InternalURLs": {f"http://127.0.0.1:{port}": {}}},
        },
        "TLS": {"Insecure": True},
        "SystemLogs": {"Format": "text", "LogLevel": "info"},
        "Containers": {
            "CloudVMs": {"PollInterval": "500ms"},
            "ReserveExtraRAM": "50MiB",
            "CrunchRunCommand": crunch_run_stub(),
            "SLURM": {
                "SbatchArgumentsList": [
                    "--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T", "--partition=%P",
                    f"--output={out_dir}/%%j.out",
                ]
            },
        },
    }
    if pg:
        cluster["PostgreSQL"] = {"Connection": pg}
    path.write_text(yaml.safe_dump({"Clusters": {"zzzzz": cluster}}))
    return path


class Notifications:
    """A fake NOTIFY_SOCKET: a real AF_UNIX datagram socket collecting what the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def seen(self, text: str) -> bool:
        return any(text in m for m in self.poll())


class Service:
    """One ``slurm-dispatch run`` process, its state in ``<log>.state`` next to its log."""

    def __init__(self, config: Path, *, lock: Path, notify: Path, slurm_env: dict[str, str], log: Path) -> None:
        env = {**os.environ, **slurm_env, "NOTIFY_SOCKET": str(notify)}
        for name in ("ARVADOS_API_TOKEN", "SLURM_DISPATCH_CONFIG"):
            env.pop(name, None)
        self.log = log
        self.state_dir = log.with_suffix(".state")
        self.own = own = log.with_suffix(".own.yml")
        own.write_text(yaml.safe_dump({"Service": {"StateDirectory": str(self.state_dir)}}), encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slurm_dispatch", "run", "--config", str(config), "--skip-legacy",
             "--dispatch-config", str(own), "--lock-file", str(lock)],
            env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )

    def logs(self) -> str:
        return self.log.read_text()

    def terminate(self, *, within: float = 10) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(within)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def test_ready_after_first_poll_stopping_on_sigterm_and_metrics_auth(
    emulator: Any, emulator_control: Any, slurm_clean: Any, tmp_path: Path, services: list[Service]
) -> None:
    port = _free_port()
    config = _write_config(tmp_path / "config.yml", emulator=emulator, out_dir=tmp_path, port=port)
    notify = Notifications(tmp_path / "notify.sock")
    uuid = emulator_control.create_container(command=["sleep", "3"], runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    svc = Service(config, lock=tmp_path / "lock", notify=notify.path, slurm_env=slurm_clean.env, log=tmp_path / "svc.log")
    services.append(svc)
    wait_until(lambda: notify.seen("READY=1"), timeout=30, what=f"READY=1 (log: {tmp_path / 'svc.log'})")
    assert f"starting for cluster zzzzz with {config} and {svc.own}" in svc.logs(), "the test's own file, its state"
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
    assert emulator_control.stats(), "the service polled the API before READY"
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}
    wait_until(
        lambda: 'arvados_dispatchslurm_containers{state="Running"} 1.0'
        in requests.get(f"{url}/metrics", headers=auth, timeout=5).text,
        timeout=60, what="the containers gauge to show it Running",
    )
    wait_until(lambda: api.get(uuid).state is ContainerState.COMPLETE, timeout=60, what="the container to complete")
    # the gauge drops once the job has left squeue and the runner has returned (a poll or two later)
    wait_until(
        lambda: 'arvados_dispatchslurm_containers{state="Running"} 0.0'
        in requests.get(f"{url}/metrics", headers=auth, timeout=5).text,
        timeout=30, what="the containers gauge to drop the finished container",
    )

    assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 403
    metrics = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}, timeout=5)
    assert metrics.status_code == 200
    assert "arvados_dispatchslurm_sbatch_submits_total 1.0" in metrics.text
    assert "arvados_dispatchslurm_squeue_duration_seconds_count" in metrics.text
    assert "arvados_dispatchslurm_process_resident_memory_bytes" in metrics.text
    health = requests.get(f"{url}/_health/ping", headers={"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}, timeout=5)
    assert health.json() == {"health": "OK"}

    t0 = time.monotonic()
    assert svc.terminate(within=10) == 0
    assert time.monotonic() - t0 < 10
    assert notify.seen("STOPPING=1")
    assert emulator.root_token not in svc.logs()


@pytest.mark.postgres
def test_second_instance_waits_for_the_advisory_lock_then_adopts(
    emulator: Any, emulator_control: Any, slurm_clean: Any, postgres_server: Any, tmp_path: Path, services: list[Service]
) -> None:
    pg = postgres_server.connection
    first_cfg = _write_config(tmp_path / "first.yml", emulator=emulator, out_dir=tmp_path, port=_free_port(), pg=pg)
    second_cfg = _write_config(tmp_path / "second.yml", emulator=emulator, out_dir=tmp_path, port=_free_port(), pg=pg)
    n1, n2 = Notifications(tmp_path / "n1.sock"), Notifications(tmp_path / "n2.sock")
    uuid = emulator_control.create_container(
        command=["sleep", "600"], environment={"SANDBOX_CRUNCH_RUN": "hang"},
        runtime_constraints={"ram": 100_000_000, "vcpus": 1},
    )["uuid"]
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
    # different lock files: as if on two hosts, so only the PostgreSQL lock keeps them apart
    first = Service(first_cfg, lock=tmp_path / "l1", notify=n1.path, slurm_env=slurm_clean.env, log=tmp_path / "1.log")
    services.append(first)
    wait_until(lambda: n1.seen("READY=1"), timeout=30, what="the first instance to be ready")
    wait_until(lambda: api.get(uuid).state is ContainerState.RUNNING, timeout=60, what="the container to run")
    second = Service(second_cfg, lock=tmp_path / "l2", notify=n2.path, slurm_env=slurm_clean.env, log=tmp_path / "2.log")
    services.append(second)
    wait_until(lambda: "waiting for other process to release lock" in second.logs(), timeout=30, what="the second to wait")
    assert not n2.seen("READY=1")
    assert first.terminate(within=10) == 0
    wait_until(lambda: n2.seen("READY=1"), timeout=30, what="the second instance to take over")
    wait_until(lambda: "adopted 1 Slurm jobs" in second.logs(), timeout=30, what="the second to adopt the job")
    assert api.get(uuid).state is ContainerState.RUNNING, "a restart must not touch running work"
    emulator_control.set_priority(uuid, 0)
    wait_until(lambda: api.get(uuid).state is ContainerState.CANCELLED, timeout=60, what="the adopted container to be cancelled")
    assert second.terminate(within=10) == 0
