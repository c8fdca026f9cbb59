"""The demo: the emulated Arvados API, the project's real Slurm test cluster, and the real dispatcher.

``run_demo`` starts the emulator in a temporary directory, makes sure the Slurm test cluster runs (starting it with
start-test-cluster.sh when it does not, and stopping it afterwards in that case), queues a handful of sample
containers of different sizes and priorities whose CrunchRunCommand is the crunch-run stand-in, runs the dispatcher
until every container is final, prints each state change as it happens, and ends with a summary. The temporary
directory (the emulator's database, the jobs' output) is removed at the end, however the demo ended, unless the
caller asks to keep it (``slurm-dispatch sandbox --keep-files``); then the last line names it.

The cluster scripts are package data (``slurm_dispatch/sandbox/slurm/``, found with importlib.resources), so the
demo works from an installed wheel as well as from a checkout.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.config.limits import MAX_DURATION_S, MIN_POLL_INTERVAL_S
from slurm_dispatch.errors import DispatchError
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.sandbox.api.server import EmulatorServer
from slurm_dispatch.sandbox.background import BackgroundDispatcher, sandbox_settings
from slurm_dispatch.sandbox.control import SandboxControl

CLUSTER_SCRIPTS = ("start-test-cluster.sh", "stop-test-cluster.sh")
"""The Slurm test cluster scripts, shipped in this package's ``slurm/`` folder."""

GB = 1_000_000_000


def poll_interval_problem(seconds: float) -> str | None:
    """Return why ``seconds`` cannot be the demo's PollInterval, or None. Pure.

    The bounds of the config loader's Containers.CloudVMs.PollInterval (``config.limits``): a shorter poll only
    spins a core (a negative one never waits at all), and NaN or infinity is no interval.
    """
    if not math.isfinite(seconds) or not MIN_POLL_INTERVAL_S <= seconds <= MAX_DURATION_S:
        return (f"must be a number of seconds from {MIN_POLL_INTERVAL_S:g} (a shorter poll only spins the CPU) to "
                f"{MAX_DURATION_S:g}, not {seconds}")
    return None


def default_cluster_dir(env: Mapping[str, str]) -> Path:
    """Return where the demo keeps its Slurm test cluster unless told otherwise. Pure but for ``Path.home()``.

    ``$XDG_STATE_HOME/slurm-dispatch/sandbox-cluster``, else ``~/.local/state/slurm-dispatch/sandbox-cluster``
    (for root on Debian: /root/.local/state/...): a state directory of the user's, since an installed demo has no
    checkout to put it in, and not the current directory, which the cluster's state, spool and logs would litter.
    The path stays short, as slurmd's per-step sockets in its spool directory must (108 bytes on Linux).

    Raises:
        DispatchError: XDG_STATE_HOME is unset and the home directory is unknown.
    """
    state = env.get("XDG_STATE_HOME", "")
    if Path(state).is_absolute():  # the XDG Base Directory spec says to ignore a relative path
        base = Path(state)
    else:
        try:
            base = Path.home() / ".local" / "state"
        except RuntimeError as exc:
            raise DispatchError(f"cannot choose the test cluster's directory ({exc}); pass --cluster-dir") from exc
    return base / "slurm-dispatch" / "sandbox-cluster"


@dataclass(frozen=True)
class Sample:
    """One sample container: what it is meant to show."""

    label: str
    priority: int
    vcpus: int
    ram: int
    seconds: float
    mode: str = "complete"


SAMPLES = (
    Sample("small, urgent", 900, 1, 200_000_000, 3),
    Sample("large memory", 500, 2, 4 * GB, 6),
    Sample("two cores", 300, 2, 500_000_000, 4),
    Sample("command fails (exit 1)", 200, 1, 200_000_000, 2, "fail"),
    Sample("crunch-run dies while Running", 150, 1, 200_000_000, 1, "exit-silently-while-running"),
    Sample("asks for 64 GB: no node has it", 100, 1, 64 * GB, 1),
    Sample("low priority", 10, 1, 300_000_000, 2),
)


