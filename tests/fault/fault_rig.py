"""The fault suite's rig: the emulator, the service process, the private Slurm cluster and the watcher, with
the moves every scenario makes (create containers, kill at a chosen moment, restart, stop with SIGTERM, drain)
and the checks after each of them.

Every wait is a condition wait with a deadline (``fault_slurm.wait_for``). The only pauses that are not are
deliberate and named: systemd's ``RestartSec`` before a restart, a planned delay before a kill, and the planned
length of an outage (``hold``). All randomness comes from one ``random.Random`` seeded per scenario.

Plain Python (no pytest): the soak script uses it too.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault.fault_api import (
    DISPATCHER_TOKEN_UUID,
    FINAL,
    History,
    crunch_run_trails,
    start_emulator,
)
from fault.fault_figures import Figures
from fault.fault_invariants import (
    Job,
    Trail,
    crunch_run_problems,
    final_state_problems,
    job_problems,
    locked_without_job,
    stop_problems,
)
from fault.fault_service import Kill, ServiceProcess, Stop, free_port, unit_seconds, write_config
from fault.fault_slurm import (
    FaultTimeout,
    ForeignJobs,
    PrivateCluster,
    SlurmWatcher,
    jobs_changed_in_log,
    wait_for,
)

TIMEOUT_STOP_S = unit_seconds("TimeoutStopSec")
"""The bound on a SIGTERM'd service's exit: systemd SIGKILLs it after this long."""
RESTART_S = unit_seconds("RestartSec")
"""systemd's pause before it restarts the service."""
READY_S = 30.0
"""Deadline for READY=1 after a start, with the API and slurmctld working."""
RESUBMIT_S = 30.0
"""Deadline for a container left Locked without a job by a kill to get one, once the service is back."""

KILL_MOMENTS: dict[str, int] = {
    "startup": 2,  # before READY: the first poll, adoption
    "after a lock": 3,  # a container was just locked: Locked without a job
    "sbatch in flight": 3,
    "jobs pending": 2,
    "container running": 2,
    "random": 2,
    "after a cancel request": 1,  # priority 0 just set: scancel under way
}
"""Where a SIGKILL is aimed, with weights for the seeded draw."""


def hold(seconds: float) -> None:
    """Pause on purpose (a planned delay, never a wait for a condition). Blocks."""
    time.sleep(max(0.0, seconds))


@dataclass
class KillOutcome:
    """A SIGKILL and what it left."""

    kill: Kill
    moment: str
    owed: list[str]
    """Containers it left Locked without a job: the next incarnation must submit them (or let them go)."""


