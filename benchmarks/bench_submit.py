"""Submission benchmark (issue 5): the dispatcher against ``xargs -P 3 sbatch``, on the real Slurm test cluster.

Run: ``.venv/bin/python benchmarks/bench_submit.py [--containers 1000] [--poll-interval S] [--repeat N]``

Each repetition, in one process and one run:

1. A fresh Arvados API emulator (``slurm_dispatch.sandbox.api.EmulatorServer``, HTTPS) is started in a child
   process (``--emulator-in-process`` keeps it in this one), and N Queued containers are created in it.
3. Baseline: the job of every container, exactly as the dispatcher builds it (``slurm_dispatch.slurm.jobs.job_for``, i.e.
   ``sbatch_args`` + the batch script; the template carries ``--begin=now+3600`` so the jobs stay pending,
   see ``PENDING_ARG`` for why not ``--hold``), is written
   out (one script file per job, one input line per job: its sbatch arguments and the script's path), and
   ``xargs -P 3 -L 1 sbatch`` submits them: one real sbatch per job, three at a time, with the same
   environment the dispatcher gives sbatch. Timed from starting xargs until a squeue run right after xargs
   exits shows all N job names. Then the jobs are scancelled and we wait until squeue no longer lists them.
2. Dispatcher (run first, see ``one_round``): a ``DispatchLoop`` (first squeue at once, the same template) runs in a thread
   of this process against the emulator and the cluster. Timed from starting it until a squeue run right
   after its N-th sbatch returned shows all N job names (the sbatch count comes from a counting wrapper
   around ``SlurmCLI`` at the SlurmBackend Protocol boundary; no extra polling load on slurmctld). The
   dispatcher is then shut down (which leaves the jobs), and the jobs are scancelled and waited for.

Printed: both times, the ratio dispatcher/baseline (issue 5's target: <= 1.25), API requests by endpoint,
Slurm commands by kind, CPU seconds (this process while the dispatcher ran, which is the dispatcher's when
the emulator is in its own process; and the Slurm client children's). Then, not in the times: what the burst
costs after it, while the dispatcher keeps running until ``SETTLED_POLLS`` squeue polls in a row see no other
Slurm command (the renice passes that put the new jobs in Arvados's order): how long, the commands ("reniced
jobs" counts the job ids in them) and their CPU.

The containers' priorities are what the API computes for their requests (``benchlib.arvados_priority``: request
priorities 1..10, all distinct), unless ``--raw-priorities`` gives them 1..10 as they are (a hundred equal ones in
1000, which only tests and emulators give): the order of equal priorities is the API's, not Arvados's want order,
and the renice passes after the burst then move most jobs.

The cluster is a fresh private instance of the test cluster (``start-test-cluster.sh`` in a temporary
directory, stopped at the end) unless ``--cluster-dir`` names one. Job names are container uuids of the
cluster id ``bench`` (random per emulator), so on a shared cluster no other job is touched: cleanup cancels by the job ids this benchmark submitted, and leftovers of a
crashed earlier run are recognised by that prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from benchlib import (
    CLUSTER_ID,
    PENDING_ARG,
    SAFE_ARG_RE,
    STOP_CLUSTER,
    SUBMITTED_RE,
    Cluster,
    CountingSlurm,
    Cpu,
    Emulator,
    api_stats,
    cancel_leftovers,
    cluster_running,
    create_containers,
    crunch_run_stub,
    ensure_cluster,
    thread_cpu,
)

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.model import Container, MiB
from slurm_dispatch.service.logging_setup import configure_logging
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.sbatch import sbatch_environment

# -- measurement ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One timed submission of N jobs."""

    seconds: float
    """Start until a squeue shows all N jobs."""
    submitted_s: float
    """Start until the last sbatch returned."""
    cpu: Cpu
    extra: dict[str, Any] = field(default_factory=dict)


