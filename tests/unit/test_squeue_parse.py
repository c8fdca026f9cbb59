"""parse_squeue / parse_squeue_line / format_squeue_line: tables of real output, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.backend import SQUEUE_FORMAT
from slurm_dispatch.slurm.squeue_lines import (
    SqueueParser,
    format_squeue_line,
    parse_squeue,
    parse_squeue_all,
    parse_squeue_line,
    parse_time_left,
)

# Captured from `squeue --all --noheader --format='%i|%y|%Q|%T|%L|%N|%j|%r'` on the project's Slurm 22.05 test
# cluster (nodes c1 and c2, 2 CPUs each): a hold, a --begin, the queue behind two running jobs, one of them with
# a 5-minute limit, another user's job whose name has a space and a "|", and a job asking for a drained node.
CAPTURED = """\
182|0|934402|PENDING|UNLIMITED||my job|with bar|Resources
183|0|934401|PENDING|UNLIMITED||zzzzz-dz642-capturerun00002|Priority
184|0|934400|PENDING|UNLIMITED||zzzzz-dz642-captureres00001|Priority
180|10000|924404|PENDING|UNLIMITED||zzzzz-dz642-capturebegin001|BeginTime
178|0|0|PENDING|UNLIMITED||zzzzz-dz642-capturehold0001|JobHeldUser
179|0|934405|RUNNING|UNLIMITED|c1|zzzzz-dz642-capturecpus0001|None
181|0|934403|RUNNING|4:58|c2|zzzzz-dz642-capturerun00001|None
186|0|934398|PENDING|UNLIMITED||zzzzz-dz642-capturenode0001|ReqNodeNotAvail, UnavailableNodes:c1
"""


def test_the_format_is_the_captured_one() -> None:
    assert SQUEUE_FORMAT == "%i|%y|%Q|%T|%L|%N|%j|%r"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "178|0|0|PENDING|UNLIMITED||zzzzz-dz642-capturehold0001|JobHeldUser",
            SlurmJob("zzzzz-dz642-capturehold0001", 0, 0, "PENDING", "JobHeldUser", job_id="178"),
            id="held",
        ),
        pytest.param(
            "180|10000|924404|PENDING|UNLIMITED||zzzzz-dz642-capturebegin001|BeginTime",
            SlurmJob("zzzzz-dz642-capturebegin001", 10000, 924404, "PENDING", "BeginTime", job_id="180"),
            id="pending-begin",
        ),
        pytest.param(
            "181|0|934403|RUNNING|4:58|c2|zzzzz-dz642-capturerun00001|None",
            SlurmJob("zzzzz-dz642-capturerun00001", 0, 934403, "RUNNING", "None", job_id="181", nodes="c2",
                     time_left_s=298),
            id="running-with-a-limit",
        ),
        pytest.param(
            "186|0|934398|PENDING|UNLIMITED||zzzzz-dz642-capturenode0001|ReqNodeNotAvail, UnavailableNodes:c1",
            SlurmJob("zzzzz-dz642-capturenode0001", 0, 934398, "PENDING", "ReqNodeNotAvail, UnavailableNodes:c1",
                     job_id="186"),
            id="reason-with-comma-and-space-kept-whole",
        ),
        pytest.param(
            "104|0|0|PENDING|UNLIMITED||zzzzz-dz642-000000000000001|launch failed requeued held",
            SlurmJob("zzzzz-dz642-000000000000001", 0, 0, "PENDING", "launch failed requeued held", job_id="104"),
            id="reason-with-spaces-kept-whole",
        ),
        pytest.param(
            "7|-5|+7|PENDING|UNLIMITED||zzzzz-dz642-000000000000003|Priority",
            SlurmJob("zzzzz-dz642-000000000000003", -5, 7, "PENDING", "Priority", job_id="7"),
            id="signed-ints",
        ),
        pytest.param(
            "12_3|0|1|RUNNING|1-02:03:04|c[1-2]|array-job|None",
            SlurmJob("array-job", 0, 1, "RUNNING", "None", job_id="12_3", nodes="c[1-2]", time_left_s=93784),
            id="another-users-array-job",
        ),
        pytest.param(
            "182|0|934402|PENDING|UNLIMITED||my job|with bar|Resources",
            SlurmJob("my job", 0, 934402, "PENDING", "with bar|Resources", job_id="182"),
            id="a-bar-in-a-name-shifts-only-that-jobs-reason",
        ),
    ],
)
def test_parse_line(line: str, expected: SlurmJob) -> None:
    assert parse_squeue_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason", "about"),
    [
        pytest.param("1|0|1|PENDING|UNLIMITED||zzzzz-dz642-000000000000001", "found 7",
                     "zzzzz-dz642-000000000000001", id="seven-fields-about-ours"),
        pytest.param("zzzzz-dz642-000000000000001 0 1 PENDING None", "found 1", "zzzzz-dz642-000000000000001",
                     id="gos-format"),
        pytest.param("1|1.5|1|PENDING|UNLIMITED||x|None", "nice '1.5'", None, id="float-nice"),
        pytest.param("1|1|1_000|PENDING|UNLIMITED||x|None", "priority '1_000'", None, id="underscore-int"),
        pytest.param("1|1|\u0663|PENDING|UNLIMITED||x|None", "priority", None, id="non-ascii-digit"),
        pytest.param("1|1|9223372036854775808|PENDING|UNLIMITED||x|None", "int64", None, id="overflow"),
        pytest.param("1|1|1||UNLIMITED||x|None", "empty", None, id="no-state"),
        pytest.param("1|x|1|RUNNING|UNLIMITED|c1|zzzzz-dz642-000000000000002|None", "nice 'x'",
                     "zzzzz-dz642-000000000000002", id="bad-nice-about-ours"),
    ],
)
def test_parse_line_rejects(line: str, reason: str, about: str | None) -> None:
    with pytest.raises(SqueueParseError) as info:
        parse_squeue_line(line)
    assert info.value.line == line
    assert reason in str(info.value)
    assert info.value.about == about


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("4:58", 298, id="minutes-seconds"),
        pytest.param("0:05", 5, id="seconds"),
        pytest.param("1:00:00", 3600, id="hours"),
        pytest.param("2-03:04:05", 183845, id="days"),
        pytest.param("UNLIMITED", None, id="unlimited"),
        pytest.param("NOT_SET", None, id="not-set"),
        pytest.param("INVALID", None, id="invalid"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_time_left(text: str, seconds: int | None) -> None:
    assert parse_time_left(text) == seconds


def test_parse_captured_output() -> None:
    jobs, errors = parse_squeue(CAPTURED)
    assert errors == []
    assert sorted(jobs) == [
        "my job",
        "zzzzz-dz642-capturebegin001",
        "zzzzz-dz642-capturecpus0001",
        "zzzzz-dz642-capturehold0001",
        "zzzzz-dz642-capturenode0001",
        "zzzzz-dz642-captureres00001",
        "zzzzz-dz642-capturerun00001",
        "zzzzz-dz642-capturerun00002",
    ]
    assert jobs["zzzzz-dz642-capturebegin001"].reason == "BeginTime"
    assert jobs["zzzzz-dz642-capturenode0001"].reason == "ReqNodeNotAvail, UnavailableNodes:c1"
    assert jobs["zzzzz-dz642-capturerun00001"].nodes == "c2"


def test_bad_lines_are_skipped_and_parsing_continues() -> None:
    text = ("garbage\n\n   \n1|1|2|RUNNING|UNLIMITED|c1|a|None\n2|x|2|PENDING|UNLIMITED||b|None\n"
            "3|3|4|PENDING|UNLIMITED||c|Resources\n")
    jobs, errors = parse_squeue(text)
    assert list(jobs) == ["a", "c"]
    assert [e.line for e in errors] == ["garbage", "2|x|2|PENDING|UNLIMITED||b|None"]


def test_duplicate_name_last_line_wins_but_all_keeps_them() -> None:
    text = "1|1|100|RUNNING|UNLIMITED|c1|a|None\n2|2|200|PENDING|UNLIMITED||a|Priority\n"
    jobs, errors = parse_squeue(text)
    assert errors == []
    assert jobs == {"a": SlurmJob("a", 2, 200, "PENDING", "Priority", job_id="2")}
    every, _ = parse_squeue_all(text)
    assert [j.job_id for j in every] == ["1", "2"]


def test_empty_output() -> None:
    assert parse_squeue("") == ({}, [])


def test_format_refuses_what_would_not_parse_back() -> None:
    with pytest.raises(ValueError):
        format_squeue_line(SlurmJob("my|job", 0, 0, "PENDING", "None"))
    with pytest.raises(ValueError):
        format_squeue_line(SlurmJob("a", 0, 0, "", "None"))
    with pytest.raises(ValueError):
        format_squeue_line(SlurmJob("a", 0, 0, "PENDING", "two\nlines"))


# A field squeue prints without padding: no separator, no line break, no surrounding space. The reason may hold
# separators and inner spaces.
fields = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="|\r\n\x0b\x0c\x1c\x1d\x1e\x85"
                                                                                  "\u2028\u2029"),
                 min_size=1, max_size=20).filter(lambda s: s == s.strip())
reasons = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85"
                                                                                   "\u2028\u2029"),
                  max_size=40).filter(lambda s: s == s.strip())
int64s = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
slurm_jobs = st.builds(
    SlurmJob, name=fields, nice=int64s, slurm_priority=int64s, state=fields, reason=reasons,
    job_id=fields, nodes=st.one_of(st.just(""), fields), time_left_s=st.one_of(st.none(), st.integers(0, 10**7)),
)


@given(st.lists(slurm_jobs, max_size=20))
def test_format_then_parse_round_trips(jobs: list[SlurmJob]) -> None:
    text = "".join(format_squeue_line(j) + "\n" for j in jobs)
    parsed, errors = parse_squeue_all(text)
    assert errors == []
    assert parsed == jobs


@given(st.text())
def test_line_parser_raises_only_squeue_parse_error(text: str) -> None:
    try:
        job = parse_squeue_line(text)
    except SqueueParseError as exc:
        assert exc.line == text
    else:
        assert job.name


@given(st.text())
def test_parse_squeue_never_raises(text: str) -> None:
    jobs, errors = parse_squeue(text)
    assert len(jobs) + len(errors) <= len(text.splitlines())


# --- found by benchmarks/fuzz_records.py (docs/robustness.md) ---------------------------------------------------


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_a_line_separator_in_a_job_name_cannot_forge_a_line(separator: str) -> None:
    """squeue ends a line with "\\n" only: another user's job name holding a character str.splitlines breaks at
    must stay that job's name, never become a RUNNING job of one of our containers."""
    forged = "999|0|1|RUNNING|UNLIMITED|c1|zzzzz-dz642-000000000000001|None"
    text = f"5|0|1|PENDING|UNLIMITED||evil{separator}{forged}\n6|0|2|PENDING|UNLIMITED||b|None\n"
    jobs, errors = parse_squeue(text)
    assert errors == []
    assert sorted(jobs) == sorted([f"evil{separator}999", "b"])
    assert jobs[f"evil{separator}999"].job_id == "5"


