"""Shared-site benchmark (issue 14): slurmctld's time for our RPCs, the service against the Go dispatcher's pattern.

Run: ``.venv/bin/python benchmarks/bench_shared_site.py [--containers 1000] [--foreign 3000] [--burst 1000]
[--poll-interval 10] [--window 60] [--burst-window 120] [--service-user USER] [--json out.json]``

A site where the dispatcher's jobs share slurmctld with other users' pending jobs. Two fresh private test
clusters, set up alike one after the other (only one runs at a time):

- ``--containers`` N containers Locked by the service's token in the API emulator (one emulator for both
  sides), each with a pending job (``--begin=now+3600``), submitted one at a time in the order the service and
  Go both want them (want descending, name descending); and ``--foreign`` held jobs of other users (``sbatch
  --uid=nobody|daemon|bin|sys --hold``, as root), never touched by either side.
- Side A, the service (``service_proc.py``: ``DispatchLoop`` as ``slurm-dispatch run`` wires it). The jobs go
  in with the template's ``--nice=10000``; at N ≥ 112 the service's renice pass then only moves the top job.
  With ``--service-user USER`` its jobs belong to USER (``--uid`` added to its sbatch arguments, for the jobs
  set up here and those it submits) and its ``SlurmCLI`` gets USER's uid as ``own_uid``: slurmctld then gets
  exactly the requests of a service running as USER (the shipped unit runs as ``crunch``), ``squeue --user``
  among them, though the process is root's (the benchmark needs root). Without it, root's jobs and a root
  service, whose squeue reads every user's jobs as Go's does.
- Side B, the Go dispatcher's pattern (services/crunch-dispatch-slurm: ``squeue.go: SqueueChecker`` and
  ``slurm.go: slurmCLI``): its exact squeue (``squeue --all --noheader --format=%j %y %Q %T %r``) once per
  PollInterval on a ticker that drops missed ticks (Go's ``time.Ticker``), each followed by its renice pass
  (``squeue.go: SqueueChecker.reniceAll``: our jobs with a known want and Slurm priority above 20000, sorted by
  want then name descending, nice values from ``wantNice``, one ``scontrol update JobName=<uuid> Nice=<n>`` per
  changed value, in order), with sbatch, scancel and scontrol sharing three slots (``SlurmCLI``'s cap, as Go's
  semaphore). The jobs go in with ``--nice=9·i`` for the i-th, the values Go's ``wantNice`` gives this order,
  so Go starts at its own steady state instead of renicing every job first.

Measured on each side, with ``sdiag`` (``sdiag.py``: reset, then read; client commands' RPCs only):

1. Steady state: ``--window`` seconds of polls after the side has settled (no renice in its last pass).
2. A burst: ``--burst`` containers appear Queued in the emulator at once. The service locks and submits them
   itself. The Go pattern submits each after the first squeue poll that starts after the burst (as if Go had
   locked them all at once: in Go a container waits for its lock at the next dispatch tick, then for the
   next squeue; so this is the earliest Go would submit), three sbatch at a time, and renices at its polls.
   The window runs from the burst to ``--burst-window`` seconds later, or to when the side has settled (every
   job submitted and a renice pass with nothing to do) if that is later; the same length for both when both
   settle within it.

Printed: slurmctld's milliseconds per minute for our RPCs on each side and their ratio (issue 14's targets:
≤ 1.0 at steady state, ≤ 1.5 during the burst), and the RPCs and commands behind them. Must run as root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pwd
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sdiag
from bench_service import in_wanted_order, service_settings
from benchlib import (
    FOREIGN_USERS,
    Cluster,
    Emulator,
    container_fields,
    ensure_cluster,
    stop_cluster,
    submit_foreign,
    submit_jobs,
)
from sdiag import SdiagError, SdiagReading
from service_proc import ServiceProcess, measure_idle

from slurm_dispatch.errors import SlurmCommandError
from slurm_dispatch.model import Container
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.priority import container_want
from slurm_dispatch.slurm.sbatch import slurm_command_env

GO_SQUEUE_ARGV = ("squeue", "--all", "--noheader", "--format=%j %y %Q %T %r")
"""The Go dispatcher's squeue (services/crunch-dispatch-slurm/slurm.go: slurmCLI.QueueCommand)."""
SLURM15_NICE_LIMIT = 10000
"""Go's renice pass skips jobs whose Slurm priority is at most twice this (held jobs on Slurm 15)."""
GO_SPREAD = 10
"""PrioritySpread below 1 means 10 in Go; the service's default is the same."""


