"""The fault suite's Slurm side: a private test cluster it may break, and a watcher that sees every job.

``PrivateCluster`` is a cluster of the project's own kind (contrib/slurm/start-test-cluster.sh DIR) in a
directory, with ports, pid files and logs of its own, so stopping its slurmctld or one of its slurmd never
disturbs the session cluster other tests share. Its daemons are stopped and started by their pid files; the
job steps a stopped slurmd leaves behind are found by the log file they hold open (``DIR/slurmd-<node>.log``),
never by name.

``SlurmWatcher`` polls ``squeue --states=all`` in a thread of its own and keeps, for every job it has seen, its
name, states, nice values and nodes: what the invariants are checked against. It notes at once any snapshot in
which two live jobs share a name.

Plain Python (no pytest): the soak script (benchmarks/soak_faults.py) uses it too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import psutil
from fault.fault_invariants import LIVE_STATES
from plugins.waiting import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
START = REPO / "contrib" / "slurm" / "start-test-cluster.sh"
STOP = REPO / "contrib" / "slurm" / "stop-test-cluster.sh"

WATCH_FORMAT = "%i|%T|%y|%N|%V|%e|%j"
"""id, state, nice, nodes, submit time, end time, then the name last (so a name holding the separator parses)."""

T = TypeVar("T")


FaultTimeout = WaitTimeout
"""A condition the fault suite waited for did not come within its deadline (the tests' one ``WaitTimeout``)."""


def wait_for(predicate: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Return the first truthy value of ``predicate()``, polling every ``every`` s (``plugins.waiting.wait_until``,
    at the fault suite's faster default rate). Blocks.

    Raises:
        FaultTimeout: ``timeout`` seconds passed first.
    """
    value: T = wait_until(predicate, timeout=timeout, what=what, every=every)
    return value


def _pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


def _kill_and_wait(pids: Iterable[int], sig: signal.Signals, *, timeout: float) -> list[int]:
    """Send ``sig`` to each pid; return those still alive after ``timeout`` s. Blocks."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive]


@dataclass
class PrivateCluster:
    """A Slurm test cluster of the fault suite's own, in ``conf_dir``."""

    conf_dir: Path
    nodes: tuple[str, ...] = ("c1", "c2")

    @property
    def conf(self) -> Path:
        """Its slurm.conf."""
        return self.conf_dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a Slurm command aimed at this cluster."""
        return {"SLURM_CONF": str(self.conf), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

    @property
    def ctld_log(self) -> Path:
        """slurmctld's log file (it logs every RPC that changes a job)."""
        return self.conf_dir / "slurmctld.log"

    @classmethod
    def start(cls, conf_dir: Path) -> PrivateCluster:
        """Start (or reuse) the cluster in ``conf_dir``; blocks until its nodes are up.

        Raises:
            RuntimeError: the start script failed; its stderr is the message.
        """
        result = subprocess.run([str(START), str(conf_dir)], capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{START} {conf_dir} failed:\n{result.stderr.strip()}")
        return cls(conf_dir=conf_dir.resolve())

    def stop(self) -> None:
        """Stop every daemon of this cluster and what its jobs left running. Blocks."""
        subprocess.run([str(STOP), str(self.conf_dir)], capture_output=True, text=True, timeout=180, check=False)

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command against this cluster; blocks until it exits (or ``timeout``)."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)

    def answers(self) -> bool:
        """Return True if slurmctld answers a squeue now. Blocks for one squeue."""
        try:
            return self.run(["squeue", "--noheader", "--format=%i"], timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # -- slurmctld ------------------------------------------------------------------------------------

    def ctld_pid(self) -> int | None:
        """slurmctld's pid (from its pid file), or None when it is not running."""
        return _pid_from(self.conf_dir / "slurmctld.pid")

    def stop_slurmctld(self) -> None:
        """Stop slurmctld by its pid file (SIGTERM, then SIGKILL after 30 s). Blocks until it is gone."""
        pid = self.ctld_pid()
        if pid is None:
            return
        if _kill_and_wait([pid], signal.SIGTERM, timeout=30):
            _kill_and_wait([pid], signal.SIGKILL, timeout=10)

    def start_slurmctld(self, *, timeout: float = 60) -> None:
        """Start slurmctld from this cluster's config; blocks until squeue answers.

        Raises:
            RuntimeError: slurmctld did not start.
            FaultTimeout: it started but did not answer within ``timeout``.
        """
        result = self.run(["slurmctld", "-f", str(self.conf)], timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"slurmctld did not start: {result.stderr.strip()[-500:]}")
        wait_for(self.answers, timeout=timeout, what="slurmctld to answer after its restart", every=0.2)

    # -- nodes ------------------------------------------------------------------------------------------

    def slurmd_pid(self, node: str) -> int | None:
        """The pid of ``node``'s slurmd, or None when it is not running."""
        return _pid_from(self.conf_dir / f"slurmd-{node}.pid")

    def step_daemons(self, node: str) -> list[int]:
        """The pids of the slurmstepd processes of ``node``: those holding its slurmd log open."""
        log = str(self.conf_dir / f"slurmd-{node}.log")
        found = []
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "slurmstepd":
                continue
            try:
                if any(f.path == log for f in proc.open_files()):
                    found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    def stop_node(self, node: str) -> list[int]:
        """Stop ``node`` as a crashed machine would: SIGTERM its slurmd (pid file), then SIGKILL the job steps
        it left (slurmstepd, found by its log file) and everything they started. Blocks until all are gone.

        Returns:
            The pids killed besides slurmd.
        """
        pid = self.slurmd_pid(node)
        if pid is not None and _kill_and_wait([pid], signal.SIGTERM, timeout=20):
            _kill_and_wait([pid], signal.SIGKILL, timeout=10)
        victims: list[int] = []
        for stepd in self.step_daemons(node):
            try:
                victims += [stepd, *(c.pid for c in psutil.Process(stepd).children(recursive=True))]
            except psutil.NoSuchProcess:
                pass
        left = _kill_and_wait(victims, signal.SIGKILL, timeout=10)
        if left:
            raise RuntimeError(f"processes of node {node} survived SIGKILL: {left}")
        return victims

    def node_state(self, node: str) -> str:
        """The node's state as sinfo prints it (``idle``, ``mix``, ``down*``...; "" when sinfo failed)."""
        out = self.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%t"]).stdout.split()
        return out[0] if out else ""

    def restart_nodes(self) -> None:
        """Start the slurmd that are not running and resume DOWN nodes (the start script does both). Blocks.

        Raises:
            RuntimeError: the start script failed.
        """
        PrivateCluster.start(self.conf_dir)

    # -- jobs -------------------------------------------------------------------------------------------

    def submit(self, *args: str) -> str:
        """sbatch a job with ``args`` (the test's own, not the dispatcher's); return its id.

        Raises:
            RuntimeError: sbatch failed.
        """
        result = self.run(["sbatch", "--parsable", *args])
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip().split(";")[0]

    def cancel(self, job_ids: Iterable[str]) -> None:
        """scancel these jobs (the test cleaning up after itself). Blocks."""
        ids = sorted(set(job_ids))
        for i in range(0, len(ids), 200):
            self.run(["scancel", *ids[i:i + 200]])

    def log_offset(self) -> int:
        """The current size of slurmctld's log (read what comes after it with ``ctld_log_since``)."""
        try:
            return self.ctld_log.stat().st_size
        except OSError:
            return 0

    def ctld_log_since(self, offset: int) -> str:
        """slurmctld's log from byte ``offset`` on."""
        with self.ctld_log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


_JOB_RPC_RE = re.compile(r"(REQUEST_KILL_JOB|_slurm_rpc_update_job: complete|_update_job: \w[^\n]*for) JobId=(\d+)")


def jobs_changed_in_log(text: str) -> dict[str, list[str]]:
    """Return, by job id, the lines of slurmctld's log where someone cancelled or updated that job. Pure.

    slurmctld logs ``_slurm_rpc_kill_job: REQUEST_KILL_JOB JobId=N`` for every scancel, and
    ``_slurm_rpc_update_job: complete JobId=N`` for every ``scontrol update`` (renice, release, hold).
    """
    changed: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _JOB_RPC_RE.search(line)
        if m:
            changed.setdefault(m.group(2), []).append(line.strip())
    return changed


@dataclass
class JobRecord:
    """Everything the watcher saw of one Slurm job."""

    job_id: str
    name: str
    states: list[str] = field(default_factory=list)
    """Each state the job was seen in, in order, without repeats."""
    nices: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    submitted: str = ""
    """Slurm's submit time (ISO, to the second)."""
    ended: str = ""
    """Slurm's end time once the job has ended ("" while it lives)."""
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def state(self) -> str:
        """The latest state seen."""
        return self.states[-1]

    @property
    def live(self) -> bool:
        """True if the latest state seen is a live one."""
        return self.state in LIVE_STATES


class JobLine(NamedTuple):
    """One job in one squeue poll."""

    name: str
    state: str
    nice: str
    nodes: str
    submitted: str
    ended: str

    @property
    def live(self) -> bool:
        """True in a live state."""
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class Snapshot:
    """One successful ``squeue --states=all`` poll: its jobs by id."""

    at: float
    jobs: dict[str, JobLine]

    def live_by_name(self) -> dict[str, list[str]]:
        """Job ids of live jobs, by name."""
        out: dict[str, list[str]] = {}
        for job_id, job in self.jobs.items():
            if job.live:
                out.setdefault(job.name, []).append(job_id)
        return out

    def live_names(self) -> set[str]:
        """Names of live jobs."""
        return {job.name for job in self.jobs.values() if job.live}

    def live_states(self) -> dict[str, str]:
        """The state of each live job, by name (one of them when a name has several)."""
        return {job.name: job.state for job in self.jobs.values() if job.live}


def parse_watch_output(text: str, *, at: float) -> Snapshot:
    """Parse ``squeue --noheader --format=WATCH_FORMAT`` output. Pure; lines that do not parse are skipped."""
    jobs = {}
    for line in text.splitlines():
        parts = line.split("|", 6)
        if len(parts) == 7 and parts[0].strip():
            job_id, state, nice, nodes, submitted, ended, name = (p.strip() for p in parts)
            jobs[job_id] = JobLine(name, state, nice, nodes, submitted, "" if ended in ("NONE", "Unknown") else ended)
    return Snapshot(at=at, jobs=jobs)


class SlurmWatcher:
    """Polls ``squeue --all --states=all`` every ``interval`` s in a daemon thread and remembers every job.

    Thread-safe: ``refresh`` (a poll now, from the caller's thread) and the accessors may be called while the
    thread runs.
    """

    def __init__(self, cluster: PrivateCluster, *, interval: float = 0.25) -> None:
        self.cluster = cluster
        self.interval = interval
        self.jobs: dict[str, JobRecord] = {}
        self.double_jobs: list[tuple[str, str]] = []
        """(name, what was seen) for each snapshot in which two live jobs had the same name."""
        self.polls = 0
        self.failed_polls = 0
        self._latest: Snapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SlurmWatcher:
        """Start polling in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._main, name="slurm-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling; blocks until the thread has ended (at most one squeue)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(40)

    def _main(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def refresh(self) -> Snapshot | None:
        """Poll squeue now and record what it shows; return the snapshot (None if squeue failed). Blocks."""
        argv = ["squeue", "--all", "--noheader", "--states=all", f"--format={WATCH_FORMAT}"]
        try:
            result = self.cluster.run(argv, timeout=30)
        except subprocess.TimeoutExpired:
            result = None
        now = time.time()
        with self._lock:
            self.polls += 1
            if result is None or result.returncode != 0:
                self.failed_polls += 1
                return None
            snap = parse_watch_output(result.stdout, at=now)
            self._record(snap)
            if self._latest is None or snap.at >= self._latest.at:
                self._latest = snap
            return snap

    def _record(self, snap: Snapshot) -> None:
        for job_id, job in snap.jobs.items():
            rec = self.jobs.get(job_id)
            if rec is None:
                rec = self.jobs[job_id] = JobRecord(job_id, job.name, first_seen=snap.at, submitted=job.submitted)
            if not rec.states or rec.states[-1] != job.state:
                rec.states.append(job.state)
            rec.nices.add(job.nice)
            if job.nodes and not job.nodes.startswith("("):
                rec.nodes.add(job.nodes)
            if not job.live and job.ended:
                rec.ended = job.ended
            rec.last_seen = snap.at
        for name, ids in snap.live_by_name().items():
            if len(ids) > 1:
                when = time.strftime("%H:%M:%S", time.localtime(snap.at))
                self.double_jobs.append((name, f"{when}: {len(ids)} live jobs named {name}: {', '.join(sorted(ids))}"))

    def latest(self) -> Snapshot | None:
        """The newest successful snapshot."""
        with self._lock:
            return self._latest

    def fresh(self, *, timeout: float = 60) -> Snapshot:
        """A snapshot taken after this call (polled here). Blocks.

        Raises:
            FaultTimeout: squeue kept failing for ``timeout`` s.
        """
        return wait_for(self.refresh, timeout=timeout, what="a successful squeue", every=0.2)

    def jobs_named(self, name: str) -> list[JobRecord]:
        """Every job seen with this name, oldest first."""
        with self._lock:
            return sorted((r for r in self.jobs.values() if r.name == name), key=lambda r: int(r.job_id))

    def by_name(self) -> dict[str, list[JobRecord]]:
        """Every job seen, by name."""
        out: dict[str, list[JobRecord]] = {}
        with self._lock:
            for rec in self.jobs.values():
                out.setdefault(rec.name, []).append(rec)
        return out

    def record(self, job_id: str) -> JobRecord | None:
        """What was seen of one job."""
        with self._lock:
            return self.jobs.get(job_id)


@dataclass
class ForeignJobs:
    """Jobs the test submits under names that are not ours, to show the dispatcher never touches them.

    ``expected`` maps each job id to the state it must keep; nice values must not change either.
    """

    expected: dict[str, str]
    names: dict[str, str]
    nices: dict[str, str] = field(default_factory=dict)

    @classmethod
    def submit(cls, cluster: PrivateCluster, *, out_dir: Path, node: str) -> ForeignJobs:
        """Submit them: three held (pending for ever), one running a long sleep on ``node``. Blocks.

        Raises:
            RuntimeError: sbatch failed.
        """
        common = ["--mem=10M", "--cpus-per-task=1", f"--output={out_dir}/foreign-%j.out"]
        held: dict[str, list[str]] = {
            # another user's job
            "foreign-held": [],
            # named like a container of another cluster
            "yyyyy-dz642-0123456789abcde": [],
            # named like a container of OUR cluster that the API does not know
            "zzzzz-dz642-nosuchcontainer": [],
        }
        expected, names = {}, {}
        for name in held:
            job_id = cluster.submit("--hold", f"--job-name={name}", *common, "--wrap=sleep 100000")
            expected[job_id], names[job_id] = "PENDING", name
        job_id = cluster.submit(f"--nodelist={node}", "--job-name=foreign-running", *common, "--wrap=sleep 100000")
        expected[job_id], names[job_id] = "RUNNING", "foreign-running"
        jobs = cls(expected=expected, names=names)
        wait_for(lambda: jobs.states(cluster) == expected, timeout=60, what="the foreign jobs to settle")
        jobs.nices = jobs.nice_values(cluster)
        return jobs

    def _query(self, cluster: PrivateCluster, fmt: str) -> dict[str, str]:
        out = cluster.run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(self.expected)}",
                           f"--format=%i|{fmt}"]).stdout
        return dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)

    def states(self, cluster: PrivateCluster) -> dict[str, str]:
        """Their states now, by id. Blocks on one squeue."""
        return self._query(cluster, "%T")

    def nice_values(self, cluster: PrivateCluster) -> dict[str, str]:
        """Their nice values now, by id. Blocks on one squeue."""
        return self._query(cluster, "%y")

    def problems(self, cluster: PrivateCluster, *, ctld_log_text: str) -> list[str]:
        """Return how they were touched (empty: untouched): state, nice, or a cancel/update RPC in slurmctld's
        log (``ctld_log_text``: the log since they were submitted). Blocks on two squeues."""
        out = []
        states, nices = self.states(cluster), self.nice_values(cluster)
        for job_id, want in self.expected.items():
            name = self.names[job_id]
            if states.get(job_id) != want:
                out.append(f"foreign job {job_id} ({name}) is {states.get(job_id, 'gone')}, not {want}")
            if nices.get(job_id) != self.nices.get(job_id):
                out.append(f"foreign job {job_id} ({name}) nice {self.nices.get(job_id)} -> {nices.get(job_id)}")
        changed = jobs_changed_in_log(ctld_log_text)
        for job_id in self.expected:
            for line in changed.get(job_id, []):
                out.append(f"foreign job {job_id} ({self.names[job_id]}) touched: {line}")
        return out
