"""What the benchmarks share: the private Slurm test cluster, the API emulator, Slurm job submission, counters.

Not a benchmark itself; ``bench_submit.py``, ``bench_service.py`` and ``bench_shared_site.py`` import it (they run
as scripts from ``benchmarks/``, which puts this directory on ``sys.path``).

- ``Cluster`` / ``ensure_cluster`` / ``stop_cluster``: a test cluster (``contrib/slurm/start-test-cluster.sh``)
  reached through its slurm.conf; the benchmarks start a fresh private one unless told otherwise.
- ``Emulator``: the Arvados API emulator in a child process (or on a thread). In a child process it can also
  create containers directly in its store (``create``: no HTTP, 10,000 in seconds) and keeps a log of every API
  request it answers with its wire size (``api_windows``), counted by wrapping its request handler in the child:
  the emulator's own ``/_sandbox/stats`` counts requests, not bytes.
- ``submit_jobs``: sbatch the jobs of containers as the dispatcher would build them (``job_for``), through
  ``xargs -L 1 sbatch``; ``submit_foreign``: other users' held jobs (``sbatch --uid``, as root).
- ``CountingSlurm``: a SlurmBackend that counts the commands (and squeue's output bytes) of the one it wraps.
- ``Cpu`` / ``thread_cpu``: CPU seconds of this process, its children and its threads.
"""

from __future__ import annotations

import bisect
import itertools
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurm_dispatch.model import Container
from slurm_dispatch.sandbox.control import SandboxControl
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.sbatch import sbatch_environment

REPO = Path(__file__).resolve().parents[1]
START_CLUSTER = REPO / "contrib" / "slurm" / "start-test-cluster.sh"
STOP_CLUSTER = REPO / "contrib" / "slurm" / "stop-test-cluster.sh"
CLUSTER_ID = "bench"
"""The emulator's cluster id: our jobs are named ``bench-dz642-...``, unlike any test's (``zzzzz``)."""
PENDING_ARG = "--begin=now+3600"
"""Keeps every job pending (reason BeginTime) with a normal priority. Not ``--hold``: on Slurm 22.05 the
dispatcher's renice (``scontrol update JobName=... Nice=...``) releases a held job, which then runs."""
NAME_RE = re.compile(rf"^{CLUSTER_ID}-dz642-[a-z0-9]{{15}}$")
SUBMITTED_RE = re.compile(r"Submitted batch job (\d+)")
SAFE_ARG_RE = re.compile(r"^[A-Za-z0-9=%,._:/+-]+$")
"""Arguments xargs can take unquoted (our template produces only such)."""


