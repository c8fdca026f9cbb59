"""The Slurm dispatcher's decisions about one container, as pure functions with table tests.

Arvados's Go dispatcher keeps its per-container ``switch`` in one place (services/crunch-dispatch-slurm/
crunch-dispatch-slurm.go: ``run``, and lib/dispatchcloud/scheduler/sync.go for the cloud dispatcher); so does
this module. The runner (``slurm_dispatch.runner``), the startup adoption and the admin commands (``status``,
``adopt``, ``cancel``, ``explain``) all call these functions, so the service and what an admin is shown cannot
drift apart. Nothing here does I/O or reads the clock.

* ``is_our_job_name`` / ``our_job_names``: which Slurm jobs belong to this cluster's dispatcher.
* ``next_step``: what the RunContainer of a tracked container does next, given what it knows (``RunnerView``: the
  container's latest record, whether it left this dispatcher, its job's squeue line, what the runner already
  did) and the settings (``Policy``).
* ``gone_action``: what to do with the container once its job has left squeue.
* ``orphan_action``: what startup adoption does with a job named like one of our containers.
* ``after_sbatch_failure``: whether a refused sbatch is retried later or the container given up.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from slurm_dispatch.dispatch.decide import TrackDecision, track_decision
from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable, UnsatisfiableContainer
from slurm_dispatch.model import (
    CONTAINER_UUID_IN_TEXT_RE,
    CONTAINER_UUID_RE,
    Container,
    ContainerState,
    SlurmJob,
)
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.priority import container_want
from slurm_dispatch.slurm.reasons import EndReason, never_runnable
from slurm_dispatch.slurm.sbatch import has_time_limit, max_run_time_s, time_limit_min

# -- whose job is it --------------------------------------------------------------------------------------


def is_our_job_name(name: str, cluster_id: str) -> bool:
    """Return True if a Slurm job of this name belongs to this cluster's dispatcher. Pure.

    squeue shows every user's jobs (``--all``), so only names that are container uuids *and* carry this
    cluster's prefix are ours: another cluster's dispatcher may share the Slurm cluster.
    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: checkSqueueForOrphans (its name test).
    """
    return name.startswith(cluster_id + "-") and CONTAINER_UUID_RE.match(name) is not None


def our_job_names(names: Iterable[str], cluster_id: str) -> list[str]:
    """Return the names among ``names`` that are ours (``is_our_job_name``), sorted, without repeats. Pure."""
    return sorted({n for n in names if is_our_job_name(n, cluster_id)})


def other_owners_of_container_jobs(text: str, uid: int) -> list[str]:
    """Return the owners other than ``uid`` of jobs named like a container, from ``SQUEUE_OWNERS_ARGV``'s output
    (``<uid>|<name>`` lines), sorted, without repeats; a line that cannot be read but names a container counts as
    another owner ("?"). Pure.

    Any cluster's container names count: while such a job exists, narrowing squeue to our own uid could hide a job
    of ours that a previous dispatcher left under another user (the Go dispatcher runs as root), and a container
    whose job cannot be seen is submitted again.
    """
    others: set[str] = set()
    for line in text.split("\n"):
        owner, sep, name = line.partition("|")
        owner, name = owner.strip(), name.strip()
        if sep and CONTAINER_UUID_RE.match(name) is not None:
            if owner != str(uid):
                others.add(owner if owner.isdigit() else "?")
        elif CONTAINER_UUID_IN_TEXT_RE.search(line):
            others.add("?")
    return sorted(others)


# -- a tracked container: the next step of its RunContainer ------------------------------------------------


class StepKind(enum.Enum):
    """What a container's RunContainer does next."""

    SUBMIT = "submit"
    """sbatch the container's job."""
    FOLLOW = "follow"
    """The job runs or waits as it should: keep its place in Slurm's order (the want) and wait for news."""
    SCANCEL = "scancel"
    """scancel the job (again after every squeue poll, until it has gone or the container wants it back)."""
    SETTLE = "settle"
    """The job has left squeue: settle the container's state (see ``gone_action``) and stop."""
    STOP_AT_LIMIT = "stop at limit"
    """The job is about to reach its time limit: write why on the container, then SIGTERM crunch-run so it
    stops the container and saves its logs before Slurm's hard kill."""
    GIVE_UP = "give up"
    """The job can never start (a never-runnable pending reason, past the grace period): write why, scancel
    it, and cancel the container once the job has gone."""


