"""The fault suite's scenarios: what is done to the service, when, and what must hold after each fault.

Each scenario runs the service (a real ``slurm-dispatch run``) against a stream of containers, inflicts its
faults at seeded moments, checks after each fault what can be checked then (a kill left no container Locked
without a job once the service is back; a SIGTERM let the service exit in time and left every job running),
then drains (every container final) and leaves the whole-run invariants to ``Rig.finish``.

* ``kill_storm``: SIGKILL at aimed moments (``fault_rig.KILL_MOMENTS``), restart after RestartSec; SIGTERMs
  among them.
* ``api_faults``: 503s (with a kill in the middle), hangs, lock answers lost after the lock was applied; SIGTERM
  under a 503 storm and while a lock request hangs. (SIGTERM while the startup's first API call hangs is
  ``sigterm_during_startup_call``, a test of its own.)
* ``slurmctld_outages``: slurmctld stopped (by pid file) and started again; while it is down, a kill and a
  SIGTERM of the service.
* ``node_failure``: one slurmd stopped and its job steps SIGKILLed, a SIGTERM while the node is down; the node
  restarted afterwards.

Plain Python (no pytest): the soak script uses these too.
"""

from __future__ import annotations

import time

from fault.fault_rig import KILL_MOMENTS, Rig, hold
from fault.fault_slurm import FaultTimeout, wait_for

TARGET_OPEN = 7
"""Containers kept open (queued, locked, pending or running): more than the cluster's 3 free slots, so that
some jobs always pend."""

HANG_S = 6.0
"""How long a hung API request hangs before the emulator answers it (to a client long gone)."""

NODE = "c1"
"""The node the node-failure scenario stops (the foreign running job is on the other one)."""


def _ours_live(rig: Rig, state: str) -> bool:
    snap = rig.watcher.latest()
    mine = set(rig.uuids)
    return snap is not None and any(n in mine and s == state for n, s in snap.live_states().items())


def _any_running(rig: Rig) -> bool:
    mine = set(rig.uuids)
    return any(u in mine and w.state == "Running" for u, w in rig.history.current().items())


def aim(rig: Rig, moment: str) -> str:
    """Wait for the moment a kill is aimed at (creating containers when it needs fresh locks); return the
    moment's label, marked when its condition did not come within its deadline. Blocks."""
    rng = rig.rng
    if moment == "startup":
        hold(rng.uniform(0.05, 0.8))
        return moment
    if not rig.wait_ready():
        return f"{moment} (never ready)"
    try:
        if moment == "after a lock":
            mark = rig.history.last_id()
            rig.create_containers(rng.randint(1, 3))
            wait_for(lambda: any(w.state == "Locked" for w in rig.history.writes(after=mark)), timeout=10,
                     what="a lock", every=0.01)
        elif moment == "sbatch in flight":
            rig.create_containers(rng.randint(1, 2))
            wait_for(lambda: "sbatch" in rig.service.direct_children(), timeout=10, what="an sbatch",
                     every=0.002)
        elif moment == "jobs pending":
            wait_for(lambda: _ours_live(rig, "PENDING"), timeout=15, what="a pending job")
            hold(rng.uniform(0.0, 0.3))
        elif moment == "container running":
            wait_for(lambda: _any_running(rig), timeout=20, what="a Running container")
            hold(rng.uniform(0.0, 0.3))
        elif moment == "after a cancel request":
            current = rig.history.current()
            candidates = sorted(u for u in rig.uuids if u in current and current[u].priority > 0
                                and current[u].state in ("Locked", "Running"))
            if candidates:
                rig.cancel_request(rng.choice(candidates))
            hold(rng.uniform(0.0, 0.5))
        else:
            hold(rng.uniform(0.2, 1.5))
    except FaultTimeout:
        return f"{moment} (not met in time)"
    return moment