class BusySampler:
    """Samples /proc/stat every ``step`` seconds on a thread: how busy the machine's CPUs were, per step."""

    def __init__(self, step: float = 0.25) -> None:
        self.step = step
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-sampler", daemon=True)

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    def _run(self) -> None:
        last = self._read()
        while not self._stop.wait(self.step):
            now = self._read()
            total = now[1] - last[1]
            self.busy.append((now[0] - last[0]) / total if total else 0.0)
            last = now

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def confirm_all(cluster: Cluster, names: set[str], t0: float) -> float:
    """Run squeue until it shows every name (normally the first one does); return seconds since ``t0``.

    Raises:
        RuntimeError: some are still missing 30 s later (something else cancelled them).
    """
    deadline = time.monotonic() + 30
    while True:
        missing = names - set(cluster.names())
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} submitted jobs are not in squeue (cancelled by someone else?)")
        time.sleep(0.05)


def run_baseline(cluster: Cluster, settings: Settings, containers: list[Container], work: Path) -> Result:
    """Submit the dispatcher's jobs with ``xargs -P 3 -L 1 sbatch``; time, then scancel them. Blocks."""
    jobs_dir = work / "baseline"
    jobs_dir.mkdir()
    lines = []
    for i, container in enumerate(containers):
        job = job_for(container, settings)
        args, script = list(job.args), job.script
        bad = [a for a in args if not SAFE_ARG_RE.match(a)]
        if bad:
            raise RuntimeError(f"arguments xargs would split or unquote: {bad}")
        path = jobs_dir / f"{i:05d}.sh"
        path.write_text(script)
        path.chmod(0o600)
        lines.append(" ".join([*args, str(path)]))
    (work / "xargs.in").write_text("\n".join(lines) + "\n")
    env = {**sbatch_environment(settings, cluster.env), "LC_ALL": "C"}
    names = {c.uuid for c in containers}

    daemons0 = cluster.daemon_cpu()
    cpu0 = Cpu.now()
    t0 = time.monotonic()
    with open(work / "xargs.in") as stdin, BusySampler() as sampler:
        proc = subprocess.run(
            ["xargs", "-P", "3", "-L", "1", "sbatch"], stdin=stdin, env=env, capture_output=True, text=True,
            check=False,
        )
    submitted = time.monotonic() - t0
    ids = SUBMITTED_RE.findall(proc.stdout)
    try:
        seen = confirm_all(cluster, names, t0)
        cpu = Cpu.now() - cpu0
        daemons = cluster.daemon_cpu() - daemons0
    finally:
        cluster.cancel_ids(ids)
        cleanup = cluster.wait_gone(names)
    if proc.returncode != 0 or len(ids) != len(containers):
        raise RuntimeError(f"xargs exit {proc.returncode}, {len(ids)} jobs: {proc.stderr[-500:]}")
    return Result(seen, submitted, cpu, {"sbatch": len(ids), "cleanup_s": cleanup, "daemons_cpu_s": daemons,
                                         "busy": [round(b, 2) for b in sampler.busy]})


class DispatcherThread:
    """A DispatchLoop on an event loop of its own thread; ``stop()`` shuts it down as SIGTERM would."""

    def __init__(self, settings: Settings, base_env: Mapping[str, str], backend: CountingSlurm) -> None:
        self._settings = settings
        self._env = dict(base_env)
        self._backend = backend
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch: DispatchLoop | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the dispatch loop did not start")

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._dispatch = DispatchLoop(
                self._settings, base_env=self._env, backend=self._backend
            )
            self._ready.set()
            await self._dispatch.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
            self._ready.set()
            self._backend.all_submitted.set()

    def stop(self) -> None:
        if self._loop is not None and self._dispatch is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._dispatch.shutdown)
        self._thread.join(60)