SLURM_SIGNAL_EARLY_S = 60
"""Slurm may send ``--signal`` up to this much before the asked time (sbatch(1) --signal)."""


@dataclass(frozen=True)
class Policy:
    """The settings the per-container decisions read, derived once from ``Settings``."""

    never_runnable_reasons: frozenset[str] = frozenset()
    """Pending reason codes that waiting cannot clear (empty: never give up)."""
    never_runnable_grace_s: float = 300.0
    """How long a job may pend with such a reason before its container is given up."""
    stop_before_limit_s: int | None = None
    """With a stop signal configured: how many seconds before its time limit the dispatcher itself writes the
    reason and sends SIGTERM, so that it comes before Slurm's own signal (which may come a minute early)."""
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """Return the policy of ``settings``. Pure."""
        stop = None
        if settings.time_limit_signal > 0:
            stop = int(settings.time_limit_signal + SLURM_SIGNAL_EARLY_S + 2 * settings.poll_interval)
        return cls(
            never_runnable_reasons=frozenset(settings.never_runnable_reasons),
            never_runnable_grace_s=settings.never_runnable_grace,
            stop_before_limit_s=stop,
            settings=settings,
        )

    def has_time_limit(self, container: Container) -> bool:
        """Return True if the container's job is submitted with its time limit (``sbatch.has_time_limit``)."""
        return has_time_limit(container, self.settings)

    def stop_when_left(self, container: Container) -> int | None:
        """Return the time left (seconds) at which the dispatcher stops the container's running job, None for never.
        Pure.

        ``stop_before_limit_s``, but never before the job has run the container's max_run_time: its limit is
        max_run_time plus ``TimeLimit.Overhead`` rounded up to a minute (``sbatch.time_limit_min``), and with an
        Overhead shorter than the stop window a stop at the window would cut the container short. Go's dispatcher
        gives a job its whole max_run_time (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs).
        """
        if self.stop_before_limit_s is None or not self.has_time_limit(container):
            return None
        limit_s = time_limit_min(container, self.settings) * 60  # %W is whole minutes
        return min(self.stop_before_limit_s, limit_s - max_run_time_s(container, self.settings))


@dataclass(frozen=True)
class RunnerView:
    """What one RunContainer knows of its container: the input of ``next_step``."""

    latest: Container
    """The newest record of the container the RunContainer has read."""
    job: SlurmJob | None = None
    """Its job's line in the latest successful squeue poll the RunContainer waited for (None: no job). A failed
    poll is never an answer: the RunContainer waits for a good one."""
    last_job: SlurmJob | None = None
    """The last line seen of its job, kept after the job has gone (its id says which job to ask Slurm about)."""
    left: bool = False
    """The container left this dispatcher (its update channel closed: finished, back to Queued, locked by another
    dispatcher, or returned by no query)."""
    left_at: float | None = None
    """When it left (by the runner's clock)."""
    submitted: bool = False
    """This RunContainer has already submitted the job."""
    never_since: float | None = None
    """When the job was first seen pending with a never-runnable reason (None: it is not)."""
    give_up: EndReason | None = None
    """Set once the container was given up: why (its job can never start here)."""
    stop_sent: bool = False
    """The dispatcher already stopped the job at its time limit."""
    want_set: int | None = None
    """The want last recorded for the job."""
    cancel_rounds: int = 0
    """scancel rounds without the job leaving squeue."""
    partition_refused: str = ""
    """What sbatch said when it last refused the job because its partition is inactive or draining ("" if it did
    not): the container is held Locked until sbatch takes it (``partition_not_available``)."""


