"""Soak the service in faults: many SIGKILLs, then rounds of API faults, slurmctld outages and node failures,
with every invariant of the fault suite checked; print the figures.

Not a test: the CI version is tests/fault/ (20 SIGKILLs and one of each other fault, about 3 minutes). This
runs the same scenarios (tests/fault/fault_scenarios.py) on a private Slurm cluster of its own (started here
with contrib/slurm/start-test-cluster.sh in a temporary directory, stopped at the end), for longer. Figures go
to docs/robustness.md ("Fault suite").

    PYTHONPATH=$PWD .venv/bin/python benchmarks/soak_faults.py --kills 200 --rounds 3 --seed 1

Needs root and Slurm (as the real-Slurm tests do). Exits 1 when any invariant was violated (each violation is
printed, with where to look), 2 when the cluster could not start.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault.fault_figures import Figures
from fault.fault_rig import Rig
from fault.fault_scenarios import api_faults, kill_storm, node_failure, slurmctld_outages
from fault.fault_slurm import FaultTimeout, ForeignJobs, PrivateCluster


def run_scenario(name: str, body: Callable[[Rig], None], *, seed: int, workdir: Path, cluster: PrivateCluster,
                 foreign: ForeignJobs) -> Rig:
    """Run one scenario in a rig of its own; return the finished rig (its figures and violations). Blocks."""
    rig = Rig.create(name=name, seed=seed, workdir=workdir / name, cluster=cluster, foreign=foreign)
    try:
        try:
            body(rig)
        except FaultTimeout as exc:  # a condition never came: a violation too, and the run goes on
            rig.violate(f"the scenario stopped: {exc}")
        rig.finish()
    finally:
        rig.close()
    print("\n".join(rig.report().splitlines()), flush=True)
    return rig


def main() -> int:
    """Parse the arguments, run the soak, print the figures; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs in the kill storm (default 200)")
    parser.add_argument("--sigterms", type=int, default=20, help="SIGTERM cycles among them (default 20)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of API faults, slurmctld outage and node failure after it (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="the seed (default: a random one, printed)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the cluster, the emulators and the logs go (default: a new temporary "
                             "directory; kept)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"seed {seed}; work directory {workdir}", flush=True)
    try:
        cluster = PrivateCluster.start(workdir / "slurm")
    except RuntimeError as exc:
        print(f"soak_faults: {exc}", file=sys.stderr)
        return 2
    total = Figures("soak")
    rigs: list[Rig] = []
    t0 = time.monotonic()
    try:
        foreign = ForeignJobs.submit(cluster, out_dir=workdir, node="c2")

        def common(name: str, body: Callable[[Rig], None]) -> None:
            rig = run_scenario(name, body, seed=seed, workdir=workdir, cluster=cluster, foreign=foreign)
            rigs.append(rig)
            total.merge(rig.figures)

        common("kill-storm", lambda rig: kill_storm(rig, kills=args.kills, sigterms=args.sigterms))
        for r in range(1, args.rounds + 1):
            common(f"api-faults-{r}", api_faults)
            common(f"slurmctld-outage-{r}", lambda rig: slurmctld_outages(rig, outages=1))
            common(f"node-failure-{r}", node_failure)
    finally:
        cluster.stop()
    total.seconds = time.monotonic() - t0
    print()
    print("\n".join(total.lines()))
    violations = [v for rig in rigs for v in rig.violations]
    print(f"seed {seed}; {len(violations)} invariant violations; work directory {workdir}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