# -- the cluster ---------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The Slurm test cluster, reached through its slurm.conf."""

    conf_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """The explicit environment for Slurm commands (and the dispatcher's base_env)."""
        return {
            "SLURM_CONF": str(self.conf_dir / "slurm.conf"),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LC_ALL": "C",
        }

    def run(self, argv: Sequence[str], *, timeout: float = 120) -> str:
        """Run a Slurm command; return its stdout. Blocks. Raises CalledProcessError on failure."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=True, timeout=timeout
        ).stdout

    def daemon_cpu(self) -> float:
        """CPU seconds slurmctld and munged (found by their pid files in ``conf_dir``) have used so far."""
        import psutil

        total = 0.0
        for pidfile in ("slurmctld.pid", "munged.pid"):
            try:
                t = psutil.Process(int((self.conf_dir / pidfile).read_text().strip())).cpu_times()
            except (OSError, ValueError, psutil.Error):
                continue
            total += t.user + t.system
        return total

    def names(self) -> dict[str, str]:
        """Return job name -> job id of every job squeue lists (pending/running). Blocks on one squeue."""
        out = self.run(["squeue", "--all", "--noheader", "--format=%i %j"])
        jobs = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                jobs[parts[1]] = parts[0]
        return jobs

    def cancel_ids(self, ids: Sequence[str]) -> None:
        """scancel these job ids, 200 per command. Blocks."""
        for i in range(0, len(ids), 200):
            subprocess.run(
                ["scancel", *ids[i : i + 200]], env=self.env, capture_output=True, timeout=120, check=False
            )

    def wait_gone(self, names: set[str], *, timeout: float = 300) -> float:
        """Wait until no job in squeue has one of ``names``; return the seconds waited. Blocks."""
        t0 = time.monotonic()
        while True:
            left = names & set(self.names())
            if not left:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{len(left)} benchmark jobs still in squeue after {timeout} s")
            time.sleep(0.5)


def cluster_running(conf_dir: Path | None) -> bool:
    """True if a slurmctld started from ``conf_dir`` is alive."""
    if conf_dir is None:
        return False
    try:
        os.kill(int((conf_dir / "slurmctld.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def ensure_cluster(conf_dir: Path) -> Cluster:
    """Start the test cluster in ``conf_dir`` (or reuse the running one). Blocks until its nodes are idle."""
    # Each round leaves 2000 cancelled jobs that slurmctld keeps for MinJobAge (600 s): room for 25 rounds.
    env = {**os.environ, "SLURM_TEST_MAX_JOB_COUNT": os.environ.get("SLURM_TEST_MAX_JOB_COUNT", "50000")}
    result = subprocess.run(
        [str(START_CLUSTER), str(conf_dir)], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    if result.returncode != 0:
        # stop what did start (by pid file), so a failed run leaves no daemons behind
        subprocess.run([str(START_CLUSTER.with_name("stop-test-cluster.sh")), str(conf_dir)],
                       capture_output=True, timeout=120, check=False)
        sys.exit(f"the Slurm test cluster did not start:\n{result.stderr.strip()}")
    return Cluster(conf_dir)


def stop_cluster(conf_dir: Path, *, remove: bool) -> None:
    """Stop the test cluster of ``conf_dir`` (its jobs are cancelled first) and, with ``remove``, delete it. Blocks."""
    subprocess.run([str(STOP_CLUSTER), str(conf_dir)], capture_output=True, timeout=300, check=False)
    if remove:
        shutil.rmtree(conf_dir, ignore_errors=True)


def cancel_leftovers(cluster: Cluster, name_re: re.Pattern[str] = NAME_RE) -> None:
    """scancel jobs a crashed earlier run of a benchmark left (named ``bench-dz642-...``). Blocks."""
    jobs = cluster.names()
    mine = {name: job_id for name, job_id in jobs.items() if name_re.match(name)}
    if mine:
        print(f"cancelling {len(mine)} jobs left by an earlier run", file=sys.stderr)
        cluster.cancel_ids(sorted(mine.values()))
        cluster.wait_gone(set(mine))


# -- submitting jobs ------------------------------------------------------------------------------------------


def submit_jobs(
    cluster: Cluster,
    settings: Settings,
    containers: Sequence[Container],
    work: Path,
    *,
    parallel: int = 1,
    nice: Callable[[int], int] | None = None,
) -> list[str]:
    """sbatch the job of each container, as the dispatcher builds it (``job_for``), in the given order.

    ``xargs -P parallel -L 1 sbatch`` runs one sbatch per job; with ``parallel=1`` Slurm sees the jobs in
    exactly this order (priority/basic then gives them falling base priorities in this order). ``nice(i)``,
    when given, adds ``--nice=<nice(i)>`` after the template's (sbatch takes the last). The scripts (they
    hold GatewayAuthSecret) go to files of mode 0600 under ``work``. Returns the job ids. Blocks.

    Raises:
        RuntimeError: xargs failed or fewer jobs were submitted than asked.
    """
    jobs_dir = work / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, container in enumerate(containers):
        job = job_for(container, settings)
        args = list(job.args) + ([f"--nice={nice(i)}"] if nice is not None else [])
        bad = [a for a in args if not SAFE_ARG_RE.match(a)]
        if bad:
            raise RuntimeError(f"arguments xargs would split or unquote: {bad}")
        path = jobs_dir / f"{i:05d}.sh"
        path.write_text(job.script)
        path.chmod(0o600)
        lines.append(" ".join([*args, str(path)]))
    listing = work / "xargs.in"
    listing.write_text("\n".join(lines) + "\n")
    env = {**sbatch_environment(settings, cluster.env), "LC_ALL": "C"}
    with open(listing) as stdin:
        proc = subprocess.run(["xargs", "-P", str(parallel), "-L", "1", "sbatch"], stdin=stdin, env=env,
                              capture_output=True, text=True, check=False)
    ids = SUBMITTED_RE.findall(proc.stdout)
    if proc.returncode != 0 or len(ids) != len(containers):
        cluster.cancel_ids(ids)
        raise RuntimeError(f"xargs sbatch: exit {proc.returncode}, {len(ids)} of {len(containers)} jobs: "
                           f"{proc.stderr.strip()[-300:]}")
    shutil.rmtree(jobs_dir, ignore_errors=True)
    return ids


FOREIGN_USERS = ("nobody", "daemon", "bin", "sys")
"""Accounts every Debian system has, to own the other users' jobs."""