FINISHED_JOB_GRACE_S = 60.0
"""How long the job of a container crunch-run has set Complete may stay in squeue before it is scancelled: crunch-run
exits right after, and crunch-run-wrapper then gives what it left behind up to 30 s (CRUNCH_RUN_WRAPPER_GRACE)."""


@dataclass(frozen=True)
class Step:
    """A RunContainer's next step, with its reason in a few words."""

    kind: StepKind
    reason: str
    want: int = 0
    """For FOLLOW: the want to record for the job (0: unknown, never renice)."""
    wake_at: float | None = None
    """For FOLLOW: when to decide again even if nothing happens (the end of a never-runnable grace period)."""
    time_left_below: int | None = None
    """For FOLLOW: wake when the running job has at most this many seconds left before its time limit."""


def never_runnable_since(view: RunnerView, job: SlurmJob | None, policy: Policy, now: float) -> float | None:
    """Return the new ``never_since`` once ``job`` is the container's latest job line. Pure."""
    if job is None or job.state != "PENDING" or not never_runnable(job.reason, policy.never_runnable_reasons):
        return None
    return view.never_since if view.never_since is not None else now


def next_step(view: RunnerView, policy: Policy, now: float) -> Step:
    """Return what the RunContainer of ``view.latest`` does next. Pure.

    The rule (port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: run, with its ``scancel``; the
    last three rows go beyond Go):

    =========================  ===============================================  ==============
    job in squeue              container / job                                  step
    =========================  ===============================================  ==============
    no, none seen yet          Locked, priority > 0, still ours, not given up   SUBMIT
    no                         anything else                                    SETTLE
    yes, completing            left, priority 0 or given up                     FOLLOW
    yes                        Complete, left less than FINISHED_JOB_GRACE_S    FOLLOW
    yes                        left this dispatcher                             SCANCEL
    yes                        priority 0                                       SCANCEL
    yes                        given up                                         SCANCEL
    yes, pending               a never-runnable reason for the grace period     GIVE_UP
    yes, running               Running, time limit within the stop window      STOP_AT_LIMIT
                               (``Policy.stop_when_left``)
    yes                        anything else                                    FOLLOW
    =========================  ===============================================  ==============

    Go scancels the job of a container that has left at once, even one crunch-run has just set Complete and is
    about to exit from: Slurm then records a successful job as CANCELLED, and crunch-run-wrapper has no time to
    clean up what crunch-run left behind. Here such a job gets ``FINISHED_JOB_GRACE_S`` to end by itself first.

    Two differences from Go in the first rows: a Locked container with priority 0 and no job is not submitted
    (Go submits it, then scancels the job at once), and neither is one whose job this RunContainer has seen
    leave (Go submits again when the job of a container it adopts has just ended): both are settled, which
    unlocks them, so the attempt counts against Containers.MaxDispatchAttempts.
    """
    latest, job = view.latest, view.job
    if job is None:
        fresh = not view.submitted and view.last_job is None and view.give_up is None
        if fresh and not view.left and latest.state is ContainerState.LOCKED and latest.priority > 0:
            return Step(StepKind.SUBMIT, "Locked by us and no job in squeue")
        return Step(StepKind.SETTLE, "its job is not in squeue")
    if job.state == "COMPLETING" and (view.left or latest.priority == 0 or view.give_up is not None):
        # Slurm is already ending it (its epilog, its processes' exit): another scancel changes nothing
        return Step(StepKind.FOLLOW, "its job is completing")
    if view.left:
        # Whatever state the last poll showed: it may be a PollInterval old, and a short container runs and
        # completes between two polls while the last one still shows its job PENDING.
        if (latest.state is ContainerState.COMPLETE and view.left_at is not None
                and now < view.left_at + FINISHED_JOB_GRACE_S):
            return Step(StepKind.FOLLOW, "its container is Complete: the job may end by itself",
                        wake_at=view.left_at + FINISHED_JOB_GRACE_S)
        return Step(StepKind.SCANCEL, "the container left this dispatcher")
    if latest.priority == 0:
        return Step(StepKind.SCANCEL, "its priority is 0")
    if view.give_up is not None:
        return Step(StepKind.SCANCEL, "it can never run here")
    wake_at = None
    if view.never_since is not None:
        wake_at = view.never_since + policy.never_runnable_grace_s
        if now >= wake_at:
            return Step(StepKind.GIVE_UP, f"pending for {now - view.never_since:.0f} s with reason {job.reason}")
    stop_at = None if view.stop_sent or job.state not in ("PENDING", "RUNNING") else policy.stop_when_left(latest)
    # Only once crunch-run has started the container (Running): stopped while still Locked, crunch-run would put
    # it back in the queue, and the next attempt would meet the same limit.
    if (stop_at is not None and job.state == "RUNNING" and latest.state is ContainerState.RUNNING
            and job.time_left_s is not None and job.time_left_s <= stop_at):
        return Step(StepKind.STOP_AT_LIMIT, f"{job.time_left_s} s left before its time limit")
    return Step(StepKind.FOLLOW, f"{latest.state.value}, job {job.state}", want=container_want(latest),
                wake_at=wake_at, time_left_below=stop_at)


