"""squeue's lines as ``SlurmJob``s, and back (for the fakes). Pure.

Each non-empty line of ``SQUEUE_ARGV``'s output (``backend.SQUEUE_FORMAT``: job id, nice, Slurm priority, state,
time left, nodes, name and reason, separated by ``|``) becomes a ``SlurmJob``. Go (services/crunch-dispatch-slurm/
squeue.go: SqueueChecker.check) splits ``%j %y %Q %T %r`` on white space and reads five tokens, so the reason
``launch failed requeued held`` is read as ``launch``; here the reason comes last and is kept whole. Bad lines are
collected and skipped, each with the container uuid it is about when one can be seen in it
(``SqueueParseError.about``). For duplicate names the last line wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import CONTAINER_UUID_IN_TEXT_RE, SlurmJob
from slurm_dispatch.slurm.backend import SQUEUE_SEPARATOR
from slurm_dispatch.slurm.clusters import CLUSTER_LINE_RE

UNKNOWN_STATE = "UNKNOWN"
"""The state given to a job of ours whose squeue line could not be read and that had no earlier line."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")
_TIME_LEFT_RE = re.compile(r"(?:([0-9]{1,9})-)?(?:([0-9]{1,9}):)?([0-9]{1,9}):([0-9]{1,9})")
_SHOWN_CHARS = 40



def _int64(token: str, what: str, line: str) -> int:
    # Go's strconv.ParseInt accepts ASCII digits and a sign only; Python's int() would
    # also take "1_000" and non-ASCII digits.
    shown = repr(token[:_SHOWN_CHARS]) + ("…" if len(token) > _SHOWN_CHARS else "")
    if not _INT_RE.fullmatch(token):
        raise SqueueParseError(line, f"{what} {shown} is not an integer", about=_about(line))
    # int() refuses a string of more than 4300 digits (ValueError); leading zeros aside, an int64 has 19 at most.
    digits = token.lstrip("+-").lstrip("0") or "0"
    value = -int(digits) if token.startswith("-") and len(digits) <= 19 else int(digits) if len(digits) <= 19 else None
    if value is None or not _INT64_MIN <= value <= _INT64_MAX:
        raise SqueueParseError(line, f"{what} {shown} is out of int64 range", about=_about(line))
    return value


def _about(line: str) -> str | None:
    """Return the container uuid a line seems to be about (for a line that cannot be parsed), or None."""
    m = CONTAINER_UUID_IN_TEXT_RE.search(line)
    return m.group(0) if m else None