def kill_storm(rig: Rig, *, kills: int, sigterms: int) -> None:
    """SIGKILL the service ``kills`` times at aimed moments, restarting it each time after RestartSec, with
    ``sigterms`` SIGTERM-and-restart cycles among them; then drain. Blocks."""
    rng = rig.rng
    rig.strict = True
    rig.create_containers(2, priority=0)  # never to be locked, never to get a job
    rig.top_up(TARGET_OPEN)
    rig.start_service(wait_ready=False)
    term_after = set(rng.sample(range(kills), min(sigterms, kills)))
    owed: list[str] = []
    restarted = time.monotonic()
    names, weights = list(KILL_MOMENTS), list(KILL_MOMENTS.values())
    for i in range(kills):
        moment = rng.choices(names, weights)[0]
        if moment != "startup":  # a startup kill comes before the service could have paid the last kill's debts
            rig.settle_owed(owed, since=restarted)
            owed = []
        rig.top_up(TARGET_OPEN)
        outcome = rig.sigkill(aim(rig, moment))
        owed += outcome.owed
        rig.restart()
        restarted = time.monotonic()
        if i in term_after:
            rig.wait_ready()
            rig.settle_owed(owed, since=restarted)
            owed = []
            hold(rng.uniform(0.2, 1.0))
            rig.sigterm("containers flowing")
            rig.restart()
            restarted = time.monotonic()
    rig.settle_owed(owed, since=restarted)
    rig.drain()


def _wait_injected(rig: Rig, before: int, *, at_least: int = 1, timeout: float = 20) -> None:
    wait_for(lambda: rig.emulator.faults.injected >= before + at_least, timeout=timeout,
             what=f"{at_least} injected API fault(s)")


def api_faults(rig: Rig) -> None:
    """503s, hangs and lost answers from the API, a kill and three SIGTERMs among them; then drain. Blocks."""
    rng, faults = rig.rng, rig.emulator.faults
    rig.api_faults_explain = True
    rig.top_up(TARGET_OPEN)
    rig.start_service()
    wait_for(lambda: _any_running(rig), timeout=60, what="a Running container")

    # 503s on a share of every request (crunch-run's too), a SIGKILL and restart in the middle of them
    length = rng.uniform(3.0, 4.5)
    faults.add({"mode": "status", "status": 503, "fraction": rng.uniform(0.3, 0.6), "duration": length,
                "seed": rig.seed})
    rig.figures.faults["API 503 storms"] += 1
    hold(rng.uniform(0.5, length - 1.0))
    outcome = rig.sigkill("during API 503s")
    rig.restart()
    restarted = time.monotonic()
    wait_for(lambda: not faults.rules(), timeout=length + 5, what="the 503 storm to end")
    rig.wait_ready()
    rig.settle_owed(outcome.owed, since=restarted)

    # slow answers: a share of the container GETs and lists hangs for seconds
    rig.top_up(TARGET_OPEN)
    faults.add({"mode": "hang", "seconds": rng.uniform(1.5, 3.0), "fraction": 0.3, "duration": 4.0,
                "method": "GET", "path_prefix": "/arvados/v1/containers", "seed": rig.seed + 1})
    rig.figures.faults["API hang storms"] += 1
    wait_for(lambda: not faults.rules(), timeout=15, what="the hangs to end")

    # locks (and unlocks) applied, their answers lost: the service must find them Locked by it and submit them
    new = rig.create_containers(3)
    before = faults.injected
    faults.add({"mode": "drop_after", "method": "POST", "path_prefix": "/arvados/v1/containers/", "count": 3})
    _wait_injected(rig, before, at_least=3)
    rig.figures.faults["API answers lost after a lock/unlock"] += 3
    faults.clear()
    rig.settle_owed(new, since=time.monotonic())

    # SIGTERM while every request fails with 503 (retries under way)
    before = faults.injected
    faults.add({"mode": "status", "status": 503, "duration": 60})
    rig.figures.faults["API 503 storms"] += 1
    _wait_injected(rig, before, at_least=3)
    rig.sigterm("API answering 503 to everything")
    faults.clear()
    rig.start_service()

    # SIGTERM while a lock request hangs; the emulator applies that lock HANG_S after it was sent, to a client
    # long gone, while the next incarnation's own locks of the container fail (503): it must then find the
    # container Locked by its token, take it as its own and submit it
    [late] = rig.create_containers(1)
    lock_path = f"/arvados/v1/containers/{late}/lock"
    before = faults.injected
    faults.add({"mode": "hang", "seconds": HANG_S, "method": "POST", "count": 1, "path_prefix": lock_path})
    rig.figures.faults["API requests hung"] += 1
    _wait_injected(rig, before)
    rig.sigterm("a lock request hanging")
    faults.clear()
    faults.add({"mode": "status", "status": 503, "method": "POST", "path_prefix": lock_path,
                "duration": HANG_S + 2})
    rig.start_service()
    wait_for(lambda: rig.history.current()[late].state != "Queued", timeout=HANG_S + 10,
             what="the hung lock to land")
    rig.settle_owed([late], since=time.monotonic())
    faults.clear()
    rig.drain()


