"""squeue's ``%r`` prints slurmctld's long description instead of the reason code when one is set
(src/squeue/print.c): the known texts of Slurm 22.05 and 24.11 get plain words and their codes, and no text is
said twice."""

from __future__ import annotations

import pytest

from slurm_dispatch.model import SlurmJob
from slurm_dispatch.settings import DEFAULT_NEVER_RUNNABLE_REASONS
from slurm_dispatch.slurm.reasons import (
    _PER_JOB_LIMIT_RE,
    is_held,
    never_runnable,
    never_runnable_reason,
    pending_words,
    reason_code,
    scheduling_status,
)

DRAINED_22 = "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
DRAINED_24 = ("Nodes required for job are DOWN, DRAINED, REBOOTING or reserved for jobs in higher priority "
              "partitions")
NOT_IN_GROUP = "uid 1000 not in group permitted to use this partition (p1). groups allowed: staff"


def pending(reason: str) -> SlurmJob:
    return SlurmJob(name="zzzzz-dz642-aaaaaaaaaaaaaaa", nice=0, slurm_priority=1, state="PENDING", reason=reason,
                    job_id="10")


@pytest.mark.parametrize("text", [DRAINED_22, DRAINED_24])
def test_the_drained_nodes_text_gets_plain_words_and_is_said_once(text: str) -> None:
    status = scheduling_status("Locked", pending(text))
    assert status.startswith("Waiting in Slurm: its nodes are down, drained or reserved for higher-priority "
                             "partitions: see `sinfo -R` (job 10, reason Nodes required"), status
    assert status.count("Nodes required") == 1 and "Slurm says" not in status, status
    assert reason_code(text) == "Resources"


def test_an_unknown_reason_is_quoted_once() -> None:
    status = scheduling_status("Locked", pending("Some new text of Slurm 26"))
    assert status == "Waiting in Slurm: waiting (Slurm says: Some new text of Slurm 26) (job 10)."
    assert scheduling_status("Locked", pending("Resources")) == (
        "Waiting in Slurm: waiting for resources to free up (job 10, reason Resources).")


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("Reservation maint was deleted", "ReservationDeleted", "held because its reservation was deleted"),
        ("Reservation maint is invalid", "ReservationInvalid", "held because its reservation is not valid"),
        ("job requeued in held state", "JobHeldUser", "held after it was requeued"),
        ("Burst buffer pre_run error", "BurstBufferOperation", "its burst buffer could not be set up"),
        ("Unable to load job batch script", "SystemFailure",
         "slurmctld could not load its batch script or environment"),
        (NOT_IN_GROUP, "AccountNotAllowed", "its user is not in a group its partition allows (AllowGroups)"),
    ],
)
def test_long_texts_have_their_codes_and_words(text: str, code: str, words: str) -> None:
    assert (reason_code(text), pending_words(text)) == (code, words)


def test_never_runnable_still_matches_with_long_texts() -> None:
    assert never_runnable(NOT_IN_GROUP, DEFAULT_NEVER_RUNNABLE_REASONS), "WAIT_ACCOUNT: AccountNotAllowed"
    assert not never_runnable(DRAINED_22, DEFAULT_NEVER_RUNNABLE_REASONS), "nodes come back: it may start"
    assert not never_runnable("Reservation maint was deleted", DEFAULT_NEVER_RUNNABLE_REASONS)
    assert never_runnable("PartitionTimeLimit", DEFAULT_NEVER_RUNNABLE_REASONS)
    reason = never_runnable_reason(pending(NOT_IN_GROUP), waited_s=30)
    assert reason.error == ("Slurm job 10 can never start: AccountNotAllowed (its user is not in a group its partition "
                            "allows (AllowGroups)); it was cancelled after waiting 30 s")
    assert f"Reason={NOT_IN_GROUP}" in reason.detail, "Slurm's own text stays in the detail"


@pytest.mark.parametrize("reason", ["JobHeldUser", "JobHeldAdmin", "Reservation maint was deleted",
                                    "job requeued in held state"])
def test_held_reasons(reason: str) -> None:
    assert is_held(reason)


@pytest.mark.parametrize("reason", ["Priority", "Resources", "JobHoldMaxRequeue", DRAINED_22])
def test_not_held_reasons(reason: str) -> None:
    assert not is_held(reason)


@pytest.mark.parametrize(("code", "whole"), [("QOSMaxCpuPerJobLimit", True), ("AssocMaxNodesPerJobLimit", True),
                                             ("QOSMaxCpuPerJobLimit\n", False), ("xQOSMaxCpuPerJobLimit", False)])
def test_a_per_job_limit_code_is_the_whole_code(code: str, whole: bool) -> None:
    # reason_code never hands on a newline today; the pattern must not rely on that ($ lets "\n" through)
    assert bool(_PER_JOB_LIMIT_RE.match(code)) is whole