def run_dispatcher(cluster: Cluster, settings: Settings, containers: list[Container], base_url: str) -> Result:
    """Let a DispatchLoop lock and submit every container; time, then scancel the jobs. Blocks."""
    names = {c.uuid for c in containers}
    backend = CountingSlurm(SlurmCLI(env=cluster.env), expect=len(containers))
    stats0 = api_stats(base_url)
    dispatcher = DispatcherThread(settings, cluster.env, backend)
    threads0 = thread_cpu()
    daemons0 = cluster.daemon_cpu()
    cpu0 = Cpu.now()
    t0 = time.monotonic()
    sampler = BusySampler().__enter__()
    dispatcher.start()
    try:
        if not backend.all_submitted.wait(600) or dispatcher.error is not None:
            raise RuntimeError(f"the dispatcher did not submit every job: {dispatcher.error!r}")
        submitted = time.monotonic() - t0
        seen = confirm_all(cluster, names, t0)
        sampler.__exit__()
        cpu = Cpu.now() - cpu0
        daemons = cluster.daemon_cpu() - daemons0
        threads = thread_cpu()
        stats1 = api_stats(base_url)
        after = settle(backend)
    finally:
        dispatcher.stop()
        cluster.cancel_ids([str(i) for i in backend.job_ids])
        cleanup = cluster.wait_gone(names)
    if dispatcher.error is not None:
        raise RuntimeError(f"the dispatcher failed: {dispatcher.error!r}")
    requests = {k: v - stats0.get(k, 0) for k, v in stats1.items() if v - stats0.get(k, 0)}
    first = (backend.first_submit or t0) - t0
    n = len(backend.submit_times)
    deciles = [round(backend.submit_times[min(n - 1, n * k // 10)] - t0, 2) for k in range(1, 11)] if n else []
    polls = [(round(a - t0, 2), round(b - a, 2)) for a, b in backend.squeue_times if a - t0 <= seen]
    return Result(seen, submitted, cpu, {
        "api": requests, "slurm": dict(backend.counts), "first_sbatch_s": first, "cleanup_s": cleanup,
        "sbatch_deciles": deciles, "squeue_polls": polls,
        "daemons_cpu_s": daemons,
        "busy": [round(b, 2) for b in sampler.busy],
        "thread_cpu": {k: round(v - threads0.get(k, 0.0), 2) for k, v in sorted(threads.items())},
        "after": after,
    })


SETTLED_POLLS = 2
"""squeue polls in a row with no other Slurm command between them that count as "the burst has settled"."""


def settle(backend: CountingSlurm, timeout: float = 600) -> dict[str, Any]:
    """Keep the dispatcher running after the burst until ``SETTLED_POLLS`` squeue polls have started with no other
    Slurm command since (the renice passes that put the burst in Arvados's order are done); return how long that
    took, the Slurm commands of that time and their CPU (this process, and the commands). Blocks."""
    counts0 = dict(backend.counts)
    cpu0 = Cpu.now()
    t0 = time.monotonic()
    while backend.snapshot()["quiet_polls"] < SETTLED_POLLS:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the dispatcher did not settle in {timeout:g} s after the burst")
        time.sleep(0.2)
    cpu = Cpu.now() - cpu0
    return {"seconds": time.monotonic() - t0, "cpu_own_s": cpu.own, "cpu_children_s": cpu.children,
            "slurm": {k: v - counts0.get(k, 0) for k, v in sorted(backend.counts.items()) if v - counts0.get(k, 0)}}


# -- main ------------------------------------------------------------------------------------------------------


def one_round(args: argparse.Namespace, cluster: Cluster, work: Path) -> tuple[Result, Result]:
    emulator = Emulator(in_process=args.emulator_in_process)
    try:
        uuids = create_containers(emulator.base_url, args.containers, raw_priorities=args.raw_priorities)
        settings = Settings(
            cluster_id=CLUSTER_ID,
            system_root_token=emulator.root_token,
            controller_url=emulator.base_url,
            tls_insecure=True,
            poll_interval=args.poll_interval,
            reserve_extra_ram=50 * MiB,
            crunch_run_command=crunch_run_stub(),
            sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--output=/dev/null", PENDING_ARG),
            log_format="text",
        )
        api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
        try:
            containers = [api.get(u) for u in uuids]
        finally:
            api.close()
        # The dispatcher goes first: slurmctld remembers cancelled jobs for MinJobAge, and the dispatcher's
        # renice (``scontrol update JobName=<uuid>``) would also hit the baseline's cancelled jobs of the same
        # names and fail; sbatch does not care about names.
        emu0 = emulator.cpu_seconds()
        disp = run_dispatcher(cluster, settings, containers, emulator.base_url)
        emu1 = emulator.cpu_seconds()
        if emu0 is not None and emu1 is not None:
            disp.extra["emulator_cpu_s"] = emu1 - emu0
        base = run_baseline(cluster, settings, containers, work)
        return base, disp
    finally:
        emulator.stop()


def cpu_budget(base: Result, disp: Result) -> dict[str, Any]:
    """The CPU arithmetic behind the ratio.

    Core-seconds of each run: everything that ran for it on this machine (this process, the Slurm commands,
    slurmctld and munged, and for the dispatcher run the emulator). When both runs keep the CPUs equally busy,
    the time ratio follows the CPU ratio, so ``cpu_ratio`` says how far scheduling alone could take the time
    ratio; ``cpu_ratio_without_emulator`` leaves the emulator out, as if the API server ran on another machine,
    as Arvados's does. ``budget_core_s`` is the extra CPU a run may use and still meet the 1.25 target.
    """
    cpus = os.cpu_count() or 1
    emulator = float(disp.extra.get("emulator_cpu_s") or 0.0)
    baseline = base.cpu.own + base.cpu.children + base.extra["daemons_cpu_s"]
    dispatcher = disp.cpu.own + disp.cpu.children + disp.extra["daemons_cpu_s"] + emulator
    return {
        "cpus": cpus,
        "baseline_core_s": baseline,
        "baseline_busy": baseline / (cpus * base.seconds),
        "dispatcher_core_s": dispatcher,
        "dispatcher_busy": dispatcher / (cpus * disp.seconds),
        "cpu_ratio": dispatcher / baseline,
        "cpu_ratio_without_emulator": (dispatcher - emulator) / baseline,
        "budget_core_s": 0.25 * baseline,
    }


def report(i: int, base: Result, disp: Result, *, verbose: bool) -> None:
    ratio = disp.seconds / base.seconds
    print(f"run {i}: baseline {base.seconds:.2f} s (xargs {base.submitted_s:.2f} s, CPU children "
          f"{base.cpu.children:.2f} s, slurmctld+munged {base.extra['daemons_cpu_s']:.2f} s) | dispatcher {disp.seconds:.2f} s (last sbatch {disp.submitted_s:.2f} s, "
          f"first sbatch {disp.extra['first_sbatch_s']:.2f} s) | ratio {ratio:.2f}")
    emu = disp.extra.get("emulator_cpu_s")
    print(f"       dispatcher CPU: this process {disp.cpu.own:.2f} s, Slurm client children {disp.cpu.children:.2f} s, "
          f"slurmctld+munged {disp.extra['daemons_cpu_s']:.2f} s"
          + (f", emulator (API server) {emu:.2f} s" if emu is not None else ""))
    budget = cpu_budget(base, disp)
    disp.extra["budget"] = budget
    print(f"       CPU: baseline {budget['baseline_core_s']:.2f} core-s ({budget['baseline_busy']:.0%} of "
          f"{budget['cpus']} CPUs), dispatcher run {budget['dispatcher_core_s']:.2f} core-s "
          f"({budget['dispatcher_busy']:.0%}): CPU ratio {budget['cpu_ratio']:.2f}, "
          f"{budget['cpu_ratio_without_emulator']:.2f} without the emulator; the 1.25 target leaves "
          f"{budget['budget_core_s']:.2f} core-s for dispatcher and API together")
    print(f"       Slurm commands: {dict(sorted(disp.extra['slurm'].items()))}")
    after = disp.extra["after"]
    print(f"       after the burst, until {SETTLED_POLLS} squeue polls in a row saw no other command: "
          f"{after['seconds']:.1f} s, Slurm commands {after['slurm']}, CPU: this process {after['cpu_own_s']:.2f} s, "
          f"Slurm client children {after['cpu_children_s']:.2f} s")
    if verbose:
        print(f"       sbatch done at deciles (s): {disp.extra['sbatch_deciles']}")
        print(f"       squeue polls (start s, duration s): {disp.extra['squeue_polls']}")
        print(f"       CPU s by thread of this process: {disp.extra['thread_cpu']}")
        print(f"       machine busy per 0.25 s, baseline: {base.extra['busy']}")
        print(f"       machine busy per 0.25 s, dispatcher: {disp.extra['busy']}")
    print(f"       API requests: {dict(sorted(disp.extra['api'].items()))} (total {sum(disp.extra['api'].values())})")
    sys.stdout.flush()


def apply_what_if(names: Sequence[str]) -> None:
    """Profiling only: change the dispatcher in this process to see what a fix elsewhere would gain.

    ``no-renice``: SqueueChecker skips its renice pass (to see what the passes cost a burst of submissions).
    ``locks-2``: at most two lock requests in flight (instead of one per executor thread, eight), to see
    whether fewer busy API threads let the Slurm threads launch sbatch sooner during the locking burst.
    ``paced-locks``: at most 16 containers locked and not yet submitted (a lock waits for a submission to
    finish), so that locks are spread over the burst instead of all going first.
    The figures they give are not the product's; ``main`` prints that they are on.
    """
    if "locks-2" in names:
        from slurm_dispatch.dispatch.dispatcher import Dispatcher

        plain_lock = Dispatcher._lock_and_start
        gates: dict[int, asyncio.Semaphore] = {}

        async def gated(self: Any, raw: Any) -> bool:
            gate = gates.setdefault(id(self), asyncio.Semaphore(2))
            async with gate:
                return await plain_lock(self, raw)

        Dispatcher._lock_and_start = gated  # type: ignore[method-assign]
    if "paced-locks" in names:
        from slurm_dispatch.dispatch.dispatcher import Dispatcher
        from slurm_dispatch.runner import SlurmRunner

        plain_lock = Dispatcher._lock_and_start
        plain_submit = SlurmRunner.submit
        slots: dict[str, asyncio.Semaphore] = {}

        def slot() -> asyncio.Semaphore:
            return slots.setdefault("gate", asyncio.Semaphore(16))

        async def paced_lock(self: Any, raw: Any) -> bool:
            await slot().acquire()
            try:
                locked = await plain_lock(self, raw)
            except BaseException:
                slot().release()
                raise
            if not locked:
                slot().release()
            return locked

        async def paced_submit(self: Any, container: Any) -> Any:
            try:
                return await plain_submit(self, container)
            finally:
                slot().release()

        Dispatcher._lock_and_start = paced_lock  # type: ignore[method-assign]
        SlurmRunner.submit = paced_submit  # type: ignore[method-assign]
    if "no-renice" in names:
        from slurm_dispatch.slurm.squeue import SqueueChecker

        async def no_renice(self: Any, jobs: Any) -> None:
            return None

        SqueueChecker._renice_all = no_renice  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="the dispatcher's PollInterval in seconds (default 1; the product's default is 10)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--emulator-in-process", action="store_true",
                        help="run the emulator on a thread of this process (its CPU then competes with the dispatcher)")
    parser.add_argument("--cluster-dir", type=Path, default=None,
                        help="the test cluster to use, started if not running, e.g. .slurm-test (default: a "
                        "fresh private one in a temporary directory, stopped at the end). The shared one sees "
                        "other sessions' load, and their slurm_clean fixtures scancel every job that appears "
                        "during a test, ours included; slurmctld also keeps cancelled jobs for MinJobAge=600 s "
                        "and refuses new ones beyond MaxJobCount (10000 there, 50000 in a private one)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the uncounted first round that brings slurmctld to its steady speed")
    parser.add_argument("--verbose", action="store_true", help="also print the sbatch and squeue timeline")
    parser.add_argument("--raw-priorities", action="store_true",
                        help="give the containers priorities 1..10 as they are, not what the API computes from them")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started running")
    parser.add_argument("--log", type=Path, default=None,
                        help="dispatcher log file at INFO, as the service logs (default: a temporary file)")
    parser.add_argument("--what-if", action="append", default=[], choices=["no-renice", "locks-2", "paced-locks"],
                        help="profiling only: patch the dispatcher in this process (see apply_what_if)")
    args = parser.parse_args(argv)
    apply_what_if(args.what_if)

    conf_dir = args.cluster_dir or Path(tempfile.mkdtemp(prefix="bench-submit-slurm-"))
    started_cluster = not cluster_running(args.cluster_dir)
    cluster = ensure_cluster(conf_dir)
    try:
        cancel_leftovers(cluster)
        return run_rounds(args, cluster)
    finally:
        if started_cluster and not args.keep_cluster:
            subprocess.run([str(STOP_CLUSTER), str(conf_dir)], capture_output=True, timeout=300, check=False)
            if args.cluster_dir is None:
                shutil.rmtree(conf_dir, ignore_errors=True)


def run_rounds(args: argparse.Namespace, cluster: Cluster) -> int:
    ratios, bases, disps, floors = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        log_path = args.log or Path(tmp) / "dispatcher.log"
        # Logged as the service logs: its JSON lines through its redacting filter (to a file, not the journal),
        # with a secret shaped as the emulator's root token (each round's own is made later).
        log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed with the rounds, below
        configure_logging(level="info", fmt="json", secrets=[secrets.token_hex(25)], stream=log_file)
        print(f"{args.containers} containers ({'raw priorities 1..10' if args.raw_priorities else 'API-computed priorities'}), "
              f"PollInterval {args.poll_interval:g} s, emulator "
              f"{'in this process' if args.emulator_in_process else 'in a child process'}, "
              f"cluster {cluster.conf_dir}, "
              f"{'WHAT-IF ' + '+'.join(args.what_if) + ' (not the product), ' if args.what_if else ''}"
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        if args.warmup:
            # slurmctld handles its first thousands of submissions more slowly (seen: 2.3 s of its CPU for the
            # first 1000, 0.45 s a few rounds later), which flatters the ratio: this round is not counted.
            work = Path(tmp) / "warmup"
            work.mkdir()
            base, disp = one_round(args, cluster, work)
            print(f"warm-up round (not counted): baseline {base.seconds:.2f} s, dispatcher {disp.seconds:.2f} s")
        for i in range(1, args.repeat + 1):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            base, disp = one_round(args, cluster, work)
            report(i, base, disp, verbose=args.verbose)
            ratios.append(disp.seconds / base.seconds)
            floors.append(disp.extra["budget"]["cpu_ratio"])
            bases.append(base.seconds)
            disps.append(disp.seconds)
        log_file.close()
    if len(ratios) > 1:
        print(f"summary over {len(ratios)} runs: baseline {min(bases):.2f}-{max(bases):.2f} s, dispatcher "
              f"{min(disps):.2f}-{max(disps):.2f} s, ratio min {min(ratios):.2f} median "
              f"{statistics.median(ratios):.2f} max {max(ratios):.2f}; CPU ratio median "
              f"{statistics.median(floors):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
