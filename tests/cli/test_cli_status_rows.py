"""The pure parts behind ``status`` and the exit codes: table tests (the decisions are in test_decide.py)."""

from __future__ import annotations

import pytest

from slurm_dispatch.cli.common import ExitCode, exit_code_for, one_line
from slurm_dispatch.errors import (
    ArvadosAPIError,
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosUnavailable,
    ConfigError,
    DispatchError,
    SbatchTemplateError,
    SlurmCommandError,
    SlurmUnavailable,
    UnsatisfiableContainer,
)
from slurm_dispatch.model import Container, SlurmJob
from slurm_dispatch.slurm.reasons import LEFTOVER
from slurm_dispatch.slurm.status import (
    StatusRow,
    status_rows,
)

ME = "zzzzz-gj3su-000000000000000"
OTHER = "zzzzz-gj3su-otherdispatcher"


def ctr(uuid: str, state: str, locked_by: str = "", priority: int = 1) -> Container:
    return Container.from_api({"uuid": uuid, "state": state, "locked_by_uuid": locked_by, "priority": priority})


def job(job_id: int, name: str, state: str = "RUNNING", reason: str = "None") -> SlurmJob:
    return SlurmJob(name=name, nice=0, slurm_priority=4294901759, state=state, reason=reason, job_id=str(job_id))


def u(tail: str) -> str:
    return f"zzzzz-dz642-{tail:0>15}"


# -- parse_queue_detail -------------------------------------------------------------


# -- status_rows --------------------------------------------------------------------


def expected_status(state: str | None, jid: int | None) -> str:
    """The scheduling status these rows should show (the job() helper's jobs all run on no named node)."""
    if state is None:
        return ""
    if jid is None:  # the admin view cannot know whether a job was submitted
        return ("Locked; no Slurm job in squeue: one is about to be submitted, or it has just left squeue and the "
                "container is being settled." if state == "Locked" else f"{state}; no Slurm job.")
    if state in ("Complete", "Cancelled"):
        return f"{state}; its Slurm job {jid} is still in squeue (RUNNING): {LEFTOVER}."
    if state == "Queued":
        return (f"Queued; the Slurm job {jid} of an earlier attempt is still in squeue (RUNNING): the container is "
                "not dispatched again until that job has gone.")
    if state == "Locked":
        return f"Slurm job {jid} is running; crunch-run is preparing the container."
    return f"Slurm job {jid} is running."


def row(uuid: str, state: str | None, jid: int | None, *problems: str, priority: int | None = 1,
        locked_by: str = "") -> StatusRow:
    return StatusRow(uuid=uuid, state=state, priority=priority if state else None, locked_by_uuid=locked_by,
                     job_id=jid, slurm_state="RUNNING" if jid else None, nice=0 if jid else None,
                     slurm_priority=4294901759 if jid else None, reason="None" if jid else None,
                     problems=list(problems), scheduling_status=expected_status(state, jid))


