#!/usr/bin/env bash
# The README's demo command: set up (Debian packages, virtualenv, slurm-dispatch) with the same script as the
# tests, then run `slurm-dispatch sandbox`: the emulated Arvados API, the project's real Slurm test cluster
# (started in .slurm-test when it is not running, and stopped again afterwards in that case), and the dispatcher,
# dispatching sample containers until every one is final. Extra arguments go to `slurm-dispatch sandbox`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(contrib/setup.sh | tail -n 1)
exec "$VENV/bin/slurm-dispatch" sandbox --cluster-dir "${SLURM_DISPATCH_TEST_CLUSTER_DIR:-.slurm-test}" "$@"
