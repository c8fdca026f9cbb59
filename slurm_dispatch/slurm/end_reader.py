"""How did a vanished job end? One batched question to Slurm for many jobs, rate-limited.

When a job of ours leaves squeue while its container is Locked or Running, the runner asks ``JobEndReader`` how it
ended. Questions that arrive close together are answered by ONE ``squeue --states=all --jobs=<ids>`` (slurmctld
keeps ended jobs for MinJobAge, 300 s by default, and squeue's cost is the same one job-info request as the
regular poll), at most one such query every ``MIN_GAP_S``; jobs slurmctld no longer knows are asked of ``sacct``
when accounting runs (once it has said it does not, it is not asked again). Never a query per job per tick. A job
the runner never saw (it ended while the service was down) is asked by its name (the container uuid) instead.
With several Slurm clusters one job id can name a job on each; a question by id also gives the job's name (the
container uuid), and only the job of that name answers it.

The answers are ``slurm_dispatch.slurm.reasons.JobEnd`` values; the words are in ``reasons.end_reason``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from slurm_dispatch.errors import SlurmCommandError
from slurm_dispatch.slurm.reasons import JobEnd, parse_job_end_lines, parse_sacct_lines

logger = logging.getLogger("slurm_dispatch.slurm.end_reader")

MIN_GAP_S = 2.0
"""Least time between two end-of-job queries: a burst of vanished jobs shares one."""

GATHER_S = 0.2
"""How long the first question waits for others to join it."""

_K = TypeVar("_K", str, tuple[str, str])

MAX_IDS_PER_QUERY = 200
"""Job ids per command line (long id lists have hit E2BIG in other tools)."""


class JobEndSource(Protocol):
    """The two Slurm queries the reader runs; ``SlurmCLI`` implements them. Both block."""

    def job_ends(self, job_ids: Sequence[str]) -> str:
        """Return ``squeue --states=all --jobs=<ids>`` output in ``reasons.JOB_END_FORMAT`` ("" if none known)."""
        ...

    def job_ends_named(self, names: Sequence[str]) -> str:
        """Return ``squeue --states=all --name=<names>`` output in ``reasons.JOB_END_FORMAT`` ("" if none known)."""
        ...

    def sacct(self, job_ids: Sequence[str]) -> str:
        """Return ``sacct --parsable2`` output in ``reasons.SACCT_FIELDS`` for the jobs."""
        ...


class JobEndReader:
    """Answers "how did job N end?" in batches. Use it from one event loop."""

    def __init__(
        self,
        source: JobEndSource,
        *,
        run: Callable[..., Awaitable[str]],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create the reader; does no I/O.

        Args:
            source: runs the queries (blocking).
            run: runs a blocking call off the loop (``run(fn, *args)``), e.g. the runner's executor.
            clock: monotonic seconds.
            sleep: the pause, injected for tests.
        """
        self._source = source
        self._run = run
        self._clock = clock
        self._sleep = sleep
        self._waiting: dict[tuple[str, str], list[asyncio.Future[JobEnd | None]]] = {}
        """By (job id, job name or "")."""
        self._named: dict[str, list[asyncio.Future[JobEnd | None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._last_query: float | None = None
        self._sacct_works: bool | None = None
        self._sacct_error = ""
        """The last sacct failure (warned about once, until it changes or sacct works again)."""
        self.queries = 0
        """Queries run so far (squeue and sacct), for tests and metrics."""

    async def lookup(self, job_id: str, *, name: str = "") -> JobEnd | None:
        """Return how job ``job_id`` ended, or None when Slurm does not know (or could not be asked).

        ``name``, when given, is the job's name (its container's uuid): a job of that id with another name (on
        another Slurm cluster) is not an answer. Blocks (asynchronously) until the batch it joins has been answered.
        """
        if not job_id:
            return None
        return await self._ask(self._waiting, (job_id, name))

    async def lookup_named(self, name: str) -> JobEnd | None:
        """Return how the latest job named ``name`` ended (for a job whose id the runner never saw), or None.

        Blocks (asynchronously) until the batch it joins has been answered.
        """
        if not name:
            return None
        return await self._ask(self._named, name)

    async def _ask(self, waiting: dict[_K, list[asyncio.Future[JobEnd | None]]], key: _K) -> JobEnd | None:
        future: asyncio.Future[JobEnd | None] = asyncio.get_running_loop().create_future()
        waiting.setdefault(key, []).append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="job end query")
        return await future

    async def _flush(self) -> None:
        await self._sleep(GATHER_S)
        if self._last_query is not None:
            gap = self._last_query + MIN_GAP_S - self._clock()
            if gap > 0:
                await self._sleep(gap)
        waiting, self._waiting = self._waiting, {}
        named, self._named = self._named, {}
        ids = sorted({job_id for job_id, _ in waiting})
        answers = _Answers()
        by_name: dict[str, JobEnd] = {}
        try:
            for start in range(0, len(ids), MAX_IDS_PER_QUERY):
                answers.add(await self._squeue(self._source.job_ends, ids[start : start + MAX_IDS_PER_QUERY]))
            missing = sorted({job_id for job_id, name in waiting if answers.get(job_id, name) is None})
            if missing and self._sacct_works is not False:
                for start in range(0, len(missing), MAX_IDS_PER_QUERY):
                    answers.add(await self._sacct(missing[start : start + MAX_IDS_PER_QUERY]), fill_only=True)
            names = sorted(named)
            for start in range(0, len(names), MAX_IDS_PER_QUERY):
                found = await self._squeue(self._source.job_ends_named, names[start : start + MAX_IDS_PER_QUERY])
                for end in sorted(found, key=_id_order):  # the latest job of a name wins
                    by_name[end.name] = end
        finally:
            self._last_query = self._clock()
            for (job_id, name), futures in waiting.items():
                _answer(futures, answers.get(job_id, name))
            for name, futures in named.items():
                _answer(futures, by_name.get(name))
            if self._waiting or self._named:  # questions that came while this batch was asked
                self._flusher = asyncio.create_task(self._flush(), name="job end query")

    async def _squeue(self, query: Callable[[Sequence[str]], str], keys: list[str]) -> list[JobEnd]:
        self.queries += 1
        try:
            text = await self._run(query, keys)
        except SlurmCommandError as exc:
            if "Invalid job id" in exc.stderr_tail:  # a single id slurmctld has forgotten
                return []
            logger.warning("asking Slurm how %d job(s) ended: %s", len(keys), exc)
            return []
        ends, errors = parse_job_end_lines(text)
        for error in errors:
            logger.warning("%s", error)
        return ends

    async def _sacct(self, ids: list[str]) -> list[JobEnd]:
        self.queries += 1
        try:
            text = await self._run(self._source.sacct, ids)
        except SlurmCommandError as exc:
            if ACCOUNTING_DISABLED in exc.stderr_tail:  # no slurmdbd: sacct will never answer, do not ask again
                logger.info("sacct cannot say how jobs ended (%s); ended jobs are only known for Slurm's MinJobAge",
                            exc.stderr_tail)
                self._sacct_works = False
            else:  # slurmdbd restarting, a timeout: no answer this time, the next question asks again
                said = f"{exc.returncode}: {exc.stderr_tail}"  # not str(exc): its argv names each batch's jobs
                level = logging.DEBUG if said == self._sacct_error else logging.WARNING  # on change only
                self._sacct_error = said
                logger.log(level, "asking sacct how %d job(s) ended: %s", len(ids), exc)
            return []
        self._sacct_error = ""
        self._sacct_works = True
        return parse_sacct_lines(text)


ACCOUNTING_DISABLED = "accounting storage is disabled"
"""What sacct says (exit 1) where Slurm keeps no accounting: then it is not asked again. Any other failure (slurmdbd
restarting, a timeout) is no answer for this question only."""


class _Answers:
    """The ends of one batch, by id and by (id, name); a later line of the same key wins."""

    def __init__(self) -> None:
        self._by_id: dict[str, JobEnd] = {}
        self._by_id_name: dict[tuple[str, str], JobEnd] = {}

    def add(self, ends: list[JobEnd], *, fill_only: bool = False) -> None:
        """Keep these ends; with ``fill_only``, only for keys not answered yet (sacct after squeue)."""
        for end in ends:
            if not (fill_only and end.job_id in self._by_id):
                self._by_id[end.job_id] = end
            if not (fill_only and (end.job_id, end.name) in self._by_id_name):
                self._by_id_name[end.job_id, end.name] = end

    def get(self, job_id: str, name: str) -> JobEnd | None:
        """The end of job ``job_id`` named ``name`` (any name when ``name`` is ""), or None."""
        return self._by_id_name.get((job_id, name)) if name else self._by_id.get(job_id)


def _answer(futures: list[asyncio.Future[JobEnd | None]], end: JobEnd | None) -> None:
    for future in futures:
        if not future.done():
            future.set_result(end)


def _id_order(end: JobEnd) -> tuple[int, str]:
    return (int(end.job_id), "") if end.job_id.isdigit() else (-1, end.job_id)


__all__ = ["GATHER_S", "MAX_IDS_PER_QUERY", "MIN_GAP_S", "JobEndReader", "JobEndSource"]
