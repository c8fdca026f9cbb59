"""SlurmCLI: the SlurmBackend that runs Slurm's command-line tools.

Port of services/crunch-dispatch-slurm/slurm.go: slurmCLI, plus the commands
beyond Go's five: sinfo/scontrol for node features (node_type.go), and the
end-of-job queries (``job_ends``, ``sacct``) behind the failure reasons.

This is the only module of the service's path that starts processes (through ``spawn``: posix_spawn, a third
of subprocess's CPU per command). Every command:

- runs from an argv list (never a shell); the program is looked up on the PATH of
  the constructor's ``env``;
- gets an explicit environment: the constructor's ``env``, then ``LC_ALL=C`` so
  messages and numbers are in the C locale (not for sbatch, which passes its
  environment on to the job: the job gets the service's, as Go's jobs do), then
  the per-call env of sbatch (``os.environ`` is never read or changed here);
- has a timeout; a command that exceeds it is killed and reported as
  ``SlurmUnavailable`` (slurmctld not answering is the usual cause);
- has stdout and stderr captured apart; they are logged, trimmed, when the command
  fails or prints anything, except stdout of query commands (squeue, sinfo,
  show job), whose output is the result. The batch script goes on stdin and is
  never logged, since it holds GatewayAuthSecret; neither is the environment.

At most ``max_concurrent`` (default 3, as in Go) sbatch/scancel/scontrol
commands run at once across all threads; squeue and sinfo are not counted.
"""

from __future__ import annotations

import logging
import pwd
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TypedDict, Unpack

from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.slurm import spawn
from slurm_dispatch.slurm.backend import (
    SQUEUE_ARGV,
    SQUEUE_OWNERS_ARGV,
    release_argv,
    renice_argv,
    renice_jobs_argv,
    scancel_argvs,
    scancel_jobs_argv,
    squeue_argv,
)
from slurm_dispatch.slurm.clusters import clusters_in, missing_clusters, several, with_clusters
from slurm_dispatch.slurm.decide import other_owners_of_container_jobs
from slurm_dispatch.slurm.reasons import JOB_END_FORMAT, SACCT_FIELDS
from slurm_dispatch.slurm.squeue_lines import marked_argv, unmark_lines

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
"""Per-command timeout. Slurm's own client retries take ~10 s with the default MessageTimeout."""

MAX_CONCURRENT = 3
"""sbatch/scancel/scontrol commands allowed at once (services/crunch-dispatch-slurm/slurm.go: the semaphore of
NewSlurmCLI; Go does not count squeue either)."""

OWNERS_RETRY_S = 60
"""After a failed check of every user's jobs while squeue is narrowed, how long until the next try (each try is a
whole-table squeue, what the narrowing saves slurmctld)."""

OWNERS_SETTLE_S = 300
"""How long after the start squeue keeps reading every user's jobs, whatever the check finds. A job another user's
sbatch had begun before we started (the Go dispatcher's last one, as it was being stopped without its children)
can reach slurmctld minutes later: sbatch sleeps and tries again while slurmctld is busy, 1 s more each time, up to
15 times (src/sbatch/sbatch.c: MAX_RETRIES), each try bounded by MessageTimeout. Narrowed, squeue would not show
that job, and its container would be submitted again."""

OWNERS_RECHECK_S = 3600
"""How often squeue checks again, from one squeue of every user's jobs, whether it may read our own jobs only: while
jobs named like containers belong to other users, and also once narrowed (one more squeue an hour either way)."""

OUTPUT_TRIM = 256
"""How many characters of stdout/stderr go into logs and exceptions (as kopf trims bodies)."""

CAPPED_PROGRAMS = frozenset({"sbatch", "scancel", "scontrol"})
"""Programs that count against ``max_concurrent``; squeue and sinfo do not."""

UNAVAILABLE_MARKERS: tuple[str, ...] = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "zero bytes were transmitted",
    "slurmctld not responding",
    "communication connection failure",
    "transport endpoint is not connected",
    "slurm backup controller in standby mode",
)
"""Lower-case fragments of what Slurm clients print when slurmctld is down or unreachable."""

