#!/usr/bin/env bash
# Bring up two private Slurm clusters on this machine, joined by one slurmdbd, for testing multi-cluster support
# (`sbatch --clusters=...`, `squeue -M ...`; issue 12). Slurm's -M/--clusters finds the other clusters' controllers
# through slurmdbd, so this needs more than two copies of start-test-cluster.sh:
#   - a MariaDB server of its own: data directory, socket and port under DIR/mysql (never the system's instance,
#     never /var/lib/mysql), listening on 127.0.0.1 only;
#   - slurmdbd (StorageType=accounting_storage/mysql) on a port of its own, configured by DIR/slurmdbd.conf;
#   - two clusters, sdalpha and sdbeta: each a slurmctld configured by DIR/<cluster>.conf, with two slurmd "nodes"
#     declared like the single test cluster's (<cluster>1: instancetype=a1.small, 2 CPUs, 3000 MB;
#     <cluster>2: instancetype=a1.large, 2 CPUs, 6000 MB), partitions debug (default) and short (MaxTime=1), and
#     AccountingStorageType=accounting_storage/slurmdbd. Each slurmctld registers its cluster with slurmdbd itself
#     when it starts; AccountingStorageEnforce stays off, so jobs need no association (root's or nobody's run).
# munge is reused as start-test-cluster.sh does (the system munged when it answers). Nothing reads or writes
# /etc/slurm or /etc/mysql.
#
# Usage: start-two-clusters.sh DIR        (as root)
# Idempotent: daemons already running from DIR are left alone, missing ones are started. Prints the environment
# to use on stdout (SLURM_CONF is sdalpha's; with -M/--clusters either cluster's conf reaches both), progress on
# stderr. Exits non-zero, saying why, when the clusters cannot start. Stop them with stop-two-clusters.sh DIR.
# Measured here (2 shared cores): 4.5 s from an empty DIR, 2.2 s from a stopped one, 0.6 s when all already runs;
# stop-two-clusters.sh takes about 7 s (each daemon takes about 2 s to stop).
# What it shares with start-test-cluster.sh (munge, ports, most slurm.conf settings) is in cluster-lib.sh beside it.
set -euo pipefail

die() { echo "start-two-clusters: $*" >&2; exit 1; }
say() { echo "start-two-clusters: $*" >&2; }
# (found beside the script itself, also when it is run through a symlink)
LIB="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/cluster-lib.sh"
# shellcheck source=SCRIPTDIR/cluster-lib.sh
. "$LIB" || die "$LIB is missing or unreadable; reinstall slurm-dispatch"

