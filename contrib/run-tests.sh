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

status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
echo "run-tests: finished in $((SECONDS - start)) s (exit $status)" >&2
exit $status