def submit_foreign(cluster: Cluster, count: int, work: Path, *, users: Sequence[str] = FOREIGN_USERS) -> list[str]:
    """Submit ``count`` held one-line jobs owned by other users, round robin; return their ids. Blocks.

    As root, ``sbatch --uid=<user>`` submits a job owned by that user (Slurm 22.05; sdiag counts the RPC under
    root, the job under the user). ``--hold`` keeps them pending forever at priority 0; the dispatcher never
    touches them (their names are not container uuids). Three sbatch at a time.

    Raises:
        RuntimeError: xargs failed or fewer jobs were submitted than asked.
    """
    lines = [f"--uid={users[i % len(users)]} --hold --output=/dev/null --job-name=site-{users[i % len(users)]}-{i} "
             "--wrap=true" for i in range(count)]
    listing = work / "foreign.in"
    listing.write_text("\n".join(lines) + "\n")
    with open(listing) as stdin:
        proc = subprocess.run(["xargs", "-P", "3", "-L", "1", "sbatch"], stdin=stdin, env=cluster.env,
                              cwd="/tmp", capture_output=True, text=True, check=False)
    ids = SUBMITTED_RE.findall(proc.stdout)
    if proc.returncode != 0 or len(ids) != count:
        cluster.cancel_ids(ids)
        raise RuntimeError(f"foreign jobs: exit {proc.returncode}, {len(ids)} of {count}: {proc.stderr.strip()[-300:]}")
    return ids


# -- the emulator ---------------------------------------------------------------------------------------------


_UUID_SEGMENT = re.compile(r"/[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}")


def _install_request_log(log: list[tuple[float, str, int, int]], lock: threading.Lock) -> None:
    """Child process only: make the emulator's handler append (start, route, bytes in, bytes out) per API request.

    Bytes are what crossed the HTTP connection inside TLS: request line, headers and body in; status line,
    headers and body out. Control requests (``/_sandbox/``) are not logged.
    """
    from slurm_dispatch.sandbox.api import server as api_server

    plain_serve = api_server._Handler._serve

    class CountingWriter:
        def __init__(self, raw: Any) -> None:
            self.raw = raw
            self.n = 0

        def write(self, data: bytes) -> int:
            self.n += len(data)
            return int(self.raw.write(data))

        def flush(self) -> None:
            self.raw.flush()

    def serve(handler: Any) -> None:
        t0 = time.monotonic()
        writer = CountingWriter(handler.wfile)
        handler.wfile = writer
        try:
            plain_serve(handler)
        finally:
            handler.wfile = writer.raw
            path = handler.path.split("?", 1)[0]
            if not path.startswith(api_server.CONTROL_PREFIX):
                size_in = (len(handler.raw_requestline) + len(str(handler.headers))
                           + int(handler.headers.get("Content-Length") or 0))
                with lock:
                    log.append((t0, f"{handler.command} {_UUID_SEGMENT.sub('/{uuid}', path)}", size_in, writer.n))

    api_server._Handler._serve = serve  # type: ignore[method-assign,assignment]


def _serve_emulator(conn: multiprocessing.connection.Connection, root_token: str) -> None:
    """Child process: serve an emulator; answer ``("create", fields_list)`` and ``("api_windows", times)``
    requests from the parent; stop on anything else (or when the parent goes away)."""
    from slurm_dispatch.sandbox.api import EmulatorServer

    log: list[tuple[float, str, int, int]] = []
    lock = threading.Lock()
    _install_request_log(log, lock)
    server = EmulatorServer(root_token=root_token, cluster_id=CLUSTER_ID).start()
    conn.send(server.base_url)
    try:
        while True:
            message = conn.recv()
            if isinstance(message, tuple) and message[0] == "create":
                conn.send([server.create_container(dict(fields)) for fields in message[1]])
            elif isinstance(message, tuple) and message[0] == "api_windows":
                with lock:
                    entries = list(log)
                conn.send(_windows(entries, message[1]))
            else:
                break
    except EOFError:
        pass
    server.stop()


