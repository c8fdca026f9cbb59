"""Hostile Slurm output and job-script words at their parsers: a clear refusal or a right result, nothing else.

The other four parsers where outside input enters (the API's two are in test_records_fuzz.py, whose docstring
states the property): squeue's lines (``parse_squeue``), the end-of-job lines of ``squeue --states=all`` and of
``sacct`` (``parse_job_ends``, ``parse_sacct``), and the job script built from argv and environment values
(``batch_script``), which must parse in /bin/sh and bash and, run with stand-in programs, give back every word
and value byte for byte.

squeue and the end-of-job commands end each record with a newline; any other character, U+2028 and the other
characters ``str.splitlines`` breaks at included, belongs to a field (a job name is any user's text).

The property tests below cover the end-of-job lines, which had none; squeue's and the script's are in
test_squeue_parse.py and test_batch_script.py, and the smoke test runs the squeue target a little so that its
generator keeps working. benchmarks/fuzz_records.py runs every target thousands of times.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_records_fuzz import CI, INT64_MAX, LONG, OUR_UUID, Outcomes, Target, short, smoke, uuids

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import CONTAINER_UUID_RE, SlurmJob
from slurm_dispatch.slurm.reasons import JOB_END_FIELDS, SACCT_FIELDS, JobEnd, parse_job_ends, parse_sacct
from slurm_dispatch.slurm.sbatch import batch_script
from slurm_dispatch.slurm.squeue_lines import (
    format_squeue_line,
    parse_squeue,
    parse_squeue_all,
    parse_squeue_line,
)

# -- lines: squeue, and how jobs ended -----------------------------------------------------------------------

NUMBERS = ["9" * 5000, "0" * 5000 + "1", "+" + "0" * 30 + "5", "9223372036854775807", "9223372036854775808",
           "-9223372036854775808", "-9223372036854775809", "4294967295", "4294967296", "65535", "65536", "1_000",
           "\u0661\u0662", "\u00b2", "0x10", "1e3", "1.0", "-", "+", "nan", "inf", "", " 7 ", "-1", "07"]
TIMES = ["9" * 5000 + ":00", "1-" + "9" * 5000 + ":00:00", "99999999999:59", "UNLIMITED", "INVALID", "NOT_SET",
         "-1:00", "1:2:3:4", "1-", "2-03:04:05", "0:58"]
TOKENS = ["", " ", "|", "||", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "\r", "\t", "\0", "\ud800", "\x1b[2J", "é",
          "😀", "None", "(null)", "N/A", "CANCELLED by 0", "CANCELLED by ", "123.batch", "1,2", "--help",
          *NUMBERS, *TIMES, *LONG]
"""Field values Slurm should not print, and some it does."""
LINE_SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Where ``str.splitlines`` breaks a line and squeue does not (a job name may hold any of them)."""
field_text = st.one_of(st.from_regex(r"[A-Za-z0-9_.:,()\[\] -]{1,20}", fullmatch=True),
                       st.text(st.characters(exclude_categories=("Cs",), exclude_characters="|\r\n"), min_size=1,
                               max_size=20))
fields = st.one_of(field_text, st.builds(lambda a, s, b: a + s + b, field_text, st.sampled_from(LINE_SEPARATORS),
                                         field_text)).map(str.strip).filter(bool)
"""A field squeue prints without padding: no separator, no newline, no surrounding space; any line separator else."""
reasons = st.one_of(st.just(""), fields, st.builds(lambda a, b: f"{a}|{b}", fields, fields))
int64s = st.one_of(st.integers(-(2**63), INT64_MAX), st.sampled_from([0, 10000, -(2**63), INT64_MAX]))
squeue_jobs = st.builds(
    SlurmJob, name=st.one_of(st.just(OUR_UUID), uuids("dz642"), fields), nice=int64s, slurm_priority=int64s,
    state=st.sampled_from(["PENDING", "RUNNING", "COMPLETING", "SUSPENDED"]) | fields, reason=reasons,
    job_id=st.integers(1, 2**32 - 1).map(str) | fields, nodes=st.one_of(st.just(""), fields),
    time_left_s=st.one_of(st.none(), st.integers(0, 10**7)),
)


@dataclass(frozen=True)
class Line:
    """One generated line: its text, and what it says when it was written unchanged (None once it is mutated)."""

    text: str
    expected: Any = None
    name: str = ""
    """The job name it carries, unless a mutation may have changed which name that is."""


