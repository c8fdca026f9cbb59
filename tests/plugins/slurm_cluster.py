"""The real Slurm test cluster, as a session fixture.

The cluster is the project's own (contrib/slurm/start-test-cluster.sh): slurmctld plus two slurmd "nodes" on this
host, configured in a directory of its own and reached through SLURM_CONF. The fixture starts it when it is not
running (the script is idempotent) and leaves it running at the end, because other test sessions on this machine
may share it; the README's test command stops it when it started it.

Where Slurm cannot start, tests that need it are skipped with the script's reason, except under ``CI=true``, where
they fail loudly instead: CI must never pass without having run against real Slurm.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START = REPO / "contrib" / "slurm" / "start-test-cluster.sh"
STOP = REPO / "contrib" / "slurm" / "stop-test-cluster.sh"

NODES = {"c1": "a1.small", "c2": "a1.large"}
"""Node name → instance type, as start-test-cluster.sh configures them by default."""


def in_ci() -> bool:
    """True when running under CI (CI=true), where real-Slurm tests must never be skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class SlurmCluster:
    """A running test cluster: where its config is, and how to run Slurm commands against it."""

    conf_dir: Path
    nodes: dict[str, str] = field(default_factory=lambda: dict(NODES))
    partition: str = "debug"

    @property
    def conf_path(self) -> Path:
        """Its slurm.conf."""
        return self.conf_dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment for a Slurm command or a dispatcher aimed at this cluster (explicit, never os.environ)."""
        return {
            "SLURM_CONF": str(self.conf_path),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LC_ALL": "C",
        }

    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command against this cluster; blocks until it exits. Returns its CompletedProcess."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            # errors="replace": squeue shows every user's job names, and a name need not be UTF-8
            list(argv), env=self.env, capture_output=True, text=True, errors="replace", check=check, timeout=timeout,
            **kw,
        )

    def job_ids(self) -> set[str]:
        """The ids of every job slurmctld knows (pending, running, or recently finished)."""
        out = self.run(["squeue", "--all", "--noheader", "--format=%i"], check=True).stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job ID`` as a dict of its Key=Value fields (last one wins)."""
        out = self.run(["scontrol", "show", "job", "--oneliner", job_id], check=True).stdout
        fields: dict[str, str] = {}
        for word in out.split():
            if "=" in word:
                k, _, v = word.partition("=")
                fields[k] = v
        return fields

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 60, what: str = "condition") -> None:
        """Poll ``predicate`` every 0.2 s until it is true; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.2)


def start_cluster(conf_dir: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run start-test-cluster.sh for ``conf_dir``; blocks until the nodes are idle or it gives up."""
    return subprocess.run(
        [str(START), str(conf_dir)], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def stop_cluster(conf_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run stop-test-cluster.sh for ``conf_dir``; blocks until its daemons are gone."""
    return subprocess.run([str(STOP), str(conf_dir)], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The project's real Slurm test cluster, started if needed (never stopped here; see the module docstring)."""
    conf_dir = Path(os.environ.get("SLURM_DISPATCH_TEST_CLUSTER_DIR", REPO / ".slurm-test"))
    result = start_cluster(conf_dir)
    if result.returncode != 0:
        reason = f"the Slurm test cluster did not start ({START} {conf_dir}):\n{result.stderr.strip()}"
        if in_ci():
            pytest.fail(f"CI=true and real Slurm is required: {reason}", pytrace=False)
        pytest.skip(reason)
    return SlurmCluster(conf_dir=conf_dir)


@pytest.fixture
def slurm_clean(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster, with every job this test submitted cancelled afterwards."""
    before = slurm_cluster.job_ids()
    yield slurm_cluster
    new = sorted(slurm_cluster.job_ids() - before)
    if new:
        slurm_cluster.run(["scancel", *new])
