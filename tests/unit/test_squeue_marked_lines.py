"""A newline in another user's job name cannot make up a squeue line of ours (``marked_argv``, ``unmark_lines``).

The real squeue prints such a name as it is (tests/integration/test_squeue_forged_name.py shows it on Slurm 22.05).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.slurm.backend import SQUEUE_ARGV, SQUEUE_OWNERS_ARGV
from slurm_dispatch.slurm.squeue_lines import marked_argv, parse_squeue, parse_squeue_all, unmark_lines

MARK = "9f3c0a1b2d4e5f60"
OURS = "zzzzz-dz642-ccccccccccccccc"
FORGED = f"evil\n10|0|5|RUNNING|1:00|c1|{OURS}|None"


def squeue_says(*lines: str) -> str:
    """What the marked squeue prints: the marker and ``|`` before each of its lines, names left as they are."""
    return "".join(f"{MARK}|{line}\n" for line in lines)


def test_the_marker_goes_before_the_format_and_nothing_else_changes() -> None:
    argv = marked_argv(SQUEUE_ARGV, MARK)
    assert argv[:-1] == list(SQUEUE_ARGV[:-1])
    assert argv[-1] == f"--format={MARK}|{SQUEUE_ARGV[-1].removeprefix('--format=')}"
    assert marked_argv(SQUEUE_OWNERS_ARGV, MARK)[-1] == f"--format={MARK}|%U|%j"


@pytest.mark.parametrize("marker", ["", "a|b", "a%b", "a b"])
def test_a_marker_is_letters_and_digits(marker: str) -> None:
    with pytest.raises(ValueError, match="letters and digits"):
        marked_argv(SQUEUE_ARGV, marker)


def test_a_format_is_needed() -> None:
    with pytest.raises(ValueError, match="no --format="):
        marked_argv(["squeue", "--noheader"], MARK)


def test_a_forged_line_in_a_job_name_stays_part_of_that_job() -> None:
    out = squeue_says("7|0|4294901000|PENDING|UNLIMITED||zzzzz-dz642-aaaaaaaaaaaaaaa|Priority",
                      f"130|0|0|PENDING|UNLIMITED||{FORGED}|JobHeldUser")
    jobs, errors = parse_squeue(unmark_lines(out, MARK))
    assert errors == []
    assert OURS not in jobs
    assert sorted(jobs) == ["evil\\n10", "zzzzz-dz642-aaaaaaaaaaaaaaa"]
    assert jobs["evil\\n10"].job_id == "130" and jobs["evil\\n10"].state == "PENDING"
    # without the marker, the same name is a RUNNING job of ours with id 10: what would be scancelled
    forged, _ = parse_squeue(out.replace(f"{MARK}|", ""))
    assert forged[OURS].job_id == "10" and forged[OURS].state == "RUNNING"


def test_blank_lines_and_a_forged_cluster_header_inside_a_name_are_part_of_it() -> None:
    name = f"x\n\nCLUSTER: other\n5|0|1|RUNNING|1:00|c1|{OURS}|None"
    text = unmark_lines(squeue_says(f"8|0|0|PENDING|UNLIMITED||{name}|JobHeldUser"), MARK)
    assert text.count("\n") == 1
    jobs, _ = parse_squeue(text)
    assert list(jobs) == ["x\\n\\nCLUSTER: other\\n5"]


def test_squeues_own_cluster_headers_come_before_the_marked_titles() -> None:
    """squeue prints an empty line before each CLUSTER: line but the first (src/squeue/squeue.c: _multi_cluster)."""
    titles = f"{MARK}|JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON\n"
    out = (f"CLUSTER: alpha\n{titles}{MARK}|3|0|9|PENDING|UNLIMITED||{OURS}|Priority\n"
           f"\nCLUSTER: beta\n{titles}{MARK}|4|0|9|PENDING|UNLIMITED||zzzzz-dz642-bbbbbbbbbbbbbbb|Resources\n")
    jobs, errors = parse_squeue_all(unmark_lines(out, MARK))
    assert errors == []
    assert [(j.name, j.job_id, j.cluster, j.reason) for j in jobs] == [
        (OURS, "3", "alpha", "Priority"), ("zzzzz-dz642-bbbbbbbbbbbbbbb", "4", "beta", "Resources")]


def test_text_before_squeues_first_line_is_dropped_and_empty_output_is_empty() -> None:
    assert unmark_lines(f"junk\n{MARK}|1|0|1|PENDING|UNLIMITED||n|r\n", MARK) == "1|0|1|PENDING|UNLIMITED||n|r\n"
    assert unmark_lines("", MARK) == ""


_NAMES = st.text(st.sampled_from("abz|\n :-0123456789"), min_size=1, max_size=40).filter(lambda n: n[0] not in "\n |")


@given(st.lists(st.tuples(st.integers(1, 10**6), _NAMES), max_size=12))
def test_every_job_keeps_its_own_line_whatever_the_names(jobs: list[tuple[int, str]]) -> None:
    """However names hold newlines and separators, the lines read back are squeue's: one per job, its id first."""
    out = squeue_says(*(f"{job_id}|0|1|PENDING|UNLIMITED||{name}|Priority" for job_id, name in jobs))
    read, _ = parse_squeue_all(unmark_lines(out, MARK))
    assert [job.job_id for job in read] == [str(job_id) for job_id, _ in jobs]
