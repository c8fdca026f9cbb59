# shellcheck shell=bash
# What the private Slurm test-cluster scripts beside this file do the same way: start-test-cluster.sh and
# start-two-clusters.sh (munge, ports, the slurm.conf settings they share, bringing DOWN nodes back),
# stop-test-cluster.sh and stop-two-clusters.sh (cancelling jobs, stopping daemons by pid file, ending leftover
# slurmstepd). Each of them sources it from its own directory (it ships in the package with them); it is never run
# on its own, and it sets no shell options.
#
# The sourcing script defines `say MESSAGE` (a progress line on stderr, prefixed with the script's name), and a
# start script also `die MESSAGE` (say it, exit 1): the functions here speak through them.

# alive PIDFILE: succeeds when the pid in PIDFILE names a live process.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- starting ---------------------------------------------------------------------------------------------------------

# free_ports N: prints N distinct ports that are free now, each checked by binding it (the kernel picks them).
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# munge_answers: succeeds when the host's munged answers (a credential from `munge -n` decodes with unmunge).
munge_answers() { (munge -n | unmunge) >/dev/null 2>&1; }

# reuse_or_start_munged DIR: reuses the munged that answers, else starts one and records its pid in DIR/munged.pid.
# The system munged is shared by every Slurm on the host: reusing it disturbs nobody, and the pid file lets the stop
# scripts stop exactly what was started for DIR (and only when asked to). Dies when munged does not come up.
reuse_or_start_munged() {
    local dir=$1
    munge_answers && return 0
    say "starting munged"
    install -d -o munge -g munge -m 0755 /run/munge
    mkdir -p /var/log/munge /var/lib/munge
    chown -R munge:munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (reinstall munge or run mungekey)"
    runuser -u munge -- munged --force || die "munged failed to start; see /var/log/munge/munged.log"
    for _ in $(seq 50); do
        munge_answers && break
        sleep 0.1
    done
    munge_answers || die "munged started but munge -n | unmunge fails; see /var/log/munge/munged.log"
    cat /run/munge/munged.pid > "$dir/munged.pid" 2>/dev/null || pgrep -u munge -n munged > "$dir/munged.pid" || true
}

# slurm_conf_daemons CLUSTER HOST CTLD_PORT SLURMD_PORT: prints the slurm.conf lines naming the cluster, its
# slurmctld and ports, and the plugins and users every test cluster runs with.
slurm_conf_daemons() {
    cat <<CONF
ClusterName=$1
SlurmctldHost=$2(127.0.0.1)
SlurmctldPort=$3
SlurmdPort=$4
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
PriorityType=priority/basic
ReturnToService=2
SlurmUser=root
SlurmdUser=root
# Nodes here are several slurmd on one host; their CPUs and memory are declared, not measured.
SlurmdParameters=config_overrides
CONF
}

# slurm_conf_files DIR: prints the slurm.conf lines that keep a cluster's pid, log, spool and state files under DIR,
# and turn job completion logging and accounting gathering off.
slurm_conf_files() {
    cat <<CONF
SlurmctldPidFile=$1/slurmctld.pid
SlurmdPidFile=$1/slurmd-%n.pid
SlurmdSpoolDir=$1/spool/%n
StateSaveLocation=$1/state
SlurmctldLogFile=$1/slurmctld.log
SlurmdLogFile=$1/slurmd-%n.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
CONF
}

# slurm_conf_nodes HOST NAME:TYPE:CPUS:MEM_MB:PORT...: prints a NodeName line for each node (a slurmd on HOST, on
# PORT, with Features=instancetype=TYPE), then the partitions debug (the default, no time limit) and short
# (MaxTime=1 minute) over all of them.
slurm_conf_nodes() {
    local host=$1 spec name itype cpus mem port names=""
    shift
    for spec in "$@"; do
        IFS=: read -r name itype cpus mem port <<<"$spec"
        echo "NodeName=$name NodeHostname=$host NodeAddr=127.0.0.1 Port=$port CPUs=$cpus RealMemory=$mem TmpDisk=100000 Features=instancetype=$itype State=UNKNOWN"
        names+="${names:+,}$name"
    done
    echo "PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=short Nodes=$names MaxTime=1 State=UP"
}

