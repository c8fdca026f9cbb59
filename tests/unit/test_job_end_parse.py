"""parse_job_ends and parse_sacct on what benchmarks/fuzz_records.py found (docs/robustness.md).

Their properties on generated input are in test_records_fuzz.py; these are the cases that broke them.
"""

from __future__ import annotations

import pytest

from slurm_dispatch.slurm.reasons import JobEnd, parse_job_ends, parse_sacct

UUID = "zzzzz-dz642-000000000000001"


def end_line(job_id: str = "12", exit_code: str = "768", name: str = UUID, reason: str = "NonZeroExitCode") -> str:
    """A line of ``squeue --states=all --Format=JOB_END_FORMAT`` output."""
    return f"{job_id}|FAILED|{exit_code}|c1|2026-01-01T00:00:00|2026-01-01T00:01:00|UNLIMITED|{name}|(null)|{reason}"


def sacct_line(job_id: str = "12", state: str = "FAILED", exit_code: str = "3:0", name: str = UUID) -> str:
    """A line of ``sacct --parsable2 --format=SACCT_FIELDS`` output."""
    return f"{job_id}|{state}|{exit_code}|c1|2026-01-01T00:00:00|2026-01-01T00:01:00|UNLIMITED|{name}||"


def test_the_lines_as_slurm_prints_them() -> None:
    ends, errors = parse_job_ends(end_line() + "\n")
    assert errors == []
    assert ends["12"] == JobEnd(job_id="12", state="FAILED", exit_status=3, nodes="c1", start="2026-01-01T00:00:00",
                                end="2026-01-01T00:01:00", time_limit="UNLIMITED", name=UUID,
                                reason="NonZeroExitCode")
    assert parse_sacct(sacct_line() + "\n")["12"].exit_status == 3


@pytest.mark.parametrize("exit_code", ["9" * 5000, "65536", "4294967294"])
def test_an_exit_code_beyond_a_wait_status_is_unknown(exit_code: str) -> None:
    """5,000 digits made int() raise ValueError out of parse_job_ends; a wait status has 16 bits."""
    ends, errors = parse_job_ends(end_line(exit_code=exit_code))
    assert errors == []
    assert (ends["12"].exit_status, ends["12"].signal) == (None, None)


@pytest.mark.parametrize("exit_code", ["0:" + "9" * 5000, "9" * 5000 + ":0", "256:0", "0:256"])
def test_a_sacct_exit_code_beyond_a_byte_is_unknown(exit_code: str) -> None:
    end = parse_sacct(sacct_line(exit_code=exit_code))["12"]
    assert (end.exit_status, end.signal) == (None, None)


@pytest.mark.parametrize("job_id", ["\u00b2", "\u0661\u0662", "9" * 5000, "1 2"])
def test_a_job_id_slurm_never_prints_is_refused(job_id: str) -> None:
    """A job id that str.isdigit passes and int() refuses (as the end reader sorts them by int) is no job id."""
    ends, errors = parse_job_ends(end_line(job_id=job_id))
    assert ends == {}
    assert [e.reason for e in errors] == ["JobID is not a Slurm job id"]
    assert parse_sacct(sacct_line(job_id=job_id)) == {}


def test_a_sacct_line_without_a_state_is_skipped() -> None:
    """parse_job_ends refuses a line without a state; "" is what an unknown job gets (reasons.EndReason.state)."""
    assert parse_sacct(sacct_line(state="") + "\n" + sacct_line(job_id="13")) == {
        "13": JobEnd(job_id="13", state="FAILED", exit_status=3, nodes="c1", start="2026-01-01T00:00:00",
                     end="2026-01-01T00:01:00", time_limit="UNLIMITED", name=UUID, source="sacct")}


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0b", "\x1c"])
def test_a_line_separator_in_a_field_keeps_the_line_whole(separator: str) -> None:
    ends, errors = parse_job_ends(end_line(name=f"a{separator}b", reason=f"x{separator}y"))
    assert errors == [] and (ends["12"].name, ends["12"].reason) == (f"a{separator}b", f"x{separator}y")
    assert parse_sacct(sacct_line(name=f"a{separator}b"))["12"].name == f"a{separator}b"


@pytest.mark.parametrize(("exit_code", "status", "signal"), [("768", 3, None), ("15", None, 15), ("3:0", 3, None),
                                                              ("0:15", None, 15), ("0:0", 0, None)])
def test_squeues_exit_code_before_and_from_slurm_24_05(exit_code: str, status: int | None, signal: int | None) -> None:
    """Up to 23.11 squeue prints the raw wait status; from 24.05 ``status:signal`` (src/squeue/print.c)."""
    ends, errors = parse_job_ends(end_line(exit_code=exit_code))
    assert errors == []
    assert (ends["12"].exit_status, ends["12"].signal) == (status, signal)


def test_sacct_says_none_assigned_for_a_job_that_never_got_a_node() -> None:
    line = sacct_line().replace("|c1|", "|None assigned|")
    assert parse_sacct(line)["12"].nodes == ""
