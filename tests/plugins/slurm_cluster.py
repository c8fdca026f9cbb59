"""The real Slurm test cluster, as a session fixture.

The cluster is the project's own (contrib/slurm/start-test-cluster.sh): slurmctld plus two slurmd "nodes" on this
host, configured in a directory of its own and reached through SLURM_CONF. The fixture starts it when it is not
running (the script is idempotent) and leaves it running at the end, because other test sessions on this machine
may share it; the README's test command stops it when it started it.

Under pytest-xdist (the README's test command runs several workers), the first worker uses that cluster and every
other worker a cluster of its own in ``<dir>-<worker>`` (about 3 s to start), so that no test sees another
worker's jobs, node failures or slurmctld restarts; the fixture stops a worker's cluster at the end of the session
when it started it.

Where Slurm cannot start, tests that need it are skipped with the script's reason, except under ``CI=true``, where
they fail loudly instead: CI must never pass without having run against real Slurm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plugins.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
START = REPO / "contrib" / "slurm" / "start-test-cluster.sh"
STOP = REPO / "contrib" / "slurm" / "stop-test-cluster.sh"

NODES = {"c1": "a1.small", "c2": "a1.large"}
"""Node name → instance type, as start-test-cluster.sh configures them by default."""

SLURM_POLL_S = 0.2
"""How often ``wait_for`` polls: its predicates run Slurm commands, so less often than ``wait_until``'s default."""


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
        """Poll ``predicate`` every 0.2 s (each call runs Slurm commands) until it is true; fail the test after
        ``timeout`` seconds (``plugins.waiting.wait_until``)."""
        wait_until(predicate, timeout=timeout, what=what, every=SLURM_POLL_S)


def pid_file_alive(pid_file: Path) -> bool:
    """True when the process whose pid ``pid_file`` holds is alive (False when the file is missing or bad)."""
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except PermissionError:  # it exists, as another user's
        return True
    except (OSError, ValueError):
        return False
    return True


def start_cluster(conf_dir: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run start-test-cluster.sh for ``conf_dir``; blocks until the nodes are idle or it gives up."""
    return subprocess.run(
        [str(START), str(conf_dir)], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def stop_cluster(conf_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run stop-test-cluster.sh for ``conf_dir``; blocks until its daemons are gone."""
    return subprocess.run([str(STOP), str(conf_dir)], capture_output=True, text=True, timeout=120, check=False)


def cluster_dir() -> tuple[Path, bool]:
    """Where this test process's cluster lives, and whether it is a worker's own (see the module docstring)."""
    base = Path(os.environ.get("SLURM_DISPATCH_TEST_CLUSTER_DIR", REPO / ".slurm-test"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker in ("", "gw0"):
        return base, False
    return base.with_name(f"{base.name}-{worker}"), True


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The project's real Slurm test cluster, started if needed (a worker's own one is stopped at the end)."""
    conf_dir, own = cluster_dir()
    started_here = own and not pid_file_alive(conf_dir / "slurmctld.pid")
    result = start_cluster(conf_dir)
    if result.returncode != 0:
        reason = f"the Slurm test cluster did not start ({START} {conf_dir}):\n{result.stderr.strip()}"
        if in_ci():
            pytest.fail(f"CI=true and real Slurm is required: {reason}", pytrace=False)
        pytest.skip(reason)
    yield SlurmCluster(conf_dir=conf_dir)
    if started_here:
        stop_cluster(conf_dir)


@pytest.fixture
def throwaway_cluster_dir() -> Iterator[Path]:
    """A short, empty directory for a throwaway cluster of one test, deleted afterwards (stop the cluster first).

    Short because slurmd puts each job step's Unix socket in its spool directory, and a socket path longer than
    108 bytes makes the step fail ("Unix socket name exceeded maximum length"): pytest's tmp_path under
    pytest-xdist is already 70 bytes.
    """
    path = Path(tempfile.mkdtemp(prefix="sd-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def slurm_clean(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster, with every job this test submitted cancelled afterwards."""
    before = slurm_cluster.job_ids()
    yield slurm_cluster
    new = sorted(slurm_cluster.job_ids() - before)
    if new:
        slurm_cluster.run(["scancel", *new])
