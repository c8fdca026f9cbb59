"""Whole-service benchmark (issue 14): the service at rest with N containers Locked and N jobs pending in Slurm.

Run: ``.venv/bin/python benchmarks/bench_service.py --sizes 100,1000,10000 [--poll-interval 10] [--ticks 6]
[--plot docs/bench_service.png] [--json out.json]``

For each N, in one run:

1. A fresh private test cluster (``contrib/slurm/start-test-cluster.sh`` in a temporary directory,
   ``MaxJobCount=50000``; stopped and removed at the end, which cancels every job), so that no cancelled job of
   another size or run sits in slurmctld's memory (it keeps them for MinJobAge, and every squeue fetches them).
2. The Arvados API emulator in a child process, with N containers created Locked by the root token (1 CPU,
   100 MB, priority 1..10 in turn), the token the service runs with, so that the service adopts them at startup.
3. One pending job per container, submitted as the dispatcher builds it (``job_for``: ``--nice=10000``, the
   template plus ``--output=/dev/null --begin=now+3600``, so jobs stay pending and cost nothing), one sbatch at
   a time in the order the service wants them (highest want first), so that Slurm's order already follows
   Arvados's and the service's first renice pass has little to do (at N ≥ 112 one renice: the top job to nice 0).
4. The service in a child process (``service_proc.py``: ``DispatchLoop`` wired as ``slurm-dispatch run`` wires
   it, real ``SlurmCLI``, ``SqueueChecker`` and renice pass, real ``ArvadosClient`` over HTTPS) until it has
   settled: all N tracked and three squeue polls since its last other Slurm command.
5. ``--ticks`` consecutive idle ticks, measured at the end of each dispatch tick: the service process's CPU
   (all threads, split by thread: event loop, API threads, the squeue/renice executor, the runner's Slurm
   threads) and its Slurm commands' CPU; Slurm commands by kind and squeue's output bytes (counted at the
   SlurmBackend boundary); API requests and bytes (the emulator's request log); slurmctld's time for the RPCs of
   client commands (``sdiag -r``, then ``sdiag`` ``--ticks`` PollIntervals later, both placed between two squeue
   polls; see ``sdiag.py`` and ``service_proc.measure_idle``); peak RSS of the service process (``VmHWM``).

Printed: one column per N. ``--json`` keeps every figure; ``--plot`` draws CPU per idle tick against N
(needs matplotlib, a benchmark-only dependency: ``pip install matplotlib``; it is not in pyproject);
``--from-json`` prints and plots a kept run again without running anything.

Time: the setup dominates. At N = 10,000 creating the containers takes seconds, the 10,000 sbatch about
1.5-2 minutes, the adoption under a minute; then ``ticks`` × PollInterval. Must run as root (the test cluster
and ``sdiag -r`` need it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    CLUSTER_ID,
    PENDING_ARG,
    Cluster,
    Emulator,
    cancel_leftovers,
    cluster_running,
    container_fields,
    crunch_run_stub,
    ensure_cluster,
    stop_cluster,
    submit_jobs,
    sum_windows,
)
from sdiag import SdiagError
from service_proc import IdleWindow, ServiceProcess, measure_idle

from slurm_dispatch.model import Container, MiB
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.priority import container_want, renice_order

THREAD_ROLES = {
    "MainThread": "event loop",
    "dispatch-api": "API threads",
    "arvados-request-deadline": "API deadline watchdog",
    "asyncio": "squeue/renice executor",
    "slurm": "runner Slurm threads",
    "bench-control": "benchmark control (not the service)",
}
"""Thread names in the service process (``_N`` suffixes merged) and what runs on them."""


def service_settings(emulator: Emulator, poll_interval: float) -> Settings:
    """Return the settings of the service under test, against ``emulator``. Pure."""
    return Settings(
        cluster_id=CLUSTER_ID,
        system_root_token=emulator.root_token,
        controller_url=emulator.base_url,
        tls_insecure=True,
        poll_interval=poll_interval,
        reserve_extra_ram=50 * MiB,
        crunch_run_command=crunch_run_stub(),
        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--output=/dev/null", PENDING_ARG),
        log_format="text",
    )


@dataclass(frozen=True)
class _Wanted:
    name: str
    want: int
    container: Container


def in_wanted_order(containers: Sequence[Container]) -> list[Container]:
    """Return the containers in the order the service's renice pass wants their jobs (``renice_order``). Pure."""
    return [w.container for w in renice_order([_Wanted(c.uuid, container_want(c), c) for c in containers])]


