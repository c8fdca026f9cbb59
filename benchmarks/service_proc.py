"""The whole dispatch service in a child process, sampled at the end of every dispatch tick.

The child builds ``DispatchLoop`` exactly as ``slurm-dispatch run`` does (``slurm_dispatch.service.serve``):
``MeteredClient(ArvadosClient)``, ``MeteredBackend(SlurmCLI)`` and ``Metrics``; left out are only the
process's locks, sd_notify and the health/metrics HTTP endpoint (idle unless scraped). Between
``MeteredBackend`` and ``SlurmCLI`` sits ``benchlib.CountingSlurm``, at the SlurmBackend Protocol boundary,
which counts every Slurm command and squeue's output.

A process of its own, so that its CPU, its children's CPU (the Slurm commands it runs) and its peak RSS are
the service's alone, not the benchmark's. The tick hook is ``Metrics.set_containers``, which ``DispatchLoop``
calls once after every tick: a subclass records a ``TickSample`` there (about 0.3 ms: a few /proc reads).
The parent talks to the child over a pipe (``ServiceProcess``); the child answers on a thread of its own
named ``bench-control``, whose CPU the thread split shows apart.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sdiag
from benchlib import Cluster, CountingSlurm, Emulator, thread_cpu
from sdiag import SdiagReading

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.model import ContainerState
from slurm_dispatch.service.logging_setup import configure_from_settings
from slurm_dispatch.service.metered import MeteredBackend, MeteredClient
from slurm_dispatch.service.metrics import Metrics
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.sbatch import slurm_command_env

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TickSample:
    """The service process's counters at the end of one dispatch tick."""

    t: float
    """``time.monotonic()`` (the same clock in every process of the machine)."""
    cpu: float
    """CPU seconds of the process, all threads."""
    children: float
    """CPU seconds of its finished children: the Slurm commands."""
    threads: dict[str, float]
    """CPU seconds by thread name (``_N`` suffixes merged)."""
    slurm: dict[str, int]
    """Slurm commands run so far, by kind (``CountingSlurm``)."""
    squeue_bytes: int
    """Output bytes of the squeue runs finished so far."""
    squeue_done: int
    """squeue runs finished so far (``slurm["squeue"]`` counts those started)."""
    rss: int
    """Resident bytes now."""
    max_rss: int
    """Peak resident bytes so far (``VmHWM``, see ``_peak_rss``)."""
    states: dict[str, int]
    """Tracked containers by state."""
    tick_cpu: float
    """The tick's own CPU seconds (``TickReport.cpu_s``: the process's, from its start to its end)."""


