#!/usr/bin/env bash
# Bring up a private Slurm test cluster on this machine: munge (reused when one runs), one slurmctld and two
# slurmd "nodes" (c1 with Features=instancetype=a1.small, c2 with instancetype=a1.large), all configured by a
# slurm.conf written into DIR and reached through SLURM_CONF, on ports of its own. It never reads or writes
# /etc/slurm, so it cannot disturb a production cluster on the same host.
#   Partitions: debug (the default, no time limit) and short (MaxTime=1 minute: a job asking for more pends for
#   ever with reason PartitionTimeLimit, which the failure-reason tests use).
#
# Usage: start-test-cluster.sh DIR
#   Environment: SLURM_TEST_CTLD_PORT (default: a free port, kept across restarts in DIR/ports),
#                SLURM_TEST_NODES (default "c1:a1.small:2:3000 c2:a1.large:2:6000", name:type:cpus:mem_mb),
#                SLURM_TEST_MAX_JOB_COUNT (default 10000, Slurm's: jobs slurmctld holds, finished ones included
#                for MinJobAge; the submission benchmark submits 2000 per round).
# Idempotent: daemons already running from DIR are left alone. Prints the environment to use on stdout
# (export SLURM_CONF=...), progress on stderr. Exits non-zero, saying why, when the cluster cannot start.
# Stop it with stop-test-cluster.sh DIR.
#
# Both scripts ship inside the Python package (slurm_dispatch/sandbox/slurm/), so that `slurm-dispatch sandbox`
# finds them after a pip install; contrib/slurm/ holds symlinks to them for a checkout. What they share with the
# two-cluster scripts is in cluster-lib.sh beside them.
set -euo pipefail

die() { echo "start-test-cluster: $*" >&2; exit 1; }
say() { echo "start-test-cluster: $*" >&2; }
# (found beside the script itself, also when it is run through contrib/slurm/'s symlink)
LIB="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/cluster-lib.sh"
# shellcheck source=SCRIPTDIR/cluster-lib.sh
. "$LIB" || die "$LIB is missing or unreadable; reinstall slurm-dispatch"

[ $# -eq 1 ] || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
CONF="$DIR/slurm.conf"

# --- packages -----------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "slurm-wlm and munge are not installed, and only root can install them (apt-get install slurm-wlm munge)"
    say "installing slurm-wlm and munge with apt-get (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq slurm-wlm munge >&2 || die "apt-get install slurm-wlm munge failed"
fi
[ "$(id -u)" -eq 0 ] || die "the test cluster runs slurmd, which needs root (SlurmdUser=root); run as root"

# --- munge ----------------------------------------------------------------------------------------------------
# The system munged is shared by every Slurm on the host: reuse it when it answers. If we have to start it, we
# record its pid in DIR/munged.pid so that stop-test-cluster.sh stops exactly what we started.
reuse_or_start_munged "$DIR"

# --- ports and slurm.conf ----------------------------------------------------------------------------------
HOST=$(hostname -s)
NODES=${SLURM_TEST_NODES:-"c1:a1.small:2:3000 c2:a1.large:2:6000"}
NODE_COUNT=$(wc -w <<<"$NODES")
if [ -s "$DIR/ports" ]; then
    # shellcheck disable=SC1091
    . "$DIR/ports"
    if [ -z "${NODE_PORTS:-}" ] && [ -n "${SLURMD_PORT_BASE:-}" ]; then
        # a ports file from an older version of this script: nodes used base+1, base+2, ...
        NODE_PORTS=$(seq $((SLURMD_PORT_BASE + 1)) $((SLURMD_PORT_BASE + NODE_COUNT)) | paste -sd' ' -)
    fi
fi
if [ -z "${CTLD_PORT:-}" ] || [ -z "${NODE_PORTS:-}" ] || [ "$(wc -w <<<"$NODE_PORTS")" -ne "$NODE_COUNT" ]; then
    read -r -a picked <<<"$(free_ports $((NODE_COUNT + 2)))"
    CTLD_PORT=${SLURM_TEST_CTLD_PORT:-${picked[0]}}
    SLURMD_PORT_BASE=${picked[1]}
    NODE_PORTS="${picked[*]:2}"
    printf 'CTLD_PORT=%s\nSLURMD_PORT_BASE=%s\nNODE_PORTS="%s"\n' "$CTLD_PORT" "$SLURMD_PORT_BASE" "$NODE_PORTS" > "$DIR/ports"
fi
read -r -a node_ports <<<"$NODE_PORTS"
CLUSTER_NAME=sdtest

mkdir -p "$DIR/state" "$DIR/spool"
node_specs=()  # name:type:cpus:mem_mb:port, as slurm_conf_nodes takes them
i=0
for spec in $NODES; do
    node_specs+=("$spec:${node_ports[$i]}")
    i=$((i + 1))
    mkdir -p "$DIR/spool/${spec%%:*}"
done

new_conf=$(cat <<CONF
# Written by slurm-dispatch's contrib/slurm/start-test-cluster.sh: a private test cluster. Do not edit by hand.
$(slurm_conf_daemons "$CLUSTER_NAME" "$HOST" "$CTLD_PORT" "$SLURMD_PORT_BASE")
# A stopped node goes DOWN quickly (tests produce NODE_FAIL this way).
SlurmdTimeout=10
KillWait=5
MinJobAge=600
MaxJobCount=${SLURM_TEST_MAX_JOB_COUNT:-10000}
MpiDefault=none
$(slurm_conf_files "$DIR")
AccountingStorageType=accounting_storage/none
$(slurm_conf_nodes "$HOST" "${node_specs[@]}")
CONF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    alive "$DIR/slurmctld.pid" && die "$CONF would change while slurmctld runs from $DIR; stop it first (stop-test-cluster.sh $DIR)"
    printf '%s\n' "$new_conf" > "$CONF"
fi
export SLURM_CONF="$CONF"

# --- daemons ------------------------------------------------------------------------------------------------
if alive "$DIR/slurmctld.pid"; then
    say "slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
else
    say "starting slurmctld on port $CTLD_PORT"
    slurmctld -f "$CONF" || die "slurmctld failed to start; see $DIR/slurmctld.log"
fi
for spec in $NODES; do
    name=${spec%%:*}
    if alive "$DIR/slurmd-$name.pid"; then
        say "slurmd $name already running (pid $(cat "$DIR/slurmd-$name.pid"))"
    else
        say "starting slurmd $name"
        slurmd -f "$CONF" -N "$name" || die "slurmd $name failed to start; see $DIR/slurmd-$name.log"
    fi
done

# --- wait until every node is idle (or busy with jobs: mixed/allocated) -----------------------------------------
deadline=$((SECONDS + 60))
while :; do
    states=$(sinfo -N --noheader --format='%N %t' 2>/dev/null | sort -u || true)
    total=$(wc -w <<<"$NODES")
    ready=$(awk '$2 ~ /^(idle|mix|alloc)$/' <<<"$states" | wc -l)
    [ "$ready" -eq "$total" ] && break
    if ((SECONDS > deadline)); then
        echo "$states" >&2
        tail -n 5 "$DIR/slurmctld.log" >&2 || true
        die "nodes did not become idle within 60 s (states above; logs in $DIR)"
    fi
    resume_down_nodes "$states"
    sleep 0.2
done
say "cluster $CLUSTER_NAME ready: $(sinfo -N --noheader --format='%N:%t:%f' | paste -sd' ' -)"
echo "export SLURM_CONF=$CONF"