# -- the Go dispatcher's pattern ---------------------------------------------------------------------------------


class NicedJob(Protocol):
    @property
    def slurm_priority(self) -> int: ...

    @property
    def nice(self) -> int: ...


def go_want_nice(jobs: Sequence[NicedJob], spread: int) -> list[int]:
    """Return the nice values Go's wantNice gives ``jobs`` (in the wanted order). Pure.

    Copied from this project's tests/unit/test_want_nice.py (``go_want_nice``), its faithful port of
    services/crunch-dispatch-slurm/priority.go: wantNice, kept there as the reference the service's own
    ``want_nice`` is measured against.
    """
    if not jobs:
        return []
    if spread < 1:
        spread = 10
    renice = [0] * len(jobs)
    target = 0
    for i, job in enumerate(jobs):
        if i == 0:
            target = job.slurm_priority + job.nice
        elif 0 <= target - job.slurm_priority < (spread - 1) * 10:
            renice[i] = job.nice
            target = job.slurm_priority
        else:
            target -= spread - 1
            possible = job.slurm_priority + job.nice
            if target > possible:
                target = possible
            else:
                renice[i] = possible - target
        target -= 1
    return renice


@dataclass(frozen=True)
class GoJob:
    """One line of Go's squeue: name, nice, priority (nice applied), state."""

    name: str
    nice: int
    slurm_priority: int
    state: str


def parse_go_squeue(text: str) -> list[GoJob]:
    """Return the jobs of Go's squeue output, read as Go reads it (white-space separated, first five tokens;
    shorter or non-numeric lines skipped). Pure."""
    jobs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        try:
            jobs.append(GoJob(parts[0], int(parts[1]), int(parts[2]), parts[3]))
        except ValueError:
            continue
    return jobs


@dataclass
class GoPass:
    started: float
    renices: int