def mutated_line(parts: list[str], how: str, at: int, token: str, cut: int) -> str:
    """Return the fields ``parts`` joined by ``|`` after one mutation: a field replaced, dropped or doubled, a
    token inserted, or the line cut short."""
    parts = list(parts)
    at %= len(parts)
    if how == "replace":
        parts[at] = token
    elif how == "drop":
        del parts[at]
    elif how == "double":
        parts.insert(at, parts[at])
    elif how == "insert":
        parts[at] = parts[at][: len(parts[at]) // 2] + token + parts[at][len(parts[at]) // 2:]
    line = "|".join(parts)
    return line[: cut % (len(line) + 1)] if how == "cut" else line


HOW = st.sampled_from(["replace", "replace", "drop", "double", "insert", "cut"])


def line_texts(valid: st.SearchStrategy[Line], *, fields: int, name_at: int) -> st.SearchStrategy[list[Line]]:
    """Return lists of lines (valid ones, mutated ones, Go's squeue format, garbage) of ``fields`` fields, the job
    name at index ``name_at``."""
    def mutate(line: Line, how: str, at: int, token: str, cut: int) -> Line:
        parts = line.text.split("|", fields - 1)
        name_end = len("|".join(parts[: name_at + 1]))
        keeps_name = (how in ("replace", "insert", "drop") and at % len(parts) != name_at or how == "double"
                      or how == "cut" and cut % (len(line.text) + 1) >= name_end)
        return Line(mutated_line(parts, how, at, token, cut), name=line.name if keeps_name else "")

    some_line = st.one_of(
        valid, valid,
        st.builds(mutate, valid, HOW, st.integers(0, 9), st.sampled_from(TOKENS) | st.text(max_size=10),
                  st.integers(0, 300)),
        st.builds(mutate, valid, HOW, st.integers(0, 9), st.sampled_from(TOKENS) | st.text(max_size=10),
                  st.integers(0, 300)),
        st.builds(Line, st.text(max_size=80) | st.sampled_from(TOKENS)),
        st.sampled_from([Line(f"{OUR_UUID} 0 1 PENDING None", name=OUR_UUID), Line("CLUSTER: c2"),
                         Line(f"CLUSTER: c2\u2028{OUR_UUID}|", name=OUR_UUID)]),
    )
    return st.lists(some_line, min_size=1, max_size=8)


def _squeue_line(job: SlurmJob) -> Line:
    return Line(format_squeue_line(job), job, job.name if CONTAINER_UUID_RE.fullmatch(job.name) else "")


squeue_texts = line_texts(st.builds(_squeue_line, squeue_jobs), fields=8, name_at=6)


def joined(lines: list[Line]) -> str:
    return "".join(line.text + "\n" for line in lines)


def records_of(text: str) -> list[str]:
    """The non-blank records of a command's output: one per newline, whatever else a field holds."""
    return [line for line in text.split("\n") if line.strip()]


def headers_in(records: list[str]) -> int:
    """The number of ``CLUSTER: <name>`` lines (squeue prints one before each cluster's jobs with ``--clusters``)."""
    return sum(1 for r in records if r.startswith("CLUSTER: "))


def reason_kind(reason: str) -> str:
    return re.sub(r", found \d+| ('.*'|\".*\")…?|\s*\d+$", "", reason) or "?"


def check_squeue(lines: list[Line]) -> Outcomes:
    """Parse one squeue output and each of its lines, and assert the property."""
    text = joined(lines)
    every, errors = parse_squeue_all(text)
    jobs, errors_again = parse_squeue(text)
    records = records_of(text)
    assert len(records) - headers_in(records) <= len(every) + len(errors) <= len(records), \
        "one job or one error per line squeue printed (but cluster headers)"
    assert jobs == {job.name: job for job in every} and [e.line for e in errors_again] == [e.line for e in errors]
    outcomes = Outcomes()
    for line in lines:
        for record in records_of(line.text + "\n"):
            try:
                job = parse_squeue_line(record)
            except SqueueParseError as exc:
                assert exc.line == record and len(exc.reason) <= 200, exc.reason[:200]
                if line.name and line.name in record:  # (a token with a newline may have split the line)
                    assert exc.about == line.name, f"a bad line about {line.name} lost it: {exc.about!r}"
                    outcomes["(of the refused: about a container, and says which)"] += 1
                outcomes[f"refused: {reason_kind(exc.reason)}"] += 1
                continue
            if line.expected is not None:
                assert job == line.expected, f"{job} is not {line.expected}"
            assert job.name and job.state and job.name == job.name.strip()
            assert -(2**63) <= job.nice <= INT64_MAX and -(2**63) <= job.slurm_priority <= INT64_MAX
            assert job.time_left_s is None or 0 <= job.time_left_s < 10**15
            outcomes["accepted"] += 1
    return outcomes


BLANKS = ("(null)", "None", "Unknown", "N/A")
"""What Slurm prints for an empty field; the parsers read it as ""."""
end_fields = st.one_of(fields, st.sampled_from(BLANKS))
end_states = st.sampled_from(["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                              "PREEMPTED", "BOOT_FAIL", "DEADLINE", "PENDING", "RUNNING", "REQUEUED"])
exits = st.one_of(st.tuples(st.integers(0, 255), st.just(0)), st.tuples(st.just(0), st.integers(1, 127)))
"""(exit status, signal) of a batch script."""


def _blank(text: str) -> str:
    return "" if text in BLANKS else text


@st.composite
def job_end_lines(draw: st.DrawFn, *, sacct: bool) -> Line:
    status, signal = draw(exits)
    job_id, nodes, start, end, limit, comment, reason = (draw(s) for s in [
        st.integers(1, 2**32 - 1).map(str), end_fields, end_fields, end_fields, end_fields, end_fields, end_fields])
    name = draw(st.one_of(st.just(OUR_UUID), fields))
    state, by = draw(end_states), ""
    if sacct:
        code = f"{status}:{signal}"
        if state == "CANCELLED" and draw(st.booleans()):
            by = draw(st.from_regex(r"[0-9]{1,10}", fullmatch=True))
        shown_state = f"{state} by {by}" if by else state
    else:
        code = str(signal | (0x80 if signal and draw(st.booleans()) else 0) if signal else status << 8)
        shown_state = state
    ended = JobEnd(job_id=job_id, state=state, exit_status=None if signal else status, signal=signal or None,
                 nodes=_blank(nodes), start=_blank(start), end=_blank(end), time_limit=_blank(limit), name=name,
                 comment=_blank(comment), reason=_blank(reason), cancelled_by=by,
                 source="sacct" if sacct else "squeue")
    text = f"{job_id}|{shown_state}|{code}|{nodes}|{start}|{end}|{limit}|{name}|{comment}|{reason}"
    if sacct and draw(st.integers(0, 4)) == 0:  # a step line, which parse_sacct skips
        return Line(text.replace(job_id, job_id + draw(st.sampled_from([".batch", ".extern", ".0"])), 1))
    return Line(text, ended)


end_texts = line_texts(job_end_lines(sacct=False), fields=len(JOB_END_FIELDS), name_at=7)
sacct_texts = line_texts(job_end_lines(sacct=True), fields=len(SACCT_FIELDS), name_at=7)


def assert_end_right(end: JobEnd, expected: JobEnd | None) -> None:
    if expected is not None:
        assert end == expected, f"{end} is not {expected}"
    assert end.job_id and end.job_id == end.job_id.strip() and end.state
    if end.job_id.isdigit():  # as the end reader sorts them (slurm/end_reader.py: _id_order)
        int(end.job_id)
    assert end.exit_status is None or 0 <= end.exit_status <= 255
    assert end.signal is None or 1 <= end.signal <= 255


def check_job_ends(lines: list[Line]) -> Outcomes:
    """Parse one ``squeue --states=all`` output and each of its lines, and assert the property."""
    text = joined(lines)
    ends, errors = parse_job_ends(text)
    outcomes = Outcomes()
    last: dict[str, JobEnd] = {}
    error_lines = []
    for line in lines:
        for record in records_of(line.text + "\n"):
            one, one_errors = parse_job_ends(record)
            assert len(one) + len(one_errors) == 1 - headers_in([record]), "one end or one error per line"
            for error in one_errors:
                assert isinstance(error, SqueueParseError) and error.line == record and len(error.reason) <= 200
                outcomes[f"refused: {reason_kind(error.reason)}"] += 1
                error_lines.append(record)
            for end in one.values():
                assert_end_right(end, line.expected)
                outcomes["accepted"] += 1
            last.update(one)
    assert ends == last and [e.line for e in errors] == error_lines, "the whole text parses as its lines do"
    return outcomes


def check_sacct(lines: list[Line]) -> Outcomes:
    """Parse one ``sacct --parsable2`` output and each of its lines, and assert the property."""
    ends = parse_sacct(joined(lines))
    outcomes = Outcomes()
    last: dict[str, JobEnd] = {}
    for line in lines:
        for record in records_of(line.text + "\n"):
            one = parse_sacct(record)
            assert len(one) <= 1
            for end in one.values():
                assert_end_right(end, line.expected)
                assert "." not in end.job_id, "a step line is skipped"
            outcomes["accepted" if one else "skipped"] += 1
            last.update(one)
    assert ends == last, "the whole text parses as its lines do"
    return outcomes


# -- the job script --------------------------------------------------------------------------------------------

SHELLS = [sh for sh in (["/bin/sh"], ["bash", "--posix"]) if shutil.which(sh[0])]
"""The shells a compute node may run the script with: /bin/sh (dash here), and bash as /bin/sh in POSIX mode."""
SHELL_SPECIAL = frozenset({"OPTIND", "SHELLOPTS", "BASHOPTS", "BASH_VERSINFO", "EUID", "UID", "PPID", "PWD", "IFS"})
"""Names a shell gives a meaning of its own: dash refuses a non-number in OPTIND (the script exits 2), bash skips
its read-only variables, the shells reset PWD. Only GatewayAuthSecret is ever passed (slurm/jobs.py)."""
words = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from([w for w in TOKENS if isinstance(w, str) and "\ud800" not in w] + ["'", "'\\''", "\\", "$HOME",
                     "${x:-y}", "$(id)", "`id`", "#", "!", "*", "~", "{", "}", ";", "&", "<", ">", "%s\\0", "a'b\"c"]),
)
"""Any argv word or environment value but lone surrogates (no file or command line can hold one)."""
env_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(lambda n: n not in SHELL_SPECIAL),
    st.sampled_from(["GatewayAuthSecret", "A" * 5_000, "1BAD", "A-B", "A B", "", "A\n", "é", "A\0", "x" * 300 + "-"]),
)
script_cases = st.fixed_dictionaries({
    "argv": st.lists(words, min_size=1, max_size=6),
    "env": st.dictionaries(env_names, words, max_size=3),
    "run": st.integers(0, 7).map(lambda n: n == 0),
})
"""argv words and environment values; one case in eight is also run with stand-in programs."""


def _sh(shell: list[str], script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*shell, *args], input=script.encode(), capture_output=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})


