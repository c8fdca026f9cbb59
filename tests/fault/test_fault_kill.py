"""The fault suite: SIGKILL of ``slurm-dispatch run`` at aimed moments, at least 20 times in one run, each
followed by a restart as systemd does it, with SIGTERMs among them (docs/robustness.md, "Fault suite")."""

from __future__ import annotations

import pytest
from fault.fault_rig import Rig
from fault.fault_scenarios import kill_storm

pytestmark = pytest.mark.slurm

KILLS = 20
SIGTERMS = 2


def test_fault_sigkill_storm_loses_nothing_and_runs_nothing_twice(fault_rig: Rig) -> None:
    kill_storm(fault_rig, kills=KILLS, sigterms=SIGTERMS)
    violations = fault_rig.finish()
    report = fault_rig.report()
    assert not violations, report
    k = fault_rig.figures.kills
    assert k.kills == KILLS, report
    # the kills landed in every phase of a container's way: Locked before its job existed, its sbatch under
    # way, its job pending, the container running
    assert k.with_locked_no_job and k.with_sbatch and k.with_pending and k.with_running, report
    assert len(fault_rig.figures.sigterms) == SIGTERMS + 1, report
    # nothing here explains a Cancelled container: every one asked to run ran, once
    assert set(fault_rig.figures.final_states) <= {"Complete", "Queued", "Cancelled"}, report
