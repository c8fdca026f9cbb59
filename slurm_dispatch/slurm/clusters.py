"""Which Slurm clusters the jobs go to, and the ``--clusters`` every other Slurm command then needs. Pure.

A site with several Slurm clusters (a multi-cluster set-up through slurmdbd) may send the dispatcher's jobs to
another cluster with ``--clusters=<names>`` (``-M``) in SbatchArgumentsList, as Arvados's upgrade notes show with
``--clusters=all``. sbatch then submits there, but a plain squeue, scancel or scontrol only looks at the local
cluster: the job seems to vanish and the container loops through unlock and resubmit (Go's crunch-dispatch-slurm
has this trap). So every squeue, scancel, sinfo and scontrol the service or an admin command runs carries the same
clusters (squeue(1), scancel(1), sinfo(1): ``-M, --clusters=<string>``, a comma-separated list or ``all``).
scontrol takes one cluster only (scontrol(1)): a command about one job names that job's cluster, as squeue printed
it. ``SLURM_CLUSTERS`` (the documented environment form of ``--clusters``, which every Slurm command reads) and
sbatch's ``SBATCH_CLUSTERS`` count too, from SbatchEnvironmentVariables or the service's own environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.sbatch_options import read_args

CLUSTER_OPTION = "--clusters"
"""The long form of ``-M`` in sbatch, squeue, scancel, sinfo and scontrol."""

SPREAD_PROGRAMS = frozenset({"squeue", "scancel", "sinfo", "sacct"})
"""Programs that take a list of clusters (or ``all``)."""

ONE_CLUSTER_PROGRAMS = frozenset({"scontrol"})
"""Programs that take exactly one cluster."""


def template_clusters(args: Sequence[str]) -> list[str]:
    """Return the clusters named in sbatch arguments, in order, each once. Pure.

    In any form sbatch reads (``slurm.sbatch_options.read_args``): ``--clusters=a,b``, ``--clusters a``,
    ``--cluster=a``, ``-Ma``, ``-M a``, and ``M`` in a run of short options (``-HM a``, ``-HMa``). No prefix
    of ``--clusters`` or ``--cluster`` names one option (``--clu`` could also be ``--cluster-constraint``):
    sbatch refuses them.
    """
    found: list[str] = []
    for opt in read_args(args):
        if opt.name not in ("clusters", "cluster") or opt.value is None:
            continue
        for name in opt.value.split(","):
            name = name.strip()
            if name and name not in found:
                found.append(name)
    return found


CLUSTER_VARIABLES = ("SLURM_CLUSTERS", "SBATCH_CLUSTERS")
"""The environment's ``--clusters``: SLURM_CLUSTERS for every Slurm command, SBATCH_CLUSTERS for sbatch (sbatch(1),
squeue(1), scancel(1), scontrol(1): ENVIRONMENT VARIABLES)."""


def clusters_of(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return the clusters the dispatcher's jobs may go to: those its templates name (SbatchArgumentsList, the GPU
    list, the supervisors' list), and those ``CLUSTER_VARIABLES`` name in the environment the Slurm commands get
    (``environ``, the process's own, then SbatchEnvironmentVariables); ``()`` for the local cluster only.
    ``("all",)`` when any of them says ``all``. Pure.

    Every one counts, wherever sbatch would take it from: a SLURM_CLUSTERS in the service's own environment
    would otherwise send the jobs, and every scancel and renice by job id, to clusters the service does not
    name, and a job id there may be another user's job.
    """
    names = template_clusters([*settings.sbatch_arguments, *settings.sbatch_gpu_arguments,
                               *settings.supervisor_sbatch_arguments])
    env = {**(environ or {}), **settings.sbatch_environment}
    for variable in CLUSTER_VARIABLES:
        names += [n.strip() for n in env.get(variable, "").split(",") if n.strip() and n.strip() not in names]
    if "all" in names:
        return ("all",)
    return tuple(names)


