"""A token the API refuses does not make ``slurm-dispatch run`` restart every second: it stays up, unhealthy, for
``AUTH_REFUSED_WAIT_S`` before it exits 1 (systemd restarts it: ``Restart=always``, ``RestartSec=1``), and SIGTERM
still stops it at once, with exit 0."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from plugins.service_process import ServiceFactory, cluster_config, fake_slurm_commands, free_port
from plugins.waiting import wait_until

from slurm_dispatch.service.serve import AUTH_REFUSED_WAIT_S


def test_a_refused_token_keeps_the_service_up_and_unhealthy_instead_of_a_restart_loop(
    service_process: ServiceFactory, emulator: Any, tmp_path: Path,
) -> None:
    assert AUTH_REFUSED_WAIT_S >= 30
    port = free_port()
    body = cluster_config(emulator=emulator, port=port, out_dir=tmp_path,
                          SystemRootToken="thisTokenIsNotKnownToTheApiServer0123456789")
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"), port=port, cluster=body)
    wait_until(lambda: "the Arvados API refused our token" in svc.logs(), timeout=30, what="the refusal")
    assert svc.alive(), svc.logs()
    wait_until(lambda: svc.answers(), timeout=10, what="the health endpoint")
    health = svc.request("GET", "/_health/ping").json()
    assert health["health"] == "ERROR" and "refused our token" in health["error"], health
    assert "thisTokenIsNotKnown" not in svc.logs()
    code, took = svc.stop(signal.SIGTERM, within=15)
    assert code == 0 and took < 10, svc.logs()  # a stop asked for is a clean stop, as everywhere else
    assert "Traceback" not in svc.logs()
