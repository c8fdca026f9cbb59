"""``slurm-dispatch run`` as a real child process, against the emulated Arvados API: the ``service_process`` fixture.

``service_process(...)`` writes a cluster config (the emulator's URL and token, a ManagementToken, one
InternalURL on a free loopback port) and slurm-dispatch's own file (``Service.StateDirectory`` in the test's
tmp), starts ``python -m slurm_dispatch run`` with stderr captured in a file, and returns a ``ServiceProcess``.
Slurm is whatever ``slurm_env`` points at: the real test cluster (``slurm_clean.env``), or a directory of fake
Slurm commands (``fake_slurm_commands``) put first on PATH. Every process still running at the end of the test
is SIGKILLed and waited for.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from slurm_dispatch.sandbox.background import crunch_run_stub_path

MANAGEMENT_TOKEN = "management-token-for-service-tests-0123456789"
"""The ManagementToken of every config this fixture writes."""

SLURM_COMMANDS = ("squeue", "sbatch", "scancel", "scontrol", "sinfo", "sacct")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_slurm_commands(directory: Path, *, squeue: str = "exit 0", others: str = "exit 0") -> dict[str, str]:
    """Write shell scripts named like the Slurm commands in ``directory``; return the environment that finds them.

    ``squeue`` and ``others`` are the scripts' bodies (after ``#!/bin/sh``): the default squeue shows an empty
    queue. ``exec sleep 1000000`` makes a command that never answers (exec: the one process Python kills on
    timeout is the sleeper itself, so no orphan holds the pipes open).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in SLURM_COMMANDS:
        path = directory / name
        path.write_text(f"#!/bin/sh\n{squeue if name == 'squeue' else others}\n", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "LC_ALL": "C",
            "SLURM_CONF": str(directory / "no-slurm.conf")}


@dataclass
class ServiceProcess:
    """One ``slurm-dispatch run`` child process and what it was started with."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    state_dir: Path
    config: Path
    own: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The management endpoint's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Everything the process wrote on stderr so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def request(self, method: str, path: str, *, token: str | None = MANAGEMENT_TOKEN, **kw: Any) -> requests.Response:
        """One request to the management endpoint (``token=None``: no Authorization header). Blocks up to 10 s."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def answers(self, path: str = "/_health/ping") -> bool:
        """True when ``GET path`` answers 200 with the ManagementToken (False while the port is not open yet)."""
        try:
            return self.request("GET", path).status_code == 200
        except requests.ConnectionError:
            return False

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process."""
        self.proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, within: float) -> tuple[int, float]:
        """Send ``sig`` and wait for the process to exit; return (exit code, seconds it took).

        Raises:
            subprocess.TimeoutExpired: it did not exit within ``within`` seconds (the fixture then kills it).
        """
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(within)
        return code, time.monotonic() - t0


ServiceFactory = Callable[..., ServiceProcess]


def cluster_config(*, emulator: Any, port: int, out_dir: Path, poll: str = "500ms",
                   internal_urls: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Return a cluster config body aimed at ``emulator``, with the health endpoint on ``port``."""
    body: dict[str, Any] = {
        "SystemRootToken": emulator.root_token,
        "ManagementToken": MANAGEMENT_TOKEN,
        "Services": {
            "Controller": {"ExternalURL": emulator.base_url},
            "DispatchSLURM": {"InternalURLs": dict(internal_urls or {f"http://127.0.0.1:{port}": {}})},
        },
        "TLS": {"Insecure": True},
        "SystemLogs": {"Format": "text", "LogLevel": "info"},
        "Containers": {
            "CloudVMs": {"PollInterval": poll},
            "ReserveExtraRAM": "50MiB",
            "CrunchRunCommand": crunch_run_stub_path(),
            "SLURM": {"SbatchArgumentsList": ["--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T",
                                              "--partition=%P", f"--output={out_dir}/%%j.out"]},
        },
    }
    body.update(extra)
    return body


@pytest.fixture
def service_process(emulator: Any, tmp_path: Path) -> Iterator[ServiceFactory]:
    """A factory: ``service_process(slurm_env=..., **options)`` starts ``slurm-dispatch run``; see the module.

    Options: ``name`` (files are ``<name>.*``), ``port``, ``cluster`` (a config body; default
    ``cluster_config(...)``), ``own`` (extra own-file text), ``env`` (extra environment), ``lock`` (the
    single-instance lock file; default ``<name>.lock``), ``poll`` (PollInterval).
    """
    started: list[ServiceProcess] = []

    def start(*, slurm_env: Mapping[str, str], name: str = "svc", port: int | None = None,
              cluster: dict[str, Any] | None = None, own: str = "", env: Mapping[str, str] | None = None,
              lock: Path | None = None, poll: str = "500ms") -> ServiceProcess:
        port = port or free_port()
        out = tmp_path / f"{name}-out"
        out.mkdir(exist_ok=True)
        body = cluster or cluster_config(emulator=emulator, port=port, out_dir=out, poll=poll)
        config = tmp_path / f"{name}.yml"
        config.write_text(yaml.safe_dump({"Clusters": {"zzzzz": body}}), encoding="utf-8")
        state_dir = tmp_path / f"{name}-state"
        own_doc = yaml.safe_load(own) or {}
        own_doc.setdefault("Service", {"StateDirectory": str(state_dir)})
        own_path = tmp_path / f"{name}-own.yml"
        own_path.write_text(yaml.safe_dump(own_doc), encoding="utf-8")
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("ARVADOS_", "SLURM_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        environ.update(slurm_env)
        environ.update(env or {})
        log = tmp_path / f"{name}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "slurm_dispatch", "run", "--config", str(config), "--skip-legacy",
                 "--dispatch-config", str(own_path), "--lock-file", str(lock or tmp_path / f"{name}.lock")],
                env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        svc = ServiceProcess(proc=proc, log=log, port=port, state_dir=state_dir, config=config, own=own_path,
                             env=environ)
        started.append(svc)
        return svc

    try:
        yield start
    finally:
        for svc in started:
            if svc.proc.poll() is None:
                svc.proc.kill()
                svc.proc.wait(30)