@dataclass
class SetupTimes:
    cluster_s: float
    create_s: float
    submit_s: float
    settle_s: float
    settle_slurm: dict[str, int]


def start_fresh_cluster(args: argparse.Namespace, label: str) -> tuple[Cluster, Path, bool]:
    """Return a running cluster, its directory, and whether this run started it (and must stop it). Blocks."""
    if args.cluster_dir is not None:
        started = not cluster_running(args.cluster_dir)
        cluster = ensure_cluster(args.cluster_dir)
        cancel_leftovers(cluster)
        return cluster, args.cluster_dir, started
    conf_dir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-slurm-"))
    return ensure_cluster(conf_dir), conf_dir, True


def one_size(n: int, args: argparse.Namespace, work: Path, log_dir: Path) -> dict[str, Any]:
    """Set up N Locked containers with pending jobs, let the service settle, measure idle ticks; clean up. Blocks."""
    t0 = time.monotonic()
    cluster, conf_dir, started = start_fresh_cluster(args, f"service-{n}")
    emulator: Emulator | None = None
    service: ServiceProcess | None = None
    job_ids: list[str] = []
    try:
        t1 = time.monotonic()
        emulator = Emulator(in_process=False)
        containers = emulator.create(container_fields(n, state="Locked"))
        settings = service_settings(emulator, args.poll_interval)
        t2 = time.monotonic()
        job_ids = submit_jobs(cluster, settings, in_wanted_order(containers), work, parallel=1)
        t3 = time.monotonic()
        print(f"  N={n}: cluster {t1 - t0:.0f} s, {n} Locked containers {t2 - t1:.1f} s, {n} sbatch {t3 - t2:.0f} s",
              file=sys.stderr)
        service = ServiceProcess(settings, cluster.env, log_dir / f"service-{n}.log")
        service.start()
        settle_s = service.wait_settled(tracked=n, timeout=300 + n * 0.1)
        settle_slurm = service.slurm()["counts"]
        print(f"  N={n}: settled in {settle_s:.0f} s (Slurm commands {settle_slurm}); measuring {args.ticks} ticks",
              file=sys.stderr)
        window = measure_idle(service, cluster, emulator, args.ticks, args.poll_interval)
        return summarize(n, window, SetupTimes(t1 - t0, t2 - t1, t3 - t2, settle_s, settle_slurm))
    finally:
        if service is not None:
            try:
                service.stop()
            except RuntimeError as exc:
                print(f"  N={n}: {exc}", file=sys.stderr)
        if emulator is not None:
            emulator.stop()
        if started and not args.keep_cluster:
            stop_cluster(conf_dir, remove=args.cluster_dir is None)
        elif job_ids:
            cluster.cancel_ids(job_ids)


