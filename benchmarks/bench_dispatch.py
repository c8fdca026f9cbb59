"""Benchmark of the dispatch core: N containers Running, one tracker each, against the emulator.

Not a test: it prints figures for docs/benchmarks.md ("Dispatch core").

    .venv/bin/python benchmarks/bench_dispatch.py --containers 10000 --batch-size 1000 --ticks 5

The emulator runs as a separate process (so its CPU is not counted) over HTTPS. The
RunContainer only waits on its update channel. After the first tick (which adopts every
container), each measured tick reports the dispatcher's CPU seconds (all threads, including
the client's JSON decoding in the executor), wall seconds, API requests (from the
emulator's counters) and woken trackers. One extra tick follows a priority change on
``--changes`` containers, to show that only those trackers wake. Peak RSS is the
process's maximum resident set size.

Targets (issue 4): <= 0.25 s CPU per tick, <= 200 MB RSS, requests per tick
<= 3 + 2 * ceil(N / batch_size).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.dispatch import Dispatcher, UpdateChannel
from slurm_dispatch.model import Container
from slurm_dispatch.sandbox.control import SandboxControl


async def wait_only(dispatcher: Dispatcher, container: Container, updates: UpdateChannel) -> None:
    """A RunContainer that does nothing but read its updates until the container leaves."""
    async for _ in updates:
        pass


def start_emulator(token: str, db: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start ``slurm-dispatch sandbox api`` on a free port; return it and its base URL."""
    env = dict(os.environ, SANDBOX_ROOT_TOKEN=token)
    argv = [sys.executable, "-m", "slurm_dispatch", "sandbox", "api", "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        argv + (["--db", db] if db else []),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http"):
        proc.terminate()
        raise SystemExit(f"emulator did not start (first line: {base_url!r})")
    return proc, base_url


def create_running(base_url: str, n: int, workers: int = 4) -> list[str]:
    """Create ``n`` Running containers (locked by the root token) through the control API."""

    def create(count: int) -> list[str]:
        ctl = SandboxControl(base_url)
        try:
            return [ctl.create_container(state="Running", priority=1 + i % 500)["uuid"] for i in range(count)]
        finally:
            ctl.close()

    shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        return [u for part in pool.map(create, shares) for u in part]


def api_requests(ctl: SandboxControl) -> int:
    return sum(ctl.stats().values())


async def measure(base_url: str, token: str, args: argparse.Namespace, uuids: list[str]) -> None:
    client = ArvadosClient(api_host=base_url, token=token, insecure=True, retry_deadline=0, pool_size=8)
    ctl = SandboxControl(base_url)
    d = Dispatcher(
        client, wait_only, batch_size=args.batch_size, poll_period=args.poll_period, freeze_gc=args.freeze_gc
    )
    try:
        ctl.reset_stats()
        first = await d.tick()
        print(
            f"first tick (adopts): {first.started} trackers started, cpu {first.cpu_s:.3f} s, "
            f"{api_requests(ctl)} requests"
        )
        cpu: list[float] = []
        wall: list[float] = []
        reqs: list[int] = []
        for _ in range(args.ticks):
            ctl.reset_stats()
            t0 = time.perf_counter()
            report = await d.tick()
            wall.append(time.perf_counter() - t0)
            cpu.append(report.cpu_s)
            reqs.append(api_requests(ctl))
            assert report.ok and report.woken == 0 and report.closed == 0, report
        changed = uuids[: args.changes]
        # Initial priorities are 1..500; a value above 500 that differs from run to run is a
        # real change even with a reused --db.
        new_priority = 501 + int(time.time()) % 499
        for uuid in changed:
            ctl.set_priority(uuid, new_priority)
        ctl.reset_stats()
        change_tick = await d.tick()
        change_reqs = api_requests(ctl)
        budget = 3 + 2 * math.ceil(args.containers / args.batch_size)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"containers: {args.containers}, batch_size: {args.batch_size}, trackers: {len(d.tracked())}, "
            f"freeze_gc: {args.freeze_gc}"
        )
        print(
            f"idle tick ({args.ticks}x): cpu median {statistics.median(cpu):.3f} s, max {max(cpu):.3f} s; "
            f"wall median {statistics.median(wall):.3f} s; requests {max(reqs)} (budget {budget})"
        )
        print(
            f"tick after {len(changed)} priority changes: woken {change_tick.woken}, "
            f"cpu {change_tick.cpu_s:.3f} s, requests {change_reqs}"
        )
        print(f"peak RSS: {rss_mb:.0f} MB")
    finally:
        await d.aclose()
        ctl.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--poll-period", type=float, default=10.0)
    parser.add_argument(
        "--freeze-gc", action=argparse.BooleanOptionalAction, default=True, help="Dispatcher(freeze_gc=...)"
    )
    parser.add_argument("--db", help="keep the emulator's state in this SQLite file and reuse it next time")
    args = parser.parse_args()
    token = secrets.token_hex(24)
    proc, base_url = start_emulator(token, args.db)
    try:
        probe = ArvadosClient(api_host=base_url, token=token, insecure=True)
        page = probe.list(filters=[["state", "=", "Running"]], limit=1000, count="exact")
        uuids = [str(item["uuid"]) for item in page.items]
        missing = args.containers - (page.items_available or 0)
        if missing < 0:
            raise SystemExit(f"{args.db} holds more than {args.containers} Running containers")
        t0 = time.perf_counter()
        uuids += create_running(base_url, missing)
        print(f"created {missing} Running containers in {time.perf_counter() - t0:.0f} s")
        asyncio.run(measure(base_url, token, args, uuids))
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