def check_script(case: Mapping[str, Any]) -> Outcomes:
    """Build the script; on every shell it must parse (``-n``), and when ``case["run"]``, run with stand-ins
    (``printf '%s\\0'`` for argv, ``env -0`` for the environment), give back every word and value byte for byte."""
    argv, env = case["argv"], case["env"]
    try:
        script = batch_script(argv, env)
    except ValueError as exc:
        short(str(exc))
        bad_name = any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in env)
        assert bad_name or any("\0" in w for w in [*argv, *env.values()]), f"refused a script sh can hold: {exc}"
        return Outcomes({f"refused: {'a bad name' if 'not a valid environment variable name' in str(exc) else 'a NUL'}": 1})
    outcomes = Outcomes({"accepted": 1})
    for shell in SHELLS:
        done = _sh(shell, script, "-n")
        assert done.returncode == 0 and not done.stderr, f"{shell[0]} -n: {done.stderr[:300]!r}"
        if case["run"]:
            done = _sh(shell, batch_script(["/usr/bin/printf", "%s\\0", *argv], env))
            assert done.returncode == 0, done.stderr[:300]
            assert done.stdout == b"".join(w.encode() + b"\0" for w in argv), f"{shell[0]}: argv changed"
            done = _sh(shell, batch_script(["/usr/bin/env", "-0"], env))
            given_back = dict(e.split(b"=", 1) for e in done.stdout.split(b"\0")[:-1])
            assert all(given_back.get(k.encode()) == v.encode() for k, v in env.items()), f"{shell[0]}: env changed"
            outcomes[f"run by {shell[0]}"] += 1
    return outcomes


TARGETS: dict[str, Target] = {
    "squeue lines": Target(squeue_texts, check_squeue, 1.0, "lines"),
    "end-of-job lines": Target(end_texts, check_job_ends, 1.0, "lines"),
    "sacct lines": Target(sacct_texts, check_sacct, 1.0, "lines"),
    "job script": Target(script_cases, check_script, 10.0, "scripts"),
}


@CI
@given(lines=end_texts)
def test_end_of_job_lines_give_their_values_or_a_squeue_parse_error(lines: list[Line]) -> None:
    check_job_ends(lines)


@CI
@given(lines=sacct_texts)
def test_sacct_lines_give_their_values_or_are_skipped(lines: list[Line]) -> None:
    check_sacct(lines)


def test_the_squeue_target_still_runs() -> None:
    smoke(TARGETS["squeue lines"])