class GoPattern:
    """What the Go dispatcher runs in Slurm, on a thread of this process: squeue per tick, renice pass, sbatch."""

    def __init__(self, *, cluster: Cluster, settings: Settings, wants: Mapping[str, int], poll_interval: float) -> None:
        self._settings = settings
        self._env = {**slurm_command_env(settings, cluster.env), "LC_ALL": "C"}
        self._cli = SlurmCLI(env=slurm_command_env(settings, cluster.env))
        self._interval = poll_interval
        self._wants = dict(wants)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: list[Container] = []
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="go-sbatch")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="go-squeue", daemon=True)
        self.counts: Counter[str] = Counter()
        self.passes: list[GoPass] = []
        self.polls_done = 0
        self.last_submit: float = 0.0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(600)
        self._pool.shutdown(wait=True)

    def add_burst(self, containers: Sequence[Container]) -> None:
        """Containers Go would have locked now: submitted after the next poll that starts from now on."""
        with self._lock:
            for c in containers:
                self._wants[c.uuid] = container_want(c)
            self._pending += containers

    def wait_polls(self, count: int, *, timeout: float) -> None:
        """Block until ``count`` more polls (each with its renice pass) have finished.

        Raises:
            RuntimeError: the pattern failed, or the polls did not come in time.
        """
        with self._cond:
            goal = self.polls_done + count
            if not self._cond.wait_for(lambda: self.polls_done >= goal or self.error is not None, timeout):
                raise RuntimeError(f"the Go pattern made {count - goal + self.polls_done} of {count} polls in {timeout:g} s")
            if self.error is not None:
                raise RuntimeError(f"the Go pattern failed: {self.error!r}")

    def settled_since(self, t: float, *, submitted: int) -> float | None:
        """Return when a renice pass that started after ``t`` and after the last sbatch had nothing to do, with
        ``submitted`` sbatch done; None if none has yet."""
        with self._lock:
            if self.counts["sbatch"] < submitted:
                return None
            for p in self.passes:
                if p.started > max(t, self.last_submit) and p.renices == 0:
                    return p.started
        return None

    def _run(self) -> None:
        grid0 = time.monotonic()
        k = 0
        try:
            while not self._stop.is_set():
                self._poll_once()
                k += 1
                now = time.monotonic()
                if grid0 + k * self._interval < now:
                    # ticks came while this one ran: Go's ticker keeps one waiting (so the next poll is at once)
                    # and drops the rest
                    k = math.floor((now - grid0) / self._interval)
                    continue
                self._stop.wait(grid0 + k * self._interval - now)
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting caller
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def _poll_once(self) -> None:
        started = time.monotonic()
        proc = subprocess.run(list(GO_SQUEUE_ARGV), env=self._env, capture_output=True, text=True, timeout=60,
                              check=False)
        with self._lock:
            self.counts["squeue"] += 1
            burst, self._pending = self._pending, []
        if proc.returncode != 0:  # Go: keep the previous snapshot, wake nobody
            return
        for container in burst:
            self._pool.submit(self._sbatch, container)
        renices = self._renice_all(parse_go_squeue(proc.stdout))
        with self._cond:
            self.passes.append(GoPass(started, renices))
            self.polls_done += 1
            self._cond.notify_all()

    def _sbatch(self, container: Container) -> None:
        job = job_for(container, self._settings)
        try:
            self._cli.submit(args=job.args, script=job.script, env=job.env)
        except SlurmCommandError:
            with self._lock:
                self.counts["sbatch failed"] += 1
        finally:
            with self._lock:
                self.counts["sbatch"] += 1
                self.last_submit = time.monotonic()

    def _renice_all(self, jobs: Sequence[GoJob]) -> int:
        with self._lock:
            wants = dict(self._wants)
        ours = [j for j in jobs if wants.get(j.name, 0) != 0 and j.slurm_priority > 2 * SLURM15_NICE_LIMIT]
        ours.sort(key=lambda j: j.name, reverse=True)
        ours.sort(key=lambda j: wants[j.name], reverse=True)
        count = 0
        for job, nice in zip(ours, go_want_nice(ours, GO_SPREAD), strict=True):
            if nice == job.nice:
                continue
            count += 1
            with self._lock:
                self.counts["scontrol renice"] += 1
            try:
                self._cli.renice(job.name, nice)
            except SlurmCommandError:
                pass  # Go logs and goes on
        return count


# -- one side's measurements ---------------------------------------------------------------------------------


@dataclass
class Window:
    """slurmctld's time for our RPCs over one window, and what the side ran meanwhile."""

    seconds: float
    reading: SdiagReading
    commands: dict[str, int]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return self.reading.client_total_us() / 1000

    @property
    def ms_per_minute(self) -> float:
        return self.ms / self.seconds * 60

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "ms": self.ms, "ms_per_minute": self.ms_per_minute,
                "commands": self.commands, "notes": self.notes,
                "rpcs": {k: [s.count, s.total_us] for k, s in self.reading.client_rpcs().items()},
                "by_user": {k: [s.count, s.total_us] for k, s in self.reading.by_user.items()}}


def setup_cluster(label: str, settings: Settings, ordered: Sequence[Container], foreign: int, work: Path, *,
                  nice: Any = None) -> tuple[Cluster, Path]:
    """Start a fresh private cluster with our jobs (in this order) and the foreign ones. Blocks."""
    conf_dir = Path(tempfile.mkdtemp(prefix=f"bench-site-{label}-slurm-"))
    cluster = ensure_cluster(conf_dir)
    try:
        t0 = time.monotonic()
        side = work / label
        side.mkdir()
        submit_jobs(cluster, settings, ordered, side, parallel=1, nice=nice)
        t1 = time.monotonic()
        submit_foreign(cluster, foreign, side)
        print(f"  {label}: {len(ordered)} jobs of ours {t1 - t0:.0f} s, {foreign} foreign held jobs "
              f"{time.monotonic() - t1:.0f} s", file=sys.stderr)
    except BaseException:
        stop_cluster(conf_dir, remove=True)
        raise
    return cluster, conf_dir


