"""``StoppableQueries``: reads answer at once after ``stop()``; writes and errors pass through unchanged."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from slurm_dispatch.errors import SlurmCommandError, SlurmUnavailable
from slurm_dispatch.service.stoppable import STOPPING, StoppableQueries


class Slurm:
    """A backend whose reads block until ``gate`` is set; it records every call."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[str] = []
        self.fail: SlurmCommandError | None = None

    def _read(self, name: str) -> str:
        self.calls.append(name)
        self.entered.set()
        self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return f"{name} output"

    def queue(self) -> str:
        return self._read("queue")

    def job_ends(self, job_ids: Sequence[str]) -> str:
        return self._read(f"job_ends {','.join(job_ids)}")

    def job_ends_named(self, names: Sequence[str]) -> str:
        return self._read(f"job_ends_named {','.join(names)}")

    def sacct(self, job_ids: Sequence[str]) -> str:
        return self._read(f"sacct {','.join(job_ids)}")

    def sinfo_features(self, node: str) -> list[str]:
        return [self._read(f"sinfo {node}")]

    def set_node_features(self, node: str, features: Sequence[str]) -> None:
        self.calls.append(f"set_node_features {node} {' '.join(features)}")

    def submit(self, *, args: Sequence[str], script: str, env: Mapping[str, str]) -> int | None:
        self.calls.append(f"submit {' '.join(args)}")
        return 42

    def cancel(self, name: str) -> None:
        self.calls.append(f"cancel {name}")

    def renice(self, name: str, nice: int) -> None:
        self.calls.append(f"renice {name} {nice}")

    def release(self, name: str) -> None:
        self.calls.append(f"release {name}")

    def cancel_jobs(self, job_ids: Sequence[str], *, running: bool, cluster: str = "") -> None:
        self.calls.append(f"cancel_jobs {','.join(job_ids)} {running}")

    def renice_jobs(self, job_ids: Sequence[str], nice: int, *, cluster: str = "") -> None:
        self.calls.append(f"renice_jobs {','.join(job_ids)} {nice}")

    def drain_node(self, node: str, reason: str) -> None:
        self.calls.append(f"drain_node {node} {reason}")


def test_reads_answer_as_the_backend_does() -> None:
    inner = Slurm()
    inner.gate.set()
    queries = StoppableQueries(inner)
    assert queries.queue() == "queue output"
    assert queries.job_ends(["1", "2"]) == "job_ends 1,2 output"
    assert queries.sacct(["3"]) == "sacct 3 output"
    assert queries.sinfo_features("c1") == ["sinfo c1 output"]


def test_a_read_error_is_raised_as_it_was() -> None:
    inner = Slurm()
    inner.fail = SlurmCommandError(["squeue"], 1, "boom")
    inner.gate.set()
    with pytest.raises(SlurmCommandError) as info:
        StoppableQueries(inner).queue()
    assert info.value is inner.fail


def test_stop_ends_a_read_under_way_at_once_and_refuses_later_ones() -> None:
    inner = Slurm()
    queries = StoppableQueries(inner)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(queries.queue)
        assert inner.entered.wait(10), "the read never reached the backend"
        queries.stop()
        with pytest.raises(SlurmUnavailable) as info:
            pending.result(timeout=10)  # the backend is still blocked: only stop() can have ended the wait
        assert not inner.gate.is_set()
    assert info.value.argv == ["squeue"] and info.value.stderr_tail == STOPPING
    with pytest.raises(SlurmUnavailable):
        queries.sacct(["1"])
    assert inner.calls == ["queue"], "nothing runs after stop()"
    inner.gate.set()  # let the abandoned daemon thread end


def test_writes_pass_through_even_after_stop() -> None:
    inner = Slurm()
    queries = StoppableQueries(inner)
    queries.stop()
    assert queries.submit(args=["--job-name=x"], script="#!/bin/sh\n", env={}) == 42
    queries.cancel("x")
    queries.renice("x", 5)
    queries.release("x")
    queries.set_node_features("c1", ["instancetype=a"])
    queries.drain_node("c1", "broken")
    assert inner.calls == ["submit --job-name=x", "cancel x", "renice x 5", "release x",
                           "set_node_features c1 instancetype=a", "drain_node c1 broken"]
