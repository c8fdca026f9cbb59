"""The fault suite: a slurmd node stopped with our jobs running on it (its job steps SIGKILLed, as when the
machine dies), a SIGTERM of the service while it is down (docs/robustness.md, "Fault suite")."""

from __future__ import annotations

import pytest
from fault.fault_rig import Rig
from fault.fault_scenarios import node_failure

pytestmark = pytest.mark.slurm


def test_fault_node_stopped_under_running_jobs(fault_rig: Rig) -> None:
    node_failure(fault_rig)
    violations = fault_rig.finish()
    report = fault_rig.report()
    assert not violations, report
    assert len(fault_rig.figures.sigterms) == 2, report
