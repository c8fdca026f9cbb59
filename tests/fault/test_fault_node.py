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
    assert fault_rig.figures.faults["job-step processes SIGKILLed with it"] > 0, report
    # the containers that were running on the node are the ones that ended Cancelled, with Slurm's reason
    on_node = {u for u, why in fault_rig.explained.items() if "node" in why}
    records = fault_rig.records()
    assert on_node and all(records[u]["state"] == "Cancelled" for u in on_node), report
    assert all("NODE_FAIL" in records[u]["runtime_status"]["error"] for u in on_node), report