@dataclass
class Rig:
    """One scenario's world. Build it with ``Rig.create``; ``close()`` it afterwards."""

    name: str
    seed: int
    rng: random.Random
    workdir: Path
    out_dir: Path
    cluster: PrivateCluster
    foreign: ForeignJobs | None
    emulator: Any
    history: History
    service: ServiceProcess
    watcher: SlurmWatcher
    figures: Figures
    explained: dict[str, str] = field(default_factory=dict)
    """Containers whose Cancelled end a fault explains: uuid → the fault."""
    api_faults_explain: bool = False
    """Under API faults a crunch-run that could not write its state explains a Cancelled end."""
    uuids: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: tuple[float, float] = (0.5, 2.5)
    """Work time of new containers (seconds, uniform)."""
    strict: bool = False
    """No fault can cut a crunch-run short here: every container that ran had exactly one job."""
    ctld_up: bool = True
    """False while a scenario holds slurmctld stopped (then squeue cannot answer, and is not asked)."""

    @classmethod
    def create(cls, *, name: str, seed: int, workdir: Path, cluster: PrivateCluster,
               foreign: ForeignJobs | None) -> Rig:
        """Start the emulator and the watcher and write the service's config (the service is not started)."""
        out_dir = workdir / "slurm-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        emulator, history = start_emulator(workdir)
        config = write_config(workdir / "config.yml", base_url=emulator.base_url, root_token=emulator.root_token,
                              out_dir=out_dir, port=free_port())
        service = ServiceProcess(config=config, workdir=workdir, slurm_env=cluster.env)
        watcher = SlurmWatcher(cluster).start()
        return cls(name=name, seed=seed, rng=random.Random(f"{seed}:{name}"), workdir=workdir, out_dir=out_dir,
                   cluster=cluster, foreign=foreign, emulator=emulator, history=history, service=service,
                   watcher=watcher, figures=Figures(name))

    def close(self) -> None:
        """Kill the service, cancel our jobs, stop the watcher and the emulator. Blocks."""
        try:
            self.service.close()
        finally:
            self.watcher.stop()
            ours = [r.job_id for name, recs in self.watcher.by_name().items() if name in set(self.uuids)
                    for r in recs if r.live]
            self.cluster.cancel(ours)
            self.history.close()
            self.emulator.stop()

    def replay_hint(self) -> str:
        """How to see more and replay: for failure messages."""
        return (f"seed {self.seed} (replay: SLURM_DISPATCH_FAULT_SEED={self.seed}); service log "
                f"{self.service.log}; job output {self.out_dir}; slurmctld log {self.cluster.ctld_log}")

    def violate(self, text: str) -> None:
        """Record an invariant violation (the scenario goes on, so that all of them are seen)."""
        self.violations.append(f"[{self.name} {time.monotonic() - self.started:.0f} s] {text}")

    # -- containers ---------------------------------------------------------------------------------------

    def create_containers(self, n: int, *, priority: int | None = None, mode: str = "complete") -> list[str]:
        """Create ``n`` Queued containers (seeded work time and priority; ``mode``: what crunch-run-stub does,
        e.g. ``hang``: run until signalled); return their uuids."""
        made = []
        for _ in range(n):
            record = self.emulator.create_container({
                "priority": self.rng.randint(1, 1000) if priority is None else priority,
                "command": ["sleep", f"{self.rng.uniform(*self.duration):.1f}"],
                "runtime_constraints": {"ram": 100_000_000, "vcpus": 1},
                "environment": {"SANDBOX_CRUNCH_RUN": mode},
            })
            made.append(record["uuid"])
        self.uuids += made
        return made

    def records(self) -> dict[str, dict[str, Any]]:
        """Our containers' records now, by uuid (read in process, never faulted)."""
        return {u: self.emulator.store.container(u) for u in self.uuids}

    def open_containers(self) -> list[str]:
        """Containers that still have to be run: not final, priority > 0."""
        return [u for u, c in self.records().items() if c["state"] not in FINAL and c["priority"] > 0]

    def top_up(self, target: int) -> list[str]:
        """Create containers until ``target`` are open; return the new ones."""
        return self.create_containers(max(0, target - len(self.open_containers())))

    def cancel_request(self, uuid: str) -> None:
        """Set a container's priority to 0, as a user cancelling its request would."""
        self.explained[uuid] = "priority 0 set by the test"
        self.emulator.set_priority(uuid, 0)
        self.figures.faults["cancel requests (priority 0)"] += 1

    # -- the service --------------------------------------------------------------------------------------

    def check_service(self) -> bool:
        """True if the service runs; an incarnation that exited on its own is a violation, and is restarted
        (as systemd would)."""
        if self.service.alive:
            return True
        if self.service.proc is not None and self.service.proc.returncode is not None:
            rc = self.service.proc.returncode
            self.violate(f"the service exited by itself with status {rc}:\n{self.service.log_tail(15)}")
            self.service.proc = None
            hold(RESTART_S)
            self.service.start()
        return False

    def start_service(self, *, wait_ready: bool = True) -> None:
        """Start an incarnation (and wait for READY=1)."""
        self.service.start()
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_S) -> bool:
        """Wait until the incarnation has sent READY=1; False (and a violation) after ``timeout``."""
        def ready() -> bool:
            self.check_service()
            return self.service.ready()

        try:
            wait_for(ready, timeout=timeout, what="READY=1")
            return True
        except FaultTimeout:
            self.violate(f"no READY=1 within {timeout:.0f} s of a start:\n{self.service.log_tail(15)}")
            return False

    def restart(self) -> None:
        """Start the next incarnation after systemd's RestartSec."""
        hold(RESTART_S)
        self.service.start()

    def sigkill(self, moment: str) -> KillOutcome:
        """SIGKILL the incarnation now, reap its group, and note what it left (one fresh squeue). Blocks."""
        kill = self.service.kill()
        snap = self.watcher.fresh() if self.ctld_up else self.watcher.latest()
        assert snap is not None, "no squeue snapshot yet"
        current = self.history.current()
        mine = set(self.uuids)
        live = snap.live_states()
        owed = locked_without_job({u: w.state for u, w in current.items() if u in mine}, snap.live_names(),
                                  me=DISPATCHER_TOKEN_UUID, locked_by={u: w.locked_by for u, w in current.items()})
        pending = [u for u in mine if live.get(u) == "PENDING"]
        running = [u for u in mine if u in current and current[u].state == "Running"]
        k = self.figures.kills
        k.kills += 1
        k.before_ready += not kill.ready
        k.with_locked_no_job += bool(owed)
        k.with_sbatch += "sbatch" in kill.children
        k.with_pending += bool(pending)
        k.with_running += bool(running)
        k.containers_locked_no_job += len(owed)
        k.containers_pending += len(pending)
        k.containers_running += len(running)
        k.leftovers_reaped += kill.leftovers
        k.strategies[moment] += 1
        return KillOutcome(kill=kill, moment=moment, owed=owed)

    def settle_owed(self, owed: list[str], *, since: float) -> None:
        """Wait until every container in ``owed`` has a live job or is no longer Locked (invariant 4); a
        violation after ``RESUBMIT_S``. ``since``: monotonic time of the restart."""
        if not owed:
            return

        def settled() -> bool:
            self.check_service()
            snap = self.watcher.latest()
            live = snap.live_names() if snap is not None else set()
            current = self.history.current()
            return all(u in live or current[u].state != "Locked" for u in owed)

        try:
            wait_for(settled, timeout=RESUBMIT_S, what="the containers a kill left Locked to get a job")
            self.figures.kills.resubmit_s.append(time.monotonic() - since)
        except FaultTimeout:
            current = self.history.current()
            stuck = [u for u in owed if current[u].state == "Locked"]
            self.violate(f"left Locked without a job {RESUBMIT_S:.0f} s after the restart: {stuck}")

    def sigterm(self, label: str) -> Stop:
        """SIGTERM the incarnation and check invariant 6 (exit 0 within TimeoutStopSec, every job left
        running). Blocks until it has exited."""
        before = self.watcher.fresh() if self.ctld_up else self.watcher.latest()
        mine = set(self.uuids)
        live_before = [(job_id, job.name) for job_id, job in (before.jobs if before else {}).items()
                       if job.name in mine and job.state in {"PENDING", "RUNNING"}]
        offset = self.cluster.log_offset()
        stop = self.service.terminate(bound=TIMEOUT_STOP_S)
        self.figures.sigterms.append((label, stop.seconds))
        after_text = self.cluster.ctld_log_since(offset)
        cancelled = [j for j, lines in jobs_changed_in_log(after_text).items()
                     if any("REQUEST_KILL_JOB" in line for line in lines)]
        states = {u: (c["state"], c["priority"]) for u, c in self.records().items()}
        for problem in stop_problems(seconds=stop.seconds, returncode=stop.returncode, bound=TIMEOUT_STOP_S,
                                     live_before=live_before, states_after=states, cancelled_during=cancelled):
            self.violate(f"SIGTERM ({label}): {problem}")
        return stop

    # -- the end ------------------------------------------------------------------------------------------

    def drain(self, *, timeout: float = 120) -> None:
        """Run the service until every container is final (or correctly queued) and none of our jobs is
        live; a violation after ``timeout``."""
        if not self.service.alive:
            self.start_service(wait_ready=False)

        def drained() -> bool:
            self.check_service()
            records = self.records().values()
            if any(c["state"] not in FINAL and not (c["state"] == "Queued" and c["priority"] == 0)
                   for c in records):
                return False
            snap = self.watcher.latest()
            return snap is not None and not (snap.live_names() & set(self.uuids))

        try:
            wait_for(drained, timeout=timeout, what="every container to finish", every=0.2)
        except FaultTimeout:
            open_ = {u: c["state"] for u, c in self.records().items() if c["state"] not in FINAL}
            self.violate(f"not drained within {timeout:.0f} s: {open_}")

    def finish(self) -> list[str]:
        """Stop the service with SIGTERM, check the invariants over the whole run, fill the figures; return
        every violation. Blocks."""
        if self.service.alive:
            # An incarnation that drain() has just started may not have its signal handlers yet (the interpreter
            # and its imports come first), and SIGTERM then ends it as it ends any process: killed by the signal.
            # The final stop is of a running service, so it waits for READY=1 first.
            if not self.service.ready():
                self.wait_ready()
            self.sigterm("final stop, idle")
        self.watcher.fresh()
        records = self.records()
        by_name = self.watcher.by_name()
        jobs = {u: [Job(r.job_id, tuple(r.states), frozenset(r.nodes), r.submitted, r.ended)
                    for r in by_name.get(u, [])] for u in self.uuids}
        job_ids = [j.job_id for js in jobs.values() for j in js]
        raw_trails = crunch_run_trails(self.out_dir, job_ids=job_ids)
        trails = {u: Trail(tuple(t.went_on), tuple(t.running), tuple(t.refused)) for u, t in raw_trails.items()}

        def may_cancel(uuid: str) -> str | None:
            if uuid in self.explained:
                return self.explained[uuid]
            trail = raw_trails.get(uuid)
            if self.api_faults_explain and trail is not None and trail.api_errors:
                return f"crunch-run met the API faults: {trail.api_errors[0]}"
            return None

        problems = final_state_problems(records.values(), may_cancel=may_cancel)
        doubles = [text for name, text in self.watcher.double_jobs if name in records]
        problems += job_problems(records.values(), jobs, trails, doubles, strict=self.strict)
        problems += crunch_run_problems(records.values(), trails, self.history.transitions())
        if self.foreign is not None:
            problems += self.foreign.problems(self.cluster, ctld_log_text=self.cluster.ctld_log_since(0))
        for p in problems:
            self.violate(p)
        f = self.figures
        f.seconds = time.monotonic() - self.started
        f.containers = len(records)
        f.final_states.update(c["state"] for c in records.values())
        f.jobs = len(job_ids)
        f.lock_counts.update(int(c["lock_count"]) for c in records.values())
        f.crunch_run_starts = sum(len(t.starts) for t in raw_trails.values())
        f.violations = len(self.violations)
        return self.violations

    def report(self) -> str:
        """The figures and the violations, for a failure message or the terminal."""
        lines = [*self.figures.lines(), f"  {self.replay_hint()}"]
        lines += [f"  VIOLATION {v}" for v in self.violations]
        return "\n".join(lines)
