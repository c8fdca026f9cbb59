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
set -uo pipefail

say() { echo "stop-test-cluster: $*" >&2; }
stop_munge=0
if [ "${1:-}" = "--munge" ]; then stop_munge=1; shift; fi
[ $# -eq 1 ] || { say "usage: $0 [--munge] DIR"; exit 2; }
[ -d "$1" ] || { say "$1: no such directory; nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd -P)
export SLURM_CONF="$DIR/slurm.conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pid() {
    local f=$1 pid
    alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid ($f) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
}

# 1. Cancel this cluster's jobs while slurmctld still answers, so their steps end the normal way.
if alive "$DIR/slurmctld.pid" && [ -f "$SLURM_CONF" ]; then
    ids=$(timeout 10 squeue --all --noheader --format=%i 2>/dev/null | paste -sd' ' -)
    if [ -n "$ids" ]; then
        say "cancelling jobs $ids"
        # shellcheck disable=SC2086
        timeout 10 scancel $ids 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(timeout 5 squeue --all --noheader --format=%i --states=RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

# 2. The daemons, by pid file.
for f in "$DIR"/slurmd-*.pid; do [ -e "$f" ] && stop_pid "$f"; done
stop_pid "$DIR/slurmctld.pid"

# 3. Leftover slurmstepd of our jobs (slurmd does not take them down with it), and their descendants.
ours=()
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [ "${exe##*/}" = slurmstepd ] || continue
    if [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$DIR"* ]] \
        || find "$p/fd" -maxdepth 1 -lname "$DIR/*" 2>/dev/null | grep -q .; then
        ours+=("$pid")
    fi
done
if [ ${#ours[@]} -gt 0 ]; then
    # collect descendants (children first reported, killed together)
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
        stop_pid "$DIR/munged.pid"
    else
        say "leaving munged (pid $(cat "$DIR/munged.pid")) running: other Slurm instances may use it (--munge stops it)"
    fi
fi
say "stopped"
exit 0
