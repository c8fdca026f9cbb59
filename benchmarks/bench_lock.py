"""The API client's CPU per lock request: the share of a submitted container's cost that is the HTTP client's.

Run: ``.venv/bin/python benchmarks/bench_lock.py [--locks 500] [--rounds 3]``

Each round creates ``--locks`` Queued containers in a fresh emulator in a child process (HTTPS), then locks them
one after the other from one thread with one ``ArvadosClient`` (after one lock not counted, which opens the
connection), and prints that thread's CPU per lock and the emulator's. One thread and one connection: what is
measured is the client's work per request, not thread hand-offs.

To compare two versions of the client, run the same script with the other tree first on the path, from outside
the repository (Python puts the script's directory, not the current one, first on ``sys.path``)::

    git worktree add /tmp/before <commit>
    cd /tmp && PYTHONPATH=/tmp/before /path/to/repo/.venv/bin/python /path/to/repo/benchmarks/bench_lock.py

The first line printed names the ``slurm_dispatch`` it imported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchlib import Emulator, container_fields

import slurm_dispatch
from slurm_dispatch.arvados.client import ArvadosClient


def one_round(emulator: Emulator, locks: int) -> tuple[float, float]:
    """Lock ``locks`` new containers; return (client CPU ms per lock, emulator CPU ms per lock)."""
    uuids = [c.uuid for c in emulator.create(container_fields(locks + 1, state="Queued"))]
    client = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
    try:
        client.lock(uuids[0])
        server_before = emulator.cpu_seconds() or 0.0
        before = time.thread_time()
        for uuid in uuids[1:]:
            client.lock(uuid)
        spent = time.thread_time() - before
        server = (emulator.cpu_seconds() or 0.0) - server_before
    finally:
        client.close()
    return spent / locks * 1e3, server / locks * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"slurm_dispatch from {slurm_dispatch.__file__}")
    emulator = Emulator(in_process=False)
    try:
        client_ms = []
        for i in range(1, args.rounds + 1):
            mine, server = one_round(emulator, args.locks)
            client_ms.append(mine)
            print(f"round {i}: {args.locks} locks, client CPU {mine:.3f} ms per lock, emulator {server:.3f} ms")
        print(f"client CPU per lock: median {statistics.median(client_ms):.3f} ms "
              f"({min(client_ms):.3f}-{max(client_ms):.3f})")
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