def parse_time_left(text: str) -> int | None:
    """Return squeue's ``%L`` (time left) in seconds, or None for no limit or an unknown value. Pure.

    Slurm prints ``[days-][hours:]minutes:seconds`` ("0:58", "1:00:00", "2-03:04:05"), or ``UNLIMITED``,
    ``NOT_SET`` or ``INVALID``. A number of more than 9 digits is not one Slurm prints: unknown too.
    """
    m = _TIME_LEFT_RE.fullmatch(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _format_time_left(seconds: int | None) -> str:
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else clock


def parse_squeue_line(line: str) -> SlurmJob:
    """Return the job described by one line of ``SQUEUE_ARGV``'s output. Pure.

    The fields are separated by ``|``: job id, nice, Slurm priority, state, time left, nodes, name and
    reason. The reason comes last and is kept whole, separators and spaces included ("launch failed requeued
    held", "ReqNodeNotAvail, UnavailableNodes:c1"); a job name with a ``|`` in it (another user's) shifts the
    reason, which is then that job's business, not ours.

    Raises:
        SqueueParseError: fewer than eight fields, nice/priority not an int64, or an empty name or state. Its
            ``about`` names the container uuid the line seems to be about, so that a bad line about one of
            our jobs is "no information", never "gone".
    """
    parts = line.rstrip("\r\n").split(SQUEUE_SEPARATOR, 7)
    if len(parts) < 8:
        raise SqueueParseError(line, f"expected 8 fields, found {len(parts)}", about=_about(line))
    job_id, nice, prio, state, time_left, nodes, name, reason = (part.strip() for part in parts)
    if not name or not state:
        raise SqueueParseError(line, "empty job name or state", about=_about(line))
    return SlurmJob(
        name=name,
        nice=_int64(nice, "nice", line),
        slurm_priority=_int64(prio, "priority", line),
        state=state,
        reason=reason,
        job_id=job_id,
        nodes=nodes,
        time_left_s=parse_time_left(time_left),
    )


def parse_squeue(text: str) -> tuple[dict[str, SlurmJob], list[SqueueParseError]]:
    """Return the jobs in squeue output keyed by name, and the errors of the lines skipped.

    Pure. Blank lines are ignored; for duplicate names the last line wins (``parse_squeue_all`` keeps them).
    """
    return SqueueParser().parse(text)


def parse_squeue_all(text: str) -> tuple[list[SlurmJob], list[SqueueParseError]]:
    """Return every job in squeue output, in order (jobs sharing a name all kept), and the lines skipped. Pure.

    With ``--clusters`` (and without ``--noheader``, which drops them), squeue prints ``CLUSTER: <name>`` and its
    column titles (``JOBID|NICE|...``) before each cluster's jobs: the jobs after it get that ``cluster``
    (``clusters.py``), and the titles are skipped.
    """
    return SqueueParser().parse_all(text)


class SqueueParser:
    """Reads one squeue output after another, reusing the job of a line that is exactly as it was last time.

    Most lines do not change between two polls: a pending job's priority changes once a PriorityCalcPeriod at
    most (five minutes by default, never with priority/basic), its state and reason rarely. A line that is
    already known costs one dictionary lookup instead of a split, two integer checks and a time-left match:
    at 10,000 jobs, a few milliseconds a poll instead of about a hundred. Only the lines of the latest output
    are remembered, so a line reused was in the output just before, and memory stays one squeue's worth.
    """

    def __init__(self) -> None:
        self._known: dict[str, SlurmJob] = {}
        """The jobs of the latest output, by line (after its cluster's name, "" without ``--clusters``, and a NUL).
        Strings, not tuples, as keys: the garbage collector does not track them, and 10,000 keys are replaced
        a poll."""

    def parse(self, text: str) -> tuple[dict[str, SlurmJob], list[SqueueParseError]]:
        """``parse_squeue``, reusing the jobs of unchanged lines. Does not block."""
        jobs: dict[str, SlurmJob] = {}
        all_jobs, errors = self.parse_all(text)
        for job in all_jobs:
            jobs[job.name] = job
        return jobs, errors

    def parse_all(self, text: str) -> tuple[list[SlurmJob], list[SqueueParseError]]:
        """``parse_squeue_all``, reusing the jobs of unchanged lines. Does not block."""
        known: dict[str, SlurmJob] = self._known
        seen: dict[str, SlurmJob] = {}
        jobs: list[SlurmJob] = []
        errors: list[SqueueParseError] = []
        cluster = ""
        titles_next = False
        # squeue ends each line with "\n" only. str.splitlines also breaks at U+2028, \x0b, \x1c, \x85 ..., which
        # any user may put in a job name: after one, the rest of the name would pass for a line of its own (a job
        # of ours).
        for line in text.split("\n"):
            key = f"{cluster}\0{line}"  # a cluster's name holds no NUL: no two (cluster, line) pairs share a key
            job = known.get(key)
            if job is None:
                if not line.strip():
                    continue
                header = CLUSTER_LINE_RE.match(line)
                if header:
                    cluster, titles_next = header.group(1), True
                    continue
                if titles_next:
                    titles_next = False
                    if line.startswith("JOBID"):  # a job line starts with its id, a number
                        continue
                try:
                    job = parse_squeue_line(line)
                except SqueueParseError as exc:
                    errors.append(exc)
                    continue
                if cluster:
                    job = replace(job, cluster=cluster)
            else:
                titles_next = False
            seen[key] = job
            jobs.append(job)
        self._known = seen
        return jobs, errors


def format_squeue_line(job: SlurmJob) -> str:
    """Return the line ``SQUEUE_ARGV`` prints for ``job`` (for FakeSlurm and the round-trip tests). Pure.

    Raises:
        ValueError: a field other than the reason contains the separator or a line break, or the name or
            state is empty (squeue never prints such a line in a form that parses back).
    """
    fields = [job.job_id, str(job.nice), str(job.slurm_priority), job.state, _format_time_left(job.time_left_s),
              job.nodes, job.name]
    for text in [*fields, job.reason]:
        if "\n" in text or "\r" in text or text != text.strip():
            raise ValueError(f"squeue field {text!r} has a line break or surrounding space")
    if any(SQUEUE_SEPARATOR in text for text in fields):
        raise ValueError(f"a squeue field other than the reason contains {SQUEUE_SEPARATOR!r}")
    if not job.name or not job.state:
        raise ValueError("a squeue line needs a job name and a state")
    return SQUEUE_SEPARATOR.join([*fields, job.reason])


# -- lines that a job name cannot fake ---------------------------------------------------------

LINE_CONTINUED = "\\n"
"""What stands for a newline inside a field (a job name) once its line is put back together by ``unmark_lines``."""


def marked_argv(argv: Sequence[str], marker: str) -> list[str]:
    """Return ``argv`` with ``marker`` and ``|`` put before every line of its ``--format=`` (squeue). Pure.

    squeue prints a job name as it is, newlines included, and any user may name a job
    ``x<newline>10|0|5|RUNNING|...|<a container uuid>|None``: the text after the newline would pass for a line of
    its own, and the job id in it would be scancelled or reniced by id. A marker that is fresh for each command
    (``secrets.token_hex``), printed by squeue itself at the start of each line, cannot be in a name submitted
    before it existed; ``unmark_lines`` tells squeue's lines from the rest by it. squeue prints the marker in the
    column titles as well (measured on 22.05).

    Raises:
        ValueError: ``argv`` has no ``--format=``, or ``marker`` is not made of letters and digits.
    """
    if not marker.isalnum():
        raise ValueError("a line marker is letters and digits only")
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--format="):
            out[i] = f"--format={marker}{SQUEUE_SEPARATOR}{arg.removeprefix('--format=')}"
            return out
    raise ValueError("the squeue command line has no --format=")


def unmark_lines(text: str, marker: str) -> str:
    """Return the output of a ``marked_argv`` squeue without the markers, each line as squeue meant it. Pure.

    A line that starts with the marker is one of squeue's; a ``CLUSTER: <name>`` line is squeue's own header when
    the column titles (marked) follow it, and so is the empty line squeue prints before each header but the first
    (src/squeue/squeue.c: _multi_cluster); any other line is the rest of the line before it, cut by a newline in a
    job name, and is put back onto that line with the newline written ``\\n`` (so the name reads
    ``x\\n10|0|...``, another user's odd job, never a job of ours). Text before squeue's first line is dropped.
    """
    prefix = marker + SQUEUE_SEPARATOR

    def header_at(i: int) -> bool:
        return (i + 1 < len(lines) and CLUSTER_LINE_RE.match(lines[i]) is not None
                and lines[i + 1].startswith(prefix + "JOBID"))

    lines = text.removesuffix("\n").split("\n") if text else []
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            out.append(line[len(prefix):])
        elif header_at(i) or (not line and header_at(i + 1)):
            out.append(line)
        elif out:
            out[-1] += LINE_CONTINUED + line
    return "".join(f"{line}\n" for line in out)


__all__ = [
    "LINE_CONTINUED",
    "UNKNOWN_STATE",
    "SqueueParser",
    "format_squeue_line",
    "marked_argv",
    "parse_squeue",
    "parse_squeue_all",
    "parse_squeue_line",
    "parse_time_left",
    "unmark_lines",
]