@dataclass
class Row:
    """What the demo knows of one sample container."""

    sample: Sample
    uuid: str
    state: str = "Queued"
    exit_code: int | None = None
    job_id: str = ""
    node: str = ""
    started: float | None = None
    finished: float | None = None
    note: str = ""


def _cluster_running(conf_dir: Path) -> bool:
    pid_file = conf_dir / "slurmctld.pid"
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def cluster_script(name: str) -> Iterator[Path]:
    """Yield the file system path of one of the packaged cluster scripts (``CLUSTER_SCRIPTS``).

    The path is the installed file itself (a temporary copy only if the package lies in a zip archive). Run it
    with ``bash`` explicitly: an installer need not keep the executable bit.

    Raises:
        DispatchError: ``name`` is not one of them, or the installation lacks it.
    """
    if name not in CLUSTER_SCRIPTS:
        raise DispatchError(f"{name!r} is not one of the test cluster scripts {CLUSTER_SCRIPTS}")
    resource = resources.files("slurm_dispatch.sandbox").joinpath("slurm", name)
    if not resource.is_file():
        raise DispatchError(f"{name} is missing from the slurm_dispatch package; reinstall slurm-dispatch")
    with resources.as_file(resource) as path:
        yield path


def _run_cluster_script(name: str, conf_dir: Path, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a packaged cluster script for ``conf_dir`` with bash; blocks until it exits. Returns its result.

    Raises:
        DispatchError: the script is missing, bash cannot be run, or the script ran past ``timeout`` seconds.
    """
    with cluster_script(name) as script:
        try:
            return subprocess.run(
                ["bash", str(script), str(conf_dir)],
                capture_output=True, text=True, errors="replace", timeout=timeout, check=False,
            )
        except OSError as exc:
            raise DispatchError(f"could not run {script} with bash: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise DispatchError(f"{script} {conf_dir} did not finish within {timeout:.0f} s") from exc


def _start_cluster(conf_dir: Path, say: Callable[[str], None]) -> None:
    say(f"starting the Slurm test cluster in {conf_dir} (slurmctld and two slurmd nodes on this host)")
    result = _run_cluster_script("start-test-cluster.sh", conf_dir, timeout=600)
    if result.returncode != 0:
        raise DispatchError(f"the Slurm test cluster did not start:\n{result.stderr.strip()}")


def _stop_cluster(conf_dir: Path) -> None:
    _run_cluster_script("stop-test-cluster.sh", conf_dir, timeout=120)


def _squeue_jobs(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Job name → (job id, node) for every job slurmctld still knows."""
    out = subprocess.run(
        ["squeue", "--all", "--noheader", "--states=all", "--format=%i %j %N"],
        env=env, capture_output=True, text=True, errors="replace", timeout=30, check=False,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            jobs[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    return jobs


def run_demo(
    *,
    cluster_dir: Path,
    poll_interval: float = 1.0,
    timeout: float = 300.0,
    say: Callable[[str], None] = print,
    keep_files: bool = False,
) -> list[Row]:
    """Run the demo to the end and return its rows; blocks (about a minute).

    The demo's temporary directory is removed at the end, unless ``keep_files``: then the last thing said names it.

    Raises:
        ValueError: ``poll_interval`` is not one the service accepts (``poll_interval_problem``).
        DispatchError: the cluster could not start, or the containers did not finish within ``timeout``.
    """
    problem = poll_interval_problem(poll_interval)
    if problem is not None:
        raise ValueError(f"poll interval: {problem}")
    started_cluster = False
    if not _cluster_running(cluster_dir):
        _start_cluster(cluster_dir, say)
        started_cluster = True
    else:
        say(f"using the running Slurm test cluster in {cluster_dir}")
    slurm_env = {"SLURM_CONF": str(cluster_dir / "slurm.conf"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    work = Path(tempfile.mkdtemp(prefix="slurm-dispatch-demo-"))
    out_dir = work / "slurm-out"
    out_dir.mkdir()
    try:
        with EmulatorServer(db_path=str(work / "arvados.sqlite")) as emulator:
            say(f"emulated Arvados API at {emulator.base_url} (state in {work / 'arvados.sqlite'})")
            return _dispatch_samples(emulator, slurm_env, out_dir, poll_interval, timeout, say)
    finally:
        if started_cluster:
            say("stopping the Slurm test cluster the demo started")
            _stop_cluster(cluster_dir)
        if keep_files:
            say(f"kept the demo's files in {work} (the emulator's database, the Slurm jobs' output)")
        else:
            # A job's output may still be written while it ends: what cannot be removed is left, not an error.
            shutil.rmtree(work, ignore_errors=True)


def _dispatch_samples(
    emulator: EmulatorServer,
    slurm_env: dict[str, str],
    out_dir: Path,
    poll_interval: float,
    timeout: float,
    say: Callable[[str], None],
) -> list[Row]:
    rows = []
    for s in SAMPLES:
        record = emulator.create_container(
            {
                "priority": s.priority,
                "command": ["sleep", str(s.seconds)],
                "environment": {"SANDBOX_CRUNCH_RUN": s.mode},
                "runtime_constraints": {"vcpus": s.vcpus, "ram": s.ram},
            }
        )
        rows.append(Row(s, str(record["uuid"])))
        say(f"queued {record['uuid']}  priority {s.priority:>3}  {s.vcpus} cpu  {s.ram / GB:5.1f} GB  {s.label}")
    settings = sandbox_settings(
        root_token=emulator.root_token, base_url=emulator.base_url, output_dir=out_dir, poll_interval=poll_interval
    )
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=10)
    dispatcher = BackgroundDispatcher(settings, slurm_env)
    t0 = time.monotonic()
    dispatcher.start()
    say(f"dispatcher started (PollInterval {poll_interval:g} s); following the containers:")
    try:
        while True:
            _refresh(rows, api, slurm_env, t0, say)
            if all(r.state in ("Complete", "Cancelled") for r in rows):
                break
            if not dispatcher.running:
                raise DispatchError(f"the dispatcher stopped: {dispatcher.error}")
            if time.monotonic() - t0 > timeout:
                raise DispatchError(f"not every container finished within {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        dispatcher.stop()
        api.close()
    control = SandboxControl(emulator.base_url)
    try:
        for row in rows:
            texts = [e["properties"]["text"] for e in control.logs(row.uuid) if e.get("event_type") == "dispatch"]
            if texts:
                row.note = texts[-1].splitlines()[0]
    finally:
        control.close()
    return rows


def _refresh(rows: list[Row], api: ArvadosClient, env: dict[str, str], t0: float, say: Callable[[str], None]) -> None:
    jobs = _squeue_jobs(env)
    now = time.monotonic() - t0
    for row in rows:
        c: Container = api.get(row.uuid)
        if row.uuid in jobs:
            row.job_id, node = jobs[row.uuid]
            row.node = node or row.node
        if c.state.value != row.state:
            if c.state is ContainerState.RUNNING:
                row.started = now
            if c.state.is_final:
                row.finished = now
                row.exit_code = c.exit_code if c.state is ContainerState.COMPLETE else None
                error = c.runtime_status.get("error")
                if error:
                    row.note = str(error)
            job = f"  Slurm job {row.job_id}" if row.job_id else ""
            say(f"{now:6.1f}s  {row.uuid}  {row.state} → {c.state.value}{job}")
            row.state = c.state.value


def summary_table(rows: list[Row]) -> str:
    """Return the demo's closing summary as a plain-text table. Pure."""
    header = ("container", "what", "prio", "state", "exit", "job", "node", "ran", "note")
    lines = []
    for r in rows:
        ran = f"{r.finished - r.started:.1f}s" if r.started is not None and r.finished is not None else "-"
        lines.append((
            r.uuid, r.sample.label, str(r.sample.priority), r.state,
            "-" if r.exit_code is None else str(r.exit_code), r.job_id or "-", r.node or "-", ran, r.note or "",
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(s.rstrip() for s in out)
