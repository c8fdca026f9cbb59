"""The SlurmBackend Protocol: the five Slurm operations a dispatcher needs.

Port of services/crunch-dispatch-slurm/slurm.go: the ``Slurm`` interface
(Batch, Cancel, QueueCommand, Release, Renice), kept just as small. Admin-only
commands (sinfo features, ``scontrol show job``) live on ``SlurmCLI`` instead.

The Protocol is synchronous: every method blocks until its command has finished.
The asyncio dispatch core calls it through ``loop.run_in_executor``. The cap of
3 concurrent sbatch/scancel/scontrol commands (arvados-reference.md §6.5, gotcha
41) is enforced once, inside the implementation (``SlurmCLI``), so callers may
issue calls from as many executor threads as they like; squeue is not counted.

Jobs are always addressed by *name* (the container uuid), never by job id, as Go
does (gotcha 45): squeue keeps one entry per name, and scancel hits every job
with that name.

The argv builders below are pure and shared by ``SlurmCLI`` and the tests, so
the exact command lines live in one place.
"""

from __future__ import annotations

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


def scancel_argvs(name: str) -> list[list[str]]:
    """Return the three scancel command lines that cancel job ``name``, in the order to run them.

    Port of services/crunch-dispatch-slurm/slurm.go: slurmCLI.Cancel. Pure.

    1. ``--state=pending`` removes a job that has not started yet.
    2. and 3. For a running or suspended job, a plain scancel would send SIGTERM and,
       after Slurm's KillWait, SIGKILL to every step, killing crunch-run before it
       could stop the container and record the final state. ``--batch
       --signal=TERM`` signals only the batch shell (which ``exec``s crunch-run), so
       crunch-run shuts the container down cleanly (arvados-reference.md §6.5,
       gotcha 20).

    scancel exits 0 when no job matches, so any non-zero exit is a real error and
    the caller stops at the first failing pass.
    """
    return [
        ["scancel", f"--name={name}", "--state=pending"],
        ["scancel", f"--name={name}", "--batch", "--signal=TERM", "--state=running"],
        ["scancel", f"--name={name}", "--batch", "--signal=TERM", "--state=suspended"],
    ]


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
