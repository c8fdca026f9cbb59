"""The fault suite's invariants, as pure functions over what was recorded.

Each function takes the records (the emulator's containers and their write history, the jobs the Slurm
watcher saw, crunch-run's trail in the job output files) and returns one line per violation; an empty list
means the invariant held. ``tests/fault/test_fault_invariants.py`` shows each one bites.

The invariants (docs/robustness.md, "Fault suite"):

1. Every container reaches a final state, or is correctly still queued (priority 0, no job); a Cancelled one
   only where a fault explains it (its job was on a node that died; or crunch-run itself could not write to an
   API that was failing on purpose; or the test asked for it by setting priority 0).
2. No container ever had two Slurm jobs at once: never two live ones in one squeue snapshot, never a job
   submitted before the previous one had ended (Slurm's own times), never a job submitted after a crunch-run
   had set it Running; and where no fault could cut a crunch-run short (the SIGKILL storm), exactly one job.
3. No container had two crunch-run starts that ran it: at most one crunch-run set it Running, it became Running
   at most once (the emulator's history), and no crunch-run ever found it in another state than Locked (a job
   that should not have existed: crunch-run's "dispatch error detected").
4. No container is left Locked without a job: checked after each fault by the scenarios (``owed``), and at
   the end by 1.
5. Nothing outside our jobs was touched (``fault_slurm.ForeignJobs.problems``).
6. SIGTERM: the service exits 0 within TimeoutStopSec and leaves every job running (``stop_problems``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

FINAL = frozenset({"Complete", "Cancelled"})
LIVE_STATES = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
})
"""Slurm job states in which a job still holds its name (squeue's default view shows these)."""


@dataclass(frozen=True)
class Job:
    """A Slurm job as the watcher saw it: enough for the invariants."""

    job_id: str
    states: tuple[str, ...]
    nodes: frozenset[str] = frozenset()
    submitted: str = ""
    """Slurm's submit time, ISO to the second."""
    ended: str = ""
    """Slurm's end time ("" while the job lives)."""

    @property
    def live(self) -> bool:
        """True if the job's latest state is a live one."""
        return bool(self.states) and self.states[-1] in LIVE_STATES


@dataclass(frozen=True)
class Trail:
    """crunch-run's trail for one container: job ids of starts that went on, of moves to Running, and the
    ``dispatch error detected`` lines."""

    went_on: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


def final_state_problems(
    containers: Iterable[Mapping[str, Any]], *, may_cancel: Callable[[str], str | None]
) -> list[str]:
    """Invariant 1 over the containers' records now. ``may_cancel(uuid)`` returns why a Cancelled end is
    explained (None: it is not). Pure."""
    out = []
    for c in containers:
        uuid, state, priority = c["uuid"], c["state"], c["priority"]
        if state in FINAL:
            if state == "Cancelled" and priority > 0 and may_cancel(uuid) is None:
                out.append(f"{uuid} ended Cancelled with no fault to explain it "
                           f"(runtime_status {c.get('runtime_status')!r})")
            continue
        if state == "Queued" and priority == 0:
            continue
        out.append(f"{uuid} is {state} (priority {priority}, locked by {c.get('locked_by_uuid')}), not final")
    return out


def job_problems(containers: Iterable[Mapping[str, Any]], jobs: Mapping[str, Sequence[Job]],
                 trails: Mapping[str, Trail], double_jobs: Sequence[str], *, strict: bool = False) -> list[str]:
    """Invariant 2. ``jobs``: the jobs seen, by container uuid; ``double_jobs``: the watcher's notes of
    snapshots with two live jobs of one name. Pure.

    A container may have had several jobs one after the other (its crunch-run died before Running, its node
    died, it was unlocked and locked again), but never one that was submitted before the previous one had
    ended (by Slurm's own submit and end times), never one submitted after a crunch-run had set it Running,
    and, with ``strict`` (no fault could have cut a crunch-run short), exactly one if it ran.
    """
    out = list(double_jobs)
    for c in containers:
        uuid = c["uuid"]
        seen = sorted(jobs.get(uuid, ()), key=lambda j: int(j.job_id))
        for earlier, later in pairwise(seen):
            if earlier.live or (earlier.ended and later.submitted and later.submitted < earlier.ended):
                out.append(f"{uuid}: job {later.job_id} was submitted at {later.submitted or '?'} while job "
                           f"{earlier.job_id} still ran (ended {earlier.ended or 'not yet'})")
        ran = trails.get(uuid, Trail()).running
        if ran:
            after = [j.job_id for j in seen if int(j.job_id) > int(ran[0])]
            if after:
                out.append(f"{uuid}: job(s) {', '.join(after)} submitted after job {ran[0]} had set it Running")
        if strict and c["state"] == "Complete" and len(seen) != 1:
            out.append(f"{uuid} ran with {len(seen)} Slurm jobs ({', '.join(j.job_id for j in seen)}), not one")
        if c["state"] == "Queued" and c["priority"] == 0:
            live = [j.job_id for j in seen if j.live]
            if live:
                out.append(f"{uuid} is Queued with priority 0 but its job {', '.join(live)} is still in Slurm")
    return out


def crunch_run_problems(containers: Iterable[Mapping[str, Any]], trails: Mapping[str, Trail],
                        transitions: Mapping[str, Sequence[str]]) -> list[str]:
    """Invariant 3. ``transitions``: each container's states in order (the emulator's history). Pure."""
    out = []
    for c in containers:
        uuid = c["uuid"]
        trail = trails.get(uuid, Trail())
        if len(trail.running) > 1:
            out.append(f"{uuid}: crunch-run set it Running {len(trail.running)} times "
                       f"(jobs {', '.join(trail.running)})")
        for line in trail.refused:
            out.append(f"{uuid}: a crunch-run started for it when it was not Locked: {line}")
        running = [s for s in transitions.get(uuid, ()) if s == "Running"]
        if len(running) > 1:
            out.append(f"{uuid} became Running {len(running)} times: {' -> '.join(transitions[uuid])}")
    return out


def locked_without_job(current: Mapping[str, str], live_names: Iterable[str], *, me: str,
                       locked_by: Mapping[str, str | None]) -> list[str]:
    """Containers Locked by ``me`` whose name has no live job (``current``: state by uuid). Pure."""
    live = set(live_names)
    return sorted(u for u, state in current.items()
                  if state == "Locked" and locked_by.get(u) == me and u not in live)


def stop_problems(*, seconds: float, returncode: int | None, bound: float, live_before: Iterable[tuple[str, str]],
                  states_after: Mapping[str, tuple[str, int]], cancelled_during: Iterable[str]) -> list[str]:
    """Invariant 6 for one SIGTERM. Pure.

    A job may end by itself while the service stops (its crunch-run finished, or failed); what the service
    must not do is cancel one: slurmctld logs every cancel, so ``cancelled_during`` is what it did.

    Args:
        seconds: from SIGTERM to exit.
        returncode: the exit status (None: it did not exit within ``bound`` and was killed).
        bound: the unit's TimeoutStopSec.
        live_before: (job id, container uuid) of our live jobs when SIGTERM was sent.
        states_after: (state, priority) of each container once the service had exited.
        cancelled_during: job ids slurmctld logged a cancel (REQUEST_KILL_JOB) for between SIGTERM and exit.
    """
    out = []
    if returncode is None:
        out.append(f"the service did not exit within {bound:.0f} s of SIGTERM (TimeoutStopSec)")
    elif returncode != 0:
        out.append(f"the service exited {returncode} after SIGTERM, not 0")
    elif seconds > bound:
        out.append(f"the service took {seconds:.1f} s to exit after SIGTERM (TimeoutStopSec {bound:.0f})")
    cancelled = set(cancelled_during)
    for job_id, uuid in live_before:
        state, priority = states_after.get(uuid, ("unknown", 0))
        if job_id in cancelled and state not in FINAL and priority > 0:
            out.append(f"job {job_id} of {uuid} ({state}) was scancelled while the service was stopping")
    return out