@pytest.mark.parametrize(
    ("field", "line"),
    [
        pytest.param("nice", "1|" + "9" * 5000 + "|1|PENDING|UNLIMITED||zzzzz-dz642-000000000000001|None", id="nice"),
        pytest.param("priority", "1|0|-" + "9" * 5000 + "|PENDING|UNLIMITED||zzzzz-dz642-000000000000001|None",
                     id="priority"),
        pytest.param("nice", "1|" + "1" * 20 + "|1|PENDING|UNLIMITED||zzzzz-dz642-000000000000001|None", id="20-digits"),
    ],
)
def test_a_number_of_thousands_of_digits_is_a_parse_error_not_a_value_error(field: str, line: str) -> None:
    """int() refuses more than 4300 digits with ValueError, which escaped parse_squeue and failed every poll."""
    with pytest.raises(SqueueParseError) as info:
        parse_squeue_line(line)
    assert info.value.reason.startswith(f"{field} '") and info.value.reason.endswith("is out of int64 range")
    assert len(info.value.reason) < 100, "the reason shows an excerpt of the number, not all of it"
    assert info.value.about == "zzzzz-dz642-000000000000001"


def test_leading_zeros_do_not_count_as_digits() -> None:
    """Go's strconv.ParseInt reads 0000...07 as 7, however many zeros."""
    job = parse_squeue_line("1|" + "0" * 5000 + "7|-" + "0" * 30 + "2|PENDING|UNLIMITED||a|None")
    assert (job.nice, job.slurm_priority) == (7, -2)


