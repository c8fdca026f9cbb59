"""The two-cluster rig works, and what Slurm 22.05 does with -M/--clusters (issue 12), recorded as tests.

Every output below was captured on the rig (Slurm 22.05.8 from Debian 12; docs/test-cluster.md, "Two clusters",
says the same in prose). Commands run with sdalpha's conf unless a test says otherwise; sdbeta is reached with -M.

- ``sbatch -M sdbeta`` prints ``Submitted batch job 7 on cluster sdbeta``; with ``--parsable`` it prints
  ``7;sdbeta``. Any -M adds the ``;cluster`` part, even one naming the local cluster (``8;sdalpha``); without -M,
  ``--parsable`` prints ``7`` alone. ``-M sdalpha,sdbeta`` submits to one of them (the one that can start the job
  first) and names it.
- Job ids are per cluster: each slurmctld counts from 1, so the same id names different jobs on the two clusters.
- ``squeue -M <one or more>`` without ``--noheader`` puts ``CLUSTER: <name>`` before each cluster's header line and
  a blank line between clusters, in the same order whatever order -M gives::

      CLUSTER: sdalpha
      JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON
      2|0|0|PENDING|UNLIMITED||shape|JobHeldUser

      CLUSTER: sdbeta
      JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON
      2|0|0|PENDING|UNLIMITED||shape|JobHeldUser

  With ``--noheader`` the ``CLUSTER:`` lines go too, and a ``--format`` row does not say its cluster: the two rows
  above become ``2|0|0|PENDING|UNLIMITED||shape|JobHeldUser`` twice. Only the default format prefixes each row with
  the cluster name (``sdalpha                     2     debug    shape     root PD ...``), and ``--Format`` (-O)
  has a ``Cluster`` field: ``--Format=Cluster:|,JobID:|,Name:`` gives ``sdalpha|2|shape``.
- ``scontrol`` takes one cluster only: ``scontrol -M sdalpha,sdbeta ...`` (and ``-M all``) exits 1 with
  ``scontrol: fatal: Only one cluster can be used at a time with scontrol`` on stderr.
- ``scancel -M sdbeta ID`` cancels sdbeta's job ID only; ``scancel -M sdalpha,sdbeta ID`` cancels job ID on *both*
  clusters (with colliding ids, two different jobs); ``scancel -M sdalpha,sdbeta --name=N`` cancels N on both.
- A cluster whose slurmctld is stopped is silently left out: slurmctld tells slurmdbd when it stops (even when
  killed), and ``squeue -M sdalpha,sdbeta`` then exits 0 with sdalpha's block only and nothing on stderr.
  ``squeue -M sdbeta`` alone exits 1: ``squeue: error: 'sdbeta' can't be reached now, or it is an invalid entry for
  --cluster.  Use 'sacctmgr list clusters' to see available clusters.`` An unknown name in a list is skipped with
  an error line and exit 0 (``squeue: error: No cluster 'nosuch' known by database.``). With slurmdbd down every -M
  command exits 1 (``... Problem talking to database``); commands without -M still work.
- ``sinfo -M all --noheader`` with the default format crashes (SIGSEGV, no output); with a ``--format`` it works.
"""

from __future__ import annotations

import os
import re
import secrets

import pytest
from plugins.two_clusters import ALPHA, BETA, TwoClusters

# xdist_group: under pytest-xdist every test of the rig runs in one worker, which starts the rig once.
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("two_clusters")]

SCRIPT = "#!/bin/sh\nsleep 300\n"
FORMAT = "%i|%y|%Q|%T|%L|%N|%j|%r"
HEADER = "JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON"


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _submit_held(rig: TwoClusters, *, cluster: str, name: str) -> str:
    """Submit a held (forever pending) job to ``cluster`` with -M, from sdalpha's conf; returns its id."""
    out = rig.run(
        ["sbatch", "--parsable", f"--clusters={cluster}", "--hold", f"--job-name={name}", "--output=/dev/null",
         "--chdir=/tmp"],
        input=SCRIPT, check=True,
    ).stdout
    job_id, _, on = out.strip().partition(";")
    assert on == cluster, out
    return job_id


