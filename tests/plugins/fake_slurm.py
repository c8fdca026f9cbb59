"""FakeSlurm: an in-memory SlurmBackend that behaves like Slurm 22.05 with priority/basic.

It sits at the Protocol boundary (never patch subprocess): the dispatcher and
the SqueueChecker talk to it exactly as they talk to ``SlurmCLI``, and the
contract suite (tests/contract/test_slurm_backend_contract.py) runs the same
assertions against both, which keeps this fake honest.

What it models, as measured on the real test cluster:

- ``submit`` creates a PENDING job; its Slurm priority is a base that falls by
  one per submission (4294901759, 4294901758, ...) minus its nice (from
  ``--nice=N`` in args, else 0). ``--hold`` keeps it pending with priority 0 and
  reason JobHeldUser. ``--partition=`` outside ``partitions`` fails like sbatch
  ("Invalid partition name specified"), and so does a ``--constraint=`` outside
  ``features`` when features are given.
- ``cancel`` acts like the three scancel passes: pending jobs of that name go
  away; running and suspended ones get SIGTERM on their batch shell, which ends
  them (unless the test called ``ignore_term(name)``). A missing name is a no-op.
- ``cancel_jobs`` acts like ``scancel --quiet`` by id: with ``running=False``
  (``--state=pending``) pending jobs go away and others are left alone; with
  ``running=True`` (``--batch --signal=TERM``) running and suspended jobs get
  SIGTERM and a pending one fails the command ("Job can not be altered now").
  In both, an id no longer queued makes the command exit 1 after the rest were
  done (measured on 22.05: silently, despite ``--quiet``).
- ``renice`` changes nice (and so Slurm priority); a missing name fails like
  scontrol ("No jobs with name"). ``renice_jobs`` renices every queued job of
  the list, then fails if an id was not queued ("Invalid job id specified"). ``release`` un-holds and, as Slurm 22.05 does,
  resets nice to 0; a missing name is a no-op.
- ``start``/``suspend``/``finish`` let a test move jobs along, as the scheduler would.

Every call is recorded in ``calls`` (even failed ones). ``fail(kind, nth=...)``
makes the nth call of a kind raise, like Arvados's slurmFake that fails the
first cancel; ``unavailable = True`` makes every call raise SlurmUnavailable, and
``queue_unavailable = True`` only squeue. ``gate(kind)`` returns an Event that
calls of that kind wait on (squeue takes its picture of the queue *before*
waiting, like a squeue already in flight; ``waiting[kind]`` counts calls that
reached a gate). Thread-safe: the code under test calls
it from executor threads.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pytest

from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.backend import (
    SQUEUE_ARGV,
    release_argv,
    renice_argv,
    renice_jobs_argv,
    scancel_argvs,
    scancel_jobs_argv,
)

CallKind = Literal["submit", "cancel", "cancel_jobs", "queue", "renice", "renice_jobs", "release", "job_ends", "sacct",
                   "drain_node"]

FIRST_BASE_PRIORITY = 4294901759
"""priority/basic's first job priority on the test cluster; each submission gets one less."""


@dataclass
class FakeJob:
    """One job in FakeSlurm's memory."""

    job_id: int
    name: str
    args: tuple[str, ...]
    script: str
    env: dict[str, str]
    base_priority: int
    nice: int
    state: str = "PENDING"
    reason: str = "None"
    held: bool = False
    signals: list[str] = field(default_factory=list)
    nodes: str = ""
    time_left_s: int | None = None
    exit_status: int = 0
    """How the batch script ended, as a raw wait status (768 = exit 3, 15 = signal 15)."""
    forgotten: bool = False
    """slurmctld no longer remembers it (past MinJobAge)."""
    comment: str = ""
    """The job's Comment (crunch-run-wrapper marks a broken node there)."""

    @property
    def slurm_priority(self) -> int:
        """Slurm's priority as squeue's %Q shows it: 0 when held, else base minus nice."""
        return 0 if self.held else max(self.base_priority - self.nice, 1)

    def as_slurm_job(self) -> SlurmJob:
        """The job as a squeue line describes it."""
        return SlurmJob(
            name=self.name, nice=self.nice, slurm_priority=self.slurm_priority, state=self.state, reason=self.reason,
            job_id=str(self.job_id), nodes=self.nodes, time_left_s=self.time_left_s,
        )

    def squeue_line(self) -> str:
        """The raw line squeue prints for this job (``SQUEUE_ARGV``'s format), unescaped as squeue leaves it."""
        left = "UNLIMITED" if self.time_left_s is None else f"{self.time_left_s // 60}:{self.time_left_s % 60:02d}"
        return "|".join([str(self.job_id), str(self.nice), str(self.slurm_priority), self.state, left, self.nodes,
                         self.name, self.reason])