def _rss() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss() -> int:
    """Return the process's peak resident bytes since it exec'd (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that across ``execve`` from the forked image, so a spawned
    child would report the benchmark parent's size at the fork when that was larger than its own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child(conn: multiprocessing.connection.Connection, settings: Settings, base_env: dict[str, str],
           log_path: str, own_uid: int | None = None) -> None:
    """Child process: run the service until the parent says stop; answer its questions meanwhile."""
    # Logged as the service logs (its JSON lines and its redacting filter), to a file instead of the journal.
    configure_from_settings(settings, stream=open(log_path, "a", encoding="utf-8"))  # noqa: SIM115 - for the child's life
    samples: list[TickSample] = []
    changed = threading.Condition()
    # settle_s=0: the service as it is after its first minutes (OWNERS_SETTLE_S), which the benchmarks measure
    backend = CountingSlurm(SlurmCLI(env=slurm_command_env(settings, base_env), own_uid=own_uid, settle_s=0))

    class TickMetrics(Metrics):
        def set_containers(self, counts: Mapping[ContainerState | str, int]) -> None:
            super().set_containers(counts)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            snap = backend.snapshot()
            sample = TickSample(
                t=time.monotonic(), cpu=time.process_time(), children=kids.ru_utime + kids.ru_stime,
                threads=thread_cpu(), slurm=snap["counts"], squeue_bytes=snap["squeue_bytes"],
                squeue_done=snap["squeue_done"], rss=_rss(),
                max_rss=_peak_rss(),
                states={(k.value if isinstance(k, ContainerState) else str(k)): v for k, v in counts.items()},
                tick_cpu=last.cpu_s if (last := state["dispatch"].dispatcher.last_tick) is not None else 0.0,
            )
            with changed:
                samples.append(sample)
                changed.notify_all()

    metrics = TickMetrics()
    state: dict[str, Any] = {}
    started = threading.Event()

    def control() -> None:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                message = ("stop",)
            kind = message[0]
            if kind == "wait":  # ("wait", index, timeout): the samples from index on, once there is one
                _, index, timeout = message

                def ready(index: int = index) -> bool:
                    return len(samples) > index or "error" in state

                with changed:
                    changed.wait_for(ready, timeout)
                    conn.send({"samples": samples[index:], "error": state.get("error")})
            elif kind == "squeue_starts":
                conn.send(backend.squeue_starts())
            elif kind == "slurm":
                conn.send({**backend.snapshot(), "now": time.monotonic(), "error": state.get("error")})
            else:  # stop
                started.wait(60)
                loop, dispatch = state.get("loop"), state.get("dispatch")
                if loop is not None and dispatch is not None and not state.get("done"):
                    loop.call_soon_threadsafe(dispatch.shutdown)
                state["finished"].wait(120)
                conn.send({"error": state.get("error")})
                return

    state["finished"] = threading.Event()
    thread = threading.Thread(target=control, name="bench-control", daemon=True)
    thread.start()

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["dispatch"] = DispatchLoop(
            settings,
            base_env=base_env,
            client=MeteredClient(ArvadosClient.from_settings(settings), metrics),
            backend=MeteredBackend(backend, metrics),
            metrics=metrics,
        )
        started.set()
        await state["dispatch"].run()

    try:
        asyncio.run(main())
        if state["dispatch"].failed is not None:
            state["error"] = repr(state["dispatch"].failed)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        state["error"] = repr(exc)
    finally:
        state["done"] = True
        started.set()
        with changed:
            changed.notify_all()
        state["finished"].set()
    thread.join(150)


class ServiceProcess:
    """The service in a child process (spawned: a fresh interpreter, nothing inherited but the arguments)."""

    def __init__(self, settings: Settings, base_env: Mapping[str, str], log_path: Path, *,
                 own_uid: int | None = None) -> None:
        """``own_uid``: the uid the service's jobs belong to, as a service running as that user passes it to
        ``SlurmCLI`` (the benchmark's service runs as root and submits with ``--uid``); None: root's."""
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, settings, dict(base_env), str(log_path), own_uid),
                                 name="bench-service", daemon=True)
        self.samples: list[TickSample] = []
        self.log_path = log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def start(self) -> None:
        """Start the child. Does not wait for its first tick."""
        self._proc.start()

    def _ask(self, message: tuple[Any, ...], timeout: float) -> dict[str, Any]:
        self._conn.send(message)
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the service process did not answer {message[0]!r} within {timeout:g} s")
        answer: dict[str, Any] = self._conn.recv()
        return answer

    def wait_ticks(self, count: int = 1, *, timeout: float = 600) -> list[TickSample]:
        """Wait for at least ``count`` more tick samples; return the new ones (also in ``samples``). Blocks.

        Raises:
            RuntimeError: the service stopped with an error, or the ticks did not come in time.
        """
        deadline = time.monotonic() + timeout
        new: list[TickSample] = []
        while len(new) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the service made {len(new)} of {count} ticks in {timeout:g} s")
            answer = self._ask(("wait", len(self.samples), min(left, 60.0)), min(left, 60.0) + 30)
            if answer["error"]:
                raise RuntimeError(f"the service stopped: {answer['error']}")
            self.samples += answer["samples"]
            new += answer["samples"]
        return new

    def squeue_starts(self) -> list[float]:
        """Return when each squeue run so far started (``time.monotonic()``). Blocks briefly."""
        self._conn.send(("squeue_starts",))
        if not self._conn.poll(30):
            raise RuntimeError("the service process did not answer 'squeue_starts' within 30 s")
        starts: list[float] = self._conn.recv()
        return starts

    def slurm(self) -> dict[str, Any]:
        """Return the Slurm command counters now (``CountingSlurm.snapshot`` and ``now``). Blocks briefly.

        Raises:
            RuntimeError: the service stopped with an error.
        """
        answer = self._ask(("slurm",), 30)
        if answer["error"]:
            raise RuntimeError(f"the service stopped: {answer['error']}")
        return answer

    def wait_settled(self, *, tracked: int, quiet_polls: int = 3, timeout: float = 1800) -> float:
        """Wait until ``tracked`` containers are tracked and ``quiet_polls`` squeue polls have started since the
        last other Slurm command (sbatch, scontrol, scancel); return the seconds waited. Blocks.

        Raises:
            RuntimeError: not settled within ``timeout`` s, or the service stopped with an error.
        """
        t0 = time.monotonic()
        while True:
            latest = self.wait_ticks(1, timeout=max(1.0, timeout - (time.monotonic() - t0)))[-1]
            snap = self.slurm()
            if sum(latest.states.values()) >= tracked and snap["quiet_polls"] >= quiet_polls:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"not settled after {timeout:g} s: {sum(latest.states.values())} of {tracked} "
                                   f"tracked, {snap['quiet_polls']} quiet squeue polls, commands {snap['counts']}")

    def stop(self) -> None:
        """Shut the service down as SIGTERM would (its Slurm jobs stay) and wait for the child. Blocks.

        Raises:
            RuntimeError: the service had stopped with an error.
        """
        error = None
        if self._proc.is_alive():
            try:
                error = self._ask(("stop",), 180)["error"]
            except (OSError, EOFError, RuntimeError):
                pass
            self._proc.join(30)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)
        if error:
            raise RuntimeError(f"the service stopped with an error: {error}")


def tick_deltas(samples: list[TickSample]) -> list[dict[str, Any]]:
    """Return what happened in each tick between consecutive samples: CPU (process, children, by thread), Slurm
    commands by kind, squeue bytes, seconds. Pure."""
    out = []
    for a, b in itertools.pairwise(samples):
        out.append({
            "seconds": b.t - a.t,
            "cpu": b.cpu - a.cpu,
            "children": b.children - a.children,
            "threads": {k: v - a.threads.get(k, 0.0) for k, v in b.threads.items()},
            "slurm": {k: v - a.slurm.get(k, 0) for k, v in b.slurm.items() if v - a.slurm.get(k, 0)},
            "squeue_bytes": b.squeue_bytes - a.squeue_bytes,
            "squeue_done": b.squeue_done - a.squeue_done,
            "tick_cpu": b.tick_cpu,
        })
    return out


@dataclass
class IdleWindow:
    """What the service did over ``ticks`` idle ticks, measured in one window."""

    ticks: int
    seconds: float
    """From the end of the tick before the window to the end of its last tick."""
    deltas: list[dict[str, Any]]
    """``tick_deltas`` of the window's ticks."""
    api: list[dict[str, list[int]]]
    """Per tick: route -> [requests, bytes in, bytes out], from the emulator's request log."""
    sdiag: SdiagReading
    """slurmctld's RPC statistics over ``sdiag_seconds``, about ``ticks`` PollIntervals between squeue polls."""
    sdiag_seconds: float
    daemon_cpu: float
    """CPU seconds of slurmctld (and munged, when the cluster started it) over the sdiag window."""
    emulator_cpu: float | None
    last: TickSample
    squeue_gaps: list[float]
    """Seconds between consecutive squeue starts, for the starts within the window."""


def measure_idle(service: ServiceProcess, cluster: Cluster, emulator: Emulator, ticks: int,
                 poll_interval: float) -> IdleWindow:
    """Measure ``ticks`` consecutive ticks of a settled service. Blocks for about ``ticks + 1`` PollIntervals.

    CPU, Slurm commands and API requests are counted between tick ends. slurmctld's statistics are counted over
    as long a window, placed between squeue polls instead (``sdiag -r`` half a PollInterval after a squeue
    started, ``sdiag`` ``ticks`` PollIntervals later): the poller and the dispatch loop keep their own grids, and
    a window edge at a tick end could cut a squeue's two RPCs apart.

    Raises:
        SdiagError: sdiag could not be reset or read (not root?).
        RuntimeError: the service stopped or stalled.
    """
    service.wait_ticks(1)
    i0 = len(service.samples) - 1
    starts = service.squeue_starts()
    if not starts:
        raise RuntimeError("the service has run no squeue yet")
    mid = starts[-1] + poll_interval / 2
    while mid < time.monotonic():
        mid += poll_interval
    time.sleep(mid - time.monotonic())
    sdiag.reset(cluster.env)
    t_reset = time.monotonic()
    daemons0, emu0 = cluster.daemon_cpu(), emulator.cpu_seconds()
    while len(service.samples) < i0 + ticks + 1:
        service.wait_ticks(1)
    time.sleep(max(0.0, t_reset + ticks * poll_interval - time.monotonic()))
    reading = sdiag.read(cluster.env)
    t_read = time.monotonic()
    daemons1, emu1 = cluster.daemon_cpu(), emulator.cpu_seconds()
    window = service.samples[i0 : i0 + ticks + 1]
    starts = [t for t in service.squeue_starts() if window[0].t < t <= window[-1].t]
    return IdleWindow(
        ticks=ticks,
        seconds=window[-1].t - window[0].t,
        deltas=tick_deltas(window),
        api=emulator.api_windows([s.t for s in window]),
        sdiag=reading,
        sdiag_seconds=t_read - t_reset,
        daemon_cpu=daemons1 - daemons0,
        emulator_cpu=None if emu0 is None or emu1 is None else emu1 - emu0,
        last=window[-1],
        squeue_gaps=[b - a for a, b in itertools.pairwise(starts)],
    )
