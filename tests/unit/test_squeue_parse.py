"""parse_squeue / parse_squeue_line / format_squeue_line: tables of real output, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.errors import SqueueParseError
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.squeue import format_squeue_line, parse_squeue, parse_squeue_line

# Captured from `squeue --all --noheader --format='%j %y %Q %T %r'` on the project's Slurm 22.05 test cluster.
CAPTURED = """\
zzzzz-dz642-exp2242211469 10000 0 PENDING JobHeldUser
zzzzz-dz642-exp15391710 10000 4294891758 PENDING None
zzzzz-dz642-capturebegin001 10000 4294891753 PENDING BeginTime
zzzzz-dz642-exp15391710x 3 4294901755 RUNNING None
sbatch 0 0 PENDING JobHeldUser
my job 0 0 PENDING JobHeldUser
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "zzzzz-dz642-exp2242211469 10000 0 PENDING JobHeldUser",
            SlurmJob("zzzzz-dz642-exp2242211469", 10000, 0, "PENDING", "JobHeldUser"),
            id="held",
        ),
        pytest.param(
            "zzzzz-dz642-exp15391710 10000 4294891758 PENDING None",
            SlurmJob("zzzzz-dz642-exp15391710", 10000, 4294891758, "PENDING", "None"),
            id="pending",
        ),
        pytest.param(
            "zzzzz-dz642-exp15391710 3 4294901755 RUNNING None",
            SlurmJob("zzzzz-dz642-exp15391710", 3, 4294901755, "RUNNING", "None"),
            id="running-reniced",
        ),
        pytest.param(
            "zzzzz-dz642-000000000000001 0 4294000000 PENDING launch failed requeued held",
            SlurmJob("zzzzz-dz642-000000000000001", 0, 4294000000, "PENDING", "launch"),
            id="reason-is-first-word",
        ),
        pytest.param(
            "  zzzzz-dz642-000000000000002\t10\t4294000000   PENDING  Resources  ",
            SlurmJob("zzzzz-dz642-000000000000002", 10, 4294000000, "PENDING", "Resources"),
            id="any-whitespace",
        ),
        pytest.param(
            "zzzzz-dz642-000000000000003 -5 +7 PENDING Priority",
            SlurmJob("zzzzz-dz642-000000000000003", -5, 7, "PENDING", "Priority"),
            id="signed-ints",
        ),
        pytest.param(
            "sbatch 0 0 PENDING JobHeldUser",
            SlurmJob("sbatch", 0, 0, "PENDING", "JobHeldUser"),
            id="not-arvados",
        ),
    ],
)
def test_parse_line(line: str, expected: SlurmJob) -> None:
    assert parse_squeue_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("my job 0 0 PENDING JobHeldUser", "nice 'job'", id="name-with-space"),
        pytest.param("zzzzz-dz642-000000000000001 0 1 PENDING", "found 4", id="four-fields"),
        pytest.param("zzzzz-dz642-000000000000001", "found 1", id="one-field"),
        pytest.param("x 1.5 1 PENDING None", "nice '1.5'", id="float-nice"),
        pytest.param("x 1 1_000 PENDING None", "priority '1_000'", id="underscore-int"),
        pytest.param("x 1 \u0663 PENDING None", "priority", id="non-ascii-digit"),
        pytest.param("x 1 9223372036854775808 PENDING None", "int64", id="overflow"),
    ],
)
def test_parse_line_rejects(line: str, reason: str) -> None:
    with pytest.raises(SqueueParseError) as info:
        parse_squeue_line(line)
    assert info.value.line == line
    assert reason in str(info.value)


def test_parse_captured_output() -> None:
    jobs, errors = parse_squeue(CAPTURED)
    assert sorted(jobs) == [
        "sbatch",
        "zzzzz-dz642-capturebegin001",
        "zzzzz-dz642-exp15391710",
        "zzzzz-dz642-exp15391710x",
        "zzzzz-dz642-exp2242211469",
    ]
    assert jobs["zzzzz-dz642-capturebegin001"].reason == "BeginTime"
    assert [e.line for e in errors] == ["my job 0 0 PENDING JobHeldUser"]


def test_bad_lines_are_skipped_and_parsing_continues() -> None:
    text = "garbage\n\n   \na 1 2 RUNNING None\nb x 2 PENDING None\nc 3 4 PENDING Resources\n"
    jobs, errors = parse_squeue(text)
    assert list(jobs) == ["a", "c"]
    assert [e.line for e in errors] == ["garbage", "b x 2 PENDING None"]


def test_duplicate_name_last_line_wins() -> None:
    jobs, errors = parse_squeue("a 1 100 RUNNING None\na 2 200 PENDING Priority\n")
    assert errors == []
    assert jobs == {"a": SlurmJob("a", 2, 200, "PENDING", "Priority")}


def test_empty_output() -> None:
    assert parse_squeue("") == ({}, [])


def test_format_refuses_unparsable_tokens() -> None:
    with pytest.raises(ValueError):
        format_squeue_line(SlurmJob("my job", 0, 0, "PENDING", "None"))
    with pytest.raises(ValueError):
        format_squeue_line(SlurmJob("a", 0, 0, "PENDING", ""))


# A token is what str.split() yields: non-empty, no whitespace (of any Unicode kind).
tokens = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda s: s.split() == [s]
)
int64s = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
slurm_jobs = st.builds(SlurmJob, name=tokens, nice=int64s, slurm_priority=int64s, state=tokens, reason=tokens)


@given(st.lists(slurm_jobs, max_size=20))
def test_format_then_parse_round_trips(jobs: list[SlurmJob]) -> None:
    text = "".join(format_squeue_line(j) + "\n" for j in jobs)
    parsed, errors = parse_squeue(text)
    assert errors == []
    assert parsed == {j.name: j for j in jobs}


@given(slurm_jobs, st.lists(tokens, max_size=4))
def test_extra_tokens_are_ignored(job: SlurmJob, extra: list[str]) -> None:
    assert parse_squeue_line(" ".join([format_squeue_line(job), *extra])) == job


@given(st.text())
def test_line_parser_raises_only_squeue_parse_error(text: str) -> None:
    try:
        job = parse_squeue_line(text)
    except SqueueParseError as exc:
        assert exc.line == text
    else:
        assert job.name == text.split()[0]


@given(st.text())
def test_parse_squeue_never_raises(text: str) -> None:
    jobs, errors = parse_squeue(text)
    assert len(jobs) + len(errors) <= len(text.splitlines())
