"""Why a container waits or ended, in words a user understands: Slurm's pending reasons and end states. Pure.

Three questions, each answered from what Slurm says and nothing else:

* **Why is it waiting?** ``scheduling_status`` turns a job's squeue state and reason into a sentence
  ("Waiting for resources to free up in Slurm (job 123, reason Resources).").
* **Will it ever run?** ``never_runnable`` tells the pending reasons that waiting cannot clear (a partition
  whose limits the job exceeds, constraints no node has, an invalid account or QOS) from those that clear by
  themselves (Resources, Priority, BeginTime, Dependency, group limits). The list is a setting
  (``Settings.never_runnable_reasons``; docs/troubleshooting.md); its default comes from squeue(1) "JOB REASON
  CODES" and Slurm's ``job_reason_string``, checked on Slurm 22.05.
* **How did it end?** ``end_reason`` turns Slurm's record of an ended job (``squeue --states=all --jobs=...``
  while slurmctld still remembers it, for MinJobAge seconds; else ``sacct`` where accounting runs) into one
  line for ``runtime_status.error`` and Slurm's own words for ``runtime_status.errorDetail``.

The squeue format for ended jobs (``JOB_END_FORMAT``) and its parser are here too, beside the sacct ones, so
that the words and the parsing of one answer live together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.settings import DEFAULT_NEVER_RUNNABLE_REASONS

_PER_JOB_LIMIT_RE = re.compile(r"\A(QOS|Assoc)Max\w*Per(Job|Node)\w*\Z")
"""A per-job or per-node QOS or association limit's reason code, the whole code (``$`` would let a newline
after it through)."""
_JOB_ID_RE = re.compile(r"[!-~]{1,64}")
"""A job id as Slurm prints it ("123", "123_4", "123+0"): printable ASCII. Not "²" or 5,000 digits, which
``str.isdigit`` passes and ``int()`` refuses."""
_REASON_CODE_RE = re.compile(r"[A-Za-z_]\w*")

PENDING_WORDS: Mapping[str, str] = {
    "Resources": "waiting for resources to free up",
    "Priority": "waiting behind higher-priority jobs",
    "BeginTime": "waiting for its start time",
    "Dependency": "waiting for a job it depends on",
    "JobHeldUser": "held (released by `scontrol release`)",
    "JobHeldAdmin": "held by a Slurm administrator",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "ReqNodeNotAvail": "the nodes it needs are not available",
    "NodeDown": "a node it needs is down",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "Cleaning": "Slurm is cleaning up a previous run of it",
    "Prolog": "its prolog is running",
    "None": "waiting to be scheduled",
    "WaitingForScheduling": "waiting to be scheduled",
    # the codes that mean the job can never start as it is (Settings.never_runnable_reasons' defaults)
    "BadConstraints": "no node can ever satisfy its constraints",
    "PartitionConfig": "it asks for more than its partition's limits allow",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows",
    "PartitionTimeLimit": "its time limit is longer than its partition's MaxTime",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
    "AccountNotAllowed": "its account may not use its partition",
    "QOSNotAllowed": "its QOS may not use its partition",
    "DependencyNeverSatisfied": "a job it depends on ended in a way that can never satisfy it",
    "JobHoldMaxRequeue": "held after being requeued too many times",
    "MaxMemPerLimit": "it asks for more memory than a node or CPU may be given",
}
"""Pending reason codes in words (squeue(1), JOB REASON CODES); others are shown as "waiting (Slurm says: <reason>)"."""

LONG_REASONS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"Nodes required for job are DOWN, DRAINED"), "Resources",
     "its nodes are down, drained or reserved for higher-priority partitions: see `sinfo -R`"),
    (re.compile(r"uid \d+ not in group permitted to use this partition"), "AccountNotAllowed",
     "its user is not in a group its partition allows (AllowGroups)"),
    (re.compile(r"Reservation \S+ was deleted"), "ReservationDeleted", "held because its reservation was deleted"),
    (re.compile(r"Reservation \S+ is invalid"), "ReservationInvalid", "held because its reservation is not valid"),
    (re.compile(r"job requeued in (held|special exit) state"), "JobHeldUser", "held after it was requeued"),
    (re.compile(r"Burst buffer pre_run error"), "BurstBufferOperation", "its burst buffer could not be set up"),
    (re.compile(r"Unable to load job (batch script|environment)"), "SystemFailure",
     "slurmctld could not load its batch script or environment"),
    (re.compile(r"Job is at or exceeds (QOS|association)"), "", "it reached a time limit of its QOS or association"),
)
"""squeue's ``%r`` prints a job's long description instead of its reason code when slurmctld set one
(src/squeue/print.c; the texts from src/slurmctld job_scheduler.c, node_scheduler.c, reservation.c, job_mgr.c and
acct_policy.c of Slurm 22.05 and 24.11): (the text's start, the code slurmctld gives it, the words)."""

HELD_CODES = frozenset({"JobHeldUser", "JobHeldAdmin", "ReservationDeleted", "ReservationInvalid"})
"""Reason codes of a held job: it waits until someone runs ``scontrol release``."""


def _long_reason(reason: str) -> tuple[str, str] | None:
    text = reason.strip()
    for pattern, code, words in LONG_REASONS:
        if pattern.match(text):
            return code, words
    return None


def reason_code(reason: str) -> str:
    """Return the code of a Slurm reason: the code it starts with ("ReqNodeNotAvail" of "ReqNodeNotAvail,
    UnavailableNodes:c1"), or, for a long description squeue printed instead (``LONG_REASONS``), the code slurmctld
    gave it ("" when several codes share the text). Pure."""
    long = _long_reason(reason)
    if long is not None:
        return long[0]
    m = _REASON_CODE_RE.match(reason.strip())
    return m.group(0) if m else reason.strip()


def is_held(reason: str) -> bool:
    """Return True if a pending job with this reason is held (``scontrol release`` lets it run). Pure."""
    return reason_code(reason) in HELD_CODES


def never_runnable(reason: str, configured: Iterable[str]) -> bool:
    """Return True if a pending job with this reason can never start by waiting. Pure.

    ``configured`` is the list of reason codes (``Settings.never_runnable_reasons``); the per-job QOS and
    association limits (``QOSMaxCpuPerJobLimit``, ``AssocMaxNodesPerJobLimit``, ...) count too whenever the
    list holds any of the defaults' limit entries (an empty list switches the check off).
    """
    codes = frozenset(configured)
    if not codes:
        return False
    code = reason_code(reason)
    return code in codes or bool(_PER_JOB_LIMIT_RE.match(code))


def pending_words(reason: str) -> str:
    """Return a pending reason in words ("waiting for resources to free up"). Pure."""
    long = _long_reason(reason)
    if long is not None:
        return long[1]
    code = reason_code(reason)
    words = PENDING_WORDS.get(code)
    if words is None and _PER_JOB_LIMIT_RE.match(code):
        words = "it asks for more than a per-job limit of its QOS or association allows"
    if words is None:
        return f"waiting (Slurm says: {reason})"
    if code == "ReqNodeNotAvail" and "UnavailableNodes:" in reason:
        nodes = reason.split("UnavailableNodes:", 1)[1].strip() or "?"
        return f"the nodes it needs are not available (down, drained or not responding: {nodes})"
    return words


LEFTOVER = ("a leftover: the dispatcher that follows the container scancels it; one that no dispatcher follows is "
            "scancelled by `slurm-dispatch adopt` or at the service's next start")
"""What becomes of a job whose container has finished (for ``status`` and its problems column)."""


def scheduling_status(container_state: str, job: SlurmJob | None, *, submitted: bool | None = True) -> str:
    """Return where a container stands in Slurm, as one sentence for users and admins. Pure.

    ``job`` is the container's line in the latest squeue snapshot (None when it has no job). ``submitted``: whether
    this dispatcher has submitted its job (None: not known, as in the admin commands' view).
    """
    if job is None:
        if container_state == "Locked":
            if submitted is None:
                return ("Locked; no Slurm job in squeue: one is about to be submitted, or it has just left squeue "
                        "and the container is being settled.")
            return ("Locked; its Slurm job is about to be submitted." if not submitted
                    else "Locked; its Slurm job has left squeue and the container is being settled.")
        return f"{container_state}; no Slurm job."
    if container_state in ("Complete", "Cancelled"):
        return f"{container_state}; its Slurm job {job.job_id} is still in squeue ({job.state}): {LEFTOVER}."
    if container_state == "Queued":
        return (f"Queued; the Slurm job {job.job_id} of an earlier attempt is still in squeue ({job.state}): the "
                "container is not dispatched again until that job has gone.")
    if job.state == "PENDING":
        words = pending_words(job.reason)
        said = "" if job.reason.strip() in words else f", reason {job.reason}"  # Slurm's text, already quoted
        return f"Waiting in Slurm: {words} (job {job.job_id}{said})."
    if job.state == "RUNNING":
        where = f" on {job.nodes}" if job.nodes else ""
        if container_state == "Locked":
            return f"Slurm job {job.job_id} is running{where}; crunch-run is preparing the container."
        return f"Slurm job {job.job_id} is running{where}."
    return f"Slurm job {job.job_id} is {job.state}{f' on {job.nodes}' if job.nodes else ''} (reason {job.reason})."


# -- how a job ended -----------------------------------------------------------------------------------------

JOB_END_FIELDS = ("JobID", "State", "Exit_Code", "NodeList", "StartTime", "EndTime", "TimeLimit", "Name", "Comment",
                  "Reason")
"""squeue ``--Format`` fields for ended jobs. ``Field:|`` prints the whole value followed by ``|`` (no width, no
padding); the reason comes last, whole. ``Exit_Code`` is the raw wait status (768 = exit 3, 15 = signal 15)."""

JOB_END_FORMAT = ",".join(f"{f}:|" for f in JOB_END_FIELDS[:-1]) + f",{JOB_END_FIELDS[-1]}:"

SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Start", "End", "Timelimit", "JobName", "Comment", "Reason")
"""sacct ``--format`` fields (``--parsable2`` separates them with ``|``); State may say ``CANCELLED by <uid>``."""


@dataclass(frozen=True)
class JobEnd:
    """How Slurm says a job ended."""

    job_id: str
    state: str
    """Slurm's final state: COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ..."""
    exit_status: int | None = None
    """The batch script's exit status, when it exited."""
    signal: int | None = None
    """The signal that ended the batch script, when one did."""
    nodes: str = ""
    start: str = ""
    end: str = ""
    time_limit: str = ""
    name: str = ""
    comment: str = ""
    reason: str = ""
    cancelled_by: str = ""
    """Who cancelled it, when Slurm says (sacct's ``CANCELLED by <uid>``; squeue does not keep it)."""
    source: str = "squeue"
    """Where the answer came from: ``squeue`` (slurmctld's memory) or ``sacct`` (accounting)."""


def _blank(text: str) -> str:
    text = text.strip()
    # sacct's NodeList says "None assigned" for a job that never got a node
    return "" if text in ("(null)", "None", "Unknown", "N/A", "None assigned") else text


def _wait_status(raw: str) -> tuple[int | None, int | None]:
    """(exit status, signal) of squeue's Exit_Code: a raw wait status up to Slurm 23.11, ``status:signal`` from
    24.05 on (src/squeue/print.c: _print_job_exit_code)."""
    raw = raw.strip()
    if ":" in raw:
        return _exit_code(raw)
    if not raw.isascii() or not raw.isdigit() or len(raw) > 5 or int(raw) > 0xFFFF:  # a wait status has 16 bits
        return None, None
    status = int(raw)
    signal = status & 0x7F
    return (None, signal) if signal else (status >> 8, None)


def _exit_code(text: str) -> tuple[int | None, int | None]:
    """(exit status, signal) of Slurm's ``status:signal`` form (sacct's ExitCode, scontrol's ExitCode)."""
    status, _, signal = text.strip().partition(":")
    if not all(n.isascii() and n.isdigit() and len(n) <= 3 and int(n) <= 255 for n in (status, signal)):
        return None, None
    return (None, int(signal)) if int(signal) else (int(status), None)


def parse_job_ends(text: str) -> tuple[dict[str, JobEnd], list[SqueueParseError]]:
    """Return the ended jobs in ``squeue --states=all --jobs=... --Format=JOB_END_FORMAT`` output, by job id
    (the last line of an id wins), and the lines that could not be read. Pure."""
    ends, errors = parse_job_end_lines(text)
    return {end.job_id: end for end in ends}, errors


def parse_job_end_lines(text: str) -> tuple[list[JobEnd], list[SqueueParseError]]:
    """Return every ended job in ``squeue --states=all --jobs=... --Format=JOB_END_FORMAT`` output, in its order,
    and the lines that could not be read. Pure.

    With several clusters one id may come twice, one job per cluster: the name (a container's uuid) tells ours.
    """
    ends: list[JobEnd] = []
    errors: list[SqueueParseError] = []
    for line in text.split("\n"):  # not splitlines: see squeue_lines.parse_squeue_all
        if not line.strip() or line.startswith("CLUSTER: "):  # with --clusters, a header before each cluster's jobs
            continue
        parts = line.split("|", len(JOB_END_FIELDS) - 1)
        if len(parts) < len(JOB_END_FIELDS) or not parts[0].strip() or not parts[1].strip():
            errors.append(SqueueParseError(line, f"expected {len(JOB_END_FIELDS)} fields"))
            continue
        if not _JOB_ID_RE.fullmatch(parts[0].strip()):
            errors.append(SqueueParseError(line, "JobID is not a Slurm job id"))
            continue
        job_id, state, raw, nodes, start, end, limit, name, comment, reason = (p.strip() for p in parts)
        status, signal = _wait_status(raw)
        ends.append(JobEnd(job_id=job_id, state=state, exit_status=status, signal=signal, nodes=_blank(nodes),
                           start=_blank(start), end=_blank(end), time_limit=_blank(limit), name=name,
                           comment=_blank(comment), reason=_blank(reason)))
    return ends, errors


def parse_sacct(text: str) -> dict[str, JobEnd]:
    """Return the jobs in ``sacct --parsable2 --noheader --format=SACCT_FIELDS`` output, by job id (the last line
    of an id wins). Pure. See ``parse_sacct_lines``."""
    return {end.job_id: end for end in parse_sacct_lines(text)}


def parse_sacct_lines(text: str) -> list[JobEnd]:
    """Return every job in ``sacct --parsable2 --noheader --format=SACCT_FIELDS`` output, in its order. Pure.

    Step lines (``123.batch``, ``123.extern``) are skipped: the allocation's line says how the job ended. So are
    lines without a job id or a state (as ``parse_job_ends`` refuses them). With several clusters one id may come
    twice, one job per cluster.
    """
    ends: list[JobEnd] = []
    for line in text.split("\n"):  # not splitlines: see squeue_lines.parse_squeue_all
        parts = line.split("|", len(SACCT_FIELDS) - 1)
        if (len(parts) < len(SACCT_FIELDS) or "." in parts[0] or not _JOB_ID_RE.fullmatch(parts[0].strip())
                or not parts[1].strip()):
            continue
        job_id, state, exit_code, nodes, start, end, limit, name, comment, reason = (p.strip() for p in parts)
        by = ""
        m = re.fullmatch(r"CANCELLED by (\S+)", state)
        if m:
            state, by = "CANCELLED", m.group(1)
        status, signal = _exit_code(exit_code)
        ends.append(JobEnd(job_id=job_id, state=state, exit_status=status, signal=signal, nodes=_blank(nodes),
                           start=_blank(start), end=_blank(end), time_limit=_blank(limit), name=name,
                           comment=_blank(comment), reason=_blank(reason), cancelled_by=by, source="sacct"))
    return ends


@dataclass(frozen=True)
class EndReason:
    """What to write on a container whose job ended without crunch-run finishing it."""

    error: str
    """One line for ``runtime_status.error``."""
    detail: str
    """Slurm's own words, for ``runtime_status.errorDetail`` and the dispatch log."""
    state: str
    """Slurm's final state, or "" when Slurm no longer knows the job."""
    command_exit: int | None = None
    """126 or 127 when the job's command could not be run on its node (not executable, not found), else None."""


_END_WORDS: Mapping[str, str] = {
    "TIMEOUT": "reached its time limit",
    "OUT_OF_MEMORY": "ran out of memory",
    "NODE_FAIL": "was killed because its node failed",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "could not start because its node failed to boot",
    "DEADLINE": "reached its deadline",
    "CANCELLED": "was cancelled in Slurm",
    "REVOKED": "was revoked (federation)",
    "SPECIAL_EXIT": "ended in Slurm's special exit state",
}


def _where(end: JobEnd) -> str:
    return f" on node {end.nodes}" if end.nodes and "," not in end.nodes and "[" not in end.nodes else (
        f" on nodes {end.nodes}" if end.nodes else "")


def end_detail(end: JobEnd) -> str:
    """Return Slurm's own words about an ended job, in one line (state, reason, exit code, nodes, times). Pure."""
    parts = [f"JobId={end.job_id}", f"JobState={end.state}"]
    if end.cancelled_by:
        parts.append(f"CancelledBy={end.cancelled_by}")
    if end.reason:
        parts.append(f"Reason={end.reason}")
    if end.exit_status is not None:
        parts.append(f"ExitCode={end.exit_status}:0")
    elif end.signal is not None:
        parts.append(f"ExitCode=0:{end.signal}")
    for key, value in (("NodeList", end.nodes), ("StartTime", end.start), ("EndTime", end.end),
                       ("TimeLimit", end.time_limit), ("Comment", end.comment)):
        if value:
            parts.append(f"{key}={value}")
    parts.append(f"(from {end.source})")
    return " ".join(parts)


COMMAND_EXIT_WORDS: Mapping[int, str] = {
    126: "exit code 126 means found but not executable",
    127: "exit code 127 means not found",
}
"""The shell's exit codes for a command it could not run."""


def job_started(end: JobEnd) -> bool:
    """Return True if the job ever ran: it got nodes. A job cancelled while pending has none (its StartTime is its
    EndTime). Pure."""
    return bool(end.nodes)


def end_reason(end: JobEnd | None, *, job_id: str, container_state: str, command: str = "") -> EndReason:
    """Return why the job of a container ended, for a container crunch-run did not finish. Pure.

    ``end`` is Slurm's record of the job (None when neither slurmctld nor accounting remembers it);
    ``container_state`` is the container's state when the job was found gone (Locked: crunch-run never got as
    far as starting the container; Running: it was running). A job that never got a node ended "before it
    started", whatever the container's state. ``command`` is ``Containers.CrunchRunCommand``, named when the
    job's command could not be run (exit code 126 or 127 before crunch-run started the container).
    """
    what = "before crunch-run started the container" if container_state == "Locked" else "while the container ran"
    if end is not None and not job_started(end):
        what = "before it started"
    if end is None:
        return EndReason(
            error=f"Slurm job {job_id or '?'} ended {what}, and Slurm no longer knows how "
                  "(it forgets ended jobs after MinJobAge, and sacct had no record of it or did not answer)",
            detail=f"JobId={job_id or '?'}: not found by squeue --states=all, and no answer from sacct",
            state="",
        )
    where = _where(end)
    state = end.state
    code = end.exit_status
    if state == "FAILED" and code is not None and code in COMMAND_EXIT_WORDS and container_state == "Locked":
        error = (f"Slurm job {end.job_id} failed before crunch-run started the container: the command could not be "
                 f"run{where}: {COMMAND_EXIT_WORDS[code]}; check Containers.CrunchRunCommand ({command!r}) ({state})")
        return EndReason(error=error, detail=end_detail(end), state=state, command_exit=code)
    if state in ("FAILED", "COMPLETED"):
        if end.signal is not None:
            how = f"was killed by signal {end.signal}"
        elif end.exit_status is not None and (state == "FAILED" or end.exit_status):
            how = f"failed with exit code {end.exit_status}"
        else:
            how = "ended (exit code 0)"
        # slurmctld gives every batch script killed by a signal the reason JobLaunchFailure (job_mgr.c:
        # job_complete, WIFSIGNALED), launched or not: with the signal known, the reason says nothing more.
        quiet = ("None", "NonZeroExitCode", "JobLaunchFailure") if end.signal is not None else ("None", "NonZeroExitCode")
        if end.reason and end.reason not in quiet:
            how += f", reason {end.reason}"
        error = f"Slurm job {end.job_id} {how}{where} {what}, without crunch-run recording a final state ({state})"
    else:
        words = _END_WORDS.get(state, f"ended in state {state}")
        if state == "CANCELLED":
            by = f" by {end.cancelled_by}" if end.cancelled_by else " (by an admin or the job's owner)"
            words = f"was cancelled in Slurm{by}"
        error = f"Slurm job {end.job_id} {words}{where} {what} ({state})"
    return EndReason(error=error, detail=end_detail(end), state=state)


def time_limit_reason(job: SlurmJob, *, max_run_time_s: int) -> EndReason:
    """Return what to write on a container whose job is about to reach its Slurm time limit. Pure."""
    where = f" on node {job.nodes}" if job.nodes else ""
    left = "" if job.time_left_s is None else f" TimeLeft={job.time_left_s}s"
    return EndReason(
        error=f"Slurm job {job.job_id} reached the container's time limit (max_run_time {max_run_time_s} s){where}: "
              "crunch-run was asked to stop the container and save its logs (TIMEOUT)",
        detail=f"JobId={job.job_id} JobState={job.state} NodeList={job.nodes or '-'}{left}",
        state="TIMEOUT",
    )


def never_runnable_reason(
    job: SlurmJob, *, waited_s: float, time_limit_min: int = 0, partitions: Sequence[str] = ()
) -> EndReason:
    """Return what to write on a container whose job can never start (a never-runnable pending reason). Pure.

    ``time_limit_min``: the job's time limit as submitted (``%W``; 0: not known), and ``partitions``: those it
    asked for (``%P``), said for ``PartitionTimeLimit``.
    """
    code = reason_code(job.reason)
    words = pending_words(job.reason)
    if code == "PartitionTimeLimit" and time_limit_min > 0:
        where = f"partition {','.join(partitions)}" if partitions else "its partition"
        words = f"its time limit, {time_limit_min} min, is longer than the MaxTime of {where}"
    return EndReason(
        error=f"Slurm job {job.job_id} can never start: {code or job.reason} ({words}); "
              f"it was cancelled after waiting {waited_s:.0f} s",
        detail=f"JobId={job.job_id} JobState={job.state} Reason={job.reason}",
        state="PENDING",
    )


__all__ = [
    "COMMAND_EXIT_WORDS",
    "DEFAULT_NEVER_RUNNABLE_REASONS",
    "HELD_CODES",
    "JOB_END_FIELDS",
    "JOB_END_FORMAT",
    "LEFTOVER",
    "LONG_REASONS",
    "PENDING_WORDS",
    "SACCT_FIELDS",
    "EndReason",
    "JobEnd",
    "end_detail",
    "end_reason",
    "is_held",
    "job_started",
    "never_runnable",
    "never_runnable_reason",
    "parse_job_end_lines",
    "parse_job_ends",
    "parse_sacct",
    "parse_sacct_lines",
    "pending_words",
    "reason_code",
    "scheduling_status",
    "time_limit_reason",
]