@pytest.mark.parametrize("text", ["9" * 5000 + ":00", "1-" + "9" * 5000 + ":00:00", "1234567890:00"])
def test_a_time_left_of_thousands_of_digits_is_unknown(text: str) -> None:
    assert parse_time_left(text) is None
    job = parse_squeue_line(f"1|0|1|RUNNING|{text}|c1|a|None")
    assert job.time_left_s is None


# --- SqueueParser: one poll after another ----------------------------------------------------------------------

_POOL = [
    *CAPTURED.splitlines(),
    "181|0|934403|RUNNING|4:57|c2|zzzzz-dz642-capturerun00001|None",  # the same job, a second later
    "184|0|934400|RUNNING|UNLIMITED|c1|zzzzz-dz642-captureres00001|None",
    "garbage",
    "2|x|2|PENDING|UNLIMITED||zzzzz-dz642-capturebegin001|None",
    "",
    "CLUSTER: sdalpha",
    "CLUSTER: sdbeta",
    "JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON",
]


@given(st.lists(st.lists(st.sampled_from(_POOL), max_size=14), max_size=6))
def test_a_parser_kept_across_polls_reads_each_output_as_a_fresh_parse_does(outputs: list[list[str]]) -> None:
    """Reusing the jobs of unchanged lines is invisible: every output, whatever came before it (the same lines
    under another cluster's header, a line turned bad, a title row), gives what parsing it alone gives."""
    parser = SqueueParser()
    for lines in outputs:
        text = "\n".join(lines) + "\n"
        jobs, errors = parser.parse_all(text)
        fresh_jobs, fresh_errors = parse_squeue_all(text)
        assert jobs == fresh_jobs
        assert [(e.line, str(e), e.about) for e in errors] == [(e.line, str(e), e.about) for e in fresh_errors]


def test_an_unchanged_line_gives_the_same_job_and_a_changed_one_a_new_one() -> None:
    parser = SqueueParser()
    first, _ = parser.parse(CAPTURED)
    again = CAPTURED.replace("181|0|934403|RUNNING|4:58|", "181|0|934403|RUNNING|4:57|")
    second, errors = parser.parse(again)
    assert errors == []
    assert second["zzzzz-dz642-capturebegin001"] is first["zzzzz-dz642-capturebegin001"]
    assert second["zzzzz-dz642-capturerun00001"] is not first["zzzzz-dz642-capturerun00001"]
    assert second["zzzzz-dz642-capturerun00001"].time_left_s == 4 * 60 + 57


def test_a_parser_remembers_only_the_latest_output() -> None:
    parser = SqueueParser()
    first, _ = parser.parse(CAPTURED)
    parser.parse("")
    third, _ = parser.parse(CAPTURED)
    assert third == first
    assert all(third[name] is not job for name, job in first.items())