STUCK_CANCEL_WARNINGS = (10, 100)
"""After this many scancel rounds without the job leaving squeue, warn (then every 100 rounds)."""


def stuck_cancel_warning_due(rounds: int) -> bool:
    """Return True if the ``rounds``-th scancel round without the job leaving squeue deserves a warning. Pure.

    A job stuck COMPLETING on a dead node, or another user's job of that name that our scancel cannot touch,
    keeps the container from being locked again until it has gone: an admin should know, but not every poll.
    """
    return rounds in STUCK_CANCEL_WARNINGS or (rounds > 0 and rounds % STUCK_CANCEL_WARNINGS[-1] == 0)


# -- the job has gone ----------------------------------------------------------------------------------------


class GoneKind(enum.Enum):
    """What to do with a container whose job has left squeue."""

    LEAVE = "leave"
    """Another dispatcher holds the lock now: not ours to touch."""
    UNLOCK = "unlock"
    """Locked by us: unlock it (back to Queued, or Cancelled under Containers.MaxDispatchAttempts)."""
    CANCEL = "cancel"
    """Running by us with no job (crunch-run died without saying so), or given up: set it Cancelled, with the
    reason in ``runtime_status``."""
    NOTHING = "nothing"
    """Finished or re-queued already (crunch-run said so): nothing to do."""


@dataclass(frozen=True)
class GoneAction:
    """The action for a container whose job has gone, with its reason."""

    kind: GoneKind
    reason: str


def gone_action(current: Container, me: str, *, gave_up: bool = False) -> GoneAction:
    """Return what to do with ``current`` (re-read after its job left squeue). Pure.

    ``gave_up``: the dispatcher gave the container up (its job could never start): a Locked container is then
    cancelled, not unlocked to be dispatched again.
    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: run (the ``ctx.Done()`` case).
    """
    if current.locked_by_uuid and current.locked_by_uuid != me:
        return GoneAction(GoneKind.LEAVE, f"the container is now locked by {current.locked_by_uuid}")
    if current.state is ContainerState.LOCKED and gave_up:
        return GoneAction(GoneKind.CANCEL, "the container can never run here")
    if current.state is ContainerState.LOCKED:
        return GoneAction(GoneKind.UNLOCK, "the job has gone while the container is Locked")
    if current.state is ContainerState.RUNNING:
        return GoneAction(GoneKind.CANCEL, "the job has gone while the container is Running")
    return GoneAction(GoneKind.NOTHING, f"the container is {current.state.value}")