def diff_counts(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def run_service_side(args: argparse.Namespace, emulator: Emulator, settings: Settings,
                     ordered: Sequence[Container], work: Path) -> tuple[Window, Window, list[Container]]:
    """Side A: settle, steady window, burst window. Returns both windows and the burst's containers. Blocks."""
    own_uid = None
    if args.service_user:  # its jobs (those set up here and those it submits) belong to that user
        own_uid = pwd.getpwnam(args.service_user).pw_uid
        settings = dataclasses.replace(settings, sbatch_arguments=(*settings.sbatch_arguments, f"--uid={own_uid}"))
    cluster, conf_dir = setup_cluster("service", settings, ordered, args.foreign, work)
    service = ServiceProcess(settings, cluster.env, work / "service.log", own_uid=own_uid)
    try:
        service.start()
        settle = service.wait_settled(tracked=len(ordered), timeout=300 + len(ordered) * 0.1)
        print(f"  service: settled in {settle:.0f} s ({service.slurm()['counts']})", file=sys.stderr)
        ticks = max(1, round(args.window / args.poll_interval))
        idle = measure_idle(service, cluster, emulator, ticks, args.poll_interval)
        commands: Counter[str] = Counter()
        for delta in idle.deltas:
            commands.update(delta["slurm"])
        steady = Window(idle.sdiag_seconds, idle.sdiag, dict(commands))

        snap0 = service.slurm()
        sdiag.reset(cluster.env)
        t0 = time.monotonic()
        burst = emulator.create(container_fields(args.burst, state="Queued", first=len(ordered)))
        submitted_at = settled_at = None
        while True:
            time.sleep(0.5)
            snap = service.slurm()
            now = time.monotonic()
            done = snap["counts"].get("sbatch", 0) - snap0["counts"].get("sbatch", 0)
            if submitted_at is None and done >= args.burst:
                submitted_at = now
            if submitted_at is not None and settled_at is None and snap["last_change"] >= t0 \
                    and snap["quiet_polls"] >= 3:
                settled_at = now
            if settled_at is not None and now >= t0 + args.burst_window:
                break
            if now - t0 > args.burst_window + 1800:
                raise RuntimeError(f"the service's burst did not settle: {done} of {args.burst} submitted")
        reading = sdiag.read(cluster.env)
        window = Window(time.monotonic() - t0, reading, diff_counts(service.slurm()["counts"], snap0["counts"]),
                        {"last_sbatch_s": submitted_at - t0 if submitted_at else None,
                         "settled_s": settled_at - t0 if settled_at else None})
        return steady, window, burst
    finally:
        try:
            service.stop()
        finally:
            stop_cluster(conf_dir, remove=True)


def run_go_side(args: argparse.Namespace, settings: Settings, ordered: Sequence[Container],
                burst: Sequence[Container], work: Path) -> tuple[Window, Window]:
    """Side B: the Go pattern, settled, steady window, the same burst. Blocks."""
    cluster, conf_dir = setup_cluster("go", settings, ordered, args.foreign, work, nice=lambda i: 9 * i)
    go = GoPattern(cluster=cluster, settings=settings, wants={c.uuid: container_want(c) for c in ordered},
                   poll_interval=args.poll_interval)
    try:
        go.start()
        t_start = time.monotonic()
        while go.settled_since(t_start, submitted=0) is None:
            go.wait_polls(1, timeout=600)
            if time.monotonic() - t_start > 1800:
                raise RuntimeError("the Go pattern did not settle in 30 minutes")
        print(f"  go: settled in {time.monotonic() - t_start:.0f} s ({dict(go.counts)})", file=sys.stderr)
        ticks = max(1, round(args.window / args.poll_interval))
        go.wait_polls(1, timeout=600)
        before = Counter(go.counts)
        sdiag.reset(cluster.env)
        t0 = time.monotonic()
        go.wait_polls(ticks, timeout=ticks * args.poll_interval + 600)
        steady = Window(time.monotonic() - t0, sdiag.read(cluster.env), diff_counts(go.counts, before))

        before = Counter(go.counts)
        sdiag.reset(cluster.env)
        t0 = time.monotonic()
        go.add_burst(burst)
        settled_at = None
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            if settled_at is None:
                settled = go.settled_since(t0, submitted=before["sbatch"] + len(burst))
                settled_at = settled
            if settled_at is not None and now >= t0 + args.burst_window:
                break
            if now - t0 > args.burst_window + 1800:
                raise RuntimeError(f"the Go pattern's burst did not settle ({dict(go.counts)})")
        reading = sdiag.read(cluster.env)
        burst_window = Window(time.monotonic() - t0, reading, diff_counts(go.counts, before),
                              {"last_sbatch_s": go.last_submit - t0, "settled_s": settled_at - t0})
        return steady, burst_window
    finally:
        go.stop()
        stop_cluster(conf_dir, remove=True)


def report(sides: Mapping[str, Window], label: str, target: float) -> dict[str, Any]:
    ours, go = sides["service"], sides["go"]
    ratio = ours.ms_per_minute / go.ms_per_minute if go.ms_per_minute else float("inf")
    verdict = "met" if ratio <= target else "MISSED"
    print(f"{label}: slurmctld ms per minute for our RPCs: service {ours.ms_per_minute:.1f} "
          f"({ours.ms:.1f} ms in {ours.seconds:.1f} s), Go pattern {go.ms_per_minute:.1f} "
          f"({go.ms:.1f} ms in {go.seconds:.1f} s): ratio {ratio:.2f} (target ≤ {target:g}: {verdict})")
    for name, w in sides.items():
        rpcs = {k: f"{s.count}×{s.ave_us / 1000:.2f} ms" for k, s in
                sorted(w.reading.client_rpcs().items(), key=lambda kv: -kv[1].total_us)}
        print(f"  {name:<8} commands {w.commands}{' ' + str(w.notes) if w.notes else ''}; RPCs {rpcs}")
    return {"ratio": ratio, "target": target, **{k: w.as_dict() for k, w in sides.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=1000, help="our Locked containers with pending jobs")
    parser.add_argument("--foreign", type=int, default=3000, help="other users' held jobs")
    parser.add_argument("--burst", type=int, default=1000, help="containers queued at once for the burst")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="PollInterval, both sides (default 10)")
    parser.add_argument("--window", type=float, default=60.0, help="steady-state window in seconds (default 60)")
    parser.add_argument("--burst-window", type=float, default=120.0,
                        help="burst window in seconds, longer if a side has not settled by then (default 120)")
    parser.add_argument("--service-user", default=None, metavar="USER",
                        help="the service's jobs belong to USER (sbatch --uid), and it reads squeue as a service "
                             "running as USER does (squeue --user once no other user's job is named like a "
                             "container); default: root's, as the Go dispatcher's")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    for name in ("containers", "foreign", "burst"):
        if not 0 <= getattr(args, name) <= 20_000:
            parser.error(f"--{name} must be from 0 to 20000")
    if args.containers < 1 or args.poll_interval <= 0 or args.window < args.poll_interval:
        parser.error("need --containers ≥ 1, --poll-interval > 0 and --window ≥ --poll-interval")
    if os.geteuid() != 0:
        parser.error("run as root: the test cluster, sbatch --uid and sdiag -r need it")
    if args.service_user is not None:
        if args.service_user in (*FOREIGN_USERS, "root"):
            parser.error(f"--service-user must be none of root and the foreign jobs' users {', '.join(FOREIGN_USERS)}")
        try:
            pwd.getpwnam(args.service_user)
        except KeyError:
            parser.error(f"--service-user: no user {args.service_user!r} here")
    print(f"shared site: {args.containers} containers of ours, {args.foreign} foreign held jobs, burst of "
          f"{args.burst}, PollInterval {args.poll_interval:g} s, windows {args.window:g} s / {args.burst_window:g} s, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, the service's jobs belong to "
          f"{args.service_user or 'root'}")
    emulator = Emulator(in_process=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
            work = Path(tmp)
            containers = emulator.create(container_fields(args.containers, state="Locked"))
            ordered = in_wanted_order(containers)
            settings = service_settings(emulator, args.poll_interval)
            steady_a, burst_a, burst = run_service_side(args, emulator, settings, ordered, work)
            steady_b, burst_b = run_go_side(args, settings, ordered, burst, work)
    except (SdiagError, RuntimeError) as exc:
        print(f"bench_shared_site: {exc}", file=sys.stderr)
        return 1
    finally:
        emulator.stop()
    results = {
        "steady": report({"service": steady_a, "go": steady_b}, "steady state", 1.0),
        "burst": report({"service": burst_a, "go": burst_b}, f"burst of {args.burst}", 1.5),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