def inherited_cluster_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``CLUSTER_VARIABLES`` set in ``environ`` (the service's own environment). Pure."""
    return [variable for variable in CLUSTER_VARIABLES if environ.get(variable, "").strip()]


CLUSTER_LINE_RE = re.compile(r"CLUSTER: ([A-Za-z0-9_.-]+)\s*\Z")
"""The line squeue and sinfo print before each cluster's rows with ``--clusters`` (unless ``--noheader``)."""


def clusters_in(output: str) -> list[str]:
    """Return the clusters whose ``CLUSTER:`` line is in squeue's output, in order. Pure."""
    return [m.group(1) for line in output.split("\n") if (m := CLUSTER_LINE_RE.match(line))]


def missing_clusters(output: str, clusters: Sequence[str], seen: Sequence[str] = ()) -> list[str]:
    """Return the clusters squeue should have answered for and did not. Pure.

    Measured on Slurm 22.05 with slurmdbd: a cluster whose slurmctld has stopped simply drops out of ``squeue
    --clusters=a,b``'s output, with exit status 0 and nothing on stderr, so its jobs would look gone. A cluster
    with no jobs still prints its ``CLUSTER:`` line. ``seen``: with ``all``, the clusters earlier polls showed.
    """
    present = set(clusters_in(output))
    wanted = [c for c in clusters if c != "all"] + [c for c in seen if c not in clusters]
    return [c for c in wanted if c not in present]


def several(clusters: Sequence[str]) -> bool:
    """True if a job id alone does not say which cluster a job is on (several clusters, or ``all``). Pure."""
    return len(clusters) > 1 or "all" in clusters


def with_clusters(argv: Sequence[str], clusters: Sequence[str], *, cluster: str = "") -> list[str]:
    """Return ``argv`` with the ``--clusters`` its program needs (``argv`` as is with no clusters, or for a program
    that needs none). ``cluster``: the one cluster a command about one job must name (for scontrol; for scancel by
    job id, where the same id may mean another job on another cluster). Pure.

    Raises:
        ValueError: scontrol, several clusters, and no ``cluster`` to choose.
    """
    if not clusters or not argv:
        return list(argv)
    program = argv[0]
    if program in ONE_CLUSTER_PROGRAMS or (cluster and program in SPREAD_PROGRAMS):
        chosen = cluster or (clusters[0] if len(clusters) == 1 and clusters[0] != "all" else "")
        if not chosen:
            raise ValueError(f"{program} needs one cluster and the jobs may be on any of {','.join(clusters)}")
        return [program, f"{CLUSTER_OPTION}={chosen}", *argv[1:]]
    if program in SPREAD_PROGRAMS:
        return [program, f"{CLUSTER_OPTION}={','.join(clusters)}", *argv[1:]]
    return list(argv)


def describe(clusters: Sequence[str]) -> str:
    """One line for ``config check``: where the jobs go and what the other commands then carry. Pure."""
    if not clusters:
        return "Slurm cluster: the local one (no --clusters in the sbatch arguments)"
    return (f"Slurm clusters: {','.join(clusters)} (named in the sbatch arguments): every squeue, scancel and sinfo "
            f"carries --clusters={','.join(clusters)}, and scontrol the cluster of the job it acts on")


def cluster_warnings(settings: Settings) -> list[str]:
    """What does not work across several clusters with these settings, for ``config check`` and the startup log.
    Pure."""
    clusters = clusters_of(settings)
    if not several(clusters):
        return []
    named = ",".join(clusters)
    found: list[str] = []
    if settings.instance_types:
        found.append(f"the jobs may go to any of the clusters {named}: the node-feature step (InstanceTypes) acts on "
                     "one cluster and will fail; name one cluster in --clusters, or set the features by hand")
    if settings.broken_node_action == "drain":
        found.append(f"the jobs may go to any of the clusters {named}: BrokenNodes.Action drain cannot tell which "
                     "cluster a broken node is in and will fail (new jobs still avoid the node with --exclude)")
    if settings.broken_node_action in ("drain", "exclude"):
        # Slurm refuses a job that excludes a node its cluster does not have, or sends it to the cluster that has it
        # (measured on 22.05 with two clusters: "Invalid node name specified")
        found.append(f"the jobs may go to any of the clusters {named}: a broken node in one of them is added to every "
                     "sbatch's --exclude, which sends the jobs to that node's cluster or makes sbatch refuse them; set "
                     "BrokenNodes.Action to none")
    if "all" in clusters:
        found.append("--clusters=all: a cluster whose slurmctld does not answer when the service starts is not known "
                     "to be missing from squeue's answer, and its jobs would look gone; name the clusters instead")
    return found


__all__ = [
    "CLUSTER_LINE_RE",
    "CLUSTER_OPTION",
    "CLUSTER_VARIABLES",
    "cluster_warnings",
    "clusters_in",
    "clusters_of",
    "describe",
    "inherited_cluster_variables",
    "missing_clusters",
    "several",
    "template_clusters",
    "with_clusters",
]
