"""The SlurmBackend Protocol: the Slurm operations a dispatcher needs.

Port of services/crunch-dispatch-slurm/slurm.go: the ``Slurm`` interface
(Batch, Cancel, QueueCommand, Release, Renice), plus the same cancel and renice
by job id, several jobs per command. Admin-only commands (sinfo features,
``scontrol show job``) live on ``SlurmCLI`` instead.

The Protocol is synchronous: every method blocks until its command has finished.
The asyncio dispatch core calls it through ``loop.run_in_executor``. The cap of
3 concurrent sbatch/scancel/scontrol commands (Go's crunch-dispatch-slurm runs
at most that many: slurm.go, its ``sem`` channel) is enforced once, inside the
implementation (``SlurmCLI``), so callers may issue calls from as many executor
threads as they like; squeue is not counted.

Go addresses jobs by *name* (the container uuid) only. By name, slurmctld first
sends the client the whole job table (a REQUEST_JOB_INFO, measured at 7-9 ms
with 1,600 jobs in the queue) and then acts; by id it acts at once, and one
command can name many jobs. So the dispatcher acts by id on the jobs it saw in
squeue (``cancel_jobs``, ``renice_jobs``), and by name (``cancel``, ``renice``)
where it has no id, or the job is in a state whose scancel pass it cannot tell.

The argv builders below are pure and shared by ``SlurmCLI`` and the tests, so
the exact command lines live in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

SQUEUE_SEPARATOR = "|"
"""Between squeue's fields. No field but a job name (another user's) or the reason, which comes last and is read
whole, can contain it."""

SQUEUE_FIELDS = ("%i", "%y", "%Q", "%T", "%L", "%N", "%j", "%r")
"""squeue fields: job id, nice, priority (nice already applied), state, time left, nodes, job name, reason.
Without a width squeue neither pads nor truncates a field (squeue(1)); ``%r`` is the reason alone, whole."""

SQUEUE_FORMAT = SQUEUE_SEPARATOR.join(SQUEUE_FIELDS)

SQUEUE_ARGV: tuple[str, ...] = ("squeue", "--all", "--noheader", f"--format={SQUEUE_FORMAT}")
"""The one squeue command line; ``--all`` includes other users' jobs and jobs in hidden partitions, as Go's
(services/crunch-dispatch-slurm/squeue.go: SqueueChecker.check). Go reads ``%j %y %Q %T %r`` split on white
space, which cuts the reason to its first word; this format keeps it whole, and adds what the failure reasons
need: the job id (to ask Slurm how a vanished job ended), the nodes and the time left."""


SQUEUE_OWNERS_ARGV: tuple[str, ...] = ("squeue", "--all", "--noheader", "--format=%U|%j")
"""Who owns which job (uid and name), every user's: run before squeue is narrowed to our own jobs, and hourly after
(``SlurmCLI``'s ``own_uid``; the check is ``decide.other_owners_of_container_jobs``)."""


def squeue_argv(user_filter: int | None = None) -> list[str]:
    """Return ``SQUEUE_ARGV``, asking for the jobs of uid ``user_filter`` only when it is given. Pure.

    With one non-zero uid, squeue asks slurmctld for that user's jobs alone (REQUEST_JOB_USER_INFO, which packs
    only them) instead of the whole job table (REQUEST_JOB_INFO); for uid 0 squeue sends the whole-table request
    all the same (src/squeue/squeue.c: _print_job, Slurm 22.05), so 0 is never passed.
    """
    argv = list(SQUEUE_ARGV)
    if user_filter:
        argv.append(f"--user={user_filter}")
    return argv


def scancel_argvs(name: str) -> list[list[str]]:
    """Return the three scancel command lines that cancel job ``name``, in the order to run them.

    Port of services/crunch-dispatch-slurm/slurm.go: slurmCLI.Cancel. Pure.

    1. ``--state=pending`` removes a job that has not started yet.
    2. and 3. For a running or suspended job, a plain scancel would send SIGTERM and,
       after Slurm's KillWait, SIGKILL to every step, killing crunch-run before it
       could stop the container and record the final state. ``--batch
       --signal=TERM`` signals only the batch shell (which ``exec``s crunch-run), so
       crunch-run shuts the container down cleanly (scancel(1): ``--batch``,
       ``--signal``; KillWait in slurm.conf(5)).

    scancel exits 0 when no job matches, so any non-zero exit is a real error and
    the caller stops at the first failing pass.
    """
    return [
        ["scancel", f"--name={name}", "--state=pending"],
        ["scancel", f"--name={name}", "--batch", "--signal=TERM", "--state=running"],
        ["scancel", f"--name={name}", "--batch", "--signal=TERM", "--state=suspended"],
    ]


JOB_ID_RE = re.compile(r"[1-9][0-9]{0,9}\Z")
"""A plain job id (no array or het-job suffix), as squeue's ``%i`` prints those of the dispatcher's jobs."""

MAX_JOB_IDS_PER_COMMAND = 200
"""Job ids per scancel or scontrol command line (keeps a command line short; one RPC per job either way)."""


def scancel_jobs_argv(job_ids: Sequence[str], *, running: bool) -> list[str]:
    """Return the scancel command line for these jobs by id. Pure.

    Pending jobs (``running=False``) get ``--state=pending``, as the first of Go's passes: a job that started since
    squeue saw it is left alone, for a later round to stop with the running pass. (The filter makes scancel read
    the job table first: once per command, not once per job.) Running and suspended jobs get ``--batch
    --signal=TERM``, as Go's second and third passes (see ``scancel_argvs``). ``--quiet``: a job that has just
    ended is not an error.

    Raises:
        ValueError: an id is not a plain job id (``JOB_ID_RE``).
    """
    _check_ids(job_ids)
    mode = ["--batch", "--signal=TERM"] if running else ["--state=pending"]
    return ["scancel", "--quiet", *mode, *job_ids]


def renice_jobs_argv(job_ids: Sequence[str], nice: int) -> list[str]:
    """Return the scontrol command line that sets the nice value of these jobs by id. Pure.

    Raises:
        ValueError: an id is not a plain job id (``JOB_ID_RE``).
    """
    _check_ids(job_ids)
    return ["scontrol", "update", "JobId=" + ",".join(job_ids), f"Nice={nice}"]


def _check_ids(job_ids: Sequence[str]) -> None:
    if not job_ids:
        raise ValueError("no job id given")
    for job_id in job_ids:
        if not JOB_ID_RE.match(job_id):
            raise ValueError(f"not a plain Slurm job id: {job_id[:40]!r}")


def renice_argv(name: str, nice: int) -> list[str]:
    """Return the scontrol command line that sets the nice value of job ``name``. Pure."""
    return ["scontrol", "update", f"JobName={name}", f"Nice={nice}"]


def release_argv(name: str) -> list[str]:
    """Return the scontrol command line that releases the held job ``name``. Pure."""
    return ["scontrol", "release", f"Name={name}"]


@runtime_checkable
class SlurmBackend(Protocol):
    """The Slurm operations a dispatcher performs; implemented by ``SlurmCLI`` and ``FakeSlurm``.

    Every method blocks (it runs at least one Slurm command, or simulates one) and
    is safe to call from several threads at once. Implementations bound how many
    sbatch/scancel/scontrol commands run concurrently; callers need not.
    """

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        """Submit a batch job with ``sbatch <args>``, the script on stdin; return its job id.

        Port of slurm.go: slurmCLI.Batch. Blocks until sbatch exits. ``env`` is
        merged over the backend's base environment for sbatch only (it carries
        crunch-run's ARVADOS_* variables to the job); the script and ``env`` are
        never logged, since they hold secrets.

        Returns:
            The job id sbatch printed ("Submitted batch job N"), or None if it
            printed none (for example with ``--parsable`` on a federated cluster).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: sbatch refused the job (bad partition, feature, ...).
        """
        ...

    def cancel(self, name: str) -> None:
        """Cancel every job named ``name`` with the three scancel passes of ``scancel_argvs``.

        Port of slurm.go: slurmCLI.Cancel. Blocks for up to three commands and
        stops at the first that fails. Cancelling a name that has no job is a no-op.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or a command timed out.
            SlurmCommandError: a scancel pass exited non-zero.
        """
        ...

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        """scancel these jobs by id in one command (``scancel_jobs_argv``): pending ones, or running and suspended
        ones (``running``), on ``cluster`` (squeue's cluster of the jobs; "" for the local one). Blocks until
        scancel exits.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: scancel exited non-zero (a job it could not cancel, or with ``--state=pending``
                an id no longer known; the others were cancelled).
        """
        ...

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        """Set the nice value of these jobs by id in one command (``renice_jobs_argv``), on ``cluster`` (as in
        ``cancel_jobs``). Blocks until scontrol exits.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: scontrol exited non-zero (a job has ended; the others were reniced).
        """
        ...

    def queue(self) -> str:
        """Return the raw output of ``SQUEUE_ARGV`` (one line per job, parse it with ``parse_squeue``).

        Port of slurm.go: slurmCLI.QueueCommand. Blocks until squeue exits. Not
        counted against the concurrency cap.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: squeue exited non-zero for another reason.
        """
        ...

    def renice(self, name: str, nice: int) -> None:
        """Set the nice value of job ``name`` with ``scontrol update JobName=<name> Nice=<nice>``.

        Port of slurm.go: slurmCLI.Renice. Blocks until scontrol exits.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: scontrol failed (for example no job has that name).
        """
        ...

    def release(self, name: str) -> None:
        """Release the held job ``name`` with ``scontrol release Name=<name>``.

        Port of slurm.go: slurmCLI.Release, which current Go code never calls (its
        use for Slurm ≤ 15 held jobs was removed). Blocks until scontrol exits.
        Releasing a name with no job is a no-op. Note: Slurm 22.05 also resets
        the job's nice value to 0 on release.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or the command timed out.
            SlurmCommandError: scontrol failed.
        """
        ...