def _colliding_pair(rig: TwoClusters, name: str) -> str:
    """Submit held jobs named ``name`` to both clusters under the same job id; returns that id.

    Held fillers (named ``name-filler``) bring the two clusters' job counters level first; the fixture cancels them
    with the rest.
    """
    for _ in range(3):
        ids = {c: int(_submit_held(rig, cluster=c, name=f"{name}-filler")) for c in (ALPHA, BETA)}
        for _ in range(500):
            if ids[ALPHA] == ids[BETA]:
                break
            behind = min(ids, key=lambda c: ids[c])
            ids[behind] = int(_submit_held(rig, cluster=behind, name=f"{name}-filler"))
        pair = {_submit_held(rig, cluster=c, name=name) for c in (ALPHA, BETA)}
        if len(pair) == 1:
            return pair.pop()
    pytest.fail(f"could not bring the two clusters' job counters level (last: {ids})")


def _state_is(rig: TwoClusters, job_id: str, state: str, *, cluster: str) -> bool:
    return rig.show_job(job_id, cluster=cluster)["JobState"] == state


def _field(rig: TwoClusters, job_id: str, key: str, *, cluster: str) -> str:
    return rig.show_job(job_id, cluster=cluster)[key]


def test_sbatch_with_clusters_lands_on_the_named_cluster(two_clusters_clean: TwoClusters) -> None:
    rig, name = two_clusters_clean, _name("land")
    submitted = rig.run(
        ["sbatch", "--clusters=sdbeta", "--hold", f"--job-name={name}", "--output=/dev/null", "--chdir=/tmp"],
        input=SCRIPT, check=True,
    )
    match = re.fullmatch(r"Submitted batch job (\d+) on cluster sdbeta\n", submitted.stdout)
    assert match, submitted.stdout
    job_id = match.group(1)
    # on sdbeta, asked locally through sdbeta's own conf; not on sdalpha
    assert rig.show_job(job_id, cluster=BETA)["JobName"] == name
    local = rig.run(["squeue", "--noheader", f"--name={name}", "--format=%i"], cluster=ALPHA, check=True)
    assert local.stdout == ""

    parsable = rig.run(["sbatch", "--parsable", "-M", BETA, "--hold", f"--job-name={name}", "--output=/dev/null",
                        "--chdir=/tmp"], input=SCRIPT, check=True)
    assert re.fullmatch(r"\d+;sdbeta\n", parsable.stdout), parsable.stdout
    named_local = rig.run(["sbatch", "--parsable", "-M", ALPHA, "--hold", f"--job-name={name}", "--output=/dev/null",
                           "--chdir=/tmp"], input=SCRIPT, check=True)
    assert re.fullmatch(r"\d+;sdalpha\n", named_local.stdout), named_local.stdout
    plain = rig.run(["sbatch", "--parsable", "--hold", f"--job-name={name}", "--output=/dev/null", "--chdir=/tmp"],
                    input=SCRIPT, check=True)
    assert re.fullmatch(r"\d+\n", plain.stdout), plain.stdout

    # both clusters named: one of them takes the job, and sbatch says which
    either = rig.run(["sbatch", "-M", f"{ALPHA},{BETA}", "--hold", f"--job-name={name}", "--output=/dev/null",
                      "--chdir=/tmp"], input=SCRIPT, check=True)
    assert re.fullmatch(r"Submitted batch job \d+ on cluster (sdalpha|sdbeta)\n", either.stdout), either.stdout