def sigterm_during_startup_call(rig: Rig) -> None:
    """Start the service while its first API call (our token's uuid) hangs, and SIGTERM it then. Blocks."""
    faults = rig.emulator.faults
    before = faults.injected
    faults.add({"mode": "hang", "seconds": HANG_S, "method": "GET", "count": 1,
                "path_prefix": "/arvados/v1/api_client_authorizations/current"})
    rig.figures.faults["API requests hung"] += 1
    rig.start_service(wait_ready=False)
    _wait_injected(rig, before)
    rig.sigterm("the startup's first API call hanging")


def slurmctld_outages(rig: Rig, *, outages: int = 1) -> None:
    """Stop slurmctld ``outages`` times for a few seconds while containers flow; during each, kill the service
    and restart it, then SIGTERM it and restart it; then drain. Blocks."""
    rng = rig.rng
    rig.top_up(TARGET_OPEN)
    rig.start_service()
    wait_for(lambda: _ours_live(rig, "PENDING") and _any_running(rig), timeout=60,
             what="pending jobs and a Running container")
    for _ in range(outages):
        length = rng.uniform(5.0, 8.0)
        t0 = time.monotonic()
        rig.cluster.stop_slurmctld()
        rig.ctld_up = False
        rig.figures.faults["slurmctld stopped"] += 1
        rig.top_up(TARGET_OPEN + 2)  # locks while Slurm can take no submission
        hold(rng.uniform(0.5, 1.5))
        owed = rig.sigkill("slurmctld down").owed
        rig.restart()
        rig.wait_ready()
        hold(rng.uniform(0.2, 1.0))
        rig.sigterm("slurmctld down")
        rig.restart()
        hold(length - (time.monotonic() - t0))
        rig.cluster.start_slurmctld()
        rig.ctld_up = True
        rig.wait_ready()
        restarted = time.monotonic()
        rig.watcher.fresh()
        # every container Locked now (the kill's debts, and the locks made during the outage) must get a job
        locked = [u for u, w in rig.history.current().items() if u in set(rig.uuids) and w.state == "Locked"]
        rig.settle_owed(sorted(set(owed) | set(locked)), since=restarted)
    rig.drain()


def node_failure(rig: Rig) -> None:
    """Stop slurmd of ``NODE`` and SIGKILL its job steps while our jobs run there, SIGTERM the service while the
    node is down, wait for Slurm to fail its jobs, restart the node; then drain. Blocks.

    The first containers run until signalled (crunch-run-stub's ``hang``), so that jobs are certainly running on
    the node when it dies; those that did not land there are cancelled (priority 0) once it is down.
    """
    rng = rig.rng
    hanging = rig.create_containers(3, mode="hang")  # 3 free CPUs: c1's two come first
    rig.start_service()

    def on_node() -> dict[str, str]:
        snap = rig.watcher.latest()
        if snap is None:
            return {}
        return {job.name: job_id for job_id, job in snap.jobs.items()
                if job.nodes == NODE and job.state == "RUNNING" and job.name in set(rig.uuids)}

    wait_for(lambda: on_node() and all(rig.history.current()[u].state == "Running" for u in on_node()),
             timeout=60, what=f"our containers running on {NODE}")
    rig.top_up(TARGET_OPEN)  # these pend: every CPU is taken
    rig.watcher.fresh()
    victims = on_node()
    for uuid in victims:
        rig.explained[uuid] = f"its job was running on node {NODE} when the node died"
    killed = rig.cluster.stop_node(NODE)
    rig.figures.faults["slurmd stopped under running jobs"] += 1
    rig.figures.faults["job-step processes SIGKILLed with it"] += len(killed)
    hold(rng.uniform(0.5, 2.0))
    rig.sigterm(f"node {NODE} down")
    rig.restart()
    wait_for(lambda: rig.cluster.node_state(NODE).startswith("down"), timeout=60, every=0.5,
             what=f"Slurm to mark {NODE} down")
    wait_for(lambda: not (set(victims.values()) & {r.job_id for recs in rig.watcher.by_name().values()
                                                    for r in recs if r.live}),
             timeout=60, what=f"the jobs on {NODE} to end")
    for uuid in hanging:
        if uuid not in victims:
            rig.cancel_request(uuid)
    rig.cluster.restart_nodes()
    rig.drain()


__all__ = ["HANG_S", "NODE", "TARGET_OPEN", "aim", "api_faults", "kill_storm", "node_failure",
           "sigterm_during_startup_call", "slurmctld_outages"]
