#!/usr/bin/env bash
# Stop the two private Slurm clusters that start-two-clusters.sh started in DIR: cancel their jobs, stop each
# cluster's slurmd and slurmctld, then slurmdbd, then the private mariadbd, each by the pid in its pid file; then end
# the slurmstepd processes (and what they started) that belong to these clusters (an open file or working directory
# in DIR, as stop-test-cluster.sh does). Nothing is ever killed by name. The data (DIR/mysql/data, the clusters'
# state) stays, so a later start-two-clusters.sh DIR picks up where this left off; delete DIR to start afresh.
#
# munged is shared by every Slurm on the host, so it is left running unless --munge is given; even then it is stopped
# only if start-two-clusters.sh started it for DIR (DIR/munged.pid).
#
# Usage: stop-two-clusters.sh [--munge] DIR
# What it shares with stop-test-cluster.sh is in cluster-lib.sh beside it.
set -uo pipefail

say() { echo "stop-two-clusters: $*" >&2; }
# (found beside the script itself, also when it is run through a symlink)
LIB="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/cluster-lib.sh"
# shellcheck source=SCRIPTDIR/cluster-lib.sh
. "$LIB" || { say "$LIB is missing or unreadable; reinstall slurm-dispatch"; exit 1; }

stop_munge=0
if [ "${1:-}" = "--munge" ]; then stop_munge=1; shift; fi
[ $# -eq 1 ] || { say "usage: $0 [--munge] DIR"; exit 2; }
[ -d "$1" ] || { say "$1: no such directory; nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd -P)
CLUSTERS=(sdalpha sdbeta)

# 1. Cancel each cluster's jobs while its slurmctld still answers (asked locally through its own conf, not with -M:
#    this works even when slurmdbd is already gone).
for cluster in "${CLUSTERS[@]}"; do
    conf="$DIR/$cluster.conf"
    if alive "$DIR/$cluster/slurmctld.pid" && [ -f "$conf" ]; then
        SLURM_CONF=$conf cancel_all_jobs "$cluster: "
    fi
done

# 2. The Slurm daemons, then slurmdbd (after the slurmctlds, so that they can tell it they stop), then the database;
#    the daemons of one step together.
stop_pids 10 "$DIR"/sd*/slurmd-*.pid "$DIR"/sd*/slurmctld.pid
stop_pids 10 "$DIR/slurmdbd.pid"
stop_pids 30 "$DIR/mysql/mariadbd.pid"

# 3. Leftover slurmstepd of our jobs (slurmd does not take them down with it), and their descendants.
stop_leftover_slurmstepd "$DIR"

# 4. munged, only if asked and if we started it.
stop_munged_if_asked "$DIR" "$stop_munge"
say "stopped"
exit 0
