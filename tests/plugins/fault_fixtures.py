"""Fixtures of the fault suite (tests/fault/): its own Slurm cluster, its seed, a rig per test, its figures.

* ``fault_seed``: the seed of every random choice of the suite, from ``SLURM_DISPATCH_FAULT_SEED`` (to replay a
  run) or drawn at random when the session starts (and put in that variable, so that pytest-xdist's workers,
  started after, share it); printed in the session summary and in every failure.
* ``fault_cluster``: a private Slurm cluster (contrib/slurm/start-test-cluster.sh in a directory of this
  session), never the session cluster other tests share: the suite stops its slurmctld and its nodes. Stopped
  at the end of the session. Also holds the foreign jobs (other names, submitted by the test) that the
  dispatcher must never touch. Where Slurm cannot start, the tests skip, except under ``CI=true``, where they
  fail.
* ``fault_rig``: the emulator, the service process and the watcher for one test (``fault_rig.Rig``); its
  figures go to the session summary, to stdout (``pytest -s``) and, when ``SLURM_DISPATCH_FAULT_REPORT`` names a
  file, to that file. They reach the summary as a user property of the test's report, the one way pytest-xdist
  carries data from a worker to the process that prints the summary.
"""

from __future__ import annotations

import base64
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault.fault_figures import Figures
from fault.fault_rig import Rig
from fault.fault_slurm import ForeignJobs, PrivateCluster

SEED_VAR = "SLURM_DISPATCH_FAULT_SEED"
REPORT_VAR = "SLURM_DISPATCH_FAULT_REPORT"



def _in_ci() -> bool:
    # as plugins.slurm_cluster.in_ci; not imported, so that pytest can still rewrite that plugin's asserts
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


_PROPERTY = "fault_suite_report"


def pytest_configure(config: pytest.Config) -> None:
    """Draw the seed once per session, before pytest-xdist starts its workers (they inherit the environment)."""
    if not hasattr(config, "workerinput") and not os.environ.get(SEED_VAR, "").strip():
        os.environ[SEED_VAR] = str(random.SystemRandom().randrange(1, 2**31))


@pytest.fixture(scope="session")
def fault_seed() -> int:
    """The fault suite's seed: ``$SLURM_DISPATCH_FAULT_SEED`` (set at the start of the session when not given)."""
    raw = os.environ.get(SEED_VAR, "").strip()
    try:
        return int(raw)
    except ValueError:
        pytest.fail(f"{SEED_VAR}={raw!r} is not an integer", pytrace=False)


@pytest.fixture(scope="session")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivateCluster, ForeignJobs]]:
    """A private Slurm cluster for the fault suite, with the foreign jobs submitted; stopped afterwards."""
    conf_dir = tmp_path_factory.mktemp("fault-slurm")
    try:
        cluster = PrivateCluster.start(conf_dir)
    except RuntimeError as exc:
        if _in_ci():
            pytest.fail(f"CI=true and real Slurm is required: the fault suite's cluster did not start: {exc}",
                        pytrace=False)
        pytest.skip(f"the fault suite's Slurm cluster did not start: {exc}")
    try:
        foreign = ForeignJobs.submit(cluster, out_dir=conf_dir, node="c2")
        yield cluster, foreign
    finally:
        cluster.stop()


@pytest.fixture
def fault_rig(request: pytest.FixtureRequest, fault_cluster: tuple[PrivateCluster, ForeignJobs], fault_seed: int,
              tmp_path: Path) -> Iterator[Rig]:
    """A rig for one scenario (the service is not started yet); closed afterwards, its figures reported once
    the test has called ``finish()``."""
    cluster, foreign = fault_cluster
    rig = Rig.create(name=request.node.name, seed=fault_seed, workdir=tmp_path, cluster=cluster, foreign=foreign)
    try:
        yield rig
    finally:
        rig.close()
        if rig.figures.seconds:  # finish() ran
            known_bug = request.node.get_closest_marker("xfail") is not None
            report = rig.report() + ("\n  (an xfail test: a known bug, left out of the totals)" if known_bug else "")
            print(f"\n{report}")
            # (pickled: the figures hold Counters, which pytest-xdist's channel does not carry)
            figures = None if known_bug else base64.b64encode(pickle.dumps(rig.figures)).decode()
            request.node.user_properties.append((_PROPERTY, (report, figures)))
            path = os.environ.get(REPORT_VAR)
            if path:
                with open(path, "a") as f:
                    f.write(report + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the fault suite's figures (when it ran) at the end of the session, from the user properties of the
    test reports the terminal reporter kept (this process's, or pytest-xdist's workers')."""
    reports: list[str] = []
    total = Figures("all fault scenarios")
    for test_reports in terminalreporter.stats.values():
        for test_report in test_reports:
            if getattr(test_report, "when", None) != "teardown":
                continue
            for name, value in test_report.user_properties:
                if name == _PROPERTY:
                    text, figures = value
                    reports.append(text)
                    if figures is not None:
                        total.merge(pickle.loads(base64.b64decode(figures)))  # our own bytes, from our own worker
    if not reports:
        return
    terminalreporter.write_sep("=", f"fault suite (seed {os.environ.get(SEED_VAR, '?')}; replay with {SEED_VAR})")
    for report in reports:
        terminalreporter.write_line(report)
    if len(reports) > 1:
        for line in total.lines():
            terminalreporter.write_line(line)
