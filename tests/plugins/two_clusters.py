"""Two real Slurm clusters joined by one slurmdbd, as a session fixture (multi-cluster support, issue 12).

The rig is the project's own (slurm_dispatch/sandbox/slurm/start-two-clusters.sh): a private MariaDB, a slurmdbd,
and two clusters, ``sdalpha`` (nodes alpha1, alpha2) and ``sdbeta`` (beta1, beta2), each a slurmctld with two
slurmd on this host; see docs/test-cluster.md, "Two clusters". Each cluster has a slurm.conf of its own; with
``-M``/``--clusters`` either conf reaches both clusters through slurmdbd.

The fixture starts the rig on first use in ``$SLURM_DISPATCH_TWO_CLUSTERS_DIR`` or else a directory under pytest's
tmp dir (about 5 s), and stops it at the end of the session if it started it (about 7 s; a directory it made under
the tmp dir is deleted then). Where it cannot start (packages missing, not root), tests that need it are skipped
with the script's reason, except under ``CI=true``, where they fail: CI must never pass without having run against
real Slurm.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugins.slurm_cluster import SLURM_POLL_S, in_ci, pid_file_alive
from plugins.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "slurm_dispatch" / "sandbox" / "slurm"
START = SCRIPTS / "start-two-clusters.sh"
STOP = SCRIPTS / "stop-two-clusters.sh"

ALPHA = "sdalpha"
BETA = "sdbeta"
NODES = {
    ALPHA: {"alpha1": "a1.small", "alpha2": "a1.large"},
    BETA: {"beta1": "a1.small", "beta2": "a1.large"},
}
"""Cluster → node name → instance type, as start-two-clusters.sh configures them."""


@dataclass(frozen=True)
class TwoClusters:
    """The running rig: where each cluster's config is, and how to run Slurm commands against either."""

    base_dir: Path
    names: tuple[str, str] = (ALPHA, BETA)

    def conf_path(self, cluster: str = ALPHA) -> Path:
        """The slurm.conf of ``cluster`` (sdalpha or sdbeta)."""
        if cluster not in self.names:
            raise ValueError(f"no cluster {cluster!r} in the rig; it has {', '.join(self.names)}")
        return self.base_dir / f"{cluster}.conf"

    def env(self, cluster: str = ALPHA) -> dict[str, str]:
        """The environment for a Slurm command or a dispatcher whose local cluster is ``cluster`` (explicit)."""
        return {
            "SLURM_CONF": str(self.conf_path(cluster)),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LC_ALL": "C",
        }

    def run(
        self, argv: Sequence[str], *, cluster: str = ALPHA, check: bool = False, timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command with ``cluster``'s conf (its -M flags are the caller's); blocks until it exits.

        Returns:
            Its CompletedProcess, stdout and stderr captured apart.
        """
        return subprocess.run(
            list(argv), env=self.env(cluster), capture_output=True, text=True, errors="replace", check=check,
            timeout=timeout, input=input,
        )

    def job_ids(self, cluster: str) -> set[str]:
        """The ids of every job ``cluster``'s slurmctld knows, asked locally (no -M, so no slurmdbd needed)."""
        out = self.run(["squeue", "--all", "--noheader", "--format=%i"], cluster=cluster, check=True).stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def show_job(self, job_id: str, *, cluster: str) -> dict[str, str]:
        """``scontrol show job --oneliner ID`` on ``cluster`` as a dict of its Key=Value fields."""
        out = self.run(["scontrol", "show", "job", "--oneliner", job_id], cluster=cluster, check=True).stdout
        return dict(word.partition("=")[::2] for word in out.split() if "=" in word)

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 60, what: str = "condition") -> None:
        """Poll ``predicate`` every 0.2 s (each call runs Slurm commands) until it is true; fail the test after
        ``timeout`` seconds (``plugins.waiting.wait_until``)."""
        wait_until(predicate, timeout=timeout, what=what, every=SLURM_POLL_S)

    def stop_slurmctld(self, cluster: str) -> None:
        """Stop ``cluster``'s slurmctld, to test a cluster that is down; blocks until it is gone. ``start()`` undoes it."""
        self._stop(self.base_dir / cluster / "slurmctld.pid", f"{cluster}'s slurmctld")

    def stop_slurmdbd(self) -> None:
        """Stop slurmdbd, to test -M without it; blocks until it is gone. ``start()`` undoes it."""
        self._stop(self.base_dir / "slurmdbd.pid", "slurmdbd")

    def _stop(self, pid_file: Path, what: str) -> None:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        self.wait_for(lambda: not _alive(pid), timeout=30, what=f"{what} (pid {pid}) to stop")

    def start(self) -> None:
        """Start whatever part of the rig is not running (the script is idempotent); blocks until both answer."""
        result = start_two_clusters(self.base_dir)
        if result.returncode != 0:
            pytest.fail(f"{START} {self.base_dir} failed:\n{result.stderr.strip()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(base_dir: Path) -> bool:
    """Whether both slurmctld of the rig in ``base_dir`` run (then someone else started it: leave it running)."""
    return all(pid_file_alive(base_dir / cluster / "slurmctld.pid") for cluster in (ALPHA, BETA))


def start_two_clusters(base_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run start-two-clusters.sh for ``base_dir``; blocks until both clusters answer or it gives up."""
    return subprocess.run([str(START), str(base_dir)], capture_output=True, text=True, timeout=300, check=False)


def stop_two_clusters(base_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run stop-two-clusters.sh for ``base_dir``; blocks until its daemons are gone."""
    return subprocess.run([str(STOP), str(base_dir)], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="session")
def two_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoClusters]:
    """The two-cluster rig, started if needed, stopped at the end of the session if this fixture started it."""
    given = os.environ.get("SLURM_DISPATCH_TWO_CLUSTERS_DIR")
    base_dir = Path(given) if given else tmp_path_factory.mktemp("two-clusters")
    ours = not _running(base_dir)
    result = start_two_clusters(base_dir)
    try:
        if result.returncode != 0:
            reason = f"the two-cluster Slurm rig did not start ({START} {base_dir}):\n{result.stderr.strip()}"
            if in_ci():
                pytest.fail(f"CI=true and real Slurm is required: {reason}", pytrace=False)
            pytest.skip(reason)
        yield TwoClusters(base_dir=base_dir)
    finally:
        if ours:
            stop_two_clusters(base_dir)
            if not given:
                # its MariaDB data alone is about 100 MB; pytest would keep the last three sessions' copies
                shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def two_clusters_clean(two_clusters: TwoClusters) -> Iterator[TwoClusters]:
    """The rig, with every job this test submitted (on either cluster) cancelled afterwards."""
    before = {name: two_clusters.job_ids(name) for name in two_clusters.names}
    yield two_clusters
    for name in two_clusters.names:
        new = sorted(two_clusters.job_ids(name) - before[name])
        if new:
            two_clusters.run(["scancel", *new], cluster=name)
