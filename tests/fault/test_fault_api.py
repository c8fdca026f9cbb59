"""The fault suite: the Arvados API failing (503s, hangs, answers lost after the change was applied) under
the running service, with a SIGKILL and two SIGTERMs among the faults (docs/robustness.md, "Fault suite")."""

from __future__ import annotations

import pytest
from fault.fault_rig import Rig
from fault.fault_scenarios import api_faults, sigterm_during_startup_call

pytestmark = pytest.mark.slurm


def test_fault_api_errors_and_hangs(fault_rig: Rig) -> None:
    api_faults(fault_rig)
    violations = fault_rig.finish()
    report = fault_rig.report()
    assert not violations, report
    assert fault_rig.figures.kills.kills == 1, report
    assert len(fault_rig.figures.sigterms) == 3, report


def test_fault_sigterm_during_the_first_api_call_exits_0(fault_rig: Rig) -> None:
    # Found by this suite: `run` exited 1 here (the call cut short by the stop was read as a dispatch
    # failure, so systemd would record a failed stop); fixed in 58fa84c.
    sigterm_during_startup_call(fault_rig)
    violations = fault_rig.finish()
    assert not violations, fault_rig.report()