# -- a job found at startup ----------------------------------------------------------------------------------


class OrphanAction(str, enum.Enum):
    """What the service does with a job named like one of our containers, found at startup."""

    ADOPT = "adopt"
    SCANCEL = "scancel leftover job"
    LEAVE = "leave alone"


@dataclass(frozen=True)
class OrphanDecision:
    """The decision for one job name, with the reason in a few words (it fits in a table column)."""

    uuid: str
    action: OrphanAction
    reason: str


def orphan_action(uuid: str, container: Container | None, *, my_token_uuid: str, now: datetime) -> OrphanDecision:
    """Return what startup adoption does with the job named ``uuid``, given its container (None: not found).

    Pure. The dispatch core's ``track_decision`` in Slurm's words: a container locked by another token is left
    alone; a Queued, Cancelled or Complete one gets a tracker closed at once, so its job is scancelled; a
    Locked or Running one is adopted. A uuid the API cannot find is left alone (Go's GET fails and it moves
    on). Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: checkSqueueForOrphans.

    As in ``next_step``, the job of a container set Complete less than ``FINISHED_JOB_GRACE_S`` before ``now``
    (by its ``modified_at``) is left to end by itself: crunch-run-wrapper may still be cleaning up after it.
    """
    if container is None:
        return OrphanDecision(uuid, OrphanAction.LEAVE, "container not found")
    decision = track_decision(container, my_token_uuid)
    if decision is TrackDecision.IGNORE:
        return OrphanDecision(uuid, OrphanAction.LEAVE, f"locked by {container.locked_by_uuid}")
    if container.state is ContainerState.COMPLETE and container.modified_at is not None:
        ago = (now - container.modified_at).total_seconds()
        if ago < FINISHED_JOB_GRACE_S:
            return OrphanDecision(uuid, OrphanAction.LEAVE, f"Complete {max(0, int(ago))} s ago: its job may end "
                                                            "by itself")
    if decision is TrackDecision.TRACK_CLOSED:
        return OrphanDecision(uuid, OrphanAction.SCANCEL, f"container is {container.state.value}")
    return OrphanDecision(uuid, OrphanAction.ADOPT, f"{container.state.value} by this token")


# -- sbatch refused the job ----------------------------------------------------------------------------------

PERMANENT_SBATCH_ERRORS = (
    "Invalid feature specification",
    "Invalid partition name specified",
    "Requested node configuration is not available",
    "Memory specification can not be satisfied",
    "Invalid generic resource",
    "Invalid account",
    "Invalid qos specification",
)
"""sbatch refusals that retrying cannot change on this cluster (seen with Slurm 22.05; docs/operations.md)."""

PERMANENT_REFUSALS = 3
"""Refusals in a row (of ``PERMANENT_SBATCH_ERRORS``) after which a container is cancelled, not retried."""


def permanent_sbatch_failure(exc: SlurmCommandError) -> bool:
    """Return True if sbatch refused the job for a reason no retry on this cluster can change. Pure."""
    return not isinstance(exc, SlurmUnavailable) and any(m in exc.stderr_tail for m in PERMANENT_SBATCH_ERRORS)


PARTITION_NOT_AVAILABLE = "Required partition not available (inactive or drain)"
"""sbatch's refusal while a partition is INACTIVE or DRAIN (slurm_strerror: ESLURM_PARTITION_NOT_AVAIL): states an
admin sets for a while (scontrol(1), ``State=``), unlike DOWN, where Slurm takes the job and lets it pend."""

PARTITION_HOLD_RETRY_S = (10.0, 20.0, 40.0, 80.0, 160.0, 300.0)
"""How long a container whose partition is inactive or draining waits, Locked, before each new sbatch: the n-th
wait is the n-th entry, then the last one for ever."""