_SUBMITTED_RE = re.compile(r"Submitted batch job (\d+)")
_PARSABLE_RE = re.compile(r"^(\d+)(?:;\S*)?$")


def trim(text: str, limit: int = OUTPUT_TRIM) -> str:
    """Return ``text`` stripped and cut to its last ``limit`` characters (with a leading "…"). Pure."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def is_unavailable_message(stderr: str) -> bool:
    """Return True if ``stderr`` says slurmctld could not be reached. Pure."""
    low = stderr.lower()
    return any(marker in low for marker in UNAVAILABLE_MARKERS)


def parse_job_id(stdout: str) -> int | None:
    """Return the job id in sbatch's output ("Submitted batch job N", or ``--parsable``'s "N[;cluster]").

    Pure. Returns None when the output has no job id.
    """
    m = _SUBMITTED_RE.search(stdout)
    if m:
        return int(m.group(1))
    m = _PARSABLE_RE.match(stdout.strip())
    return int(m.group(1)) if m else None


class _RunOptions(TypedDict, total=False):
    """The keyword arguments of ``SlurmCLI._run_with_stderr`` (and so of ``_run``)."""

    stdin: str | None
    extra_env: Mapping[str, str] | None
    log_stdout: bool
    success_level: int
    failure_level: int
    cluster: str


class SlurmCLI:
    """The SlurmBackend that runs sbatch, scancel, scontrol and squeue; also sinfo for admin commands.

    Thread-safe: its methods may be called from many executor threads at once;
    each blocks until its command(s) finish, waiting first for a free slot when
    ``max_concurrent`` capped commands are already running.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_concurrent: int = MAX_CONCURRENT,
        clusters: Sequence[str] = (),
        own_uid: int | None = None,
        settle_s: float = OWNERS_SETTLE_S,
    ) -> None:
        """Build the backend. Does no I/O.

        Args:
            env: the base environment of every Slurm command (PATH, SLURM_CONF, ...).
                Copied; ``os.environ`` is never consulted.
            timeout_s: per-command timeout in seconds.
            max_concurrent: how many sbatch/scancel/scontrol commands may run at once.
            clusters: the Slurm clusters the jobs go to (``clusters.clusters_of``); every command but sbatch
                then carries ``--clusters`` (``clusters.with_clusters``). ``()``: the local cluster.
            own_uid: the uid this process submits jobs as (the service passes its own). When it is not 0 and one
                cluster is used, squeue asks slurmctld for this user's jobs only, once a squeue of every user's
                jobs has shown no job named like a container that another user owns, at least ``OWNERS_SETTLE_S``
                after the start (see ``queue``). None or 0: every user's jobs, as Go reads them.
            settle_s: how long after the start squeue stays wide whatever the check finds (``OWNERS_SETTLE_S``;
                benchmarks of a service that has run for longer pass 0).
        """
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._env = dict(env)
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self.clusters = tuple(clusters)
        self._seen_clusters: set[str] = set()
        """With ``all``: the clusters squeue has shown; one that drops out later means no information."""
        self.own_uid = own_uid if own_uid and not self.clusters else None
        self.own_jobs_only: bool | None = None if self.own_uid else False
        """Whether squeue reads our own jobs only: None until the check of every user's jobs has worked."""
        self._owners_checked_at: float | None = None
        self._settled_at = time.monotonic() + settle_s
        self._other_owners: list[str] = []
        self._owners_lock = threading.Lock()

    # -- the SlurmBackend Protocol -------------------------------------------------

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        """Run ``sbatch <args>`` with ``script`` on stdin and return the job id it printed.

        Port of slurm.go: slurmCLI.Batch. Blocks (capped). ``env`` is merged over the
        base env for this command only. Neither the script nor the env is logged.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or sbatch timed out.
            SlurmCommandError: sbatch refused the job.
        """
        # A successful sbatch only says "Submitted batch job N", which the runner logs at INFO with the
        # container uuid: here it goes to DEBUG (a burst of 1000 submissions spent a tenth of its CPU logging).
        stdout = self._run(["sbatch", *args], stdin=script, extra_env=env, success_level=logging.DEBUG)
        return parse_job_id(stdout)

    def cancel(self, name: str) -> None:
        """Run the three scancel passes of ``scancel_argvs(name)``, stopping at the first failure.

        Port of slurm.go: slurmCLI.Cancel. Blocks (each pass capped). See
        ``scancel_argvs`` for why running jobs get ``--batch --signal=TERM``.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or scancel timed out.
            SlurmCommandError: a pass exited non-zero (scancel of a missing name exits 0).
        """
        for argv in scancel_argvs(name):
            self._run(argv)

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        """Run ``scancel_jobs_argv(job_ids, running=running)`` (see ``SlurmBackend.cancel_jobs``) on ``cluster``.
        Blocks (capped).

        Raises:
            ValueError: an id is not a plain job id, or the jobs may be on several clusters and ``cluster`` does not
                say which (the same id may be another job there): scancel them by name instead.
            SlurmUnavailable: slurmctld did not answer, or scancel timed out.
            SlurmCommandError: scancel exited non-zero.
        """
        if several(self.clusters) and not cluster:
            raise ValueError(f"jobs may be on any of {','.join(self.clusters)}: a job id alone is ambiguous")
        # exit 1 (even with --quiet) for a job that has just ended: the caller notes it, squeue says what is true
        self._run(scancel_jobs_argv(job_ids, running=running), failure_level=logging.INFO, cluster=cluster)

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        """Run ``renice_jobs_argv(job_ids, nice)`` (see ``SlurmBackend.renice_jobs``). Blocks (capped).

        Raises:
            ValueError: an id is not a plain job id.
            SlurmUnavailable: slurmctld did not answer, or scontrol timed out.
            SlurmCommandError: scontrol exited non-zero.
        """
        # likewise for a job that has ended
        self._run(renice_jobs_argv(job_ids, nice), failure_level=logging.INFO, cluster=cluster)

    def queue(self) -> str:
        """Return the output of ``SQUEUE_ARGV`` (parse it with ``slurm_dispatch.slurm.squeue_lines.parse_squeue``).

        Port of slurm.go: slurmCLI.QueueCommand. Blocks; not capped. Each squeue's lines carry a fresh marker, so
        a newline in another user's job name cannot make up a line of ours (``squeue_lines.unmark_lines``).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or squeue timed out.
            SlurmCommandError: squeue exited non-zero for another reason.
        """
        if not self.clusters:
            with self._owners_lock:
                if self.own_uid and (
                        self._owners_checked_at is None
                        or time.monotonic() - self._owners_checked_at >= OWNERS_RECHECK_S):
                    self._check_owners()
                narrowed = bool(self.own_jobs_only)
            if not narrowed:
                return self._marked_squeue(SQUEUE_ARGV)[0]
            argv = squeue_argv(self.own_uid)
            out, stderr = self._marked_squeue(argv)
            if stderr.strip():
                # e.g. "squeue: error: Invalid user: N" when the user database does not answer: squeue then
                # filters every job out and exits 0. Empty output is not to be read as "every job gone".
                with self._owners_lock:
                    self.own_jobs_only, self._owners_checked_at = False, time.monotonic()
                detail = (f"printed {trim(stderr)!r}: no information this poll; squeue reads every user's jobs "
                          f"again, and checks in {OWNERS_RECHECK_S} s whether it may read uid {self.own_uid}'s only")
                log.warning("%s: %s", " ".join(argv), detail)
                raise SlurmCommandError(argv, 0, detail)
            return out
        # With clusters, without --noheader: that option also drops the "CLUSTER: <name>" lines that say which
        # cluster each job is on (measured on 22.05); parse_squeue skips the column titles.
        argv = [a for a in SQUEUE_ARGV if a != "--noheader"]
        out = self._marked_squeue(argv)[0]
        missing = missing_clusters(out, self.clusters, sorted(self._seen_clusters))
        if missing:  # a stopped slurmctld's cluster drops out of the answer silently: no information, not "gone"
            detail = (f"squeue answered without cluster(s) {','.join(missing)} (is its slurmctld down?); "
                      "their jobs are not known to be gone")
            log.warning("%s: %s", " ".join(with_clusters(argv, self.clusters)), detail)
            raise SlurmUnavailable(with_clusters(argv, self.clusters), 0, detail)
        if "all" in self.clusters:
            self._seen_clusters.update(clusters_in(out))
        return out

    def _check_owners(self) -> None:
        """Decide whether squeue may read our own jobs only (``own_uid``); if Slurm did not answer, decide nothing
        (before the first decision this poll reads every user's jobs and the next one checks again; once narrowed,
        squeue stays narrowed and the check is tried again after ``OWNERS_RETRY_S``). Blocks.

        At a shared site most of the job table is other users' jobs: slurmctld packs only ours for a
        ``--user`` squeue (REQUEST_JOB_USER_INFO), where Go's squeue makes it pack every job each poll. Not while a
        job named like a container belongs to another user, e.g. one the Go dispatcher left running as root: a
        narrowed squeue would not show it, and its container would be submitted again. Checked again every
        ``OWNERS_RECHECK_S``, narrowed or not: once narrowed, only a job that another user submits later can break
        the rule (the Go dispatcher's last sbatch landing after a handover, an admin resubmitting a job as root), and
        the next check then widens squeue again.
        """
        try:
            out = self._marked_squeue(SQUEUE_OWNERS_ARGV)[0]
        except SlurmCommandError:
            if self.own_jobs_only:  # narrowed already: keep it, and check again in a minute, not at every poll
                self._owners_checked_at = time.monotonic() - OWNERS_RECHECK_S + OWNERS_RETRY_S
            return
        self._owners_checked_at = time.monotonic()
        try:
            pwd.getpwuid(self.own_uid or 0)
        except KeyError:  # squeue --user looks the uid up, and with no answer filters out every job
            self.own_jobs_only = False
            log.warning("uid %s has no entry in this host's user database: squeue keeps reading every user's jobs, "
                        "and checks again in %d s", self.own_uid, OWNERS_RECHECK_S)
            return
        others = other_owners_of_container_jobs(out, self.own_uid or 0)
        if not others and self._owners_checked_at < self._settled_at:
            # Too soon to narrow: check again once a late sbatch of another user can no longer land.
            self.own_jobs_only, self._owners_checked_at = False, self._settled_at - OWNERS_RECHECK_S
            return
        was_narrowed, self.own_jobs_only = self.own_jobs_only, not others
        if others:
            level = logging.DEBUG if others == self._other_owners else logging.WARNING
            self._other_owners = others
            log.log(level, "jobs named like containers belong to other users (uid %s): squeue keeps reading every "
                    "user's jobs, as Go does, and checks again in %d s", ", ".join(others), OWNERS_RECHECK_S)
        elif not was_narrowed:
            log.info("squeue reads the jobs of uid %d only (--user): no job named like a container belongs to "
                     "another user", self.own_uid)

    def renice(self, name: str, nice: int) -> None:
        """Run ``scontrol update JobName=<name> Nice=<nice>``.

        Port of slurm.go: slurmCLI.Renice. Blocks (capped).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or scontrol timed out.
            SlurmCommandError: scontrol failed ("No jobs with name ..." when none matches).
        """
        self._run(renice_argv(name, nice))

    def release(self, name: str) -> None:
        """Run ``scontrol release Name=<name>`` (a no-op when no job has that name).

        Port of slurm.go: slurmCLI.Release. Blocks (capped).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or scontrol timed out.
            SlurmCommandError: scontrol failed.
        """
        self._run(release_argv(name))

    # -- admin-only commands (not on the Protocol) -----------------------------------

    def sinfo_features(self, node: str) -> list[str]:
        """Return the features of ``node``, in the order Slurm prints them (``[]`` for none).

        Runs ``sinfo --nodes=<node> --format=%f --noheader`` (as services/crunch-dispatch-slurm/node_type.go:
        slurmKludge reads them). Blocks; not capped.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or sinfo timed out.
            SlurmCommandError: sinfo failed.
        """
        # The node-feature step logs a failure itself, once per change (node_features.keep_node_features)
        out = self._run(["sinfo", f"--nodes={node}", "--format=%f", "--noheader"], log_stdout=False,
                        failure_level=logging.DEBUG)
        features: list[str] = []
        for line in out.splitlines():
            for feature in line.strip().split(","):
                if feature and feature != "(null)" and feature not in features:
                    features.append(feature)
        return features

    def set_node_features(self, node: str, features: Sequence[str]) -> None:
        """Run ``scontrol update NodeName=<node> Features=<f1,f2,...> ActiveFeatures=<same>`` (node_type.go: slurmKludge).

        Blocks (capped). Go sets only ``Features=``; Slurm 22.05 then makes the
        active features the same list, and a later update that drops a feature
        fails with "Active features not subset of available features". Setting
        both works in either direction. The caller should pass the features
        sorted, so that comparing with ``sinfo_features`` is stable.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or scontrol timed out.
            SlurmCommandError: scontrol refused the update.
        """
        joined = ",".join(features)
        self._run(["scontrol", "update", f"NodeName={node}", f"Features={joined}", f"ActiveFeatures={joined}"],
                  failure_level=logging.DEBUG)  # logged once per change by the node-feature step

    def drain_node(self, node: str, reason: str) -> None:
        """Drain ``node`` in Slurm with ``reason``: ``scontrol update NodeName=<node> State=DRAIN Reason=<reason>``.

        Needs Slurm admin rights (root, SlurmUser or an admin account): "Invalid user id" otherwise. Undo with
        ``scontrol update NodeName=<node> State=RESUME``. Blocks (capped).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or scontrol timed out.
            SlurmCommandError: scontrol refused (no rights, no such node).
        """
        self._run(["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}"])

    def job_ends(self, job_ids: Sequence[str]) -> str:
        """Return how jobs ended, as far as slurmctld still remembers them (MinJobAge, 300 s by default).

        Runs ``squeue --states=all --jobs=<ids> --noheader --Format=<reasons.JOB_END_FORMAT>``: one job-info
        request for all of them. Ids slurmctld has forgotten are left out of the output (squeue fails only when
        a single id is asked and forgotten). Parse it with ``slurm_dispatch.slurm.reasons.parse_job_ends``.
        Blocks; not capped (a query, like squeue).

        Raises:
            SlurmUnavailable: slurmctld did not answer, or squeue timed out.
            SlurmCommandError: squeue failed ("Invalid job id specified" for a single forgotten id).
        """
        argv = ["squeue", "--states=all", f"--jobs={','.join(job_ids)}", "--noheader", f"--Format={JOB_END_FORMAT}"]
        return self._run(argv, log_stdout=False, failure_level=logging.INFO)

    def job_ends_named(self, names: Sequence[str]) -> str:
        """Return how the jobs with these names ended (``job_ends``, but by ``--name=<names>``): for a container whose
        job this process never saw, e.g. one that ended while the service was down. Blocks; not capped.

        Raises:
            SlurmUnavailable: slurmctld did not answer, or squeue timed out.
            SlurmCommandError: squeue failed.
        """
        argv = ["squeue", "--states=all", f"--name={','.join(names)}", "--noheader", f"--Format={JOB_END_FORMAT}"]
        return self._run(argv, log_stdout=False, failure_level=logging.INFO)

    def sacct(self, job_ids: Sequence[str]) -> str:
        """Return what Slurm's accounting says about how jobs ended (``sacct --parsable2``, allocations only).

        Works only where accounting runs (slurmdbd); elsewhere it fails with "Slurm accounting storage is
        disabled". Parse it with ``slurm_dispatch.slurm.reasons.parse_sacct``. Blocks; not capped.

        Raises:
            SlurmUnavailable: sacct timed out.
            SlurmCommandError: sacct failed (no accounting, for one).
        """
        argv = ["sacct", f"--jobs={','.join(job_ids)}", "--allocations", "--noheader", "--parsable2",
                f"--format={','.join(SACCT_FIELDS)}"]
        return self._run(argv, log_stdout=False, failure_level=logging.INFO)

    # -- plumbing -------------------------------------------------------------------

    def _marked_squeue(self, argv: Sequence[str]) -> tuple[str, str]:
        """Run a squeue whose every line starts with a marker drawn for this command, and return its stdout without
        the markers (``squeue_lines.marked_argv``, ``unmark_lines``: a newline in a job name cannot make up a line)
        and its stderr. The output is the result: it is not logged. Blocks.

        Raises:
            as ``_run_with_stderr``.
        """
        marker = secrets.token_hex(8)
        out, stderr = self._run_with_stderr(marked_argv(argv, marker), log_stdout=False)
        return unmark_lines(out, marker), stderr

    def _run(self, argv: list[str], **options: Unpack[_RunOptions]) -> str:
        """``_run_with_stderr``, stdout only: what a command printed on stderr when it worked is logged."""
        return self._run_with_stderr(argv, **options)[0]

    def _run_with_stderr(
        self,
        argv: list[str],
        *,
        stdin: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        log_stdout: bool = True,
        success_level: int = logging.INFO,
        failure_level: int = logging.WARNING,
        cluster: str = "",
    ) -> tuple[str, str]:
        """Run one Slurm command and return its stdout and stderr. Blocks (capped by program name).

        With clusters configured the command gets its ``--clusters`` (``cluster``: the job's, for a command about
        one job).

        Raises:
            SlurmUnavailable: the command timed out or stderr says slurmctld is unreachable.
            SlurmCommandError: the command could not start or exited non-zero, or it needs one cluster and
                several are configured (``clusters.with_clusters``).
        """
        try:
            full = with_clusters(argv, self.clusters, cluster=cluster)
        except ValueError as exc:
            raise SlurmCommandError(list(argv), None, str(exc)) from None
        # sbatch passes its environment on to the job: it gets the service's own, as Go's jobs do (Slurm prints no
        # translated message, so the C locale matters only to the output of the other commands that is read)
        env = {**self._env, **({} if argv[0] == "sbatch" else {"LC_ALL": "C"}), **(extra_env or {})}
        capped = argv[0] in CAPPED_PROGRAMS
        if capped:
            self._slots.acquire()
        try:
            # Any user may name a job anything, and squeue --all shows every job: undecodable bytes must not kill
            # the poller, so spawn.run replaces them rather than raising.
            proc = spawn.run(full, env=env, stdin=stdin if stdin is not None else "", timeout_s=self._timeout_s)
        except spawn.Timeout as exc:
            detail = f"no answer within {self._timeout_s:g} s (is slurmctld up?)"
            log.warning("%s: %s", " ".join(full), detail)
            raise SlurmUnavailable(full, None, detail) from exc
        except OSError as exc:
            log.warning("%s: cannot run: %s", " ".join(full), exc)
            raise SlurmCommandError(full, None, f"cannot run: {exc}") from exc
        finally:
            if capped:
                self._slots.release()
        stdout, stderr = proc.stdout or "", proc.stderr or ""
        if proc.returncode != 0:
            log.log(
                failure_level,
                "%s: exit %d: stdout %r, stderr %r",
                " ".join(full),
                proc.returncode,
                trim(stdout),
                trim(stderr),
            )
            if is_unavailable_message(stderr):
                raise SlurmUnavailable(full, proc.returncode, trim(stderr))
            raise SlurmCommandError(full, proc.returncode, trim(stderr))
        if (log_stdout and stdout.strip()) or stderr.strip():
            log.log(
                success_level if not stderr.strip() else logging.INFO,
                "%s: stdout %r, stderr %r",
                " ".join(full),
                trim(stdout) if log_stdout else "(not logged)",
                trim(stderr),
            )
        return stdout, stderr