def test_squeue_output_with_clusters(two_clusters_clean: TwoClusters) -> None:
    rig, name = two_clusters_clean, _name("shape")
    a = _submit_held(rig, cluster=ALPHA, name=name)
    b = _submit_held(rig, cluster=BETA, name=name)
    row_a = f"{a}|0|0|PENDING|UNLIMITED||{name}|JobHeldUser"
    row_b = f"{b}|0|0|PENDING|UNLIMITED||{name}|JobHeldUser"

    def squeue(*args: str) -> str:
        return rig.run(["squeue", f"--name={name}", *args], check=True).stdout

    assert squeue("-M", BETA, "--noheader", f"--format={FORMAT}") == f"{row_b}\n"
    assert squeue("-M", BETA, f"--format={FORMAT}") == f"CLUSTER: sdbeta\n{HEADER}\n{row_b}\n"
    both = f"CLUSTER: sdalpha\n{HEADER}\n{row_a}\n\nCLUSTER: sdbeta\n{HEADER}\n{row_b}\n"
    assert squeue("-M", "all", f"--format={FORMAT}") == both
    assert squeue("-M", f"{BETA},{ALPHA}", f"--format={FORMAT}") == both  # the order is not -M's
    # --noheader drops the CLUSTER lines: a --format row no longer says which cluster it came from
    assert squeue("-M", "all", "--noheader", f"--format={FORMAT}") == f"{row_a}\n{row_b}\n"
    # the default format prefixes the cluster name; --Format's Cluster field says it in any layout
    default = squeue("-M", "all", "--noheader").splitlines()
    assert [line.split()[:3] for line in default] == [[ALPHA, a, "debug"], [BETA, b, "debug"]], default
    assert squeue("-M", "all", "--noheader", "--Format=Cluster:|,JobID:|,Name:") == f"sdalpha|{a}|{name}\nsdbeta|{b}|{name}\n"


def test_job_ids_are_per_cluster(two_clusters_clean: TwoClusters) -> None:
    rig, name = two_clusters_clean, _name("ids")
    job_id = _colliding_pair(rig, name)
    for cluster in (ALPHA, BETA):
        assert rig.show_job(job_id, cluster=cluster)["JobName"] == name
    listed = rig.run(["squeue", "-M", "all", "--noheader", f"--name={name}", "--Format=Cluster:|,JobID:|,Name:"],
                     check=True).stdout
    assert listed == f"sdalpha|{job_id}|{name}\nsdbeta|{job_id}|{name}\n"  # two pending jobs, one id


