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
set -uo pipefail

say() { echo "stop-two-clusters: $*" >&2; }
stop_munge=0
if [ "${1:-}" = "--munge" ]; then stop_munge=1; shift; fi
[ $# -eq 1 ] || { say "usage: $0 [--munge] DIR"; exit 2; }
[ -d "$1" ] || { say "$1: no such directory; nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd -P)
CLUSTERS=(sdalpha sdbeta)

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pids SECONDS PIDFILE...: SIGTERM to each live pid, wait up to SECONDS for all of them, then SIGKILL the rest.
# Together, because each of these daemons takes about 2 s to stop (measured with 22.05 and MariaDB 10.11).
stop_pids() {
    local limit=$1 f pid
    shift
    local pids=()
    for f in "$@"; do
        if alive "$f"; then
            pid=$(cat "$f")
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null
        fi
    done
    for _ in $(seq $((limit * 10))); do
        local left=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ $left -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid ignored SIGTERM for $limit s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    rm -f "$@"
}

# 1. Cancel each cluster's jobs while its slurmctld still answers (asked locally through its own conf, not with -M:
#    this works even when slurmdbd is already gone).
for cluster in "${CLUSTERS[@]}"; do
    conf="$DIR/$cluster.conf"
    alive "$DIR/$cluster/slurmctld.pid" && [ -f "$conf" ] || continue
    ids=$(SLURM_CONF=$conf timeout 10 squeue --all --noheader --format=%i 2>/dev/null | paste -sd' ' -)
    [ -n "$ids" ] || continue
    say "$cluster: cancelling jobs $ids"
    # shellcheck disable=SC2086
    SLURM_CONF=$conf timeout 10 scancel $ids 2>/dev/null
    for _ in $(seq 50); do
        [ -z "$(SLURM_CONF=$conf timeout 5 squeue --all --noheader --format=%i --states=RUNNING,COMPLETING 2>/dev/null)" ] && break
        sleep 0.2
    done
done

# 2. The Slurm daemons, then slurmdbd (after the slurmctlds, so that they can tell it they stop), then the database.
stop_pids 10 "$DIR"/sd*/slurmd-*.pid "$DIR"/sd*/slurmctld.pid
stop_pids 10 "$DIR/slurmdbd.pid"
stop_pids 30 "$DIR/mysql/mariadbd.pid"

# 3. Leftover slurmstepd of our jobs (slurmd does not take them down with it), and their descendants.
ours=()
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [ "${exe##*/}" = slurmstepd ] || continue
    if [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$DIR"/* ]] \
        || find "$p/fd" -maxdepth 1 -lname "$DIR/*" 2>/dev/null | grep -q .; then
        ours+=("$pid")
    fi
done
if [ ${#ours[@]} -gt 0 ]; then
    victims=("${ours[@]}")
    frontier=("${ours[@]}")
    while [ ${#frontier[@]} -gt 0 ]; do
        next=()
        for parent in "${frontier[@]}"; do
            for c in $(ps -o pid= --ppid "$parent" 2>/dev/null); do next+=("$c"); done
        done
        victims+=("${next[@]}")
        frontier=("${next[@]}")
    done
    say "ending leftover slurmstepd ${ours[*]} and their descendants"
    kill -TERM "${victims[@]}" 2>/dev/null
    for _ in $(seq 30); do
        left=0
        for v in "${victims[@]}"; do kill -0 "$v" 2>/dev/null && left=1; done
        [ $left -eq 0 ] && break
        sleep 0.1
    done
    # slurmstepd ignores SIGTERM once its slurmd is gone (seen with 22.05)
    kill -KILL "${victims[@]}" 2>/dev/null
fi

# 4. munged, only if asked and if we started it.
if [ -e "$DIR/munged.pid" ]; then
    if [ $stop_munge -eq 1 ]; then
        stop_pids 10 "$DIR/munged.pid"
    else
        say "leaving munged (pid $(cat "$DIR/munged.pid")) running: other Slurm instances may use it (--munge stops it)"
    fi
fi
say "stopped"
exit 0