@dataclass(frozen=True)
class Call:
    """One recorded backend call: ``kind`` and its arguments (name, nice, args)."""

    kind: CallKind
    name: str = ""
    nice: int | None = None
    args: tuple[str, ...] = ()


def _arg_value(args: Sequence[str], flag: str) -> str | None:
    value: str | None = None
    for a in args:
        if a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
    return value


class FakeSlurm:
    """An in-memory SlurmBackend; see the module docstring for what it models."""

    def __init__(
        self,
        *,
        partitions: Sequence[str] = ("debug",),
        features: Sequence[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._next_base = FIRST_BASE_PRIORITY
        self.partitions = tuple(partitions)
        self.features = None if features is None else tuple(features)
        self.jobs: list[FakeJob] = []
        """Jobs still in the queue (pending, running, suspended), in submission order."""
        self.finished: list[FakeJob] = []
        """Jobs that left the queue, with their final state."""
        self.calls: list[Call] = []
        self.unavailable = False
        self.queue_unavailable = False
        self.drained: dict[str, str] = {}
        """Nodes drained through ``drain_node``, with the reason."""
        self.garbled: set[str] = set()
        """Names whose squeue line comes out unreadable (a field shifted), as a broken squeue might print it."""
        self._failures: dict[CallKind, dict[int, SlurmCommandError]] = {}
        self._counts: dict[CallKind, int] = {}
        self._gates: dict[CallKind, threading.Event] = {}
        self.waiting: dict[CallKind, int] = {}
        """How many calls of each kind are waiting at (or have passed) a gate."""
        self._ignore_term: set[str] = set()
        self.on_call: Callable[[Call], None] | None = None
        """Called (from the caller's thread) at the start of every call, e.g. to advance a fake clock."""

    # -- test controls -----------------------------------------------------------

    def fail(self, kind: CallKind, *, nth: int = 1, error: SlurmCommandError | None = None) -> None:
        """Make the ``nth`` call of ``kind`` (counting from 1 since creation) raise ``error``."""
        self._failures.setdefault(kind, {})[nth] = error or SlurmCommandError(
            [kind], 1, f"fake failure of {kind} call {nth}"
        )

    def fail_next(self, kind: CallKind, error: SlurmCommandError | None = None) -> None:
        """Make the next call of ``kind`` raise ``error``."""
        self.fail(kind, nth=self.count(kind) + 1, error=error)

    def gate(self, kind: CallKind) -> threading.Event:
        """Return an Event (initially clear) that every later call of ``kind`` waits on; set it to let them go."""
        event = threading.Event()
        self._gates[kind] = event
        return event

    def ignore_term(self, name: str) -> None:
        """Make jobs named ``name`` keep running after SIGTERM (a batch shell that ignores it)."""
        self._ignore_term.add(name)

    def count(self, kind: CallKind) -> int:
        """How many calls of ``kind`` have been made."""
        return self._counts.get(kind, 0)

    def calls_of(self, kind: CallKind) -> list[Call]:
        """The recorded calls of ``kind``, in order."""
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def reniced(self) -> list[tuple[str, int]]:
        """``(job name, nice)`` for every job a renice call named (by name, or by id in ``renice_jobs``), in order."""
        with self._lock:
            names = {str(j.job_id): j.name for j in [*self.jobs, *self.finished]}
            result: list[tuple[str, int]] = []
            for c in self.calls:
                if c.kind == "renice" and c.nice is not None:
                    result.append((c.name, c.nice))
                elif c.kind == "renice_jobs" and c.nice is not None:
                    result.extend((names.get(i, i), c.nice) for i in c.name.split(","))
            return result

    def job(self, name: str) -> FakeJob:
        """The newest queued job named ``name`` (KeyError if none)."""
        with self._lock:
            for job in reversed(self.jobs):
                if job.name == name:
                    return job
        raise KeyError(name)

    def names(self) -> list[str]:
        """Names of the jobs in the queue, in submission order."""
        with self._lock:
            return [j.name for j in self.jobs]

    def start(self, name: str, *, node: str = "c1") -> None:
        """Start every pending, unheld job named ``name`` on ``node`` (as the scheduler would)."""
        with self._lock:
            for job in self._named(name):
                if job.state == "PENDING" and not job.held:
                    job.state, job.reason, job.nodes = "RUNNING", "None", node

    def suspend(self, name: str) -> None:
        """Suspend every running job named ``name``."""
        with self._lock:
            for job in self._named(name):
                if job.state == "RUNNING":
                    job.state = "SUSPENDED"

    def finish(self, name: str, state: str = "COMPLETED") -> None:
        """End every queued job named ``name`` with final ``state``: it leaves squeue."""
        with self._lock:
            for job in self._named(name):
                self._end(job, state)

    # -- the SlurmBackend Protocol ---------------------------------------------------

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        """Queue a PENDING job named after ``--job-name=`` and return its id."""
        args = tuple(args)
        self._enter(Call("submit", name=_arg_value(args, "--job-name") or "sbatch", args=args), ["sbatch", *args])
        partition = _arg_value(args, "--partition")
        if partition and partition not in self.partitions:
            raise SlurmCommandError(
                ["sbatch", *args], 1, "sbatch: error: Batch job submission failed: Invalid partition name specified"
            )
        constraint = _arg_value(args, "--constraint")
        if constraint and self.features is not None and constraint not in self.features:
            raise SlurmCommandError(
                ["sbatch", *args], 1, "sbatch: error: Batch job submission failed: Invalid feature specification"
            )
        held = "--hold" in args or "-H" in args
        with self._lock:
            job = FakeJob(
                job_id=next(self._ids),
                name=_arg_value(args, "--job-name") or "sbatch",
                args=args,
                script=script,
                env=dict(env),
                base_priority=self._next_base,
                nice=int(_arg_value(args, "--nice") or 0),
                held=held,
                reason="JobHeldUser" if held else "None",
            )
            self._next_base -= 1
            self.jobs.append(job)
            return job.job_id

    def cancel(self, name: str) -> None:
        """Act like the three scancel passes: drop pending jobs, SIGTERM running/suspended ones."""
        self._enter(Call("cancel", name=name), scancel_argvs(name)[0])
        with self._lock:
            for job in self._named(name):
                if job.state == "PENDING":
                    self._end(job, "CANCELLED")
            for state in ("RUNNING", "SUSPENDED"):
                for job in self._named(name):
                    if job.state == state:
                        job.signals.append("TERM")
                        if name not in self._ignore_term:
                            self._end(job, "CANCELLED")

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        """Act like ``scancel --quiet`` by id (see the module docstring)."""
        argv = scancel_jobs_argv(job_ids, running=running)
        self._enter(Call("cancel_jobs", name=",".join(job_ids), args=tuple(argv)), argv)
        errors: list[str] = []
        with self._lock:
            for job_id in job_ids:
                job = next((j for j in self.jobs if str(j.job_id) == job_id), None)
                if job is None:
                    errors.append("")  # scancel --quiet exits 1 and says nothing
                elif not running:
                    if job.state == "PENDING":
                        self._end(job, "CANCELLED")
                elif job.state in ("RUNNING", "SUSPENDED"):
                    job.signals.append("TERM")
                    if job.name not in self._ignore_term:
                        self._end(job, "CANCELLED")
                else:
                    errors.append(f"scancel: error: Kill job error on job id {job_id}: Job can not be altered now, "
                                  "try again later")
        if errors:
            raise SlurmCommandError(argv, 1, "\n".join(errors))

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        """Renice every queued job of the list; fail like scontrol when an id is not queued."""
        argv = renice_jobs_argv(job_ids, nice)
        self._enter(Call("renice_jobs", name=",".join(job_ids), nice=nice, args=tuple(argv)), argv)
        errors: list[str] = []
        with self._lock:
            for job_id in job_ids:
                job = next((j for j in self.jobs if str(j.job_id) == job_id), None)
                if job is None:
                    errors.append(f"Invalid job id specified for job {job_id}")
                else:
                    job.nice = nice
        if errors:
            raise SlurmCommandError(argv, 1, "\n".join(errors))

    def queue(self) -> str:
        """Return squeue lines (our format) for every queued job, in submission order."""
        self._enter(Call("queue"), list(SQUEUE_ARGV), gate=False)
        if self.queue_unavailable:
            raise SlurmUnavailable(
                list(SQUEUE_ARGV), 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
            )
        with self._lock:
            # Raw fields, as squeue prints them: a name with a "|" in it makes an unparsable line.
            text = "".join(("GARBLED|" if job.name in self.garbled else "") + job.squeue_line() + "\n"
                           for job in self.jobs)
        self._wait_gate("queue")
        return text

    def renice(self, name: str, nice: int) -> None:
        """Set nice on every queued job named ``name``; fail like scontrol when there is none."""
        self._enter(Call("renice", name=name, nice=nice), renice_argv(name, nice))
        with self._lock:
            jobs = self._named(name)
            if not jobs:
                raise SlurmCommandError(renice_argv(name, nice), 1, f"scontrol: error: No jobs with name '{name}'")
            for job in jobs:
                job.nice = nice

    def release(self, name: str) -> None:
        """Un-hold every held job named ``name`` (nice resets to 0, as in Slurm 22.05)."""
        self._enter(Call("release", name=name), release_argv(name))
        with self._lock:
            for job in self._named(name):
                if job.held:
                    job.held, job.nice, job.reason = False, 0, "None"

    # -- internals -------------------------------------------------------------------

    def _named(self, name: str) -> list[FakeJob]:
        return [j for j in self.jobs if j.name == name]

    def _end(self, job: FakeJob, state: str) -> None:
        self.jobs.remove(job)
        job.state = state
        self.finished.append(job)

    def finish_with(self, name: str, state: str, *, reason: str = "None", exit_status: int = 0) -> None:
        """End the jobs named ``name`` with ``state``, ``reason`` and a raw wait status (for end-of-job reasons)."""
        with self._lock:
            for job in self._named(name):
                job.reason, job.exit_status = reason, exit_status
                self._end(job, state)

    def forget(self, name: str) -> None:
        """slurmctld forgets the ended jobs named ``name`` (as after MinJobAge)."""
        with self._lock:
            for job in self.finished:
                if job.name == name:
                    job.forgotten = True

    def job_ends(self, job_ids: Sequence[str]) -> str:
        """``squeue --states=all --jobs=...`` in ``reasons.JOB_END_FORMAT``: queued and remembered ended jobs."""
        self._enter(Call("job_ends", args=tuple(job_ids)), ["squeue", "--states=all"])
        text = self._end_lines(job_ids)
        if len(job_ids) == 1 and not text:
            raise SlurmCommandError(["squeue"], 1, "slurm_load_jobs error: Invalid job id specified")
        return text

    def job_ends_named(self, names: Sequence[str]) -> str:
        """``squeue --states=all --name=...``, like ``job_ends`` but by name (no error when none is known)."""
        self._enter(Call("job_ends", name=",".join(names)), ["squeue", "--states=all"])
        with self._lock:
            ids = [str(j.job_id) for j in [*self.jobs, *self.finished] if j.name in names and not j.forgotten]
        return self._end_lines(ids)

    def _end_lines(self, job_ids: Sequence[str]) -> str:
        with self._lock:
            known = [j for j in [*self.jobs, *self.finished] if str(j.job_id) in job_ids and not j.forgotten]
            return "".join(
                f"{j.job_id}|{j.state}|{j.exit_status}|{j.nodes or '(null)'}|2026-12-07T10:00:00|"
                f"2026-12-07T10:00:05|UNLIMITED|{j.name}|{j.comment or '(null)'}|{j.reason}\n"
                for j in known
            )

    def drain_node(self, node: str, reason: str) -> None:
        """Drain a node (recorded in ``drained``)."""
        self._enter(Call("drain_node", name=node), ["scontrol", "update", f"NodeName={node}", "State=DRAIN"])
        self.drained[node] = reason

    def sacct(self, job_ids: Sequence[str]) -> str:
        """Accounting is not configured, as on the test cluster."""
        self._enter(Call("sacct", args=tuple(job_ids)), ["sacct"])
        raise SlurmCommandError(["sacct"], 1, "sacct: error: Slurm accounting storage is disabled")

    def _enter(self, call: Call, argv: list[str], *, gate: bool = True) -> None:
        with self._lock:
            self.calls.append(call)
            n = self._counts[call.kind] = self._counts.get(call.kind, 0) + 1
            error = self._failures.get(call.kind, {}).pop(n, None)
        if self.on_call is not None:
            self.on_call(call)
        if gate:
            self._wait_gate(call.kind)
        if self.unavailable:
            raise SlurmUnavailable(argv, 1, "Unable to contact slurm controller (connect failure)")
        if error is not None:
            raise error

    def _wait_gate(self, kind: CallKind) -> None:
        event = self._gates.get(kind)
        if event is None:
            return
        with self._lock:
            self.waiting[kind] = self.waiting.get(kind, 0) + 1
        if not event.wait(timeout=30):
            raise AssertionError(f"FakeSlurm: gate for {kind} was never opened")


@pytest.fixture
def fake_slurm() -> Iterator[FakeSlurm]:
    """A fresh FakeSlurm with partition "debug" and no feature checks."""
    yield FakeSlurm()
