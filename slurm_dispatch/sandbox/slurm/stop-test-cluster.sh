#!/usr/bin/env bash
# Stop the private Slurm test cluster that start-test-cluster.sh started in DIR: cancel its jobs, stop its slurmd
# and slurmctld by the pids in their pid files, then end the slurmstepd processes (and what they started) that
# belong to this cluster. A slurmstepd is ours when one of its open files or its working directory lies in DIR
# (its spool and log files); nothing is ever killed by name.
#
# munged is shared by every Slurm on the host (other test clusters reuse the one that runs), so it is left
# running unless --munge is given; even then it is stopped only if start-test-cluster.sh started it for DIR
# (DIR/munged.pid).
#
# Usage: stop-test-cluster.sh [--munge] DIR
# What it shares with stop-two-clusters.sh is in cluster-lib.sh beside it.
set -uo pipefail

say() { echo "stop-test-cluster: $*" >&2; }
# (found beside the script itself, also when it is run through contrib/slurm/'s symlink)
LIB="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/cluster-lib.sh"
# shellcheck source=SCRIPTDIR/cluster-lib.sh
. "$LIB" || { say "$LIB is missing or unreadable; reinstall slurm-dispatch"; exit 1; }

stop_munge=0
if [ "${1:-}" = "--munge" ]; then stop_munge=1; shift; fi
[ $# -eq 1 ] || { say "usage: $0 [--munge] DIR"; exit 2; }
[ -d "$1" ] || { say "$1: no such directory; nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd -P)
export SLURM_CONF="$DIR/slurm.conf"

# 1. Cancel this cluster's jobs while slurmctld still answers, so their steps end the normal way.
if alive "$DIR/slurmctld.pid" && [ -f "$SLURM_CONF" ]; then
    cancel_all_jobs ""
fi

# 2. The daemons, by pid file, one after the other: each slurmd, then slurmctld.
for f in "$DIR"/slurmd-*.pid; do [ -e "$f" ] && stop_pids 10 "$f"; done
stop_pids 10 "$DIR/slurmctld.pid"

# 3. Leftover slurmstepd of our jobs (slurmd does not take them down with it), and their descendants.
stop_leftover_slurmstepd "$DIR"

# 4. munged, only if asked and if we started it.
stop_munged_if_asked "$DIR" "$stop_munge"
say "stopped"
exit 0