@pytest.mark.parametrize(
    ("containers", "jobs", "expected"),
    [
        pytest.param([ctr(u("a"), "Running", ME)], [job(1, u("a"))],
                     [row(u("a"), "Running", 1, locked_by=ME)], id="running-with-job-ok"),
        pytest.param([ctr(u("a"), "Locked", ME)], [job(1, u("a"))],
                     [row(u("a"), "Locked", 1, locked_by=ME)], id="locked-with-job-ok"),
        pytest.param([ctr(u("a"), "Locked", ME)], [],
                     [row(u("a"), "Locked", None, "Locked by this dispatcher with no Slurm job (after a submission "
                          "this lasts at most one poll; while its partition is inactive or draining, until it is "
                          "up, as the service log says; otherwise the dispatcher unlocks or cancels it)",
                          locked_by=ME)], id="locked-no-job"),
        pytest.param([ctr(u("a"), "Running", ME)], [],
                     [row(u("a"), "Running", None, "Running by this dispatcher with no Slurm job (after a "
                          "submission this lasts at most one poll; otherwise the dispatcher unlocks or cancels it)",
                          locked_by=ME)], id="running-no-job"),
        pytest.param([ctr(u("a"), "Complete")], [job(1, u("a"))],
                     [row(u("a"), "Complete", 1, f"Slurm job for a Complete container ({LEFTOVER})")],
                     id="complete-with-job"),
        pytest.param([ctr(u("a"), "Queued")], [job(1, u("a"))],
                     [row(u("a"), "Queued", 1, "Slurm job for a Queued container (an earlier attempt's: the "
                          "container is not dispatched again until it has gone)")], id="queued-with-job"),
        pytest.param([ctr(u("a"), "Cancelled")], [job(1, u("a"))],
                     [row(u("a"), "Cancelled", 1, f"Slurm job for a Cancelled container ({LEFTOVER})")],
                     id="cancelled-with-job"),
        pytest.param([ctr(u("a"), "Locked", OTHER)], [job(1, u("a"))],
                     [row(u("a"), "Locked", 1, f"Slurm job of ours for a container locked by another token "
                          f"({OTHER})", locked_by=OTHER)], id="locked-by-other"),
        pytest.param([], [job(1, u("a"))],
                     [row(u("a"), None, 1, "a Slurm job is named after this container, but the API does not "
                          "know it")], id="unknown-container"),
        pytest.param([ctr(u("a"), "Running", ME)], [job(2, u("a")), job(1, u("a"))],
                     [row(u("a"), "Running", 1, "2 Slurm jobs share this container's name", locked_by=ME),
                      row(u("a"), "Running", 2, "2 Slurm jobs share this container's name", locked_by=ME)],
                     id="duplicate-jobs"),
        pytest.param([ctr(u("b"), "Running", ME), ctr(u("a"), "Locked", ME)],
                     [job(1, u("b")), job(2, u("a")), job(3, "yyyyy-dz642-000000000000000"),
                      job(4, "my-own-job")],
                     [row(u("a"), "Locked", 2, locked_by=ME), row(u("b"), "Running", 1, locked_by=ME)],
                     id="other-clusters-and-users-ignored-sorted"),
    ],
)
def test_status_rows(containers: list[Container], jobs: list[SlurmJob], expected: list[StatusRow]) -> None:
    assert status_rows(containers, jobs, ME, "zzzzz") == expected


# -- exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(ConfigError("bad", path="f", key="k"), ExitCode.CONFIG, id="config"),
        pytest.param(SbatchTemplateError("bad %X"), ExitCode.CONFIG, id="template"),
        pytest.param(ArvadosAuthError(401, "GET", "/p", "no"), ExitCode.CONFIG, id="auth"),
        pytest.param(ArvadosUnavailable(0, "GET", "/p", "refused"), ExitCode.UNREACHABLE, id="api-down"),
        pytest.param(SlurmUnavailable(["squeue"], 1, "Unable to contact slurm controller"), ExitCode.UNREACHABLE,
                     id="slurm-down"),
        pytest.param(SlurmCommandError(["squeue"], None, "cannot run: No such file"), ExitCode.UNREACHABLE,
                     id="slurm-not-installed"),
        pytest.param(SlurmCommandError(["scancel"], 1, "Invalid job id"), ExitCode.PROBLEM, id="slurm-refused"),
        pytest.param(ArvadosNotFound(404, "GET", "/p", "not found"), ExitCode.PROBLEM, id="not-found"),
        pytest.param(ArvadosConflict(422, "POST", "/p", "locked"), ExitCode.PROBLEM, id="conflict"),
        pytest.param(ArvadosAPIError(500, "GET", "/p", "boom"), ExitCode.PROBLEM, id="api-other"),
        pytest.param(UnsatisfiableContainer("u", "too big"), ExitCode.PROBLEM, id="unsatisfiable"),
    ],
)
def test_exit_code_for(error: DispatchError, code: ExitCode) -> None:
    assert exit_code_for(error) == code


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("one", "one", id="single"),
        pytest.param("a\n  b\n\nc\n", "a; b; c", id="multi"),
    ],
)
def test_one_line(text: str, expected: str) -> None:
    assert one_line(text) == expected


