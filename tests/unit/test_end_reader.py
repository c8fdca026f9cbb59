"""JobEndReader: one batched question for many vanished jobs; with several Slurm clusters, the job's name picks ours.

With ``--clusters=a,b`` one job id can name a job on each cluster, and ``squeue --clusters=a,b --jobs=7`` shows
both (each after its ``CLUSTER:`` line). A question by id carries the job's name (its container's uuid), so the
other cluster's job 7 is never taken for ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.slurm.end_reader import JobEndReader
from slurm_dispatch.slurm.reasons import JobEnd

OURS = "zzzzz-dz642-aaaaaaaaaaaaaaa"
THEIRS = "zzzzz-dz642-bbbbbbbbbbbbbbb"


def end_line(job_id: str, state: str, name: str, *, nodes: str = "c1") -> str:
    """A line of ``squeue --Format=JOB_END_FORMAT`` (reasons.JOB_END_FIELDS, ``|`` between them)."""
    return f"{job_id}|{state}|0|{nodes}|2026-12-07T10:00:00|2026-12-07T10:05:00|UNLIMITED|{name}||None"


def sacct_line(job_id: str, state: str, name: str) -> str:
    """A line of ``sacct --parsable2 --format=SACCT_FIELDS``."""
    return f"{job_id}|{state}|0:0|c2|2026-12-07T10:00:00|2026-12-07T10:05:00|UNLIMITED|{name}||None"


class Source:
    """Slurm's answers, as text, and the questions asked."""

    def __init__(self, squeue: str, sacct: str | None = None) -> None:
        self.squeue, self.sacct_text = squeue, sacct
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def job_ends(self, job_ids: Sequence[str]) -> str:
        self.calls.append(("job_ends", tuple(job_ids)))
        return self.squeue

    def job_ends_named(self, names: Sequence[str]) -> str:
        self.calls.append(("job_ends_named", tuple(names)))
        return self.squeue

    def sacct(self, job_ids: Sequence[str]) -> str:
        self.calls.append(("sacct", tuple(job_ids)))
        return self.sacct_text or ""


async def _run(fn: Any, *args: Any) -> Any:
    """The reader's ``run``: the blocking call, inline."""
    return fn(*args)


async def _no_sleep(_s: float) -> None:
    return None


def ask(source: Source, *questions: tuple[str, str]) -> list[JobEnd | None]:
    """Ask the questions (job id, name) at once; return the answers in order."""

    async def main() -> list[JobEnd | None]:
        reader = JobEndReader(source, run=_run, clock=lambda: 0.0, sleep=_no_sleep)
        return list(await asyncio.gather(*(reader.lookup(job_id, name=name) for job_id, name in questions)))

    return asyncio.run(main())


TWO_CLUSTERS = "\n".join([
    "CLUSTER: sdalpha", end_line("7", "TIMEOUT", OURS),
    "CLUSTER: sdbeta", end_line("7", "COMPLETED", THEIRS, nodes="beta1"),
])


def test_one_id_on_two_clusters_each_question_gets_the_job_of_its_name() -> None:
    source = Source(TWO_CLUSTERS)
    ours, theirs = ask(source, ("7", OURS), ("7", THEIRS))
    assert ours is not None and (ours.state, ours.name) == ("TIMEOUT", OURS)
    assert theirs is not None and (theirs.state, theirs.nodes) == ("COMPLETED", "beta1")
    assert source.calls == [("job_ends", ("7",))], "one query for both, the id asked once"


def test_a_job_of_that_id_with_another_name_is_no_answer() -> None:
    """Only the other cluster still remembers a job 7: ours is asked of sacct, and without it Slurm does not know."""
    source = Source(end_line("7", "COMPLETED", THEIRS), sacct=sacct_line("7", "COMPLETED", THEIRS))
    assert ask(source, ("7", OURS)) == [None]
    assert source.calls == [("job_ends", ("7",)), ("sacct", ("7",))]


def test_sacct_answers_for_ours_when_squeue_shows_only_theirs() -> None:
    source = Source(end_line("7", "COMPLETED", THEIRS), sacct=sacct_line("7", "OUT_OF_MEMORY", OURS))
    (end,) = ask(source, ("7", OURS))
    assert end is not None and (end.state, end.source) == ("OUT_OF_MEMORY", "sacct")


def test_without_a_name_the_id_alone_answers() -> None:
    (end,) = ask(Source(end_line("7", "FAILED", OURS)), ("7", ""))
    assert end is not None and end.state == "FAILED"


class FailingSacct(Source):
    """sacct fails with ``errors`` in turn, then answers."""

    def __init__(self, squeue: str, sacct: str, errors: list[Exception]) -> None:
        super().__init__(squeue, sacct)
        self.errors = errors

    def sacct(self, job_ids: Sequence[str]) -> str:
        text = super().sacct(job_ids)
        if self.errors:
            raise self.errors.pop(0)
        return text


def _sacct_calls(source: Source) -> int:
    return sum(1 for kind, _ in source.calls if kind == "sacct")


def _ask_twice(source: Source) -> list[JobEnd | None]:
    """Ask one reader the same question twice, one after the other."""

    async def twice() -> list[JobEnd | None]:
        reader = JobEndReader(source, run=_run, clock=lambda: 0.0, sleep=_no_sleep)
        return [await reader.lookup("7", name=OURS), await reader.lookup("7", name=OURS)]

    return asyncio.run(twice())


def test_sacct_that_failed_once_is_asked_again_and_only_disabled_accounting_stops_it() -> None:
    """A slurmdbd restart must not make every later end unknown until the service restarts."""
    unreachable = SlurmUnavailable(["sacct"], 1, "sacct: error: slurm_persist_conn_open_without_init: failed to "
                                                 "open persistent connection to host:localhost:6819: Connection refused")
    source = FailingSacct("", sacct_line("7", "OUT_OF_MEMORY", OURS), [unreachable])
    first, second = _ask_twice(source)
    assert first is None and second is not None and second.state == "OUT_OF_MEMORY"
    assert _sacct_calls(source) == 2

    disabled = SlurmCommandError(["sacct"], 1, "sacct: error: Slurm accounting storage is disabled")
    off = FailingSacct("", sacct_line("7", "OUT_OF_MEMORY", OURS), [disabled])
    assert _ask_twice(off) == [None, None]
    assert _sacct_calls(off) == 1, "no accounting: not asked again"


def test_a_sacct_failure_that_repeats_for_other_jobs_is_warned_about_once(caplog: Any) -> None:
    """The command line names each batch's jobs: the failure, not the command, decides whether it is news."""
    errors: list[Exception] = [SlurmUnavailable(["sacct", f"--jobs={n}"], 1, "sacct: error: Connection refused")
                               for n in (7, 8)]
    source = FailingSacct("", "", errors)
    with caplog.at_level(logging.DEBUG, logger="slurm_dispatch.slurm.end_reader"):
        _ask_twice(source)
    warned = [r for r in caplog.records if "asking sacct" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and _sacct_calls(source) == 2
