"""The fault suite: the private cluster's slurmctld stopped and started while containers flow, with a SIGKILL
and a SIGTERM of the service while it is down (docs/robustness.md, "Fault suite")."""

from __future__ import annotations

import pytest
from fault.fault_rig import Rig
from fault.fault_scenarios import slurmctld_outages

pytestmark = pytest.mark.slurm


def test_fault_slurmctld_stopped_and_started(fault_rig: Rig) -> None:
    slurmctld_outages(fault_rig, outages=1)
    violations = fault_rig.finish()
    report = fault_rig.report()
    assert not violations, report
    assert fault_rig.figures.faults["slurmctld stopped"] == 1, report
    assert fault_rig.figures.kills.kills == 1 and len(fault_rig.figures.sigterms) == 2, report
    # an outage of Slurm is no reason to give up a container
    assert fault_rig.figures.final_states["Cancelled"] == 0, report