def _windows(entries: list[tuple[float, str, int, int]], bounds: Sequence[float]) -> list[dict[str, list[int]]]:
    """Return, for each interval (bounds[i], bounds[i+1]], route -> [requests, bytes in, bytes out]. Pure."""
    starts = [e[0] for e in entries]
    out = []
    for lo, hi in itertools.pairwise(bounds):
        window: dict[str, list[int]] = {}
        for _, route, size_in, size_out in entries[bisect.bisect_right(starts, lo):bisect.bisect_right(starts, hi)]:
            w = window.setdefault(route, [0, 0, 0])
            w[0] += 1
            w[1] += size_in
            w[2] += size_out
        out.append(window)
    return out


class Emulator:
    """An emulator in a child process (``in_process=False``) or on a thread of this one."""

    def __init__(self, *, in_process: bool) -> None:
        self.root_token = secrets.token_hex(25)
        """The emulator's SystemRootToken: made for this run, never written down."""
        self._server: Any = None
        self._proc: Any = None
        self._conn: Any = None
        if in_process:
            from slurm_dispatch.sandbox.api import EmulatorServer

            self._server = EmulatorServer(root_token=self.root_token, cluster_id=CLUSTER_ID).start()
            self.base_url: str = self._server.base_url
        else:
            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve_emulator, args=(child, self.root_token), name="bench-emulator", daemon=True)
            self._proc.start()
            if not self._conn.poll(60):
                raise RuntimeError("the emulator process did not start")
            self.base_url = self._conn.recv()

    def create(self, fields: Sequence[Mapping[str, Any]]) -> list[Container]:
        """Create containers directly in the child's store (as ``/_sandbox/containers`` would); return them.

        Blocks. Only for an emulator in a child process.
        """
        if self._conn is None:
            raise RuntimeError("create() needs the emulator in a child process")
        views: list[dict[str, Any]] = []
        for i in range(0, len(fields), 1000):
            self._conn.send(("create", [dict(f) for f in fields[i : i + 1000]]))
            views += self._conn.recv()
        return [Container.from_api(v) for v in views]

    def api_windows(self, bounds: Sequence[float]) -> list[dict[str, list[int]]]:
        """Return the API requests answered in each interval (bounds[i], bounds[i+1]] of ``time.monotonic()``:
        route -> [requests, bytes in, bytes out]. Blocks. Only for an emulator in a child process."""
        if self._conn is None:
            raise RuntimeError("api_windows() needs the emulator in a child process")
        self._conn.send(("api_windows", list(bounds)))
        result: list[dict[str, list[int]]] = self._conn.recv()
        return result

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the emulator's process has used so far; None when in this process."""
        if self._proc is None:
            return None
        import psutil

        t = psutil.Process(self._proc.pid).cpu_times()
        return float(t.user + t.system)

    def cpu_note(self) -> str:
        return "in this process" if self._server is not None else f"in process {self._proc.pid}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._proc is not None:
            self._conn.send("stop")
            self._proc.join(30)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(10)


REQUEST_PRIORITY_SHIFT = 50
"""The API's container priority is the request's priority times 2**50 minus the request's creation time in ms
(services/api/db/migrate/20230503224107_priority_update_functions.rb: container_priority)."""


def arvados_priority(request_priority: int, created_ms: int) -> int:
    """Return the container priority the API computes for a request of ``request_priority`` made at
    ``created_ms`` (ms since the epoch): distinct for requests made at different milliseconds. Pure."""
    return (request_priority << REQUEST_PRIORITY_SHIFT) - created_ms


def create_containers(base_url: str, n: int, *, raw_priorities: bool = False) -> list[str]:
    """Create ``n`` Queued containers (1 CPU, 100 MB) in the emulator; return their uuids.

    Their request priorities cycle through 1..10. Each container's priority is what the API computes from its
    request (``arvados_priority``, the i-th made i ms after the first), so no two are equal, as on a real cluster;
    with ``raw_priorities`` it is the request priority itself (1..10, a hundred equal ones in 1000), which only
    tests and emulators give.
    """
    first_ms = int(time.time() * 1000)

    def one(i: int) -> str:
        request = 1 + i % 10
        return str(control.create_container(
            priority=request if raw_priorities else arvados_priority(request, first_ms + i),
            command=["true"],
            runtime_constraints={"ram": 100_000_000, "vcpus": 1},
        )["uuid"])

    control = SandboxControl(base_url)
    try:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, range(n)))
    finally:
        control.close()


def container_fields(n: int, *, state: str, first: int = 0) -> list[dict[str, Any]]:
    """Return the fields of ``n`` containers like ``create_containers``'s (1 CPU, 100 MB, priority 1..10). Pure."""
    return [{"state": state, "priority": 1 + (first + i) % 10, "command": ["true"],
             "runtime_constraints": {"ram": 100_000_000, "vcpus": 1}} for i in range(n)]


