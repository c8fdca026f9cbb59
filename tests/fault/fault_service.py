"""``slurm-dispatch run`` as systemd runs it, for the fault suite: a real process with a config file, killed
and restarted.

systemd (contrib/systemd/slurm-dispatch.service) starts ``slurm-dispatch run --config ...`` with
``NOTIFY_SOCKET`` set, restarts it ``RestartSec`` after it dies (``Restart=always``), and, because of
``KillMode=mixed``, SIGKILLs whatever is left of its control group (an sbatch in flight) once the main process
has gone. ``ServiceProcess`` does the same: each incarnation runs in a session of its own, so its process
group stands in for the control group.

Plain Python (no pytest): the soak script uses it too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from slurm_dispatch.sandbox.background import crunch_run_stub_path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "slurm-dispatch.service"
MANAGEMENT_TOKEN = "management-token-for-fault-tests-0123456789"


def unit_seconds(key: str) -> float:
    """Return a ``Key=<seconds>`` setting of the systemd unit (TimeoutStopSec, RestartSec).

    Raises:
        KeyError: the unit does not set it in plain seconds.
    """
    m = re.search(rf"^{key}=(\d+(?:\.\d+)?)s?$", UNIT.read_text(), re.MULTILINE)
    if m is None:
        raise KeyError(f"{UNIT} sets no {key}= in seconds")
    return float(m.group(1))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, *, base_url: str, root_token: str, out_dir: Path, port: int,
                 poll_interval: str = "500ms") -> Path:
    """Write an Arvados cluster config for the service (emulator, crunch-run stand-in, job output in
    ``out_dir``); return ``path``."""
    cluster: dict[str, Any] = {
        "SystemRootToken": root_token,
        "ManagementToken": MANAGEMENT_TOKEN,
        "Services": {
            "Controller": {"ExternalURL": base_url},
            "DispatchSLURM": {"InternalURLs": {f"http://127.0.0.1:{port}": {}}},
        },
        "TLS": {"Insecure": True},
        "SystemLogs": {"Format": "text", "LogLevel": "info"},
        "Containers": {
            "CloudVMs": {"PollInterval": poll_interval},
            "ReserveExtraRAM": "50MiB",
            "CrunchRunCommand": crunch_run_stub_path(),
            "SLURM": {
                "SbatchArgumentsList": [
                    "--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T", "--partition=%P",
                    f"--output={out_dir}/%%j.out",
                ]
            },
        },
    }
    path.write_text(yaml.safe_dump({"Clusters": {"zzzzz": cluster}}))
    path.chmod(0o600)
    return path


def service_argv() -> list[str]:
    """The unit's ExecStart: the ``slurm-dispatch`` script of this Python, or ``python -m slurm_dispatch``."""
    script = Path(sys.executable).with_name("slurm-dispatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "slurm_dispatch"]


class NotifySocket:
    """A fake ``NOTIFY_SOCKET``: the datagrams the service sends to systemd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        """Return the messages received since the last call."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode(errors="replace"))
            except BlockingIOError:
                return out

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@dataclass(frozen=True)
class Kill:
    """How one SIGKILL went."""

    pid: int
    uptime: float
    """Seconds the incarnation had run."""
    ready: bool
    """It had sent READY=1."""
    children: tuple[str, ...]
    """Names of its child processes at the kill (``sbatch``: a submission in flight)."""
    leftovers: int
    """Processes of its group still alive after it died, then SIGKILLed as systemd would."""


@dataclass(frozen=True)
class Stop:
    """How one SIGTERM went."""

    pid: int
    seconds: float
    """From SIGTERM to exit."""
    returncode: int | None
    """None: it did not exit within the bound (then it was SIGKILLed)."""
    leftovers: int


class ServiceProcess:
    """Incarnations of ``slurm-dispatch run``, one at a time. Not thread-safe."""

    def __init__(self, *, config: Path, workdir: Path, slurm_env: dict[str, str]) -> None:
        self.config = config
        self.workdir = workdir
        self.lock = workdir / "service.lock"
        self.log = workdir / "service.log"
        self.notify = NotifySocket(workdir / "notify.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARVADOS_", "SLURM_"))}
        env.update(slurm_env)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.incarnations = 0
        self._ready = False

    @property
    def pid(self) -> int:
        """The pid of the running incarnation (0 when none)."""
        return self.proc.pid if self.proc is not None else 0

    @property
    def alive(self) -> bool:
        """True while an incarnation runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start an incarnation (the previous one must have ended). Does not block."""
        assert not self.alive, "one incarnation at a time"
        self.notify.drain()
        self._ready = False
        self.incarnations += 1
        with self.log.open("a") as f:
            f.write(f"=== fault suite: incarnation {self.incarnations} starting at {time.strftime('%H:%M:%S')}\n")
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*service_argv(), "run", "--config", str(self.config), "--lock-file", str(self.lock)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd=self.workdir, start_new_session=True,
            )
        self.started_at = time.monotonic()

    def ready(self) -> bool:
        """True once this incarnation has sent READY=1 (locks held, first poll worked)."""
        if not self._ready and self.proc is not None:
            self._ready = any("READY=1" in m for m in self.notify.drain())
        return self._ready

    def uptime(self) -> float:
        """Seconds since this incarnation started."""
        return time.monotonic() - self.started_at

    def direct_children(self) -> tuple[str, ...]:
        """Names of the incarnation's direct children now, read from /proc (fast enough to poll every few ms
        for an sbatch in flight, which lives for tens of milliseconds)."""
        names = []
        for tasks in Path(f"/proc/{self.pid}/task").glob("*/children") if self.alive else ():
            try:
                kids = tasks.read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:
                    names.append(Path(f"/proc/{kid}/comm").read_text().strip())
                except OSError:
                    pass
        return tuple(sorted(names))

    def _reap_group(self, pgid: int) -> int:
        """SIGKILL what is left of the process group, as systemd does with the control group; return how many
        there were. Blocks until they are gone."""
        left = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid:
                    left.append(proc)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        for proc in left:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=10)
        return len(left)

    def kill(self) -> Kill:
        """SIGKILL the incarnation, then its process group; blocks until all are gone. Returns what it hit."""
        assert self.proc is not None and self.alive, "no incarnation to kill"
        children = self.direct_children()
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        ready, uptime = self.ready(), self.uptime()
        self.proc.wait(30)
        leftovers = self._reap_group(pid)
        return Kill(pid=pid, uptime=uptime, ready=ready, children=children, leftovers=leftovers)

    def terminate(self, *, bound: float) -> Stop:
        """SIGTERM the incarnation and wait up to ``bound`` s for it to exit (then SIGKILL it, as systemd does
        after TimeoutStopSec); then reap its group. Blocks."""
        assert self.proc is not None and self.alive, "no incarnation to stop"
        pid = self.proc.pid
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        try:
            returncode: int | None = self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            returncode = None
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(30)
        seconds = time.monotonic() - t0
        return Stop(pid=pid, seconds=seconds, returncode=returncode, leftovers=self._reap_group(pid))

    def close(self) -> None:
        """Kill an incarnation still running and close the notify socket. Blocks."""
        if self.alive:
            self.kill()
        self.notify.close()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the service's log (every incarnation's stderr, in order)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