# resume_down_nodes STATES [PREFIX]: asks SLURM_CONF's slurmctld to resume the nodes (those whose name starts with
# PREFIX) that STATES, `sinfo -N --format='%N %t'` lines, shows down, drained or failed. A node left DOWN by an
# earlier run comes back once its slurmd registers again. Never fails.
resume_down_nodes() {
    local down
    down=$(awk -v p="${2:-}" '$2 ~ /^(down|drain|drng|fail)/ && substr($1, 1, length(p)) == p {print $1}' <<<"$1" \
        | paste -sd, -)
    if [ -n "$down" ]; then
        scontrol update NodeName="$down" State=RESUME >/dev/null 2>&1 || true
    fi
}

# --- stopping ---------------------------------------------------------------------------------------------------------

# cancel_all_jobs LABEL: cancels every job of SLURM_CONF's cluster, then waits up to 10 s for them to leave RUNNING
# and COMPLETING, so that their steps end the normal way. LABEL ("" or e.g. "sdalpha: ") starts the progress line.
cancel_all_jobs() {
    local ids
    ids=$(timeout 10 squeue --all --noheader --format=%i 2>/dev/null | paste -sd' ' -)
    [ -n "$ids" ] || return 0
    say "${1}cancelling jobs $ids"
    # shellcheck disable=SC2086  # one argument per job id
    timeout 10 scancel $ids 2>/dev/null
    for _ in $(seq 50); do
        [ -z "$(timeout 5 squeue --all --noheader --format=%i --states=RUNNING,COMPLETING 2>/dev/null)" ] && break
        sleep 0.2
    done
}

# stop_pids SECONDS PIDFILE...: SIGTERM to each live pid, waits up to SECONDS for all of them, then SIGKILLs the rest;
# removes the pid files. Together, because each of these daemons takes about 2 s to stop (measured with 22.05 and
# MariaDB 10.11).
stop_pids() {
    local limit=$1 f pid i left
    shift
    local pids=() files=()
    for f in "$@"; do
        if alive "$f"; then
            pid=$(cat "$f")
            pids+=("$pid")
            files+=("$f")
            kill -TERM "$pid" 2>/dev/null
        fi
    done
    for _ in $(seq $((limit * 10))); do
        left=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ $left -eq 0 ] && break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            say "pid ${pids[$i]} (${files[$i]}) ignored SIGTERM for $limit s; sending SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null
        fi
    done
    rm -f "$@"
}

# stop_leftover_slurmstepd DIR: ends the slurmstepd processes whose working directory or one of whose open files lies
# in DIR (the cluster's spool and log files), and their descendants; slurmd does not take them down with it. Nothing
# is chosen by name alone, so another cluster's steps on the same host are left alone.
stop_leftover_slurmstepd() {
    local dir=$1 p pid exe cwd parent c v left
    local ours=() victims=() frontier=() next=()
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        # Debian's slurm-wlm installs it as slurmstepd-wlm (/usr/sbin/slurmstepd is an alternatives link to it)
        case ${exe##*/} in slurmstepd | slurmstepd-wlm) ;; *) continue ;; esac
        cwd=$(readlink "$p/cwd" 2>/dev/null) || cwd=""
        if [[ "$cwd" == "$dir" || "$cwd" == "$dir"/* ]] \
            || find "$p/fd" -maxdepth 1 -lname "$dir/*" 2>/dev/null | grep -q .; then
            ours+=("$pid")
        fi
    done
    [ ${#ours[@]} -gt 0 ] || return 0
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
    kill -KILL "${victims[@]}" 2>/dev/null || true
}

# stop_munged_if_asked DIR ASKED: when a start script started munged for DIR (DIR/munged.pid), stops it if ASKED is
# 1 (--munge), else says that it stays: munged is shared by every Slurm on the host.
stop_munged_if_asked() {
    local dir=$1 asked=$2
    [ -e "$dir/munged.pid" ] || return 0
    if [ "$asked" -eq 1 ]; then
        stop_pids 10 "$dir/munged.pid"
    else
        say "leaving munged (pid $(cat "$dir/munged.pid")) running: other Slurm instances may use it (--munge stops it)"
    fi
}