def api_stats(base_url: str) -> dict[str, int]:
    control = SandboxControl(base_url)
    try:
        stats: Mapping[str, Any] = control.stats()
        counters = stats.get("requests", stats)
        return {k: int(v) for k, v in counters.items()}
    finally:
        control.close()


def crunch_run_stub() -> str:
    found = Path(sys.executable).with_name("crunch-run-stub")
    return str(found) if found.exists() else (shutil.which("crunch-run-stub") or "crunch-run-stub")


# -- measurement ----------------------------------------------------------------------------------------------


@dataclass
class Cpu:
    """CPU seconds: this process (all threads) and its waited-for children."""

    own: float
    children: float

    @classmethod
    def now(cls) -> Cpu:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.process_time(), kids.ru_utime + kids.ru_stime)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, summed by name without its ``_N``."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid, name in names.items():
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        key = re.sub(r"_\d+$", "", name)
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class CountingSlurm:
    """A SlurmBackend that counts the commands of the one it wraps (and squeue's output bytes); with ``expect``,
    signals the N-th sbatch (``all_submitted``)."""

    def __init__(self, inner: Any, *, expect: int | None = None) -> None:
        self._inner = inner
        self._expect = expect
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.squeue_bytes = 0
        self.job_ids: list[int] = []
        self.first_submit: float | None = None
        self.submit_times: list[float] = []
        self.squeue_times: list[tuple[float, float]] = []
        self.last_change: float = time.monotonic()
        """When the latest command other than squeue started or ended (for "has it settled?")."""
        self.all_submitted = threading.Event()

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1
            self.last_change = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """Return the counters now: commands by kind, squeue bytes (of finished runs), finished squeue runs, and
        squeue runs started since ``last_change``."""
        with self._lock:
            since = sum(1 for t0, _ in self.squeue_times if t0 > self.last_change)
            return {"counts": dict(self.counts), "squeue_bytes": self.squeue_bytes, "quiet_polls": since,
                    "last_change": self.last_change, "squeue_done": len(self.squeue_times)}

    def squeue_starts(self) -> list[float]:
        """Return when each finished squeue run started (``time.monotonic()``)."""
        with self._lock:
            return [t0 for t0, _ in self.squeue_times]

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        with self._lock:
            self.last_change = time.monotonic()
        job_id: int | None = self._inner.submit(args=args, script=script, env=env)
        with self._lock:
            self.counts["sbatch"] += 1
            now = time.monotonic()
            self.last_change = now
            self.submit_times.append(now)
            if self.first_submit is None:
                self.first_submit = now
            if job_id is not None:
                self.job_ids.append(job_id)
            if self._expect is not None and self.counts["sbatch"] >= self._expect:
                self.all_submitted.set()
        return job_id

    def cancel(self, name: str) -> None:
        self._count("scancel")
        self._inner.cancel(name)

    def queue(self) -> str:
        with self._lock:
            self.counts["squeue"] += 1
        t0 = time.monotonic()
        out = ""
        try:
            out = str(self._inner.queue())
            return out
        finally:
            with self._lock:
                self.squeue_times.append((t0, time.monotonic()))
                self.squeue_bytes += len(out)  # characters: bytes for the ASCII names here, and cheap to count

    def renice(self, name: str, nice: int) -> None:
        self._count("scontrol renice")
        with self._lock:
            self.counts["reniced jobs"] += 1
        self._inner.renice(name, nice)

    def release(self, name: str) -> None:
        self._count("scontrol release")
        self._inner.release(name)

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        self._count("scancel")
        self._inner.cancel_jobs(job_ids, running=running, cluster=cluster)

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        self._count("scontrol renice")
        with self._lock:
            self.counts["reniced jobs"] += len(job_ids)
        self._inner.renice_jobs(job_ids, nice, cluster=cluster)


def sum_windows(windows: Iterable[Mapping[str, Sequence[int]]]) -> dict[str, list[int]]:
    """Add up ``Emulator.api_windows`` intervals: route -> [requests, bytes in, bytes out]. Pure."""
    total: dict[str, list[int]] = {}
    for window in windows:
        for route, values in window.items():
            t = total.setdefault(route, [0, 0, 0])
            for i, v in enumerate(values):
                t[i] += v
    return total