[ $# -eq 1 ] || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
CLUSTERS=(sdalpha sdbeta)
HOST=$(hostname -s)

# --- packages -----------------------------------------------------------------------------------------------
missing=()
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null || missing+=(slurm-wlm)
command -v munged >/dev/null || missing+=(munge)
command -v slurmdbd >/dev/null || missing+=(slurmdbd)
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
if [ ${#missing[@]} -gt 0 ]; then
    die "missing Debian packages: ${missing[*]} (contrib/setup.sh installs them, or apt-get install ${missing[*]})"
fi
[ "$(id -u)" -eq 0 ] || die "the clusters run slurmd, which needs root (SlurmdUser=root); run as root"

# wait_until SECONDS WHAT COMMAND...: run COMMAND every 0.1 s until it succeeds; die after SECONDS.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS > deadline)) && die "$what did not happen within $limit s"
        sleep 0.1
    done
}

# --- munge (as start-test-cluster.sh: reuse the munged that answers, else start one and record its pid) -----------
reuse_or_start_munged "$DIR"

# --- ports (picked once, kept in DIR/ports across restarts) ----------------------------------------------------------
if [ -s "$DIR/ports" ]; then
    # shellcheck disable=SC1091
    . "$DIR/ports"
fi
if [ -z "${MYSQL_PORT:-}" ] || [ -z "${DBD_PORT:-}" ] || [ -z "${SDALPHA_PORTS:-}" ] || [ -z "${SDBETA_PORTS:-}" ]; then
    # per cluster: slurmctld, SlurmdPort (the default, unused: every node has its own Port=), node 1, node 2
    read -r -a p <<<"$(free_ports 10)"
    MYSQL_PORT=${p[0]} DBD_PORT=${p[1]} SDALPHA_PORTS="${p[*]:2:4}" SDBETA_PORTS="${p[*]:6:4}"
    printf 'MYSQL_PORT=%s\nDBD_PORT=%s\nSDALPHA_PORTS="%s"\nSDBETA_PORTS="%s"\n' \
        "$MYSQL_PORT" "$DBD_PORT" "$SDALPHA_PORTS" "$SDBETA_PORTS" > "$DIR/ports"
fi

# --- MariaDB: a private instance, run as root (mariadbd --user=root) so that DIR may be a root-only directory -------
MY="$DIR/mysql"
SOCK="$MY/mysqld.sock"
# A Unix socket path is limited to 107 bytes.
[ ${#SOCK} -le 100 ] || die "$SOCK is too long for a Unix socket (over 100 characters); use a shorter DIR"
mkdir -p "$MY"
my() { mariadb --no-defaults --socket="$SOCK" --user=root --batch --skip-column-names "$@"; }
if alive "$MY/mariadbd.pid"; then
    say "mariadbd already running (pid $(cat "$MY/mariadbd.pid"))"
else
    if [ ! -d "$MY/data/mysql" ]; then
        say "creating the MariaDB data directory $MY/data"
        mariadb-install-db --no-defaults --user=root --datadir="$MY/data" --auth-root-authentication-method=socket \
            --skip-test-db --skip-name-resolve > "$MY/install.log" 2>&1 \
            || { tail -n 20 "$MY/install.log" >&2; die "mariadb-install-db failed; see $MY/install.log"; }
    fi
    say "starting mariadbd on 127.0.0.1:$MYSQL_PORT"
    # Durability is worthless for a throwaway test database: no fsync (nosync, no doublewrite, log flushed once a
    # second) keeps slurmdbd's first start (it creates its tables) quick. innodb_lock_wait_timeout=900 is what
    # slurmdbd asks for; a 16 MB redo log (not 96) saves disk, at the price of one expected line in slurmdbd.log:
    # "error: Database settings not recommended values: innodb_buffer_pool_size innodb_log_file_size".
    setsid mariadbd --no-defaults --user=root --datadir="$MY/data" --socket="$SOCK" --port="$MYSQL_PORT" \
        --bind-address=127.0.0.1 --pid-file="$MY/mariadbd.pid" --log-error="$MY/error.log" --skip-name-resolve \
        --skip-log-bin --innodb-log-file-size=16M --innodb-lock-wait-timeout=900 --innodb-flush-method=nosync --innodb-doublewrite=0 \
        --innodb-flush-log-at-trx-commit=0 </dev/null >/dev/null 2>&1 &
    my_up() { my -e 'SELECT 1'; }
    wait_until 30 "mariadbd answering on $SOCK (see $MY/error.log)" my_up
fi
# slurmdbd's database user: password made up once, kept in a root-only file (slurmdbd.conf carries it too).
if [ ! -s "$MY/slurm.pass" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$MY/slurm.pass")
fi
PASS=$(cat "$MY/slurm.pass")
# (on stdin, so that the password never shows in a process's argv)
my <<SQL || die "could not create slurmdbd's database user (see $MY/error.log)"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- configuration files --------------------------------------------------------------------------------------------
# write_conf FILE MODE TEXT PIDFILE: (re)write FILE when its text changes; refuse while PIDFILE's daemon runs.
write_conf() {
    local file=$1 mode=$2 text=$3 pidfile=$4
    if [ ! -f "$file" ] || [ "$(cat "$file")" != "$text" ]; then
        alive "$pidfile" && die "$file would change while its daemon runs; stop the clusters first (stop-two-clusters.sh $DIR)"
        (umask 077 && printf '%s\n' "$text" > "$file")
        chmod "$mode" "$file"
    fi
}
# slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF, so it lives next to the clusters' confs. It must be
# owned by SlurmUser (root) and not readable by others (it holds the database password).
write_conf "$DIR/slurmdbd.conf" 600 "$(cat <<CONF
# Written by slurm-dispatch's start-two-clusters.sh: a private test slurmdbd. Do not edit by hand.
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$HOST
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$PASS
StorageLoc=slurm_acct_db
CONF
)" "$DIR/slurmdbd.pid"

for cluster in "${CLUSTERS[@]}"; do
    ports_var="${cluster^^}_PORTS"
    read -r ctld_port slurmd_port node1_port node2_port <<<"${!ports_var}"
    short=${cluster#sd}
    cdir="$DIR/$cluster"
    mkdir -p "$cdir/state" "$cdir/spool/${short}1" "$cdir/spool/${short}2"
    write_conf "$DIR/$cluster.conf" 644 "$(cat <<CONF
# Written by slurm-dispatch's start-two-clusters.sh: one of two private test clusters. Do not edit by hand.
$(slurm_conf_daemons "$cluster" "$HOST" "$ctld_port" "$slurmd_port")
SlurmdTimeout=10
KillWait=5
MinJobAge=600
MpiDefault=none
$(slurm_conf_files "$cdir")
# -M/--clusters looks the clusters up in slurmdbd; enforcement stays off (no association needed to run a job).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
$(slurm_conf_nodes "$HOST" "${short}1:a1.small:2:3000:$node1_port" "${short}2:a1.large:2:6000:$node2_port")
CONF
)" "$cdir/slurmctld.pid"
done

# --- slurmdbd, then the clusters ------------------------------------------------------------------------------------
export SLURM_CONF="$DIR/sdalpha.conf"
if alive "$DIR/slurmdbd.pid"; then
    say "slurmdbd already running (pid $(cat "$DIR/slurmdbd.pid"))"
else
    say "starting slurmdbd on 127.0.0.1:$DBD_PORT"
    slurmdbd || die "slurmdbd failed to start; see $DIR/slurmdbd.log"
    wait_until 30 "slurmdbd answering (see $DIR/slurmdbd.log)" timeout 5 sacctmgr --noheader list cluster
fi
for cluster in "${CLUSTERS[@]}"; do
    cdir="$DIR/$cluster"
    short=${cluster#sd}
    if alive "$cdir/slurmctld.pid"; then
        say "$cluster: slurmctld already running (pid $(cat "$cdir/slurmctld.pid"))"
    else
        say "$cluster: starting slurmctld"
        slurmctld -f "$DIR/$cluster.conf" || die "$cluster: slurmctld failed to start; see $cdir/slurmctld.log"
    fi
    for node in "${short}1" "${short}2"; do
        if alive "$cdir/slurmd-$node.pid"; then
            say "$cluster: slurmd $node already running (pid $(cat "$cdir/slurmd-$node.pid"))"
        else
            say "$cluster: starting slurmd $node"
            slurmd -f "$DIR/$cluster.conf" -N "$node" || die "$cluster: slurmd $node failed to start; see $cdir/slurmd-$node.log"
        fi
    done
done

# --- wait until both clusters answer through slurmdbd and every node is idle (or busy: mixed/allocated) ---------------
# A cluster whose slurmctld is not (yet) registered with slurmdbd is silently left out of `-M sdalpha,sdbeta`
# answers, so the wait checks that both CLUSTER headers and all four nodes are there.
both=$(IFS=,; echo "${CLUSTERS[*]}")
deadline=$((SECONDS + 60))
while :; do
    states=$(sinfo -M "$both" -N --noheader --format='%N %t' 2>/dev/null | sort -u || true)
    ready=$(awk '$2 ~ /^(idle|mix|alloc)$/' <<<"$states" | wc -l)
    headers=$(squeue -M "$both" --format=%i 2>/dev/null | grep -c '^CLUSTER: ' || true)
    [ "$ready" -eq 4 ] && [ "$headers" -eq 2 ] && sinfo -M all --format=%P >/dev/null 2>&1 && break
    if ((SECONDS > deadline)); then
        echo "$states" >&2
        for cluster in "${CLUSTERS[@]}"; do tail -n 3 "$DIR/$cluster/slurmctld.log" >&2 || true; done
        tail -n 3 "$DIR/slurmdbd.log" >&2 || true
        die "the clusters were not ready within 60 s (node states above; logs in $DIR)"
    fi
    # a node left DOWN by an earlier run comes back once its slurmd registers again: each cluster's nodes (named
    # after it, without "sd"), through its own slurmctld
    for cluster in "${CLUSTERS[@]}"; do
        SLURM_CONF="$DIR/$cluster.conf" resume_down_nodes "$states" "${cluster#sd}"
    done
    sleep 0.2
done
say "clusters ready: $(sinfo -M "$both" -N --noheader --format='%N:%t:%f' | sort -u | paste -sd' ' -)"
echo "export SLURM_CONF=$DIR/sdalpha.conf"
echo "export SLURM_CONF_SDALPHA=$DIR/sdalpha.conf"
echo "export SLURM_CONF_SDBETA=$DIR/sdbeta.conf"
