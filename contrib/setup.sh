#!/usr/bin/env bash
# Install what slurm-dispatch's tests and demo need on a Debian 12 machine, idempotently:
#   - Debian packages (as root): slurm-wlm and munge (the real test cluster), slurmdbd and mariadb-server (the
#     two-cluster rig, start-two-clusters.sh), postgresql (the advisory-lock tests), prometheus (the dashboard and
#     alerting-rule tests), python3-venv, openssl (a TLS test hashes a CA directory with `openssl rehash`);
#   - a virtualenv (default: .venv in the repository, or $SLURM_DISPATCH_VENV) with slurm-dispatch installed
#     editable, plus its test extra.
# Prints the virtualenv's path on its last line of stdout. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
VENV=${SLURM_DISPATCH_VENV:-$REPO/.venv}
say() { echo "setup: $*" >&2; }

want=()
command -v slurmctld >/dev/null || want+=(slurm-wlm)
command -v munged >/dev/null || want+=(munge)
command -v slurmdbd >/dev/null || want+=(slurmdbd)
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || want+=(mariadb-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || want+=(postgresql)
command -v prometheus >/dev/null && command -v promtool >/dev/null || want+=(prometheus)
python3 -c 'import ensurepip, venv' 2>/dev/null || want+=(python3-venv)
command -v openssl >/dev/null || want+=(openssl)
if [ ${#want[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: ${want[*]}; run as root or install them first (apt-get install ${want[*]})"
        exit 1
    fi
    say "installing Debian packages: ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The tests run private instances (their own ports, sockets and data); the services these packages would start
    # (the system MariaDB on /var/lib/mysql, slurmdbd, PostgreSQL) are not wanted. A policy-rc.d that says 101
    # ("action forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting them; Docker images ship one.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from slurm-dispatch contrib/setup.sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq >&2
    apt-get install -y -qq "${want[@]}" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.slurm-dispatch-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing slurm-dispatch and its test dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$REPO[test,sdk]" >&2
    touch "$stamp"
fi
echo "$VENV"
