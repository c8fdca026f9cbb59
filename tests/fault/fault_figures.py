"""The fault suite's figures: what was done to the service and what state it was in when it happened.

``Figures`` is filled by the scenarios (fault_scenarios.py) and printed by the tests (with ``-s``), by the
session summary (tests/plugins/fault_fixtures.py) and by the soak script; docs/robustness.md quotes them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class KillFigures:
    """Where the SIGKILLs landed."""

    kills: int = 0
    before_ready: int = 0
    """The incarnation had not sent READY=1 yet (startup, first poll, adoption)."""
    with_locked_no_job: int = 0
    """At least one container was Locked by us with no Slurm job."""
    with_sbatch: int = 0
    """An sbatch child was running (a submission in flight)."""
    with_pending: int = 0
    """At least one of our jobs was PENDING in Slurm."""
    with_running: int = 0
    """At least one container was Running."""
    containers_locked_no_job: int = 0
    containers_pending: int = 0
    containers_running: int = 0
    leftovers_reaped: int = 0
    """Child processes still alive after the main process died, SIGKILLed as systemd would."""
    strategies: Counter[str] = field(default_factory=Counter)
    resubmit_s: list[float] = field(default_factory=list)
    """For each kill that left containers Locked without a job: seconds from the restart until all had one."""

    def merge(self, other: KillFigures) -> None:
        """Add ``other``'s counts to these."""
        for name in ("kills", "before_ready", "with_locked_no_job", "with_sbatch", "with_pending", "with_running",
                     "containers_locked_no_job", "containers_pending", "containers_running", "leftovers_reaped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.strategies.update(other.strategies)
        self.resubmit_s += other.resubmit_s


@dataclass
class Figures:
    """Everything counted in one scenario (or, merged, in a whole run)."""

    name: str
    seconds: float = 0.0
    containers: int = 0
    final_states: Counter[str] = field(default_factory=Counter)
    jobs: int = 0
    """Slurm jobs of our containers."""
    lock_counts: Counter[int] = field(default_factory=Counter)
    """How many containers were locked once, twice, ..."""
    crunch_run_starts: int = 0
    kills: KillFigures = field(default_factory=KillFigures)
    faults: Counter[str] = field(default_factory=Counter)
    sigterms: list[tuple[str, float]] = field(default_factory=list)
    """(what was going on, seconds to exit) for each SIGTERM."""
    violations: int = 0

    def merge(self, other: Figures) -> None:
        """Add ``other`` to these figures."""
        self.seconds += other.seconds
        self.containers += other.containers
        self.final_states.update(other.final_states)
        self.jobs += other.jobs
        self.lock_counts.update(other.lock_counts)
        self.crunch_run_starts += other.crunch_run_starts
        self.kills.merge(other.kills)
        self.faults.update(other.faults)
        self.sigterms += other.sigterms
        self.violations += other.violations

    def lines(self) -> list[str]:
        """The figures as text, one fact a line."""
        k = self.kills
        states = ", ".join(f"{s} {n}" for s, n in sorted(self.final_states.items()))
        locks = ", ".join(f"{times}× {n}" for times, n in sorted(self.lock_counts.items()))
        out = [
            (f"{self.name}: {self.seconds:.0f} s, {self.containers} containers ({states}), {self.jobs} Slurm jobs, "
            f"{self.crunch_run_starts} crunch-run starts; containers by times locked: {locks or 'none'}"),
            (f"  SIGKILLs: {k.kills} (before READY {k.before_ready}; with containers Locked without a job "
            f"{k.with_locked_no_job} [{k.containers_locked_no_job} containers]; sbatch in flight {k.with_sbatch}; "
            f"jobs pending {k.with_pending} [{k.containers_pending}]; containers Running {k.with_running} "
            f"[{k.containers_running}]; children reaped after the kill {k.leftovers_reaped})"),
        ]
        if k.strategies:
            out.append("  kill moments: " + ", ".join(f"{s} {n}" for s, n in sorted(k.strategies.items())))
        if k.resubmit_s:
            out.append(f"  Locked without a job → job after restart: median {statistics.median(k.resubmit_s):.1f} s, "
                       f"max {max(k.resubmit_s):.1f} s")
        if self.faults:
            out.append("  faults: " + ", ".join(f"{f} {n}" for f, n in sorted(self.faults.items())))
        if self.sigterms:
            by_what: dict[str, list[float]] = {}
            for what, seconds in self.sigterms:
                by_what.setdefault(what, []).append(seconds)
            out.append(f"  SIGTERMs: {len(self.sigterms)}, exit within " + "; ".join(
                f"{max(times):.1f} s ({what}" + (f", {len(times)}×)" if len(times) > 1 else ")")
                for what, times in sorted(by_what.items())))
        out.append(f"  invariant violations: {self.violations}")
        return out