def summarize(n: int, w: IdleWindow, setup: SetupTimes) -> dict[str, Any]:
    """Return the figures of one size from its idle window. Pure."""
    k = w.ticks
    cpu = [d["cpu"] for d in w.deltas]
    children = [d["children"] for d in w.deltas]
    threads: dict[str, float] = {}
    for d in w.deltas:
        for name, v in d["threads"].items():
            threads[name] = threads.get(name, 0.0) + v / k
    slurm: dict[str, int] = {}
    for d in w.deltas:
        for kind, v in d["slurm"].items():
            slurm[kind] = slurm.get(kind, 0) + v
    api = sum_windows(w.api)
    ours = w.sdiag.client_rpcs()
    client_us = w.sdiag.client_total_us()
    return {
        "n": n,
        "ticks": k,
        "tick_seconds": w.seconds / k,
        "cpu_per_tick_median": statistics.median(cpu),
        "cpu_per_tick_max": max(cpu),
        "tick_cpu_median": statistics.median(d["tick_cpu"] for d in w.deltas),
        "children_cpu_per_tick": statistics.median(children),
        "cpu_by_thread_per_tick": {THREAD_ROLES.get(name, name): round(v, 4) for name, v in sorted(threads.items())},
        "slurm_commands": slurm,
        "squeue_per_tick": slurm.get("squeue", 0) / k,
        "squeue_bytes_per_squeue": sum(d["squeue_bytes"] for d in w.deltas)
        / max(1, sum(d["squeue_done"] for d in w.deltas)),
        "squeue_gap_min": min(w.squeue_gaps, default=None),
        "squeue_gap_max": max(w.squeue_gaps, default=None),
        "renices": slurm.get("scontrol renice", 0),
        "api_requests_per_tick": sum(v[0] for v in api.values()) / k,
        "api_bytes_in_per_tick": sum(v[1] for v in api.values()) / k,
        "api_bytes_out_per_tick": sum(v[2] for v in api.values()) / k,
        "api_by_route": api,
        "slurmctld_ms_per_tick": client_us / 1000 / k,
        "slurmctld_ms_per_minute": client_us / 1000 / w.sdiag_seconds * 60,
        "slurmctld_rpcs": {name: [s.count, s.total_us] for name, s in ours.items()},
        "slurmctld_by_user": {name: [s.count, s.total_us] for name, s in w.sdiag.by_user.items()},
        "sdiag_seconds": w.sdiag_seconds,
        "slurmctld_cpu_per_tick": w.daemon_cpu / k,
        "emulator_cpu_per_tick": None if w.emulator_cpu is None else w.emulator_cpu / k,
        "peak_rss_mb": w.last.max_rss / 1e6,
        "rss_mb": w.last.rss / 1e6,
        "setup": asdict(setup),
    }


ROWS: list[tuple[str, str, str]] = [
    ("CPU per idle tick, service process (median)", "cpu_per_tick_median", "{:.3f} s"),
    ("  max", "cpu_per_tick_max", "{:.3f} s"),
    ("  of which the dispatch tick itself (median)", "tick_cpu_median", "{:.3f} s"),
    ("CPU per tick of its Slurm commands (children)", "children_cpu_per_tick", "{:.3f} s"),
    ("squeue started per tick (window edges: ±1 in all)", "squeue_per_tick", "{:.2f}"),
    ("  seconds between squeue starts, min", "squeue_gap_min", "{:.2f} s"),
    ("  max", "squeue_gap_max", "{:.2f} s"),
    ("squeue output bytes per squeue", "squeue_bytes_per_squeue", "{:,.0f}"),
    ("renices in the window", "renices", "{}"),
    ("API requests per tick", "api_requests_per_tick", "{:.1f}"),
    ("API bytes per tick, answers", "api_bytes_out_per_tick", "{:,.0f}"),
    ("API bytes per tick, requests", "api_bytes_in_per_tick", "{:,.0f}"),
    ("slurmctld ms per tick, our RPCs (sdiag)", "slurmctld_ms_per_tick", "{:.2f}"),
    ("slurmctld ms per minute, our RPCs (sdiag)", "slurmctld_ms_per_minute", "{:.1f}"),
    ("slurmctld+munged CPU per tick", "slurmctld_cpu_per_tick", "{:.3f} s"),
    ("emulator (API server) CPU per tick", "emulator_cpu_per_tick", "{:.3f} s"),
    ("peak RSS of the service", "peak_rss_mb", "{:.0f} MB"),
]


