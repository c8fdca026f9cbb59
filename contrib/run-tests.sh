#!/usr/bin/env bash
# The README's test command: set everything up (Debian packages, virtualenv, Python packages, the real Slurm test
# cluster) and run all tests. Extra arguments go to pytest. The Slurm cluster is stopped at the end if this script
# started it. Under CI=true no real-Slurm test may be skipped (the fixtures fail loudly instead).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
start=$SECONDS

VENV=$(contrib/setup.sh | tail -n 1)

CLUSTER_DIR=${SLURM_DISPATCH_TEST_CLUSTER_DIR:-$REPO/.slurm-test}
export SLURM_DISPATCH_TEST_CLUSTER_DIR=$CLUSTER_DIR
if [ -s "$CLUSTER_DIR/slurmctld.pid" ] && kill -0 "$(cat "$CLUSTER_DIR/slurmctld.pid")" 2>/dev/null; then
    echo "run-tests: reusing the Slurm test cluster in $CLUSTER_DIR" >&2
else
    t0=$SECONDS
    contrib/slurm/start-test-cluster.sh "$CLUSTER_DIR" >/dev/null
    echo "run-tests: Slurm test cluster up in $((SECONDS - t0)) s" >&2
    # At the very end nothing else uses the munged this run may have started: stop it too.
    trap 'contrib/slurm/stop-test-cluster.sh --munge "$CLUSTER_DIR"' EXIT
fi

# Several pytest-xdist workers: most real-Slurm tests spend their time waiting for Slurm, so they overlap well even
# on two cores. The first worker uses the cluster started above; every other one starts a cluster of its own
# (tests/plugins/slurm_cluster.py) and stops it at the end. `-n 0` among the arguments runs everything in one process.
status=0
"$VENV/bin/python" -m pytest -n "${SLURM_DISPATCH_TEST_WORKERS:-3}" --dist loadgroup "$@" || status=$?
echo "run-tests: finished in $((SECONDS - start)) s (exit $status)" >&2
exit $status