def test_scontrol_takes_one_cluster(two_clusters_clean: TwoClusters) -> None:
    rig, name = two_clusters_clean, _name("nice")
    job_id = _colliding_pair(rig, name)
    done = rig.run(["scontrol", "-M", BETA, "update", f"JobId={job_id}", "Nice=5"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert _field(rig, job_id, "Nice", cluster=BETA) == "5"
    assert _field(rig, job_id, "Nice", cluster=ALPHA) == "0"  # the same id on sdalpha is another job

    fatal = "scontrol: fatal: Only one cluster can be used at a time with scontrol\n"
    for clusters in (f"{ALPHA},{BETA}", "all"):
        refused = rig.run(["scontrol", "-M", clusters, "update", f"JobId={job_id}", "Nice=7"])
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", fatal), clusters
    shown = rig.run(["scontrol", "-M", f"{ALPHA},{BETA}", "show", "job", job_id])
    assert (shown.returncode, shown.stderr) == (1, fatal)
    assert _field(rig, job_id, "Nice", cluster=BETA) == "5"


def test_scancel_with_clusters(two_clusters_clean: TwoClusters) -> None:
    rig, name = two_clusters_clean, _name("cancel")
    first = _colliding_pair(rig, name)
    rig.run(["scancel", "-M", BETA, first], check=True)
    rig.wait_for(lambda: _state_is(rig, first, "CANCELLED", cluster=BETA), what=f"sdbeta's job {first}")
    assert _field(rig, first, "JobState", cluster=ALPHA) == "PENDING"

    # one id, two clusters: the id is cancelled on each of them
    second = _colliding_pair(rig, f"{name}-2")
    rig.run(["scancel", "-M", f"{ALPHA},{BETA}", second], check=True)
    rig.wait_for(lambda: all(_state_is(rig, second, "CANCELLED", cluster=c) for c in (ALPHA, BETA)),
                 what=f"job {second} cancelled on both clusters")

    # by name, on both clusters
    assert _field(rig, first, "JobState", cluster=ALPHA) == "PENDING"
    rig.run(["scancel", "-M", f"{ALPHA},{BETA}", f"--name={name}"], check=True)
    rig.wait_for(lambda: _state_is(rig, first, "CANCELLED", cluster=ALPHA), what=f"sdalpha's job {first}")
    left = rig.run(["squeue", "-M", "all", "--noheader", f"--name={name}", "--format=%i"], check=True)
    assert left.stdout == ""


def test_sinfo_with_clusters(two_clusters_clean: TwoClusters) -> None:
    out = two_clusters_clean.run(["sinfo", "-M", "all", "--format=%P|%a|%D|%N"], check=True).stdout
    assert out == (
        "CLUSTER: sdalpha\nPARTITION|AVAIL|NODES|NODELIST\ndebug*|up|2|alpha[1-2]\nshort|up|2|alpha[1-2]\n\n"
        "CLUSTER: sdbeta\nPARTITION|AVAIL|NODES|NODELIST\ndebug*|up|2|beta[1-2]\nshort|up|2|beta[1-2]\n"
    )
    nodes = two_clusters_clean.run(["sinfo", "-M", "all", "-N", "--noheader", "--format=%N|%f"], check=True).stdout
    assert sorted(set(nodes.splitlines())) == [
        "alpha1|instancetype=a1.small", "alpha2|instancetype=a1.large",
        "beta1|instancetype=a1.small", "beta2|instancetype=a1.large",
    ]
    # Slurm 22.05.8: the default format with --noheader and more than one cluster dies of SIGSEGV, saying nothing.
    crashed = two_clusters_clean.run(["sinfo", "-M", "all", "--noheader"])
    assert (crashed.returncode, crashed.stdout, crashed.stderr) == (-11, "", "")


def test_an_unknown_cluster_in_a_list_is_skipped(two_clusters: TwoClusters) -> None:
    listed = two_clusters.run(["squeue", "-M", f"{ALPHA},nosuch", "--format=%i", "--name=nothing-has-this-name"])
    assert (listed.returncode, listed.stdout) == (0, "CLUSTER: sdalpha\nJOBID\n")
    assert listed.stderr == "squeue: error: No cluster 'nosuch' known by database.\n"
    alone = two_clusters.run(["squeue", "-M", "nosuch"])
    assert alone.returncode == 1
    assert "squeue: error: 'nosuch' can't be reached now" in alone.stderr


def test_a_stopped_cluster_is_left_out_silently(two_clusters: TwoClusters) -> None:
    unreachable = (
        "squeue: error: 'sdbeta' can't be reached now, or it is an invalid entry for --cluster.  "
        "Use 'sacctmgr list clusters' to see available clusters.\n"
    )
    two_clusters.stop_slurmctld(BETA)
    try:
        both = two_clusters.run(["squeue", "-M", f"{ALPHA},{BETA}", "--format=%i", "--name=nothing-has-this-name"])
        assert (both.returncode, both.stdout, both.stderr) == (0, "CLUSTER: sdalpha\nJOBID\n", "")
        registered = two_clusters.run(["sacctmgr", "--noheader", "--parsable2", "show", "cluster",
                                       "format=cluster,controlhost,controlport"], check=True).stdout
        assert "sdbeta||0\n" in registered, registered  # slurmctld deregistered itself on the way out
        alone = two_clusters.run(["squeue", "-M", BETA])
        assert (alone.returncode, alone.stderr) == (1, unreachable)
    finally:
        two_clusters.start()
    assert two_clusters.run(["squeue", "-M", BETA, "--noheader"]).returncode == 0


def test_without_slurmdbd_only_the_local_cluster_answers(two_clusters: TwoClusters) -> None:
    two_clusters.stop_slurmdbd()
    try:
        with_m = two_clusters.run(["squeue", "-M", f"{ALPHA},{BETA}", "--noheader"])
        assert with_m.returncode == 1
        assert "Problem talking to database" in with_m.stderr, with_m.stderr
        local = two_clusters.run(["squeue", "--noheader", "--name=nothing-has-this-name"])
        assert (local.returncode, local.stdout) == (0, "")
    finally:
        two_clusters.start()
    assert two_clusters.run(["squeue", "-M", "all", "--noheader"]).returncode == 0


def test_each_cluster_conf_reaches_both(two_clusters: TwoClusters) -> None:
    for local in (ALPHA, BETA):
        out = two_clusters.run(["squeue", "-M", "all", "--format=%i", "--name=nothing-has-this-name"],
                               cluster=local, check=True).stdout
        assert out == "CLUSTER: sdalpha\nJOBID\n\nCLUSTER: sdbeta\nJOBID\n", local
    assert os.path.basename(two_clusters.env(BETA)["SLURM_CONF"]) == "sdbeta.conf"