def print_table(results: Sequence[dict[str, Any]]) -> None:
    """Print one column per N, then the details of each. Blocks on stdout only."""
    width = max(len(r[0]) for r in ROWS)
    print(f"{'N':<{width}} " + " ".join(f"{r['n']:>14,}" for r in results))
    for label, key, fmt in ROWS:
        cells = [("-" if r[key] is None else fmt.format(r[key])) for r in results]
        print(f"{label:<{width}} " + " ".join(f"{c:>14}" for c in cells))
    for r in results:
        print(f"N={r['n']:,}: {r['ticks']} ticks of {r['tick_seconds']:.2f} s; CPU per tick by thread "
              f"{r['cpu_by_thread_per_tick']}; Slurm commands in the window {r['slurm_commands']}")
        print(f"  API by route (requests, bytes in, bytes out over the window): {r['api_by_route']}")
        print(f"  slurmctld RPCs (count, µs) over {r['sdiag_seconds']:.1f} s: {r['slurmctld_rpcs']}; "
              f"by user {r['slurmctld_by_user']}")
        s = r["setup"]
        print(f"  setup: cluster {s['cluster_s']:.0f} s, containers {s['create_s']:.1f} s, sbatch {s['submit_s']:.0f} s, "
              f"settled in {s['settle_s']:.0f} s with Slurm commands {s['settle_slurm']}")


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Write a PNG of CPU per idle tick against N (log scale). Blocks.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(ns, [r["cpu_per_tick_median"] for r in results], "o-", label="service process (median)")
    ax.plot(ns, [r["cpu_per_tick_median"] + r["children_cpu_per_tick"] for r in results], "s--",
            label="+ its Slurm commands (squeue)")
    ax.axhline(0.3, color="grey", linestyle=":", label="issue 14 target at 10,000: 0.3 s")
    ax.set_xscale("log")
    ax.set_xlabel("containers Locked, jobs pending (N)")
    ax.set_ylabel("CPU seconds per idle tick")
    ax.set_title("slurm-dispatch at rest: CPU per idle tick")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def parse_sizes(text: str) -> list[int]:
    """Return the sizes in a comma-separated list ("100,1000,10000"). Pure.

    Raises:
        argparse.ArgumentTypeError: a size is not a whole number from 1 to 40,000.
    """
    sizes = []
    for part in text.split(","):
        try:
            n = int(part.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {part.strip()!r} is not a whole number") from None
        if not 1 <= n <= 40_000:
            raise argparse.ArgumentTypeError(f"size {n} is outside 1..40000 (MaxJobCount is 50000)")
        sizes.append(n)
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[100, 1000, 10_000],
                        help="comma-separated numbers of containers (default 100,1000,10000)")
    parser.add_argument("--poll-interval", type=float, default=10.0,
                        help="the service's PollInterval in seconds (default 10, the product's default)")
    parser.add_argument("--ticks", type=int, default=6, help="idle ticks measured per size (default 6)")
    parser.add_argument("--cluster-dir", type=Path, default=None,
                        help="use this test cluster (started if not running) instead of a fresh one per size; "
                        "cancelled jobs of earlier sizes then stay in slurmctld for MinJobAge (600 s)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started running")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of CPU per idle tick against N")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the service logs here")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="run nothing: print (and --plot) the figures a --json of an earlier run kept")
    args = parser.parse_args(argv)
    if args.ticks < 2:
        parser.error("--ticks must be at least 2")
    if args.poll_interval <= 0:
        parser.error("--poll-interval must be positive")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, a benchmark-only dependency: pip install matplotlib")
    if args.from_json is not None:
        try:
            saved = json.loads(args.from_json.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--from-json {args.from_json}: {exc}")
        print_table(saved)
        if args.plot is not None:
            plot(saved, args.plot)
            print(f"plot: {args.plot}")
        return 0
    if os.geteuid() != 0:
        parser.error("run as root: the test cluster's slurmd and sdiag -r need it")

    print(f"whole service at rest: sizes {args.sizes}, PollInterval {args.poll_interval:g} s, {args.ticks} ticks, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        logs = args.log_dir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            for n in args.sizes:
                work = Path(tmp) / f"n{n}"
                work.mkdir()
                results.append(one_size(n, args, work, logs))
        except (SdiagError, RuntimeError) as exc:
            print(f"bench_service: {exc}", file=sys.stderr)
            if not results:
                return 1
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    if args.plot is not None:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0 if len(results) == len(args.sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