def sbatch_said(exc: SlurmCommandError) -> str:
    """Return what sbatch printed on stderr, its non-blank lines joined by "; ": one line for a log or a reason. Pure."""
    return "; ".join(line.strip() for line in exc.stderr_tail.splitlines() if line.strip())


def partition_not_available(exc: SlurmCommandError) -> bool:
    """Return True if sbatch refused the job because its partition is inactive or draining. Pure.

    Retrying such a refusal as Go does (unlock, lock again next poll) uses up Containers.MaxDispatchAttempts in
    seconds, and Arvados cancels the container while the partition is only closed for a while: the runner keeps the
    container Locked and submits it again after ``PARTITION_HOLD_RETRY_S`` instead.
    """
    return not isinstance(exc, SlurmUnavailable) and PARTITION_NOT_AVAILABLE in exc.stderr_tail


def partition_hold_delay(refusals: int) -> float:
    """Return how long to wait after the ``refusals``-th (1, 2, ...) inactive-partition refusal in a row. Pure."""
    return PARTITION_HOLD_RETRY_S[min(max(refusals, 1), len(PARTITION_HOLD_RETRY_S)) - 1]


@dataclass(frozen=True)
class SbatchVerdict:
    """What follows a failed sbatch: the refusals in a row now counted, and the error to give up with."""

    refusals: int
    """Permanent-looking refusals in a row, this one included (0 when this failure was not one)."""
    give_up: UnsatisfiableContainer | None
    """Set when the container can never run here: cancel it with this reason instead of retrying."""


def after_sbatch_failure(uuid: str, exc: SlurmCommandError, *, refusals_before: int) -> SbatchVerdict:
    """Return whether a container whose sbatch failed is retried later or given up. Pure.

    A failure that is not a permanent-looking refusal breaks the run ("in a row") and is retried as Go retries
    every sbatch failure (unlock, lock again on a later tick). A permanent-looking refusal is retried too until
    it has happened ``PERMANENT_REFUSALS`` times in a row: an ``instancetype=`` feature the node-feature step
    has not set yet, or a partition during a Slurm reconfiguration, is refused only for a while. After that
    the container is given up with Slurm's own words as the reason, instead of burning all of
    Containers.MaxDispatchAttempts.
    """
    if not permanent_sbatch_failure(exc):
        return SbatchVerdict(refusals=0, give_up=None)
    refusals = refusals_before + 1
    if refusals < PERMANENT_REFUSALS:
        return SbatchVerdict(refusals=refusals, give_up=None)
    reason = f"sbatch refused the job {refusals} times in a row: {sbatch_said(exc)}"
    # what was asked for, so that a user can tell which part Slurm cannot give (errorDetail)
    asked = f"the refused command: {shlex.join(exc.argv)}" if exc.argv else ""
    return SbatchVerdict(refusals=refusals, give_up=UnsatisfiableContainer(uuid, reason, available=None, detail=asked))


__all__ = [
    "FINISHED_JOB_GRACE_S",
    "PARTITION_HOLD_RETRY_S",
    "PARTITION_NOT_AVAILABLE",
    "PERMANENT_REFUSALS",
    "PERMANENT_SBATCH_ERRORS",
    "STUCK_CANCEL_WARNINGS",
    "GoneAction",
    "GoneKind",
    "OrphanAction",
    "OrphanDecision",
    "Policy",
    "RunnerView",
    "SbatchVerdict",
    "Step",
    "StepKind",
    "after_sbatch_failure",
    "gone_action",
    "is_our_job_name",
    "never_runnable_since",
    "next_step",
    "orphan_action",
    "other_owners_of_container_jobs",
    "our_job_names",
    "partition_hold_delay",
    "partition_not_available",
    "permanent_sbatch_failure",
    "sbatch_said",
    "stuck_cancel_warning_due",
]
