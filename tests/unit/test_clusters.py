"""Several Slurm clusters: which ones the templates name, what every other command then carries, and squeue's
``CLUSTER:`` lines. Pure (the real two-cluster set-up is tests/integration/test_two_clusters*.py)."""

from __future__ import annotations

import pytest

from slurm_dispatch.assemble import service_slurm_cli
from slurm_dispatch.model import SlurmJob
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings
from slurm_dispatch.slurm.clusters import (
    cluster_warnings,
    clusters_of,
    inherited_cluster_variables,
    missing_clusters,
    template_clusters,
    with_clusters,
)
from slurm_dispatch.slurm.priority import Renice, renice_commands
from slurm_dispatch.slurm.squeue_lines import parse_squeue_all


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([], []),
        (["--job-name=%U", "--mem=%M"], []),
        (["--clusters=beta"], ["beta"]),
        (["--cluster=beta"], ["beta"]),
        (["--clusters", "alpha,beta"], ["alpha", "beta"]),
        (["-M", "beta"], ["beta"]),
        (["-Mbeta,gamma"], ["beta", "gamma"]),
        (["--clusters=all"], ["all"]),
        (["--clusters=beta", "-M", "beta,alpha"], ["beta", "alpha"]),
        (["--mem=%M", "--clusters="], []),
        pytest.param(["-HM", "beta"], ["beta"], id="M-in-a-run-of-short-options"),
        pytest.param(["-HMbeta,gamma"], ["beta", "gamma"], id="M-in-a-run-joined"),
        pytest.param(["--comment", "-Mbeta"], [], id="another-options-value"),
        pytest.param(["--clu=beta"], [], id="ambiguous-prefix-sbatch-refuses"),
        pytest.param(["-M=beta"], ["=beta"], id="short-equals-is-part-of-the-value-as-sbatch-reads-it"),
    ],
)
def test_template_clusters(args: list[str], names: list[str]) -> None:
    assert template_clusters(args) == names


def test_clusters_of_counts_the_cluster_variables_of_the_services_own_environment() -> None:
    """sbatch, squeue, scancel and scontrol read SLURM_CLUSTERS (sbatch also SBATCH_CLUSTERS) from the environment
    the service gives them, its own included: left out, the jobs went there while scancel by job id named no
    cluster, and hit the job of that id on every cluster, another user's among them (seen with two clusters)."""
    assert clusters_of(Settings(), {"SLURM_CLUSTERS": "alpha,beta", "PATH": "/usr/bin"}) == ("alpha", "beta")
    assert clusters_of(Settings(), {"SBATCH_CLUSTERS": "gamma"}) == ("gamma",)
    assert clusters_of(Settings(sbatch_environment={"SLURM_CLUSTERS": "beta"}), {"SLURM_CLUSTERS": "alpha"}) == (
        "beta",), "SbatchEnvironmentVariables replace the inherited value, as in the commands' environment"
    assert clusters_of(Settings(sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "-M", "delta")),
                       {"SLURM_CLUSTERS": "alpha"}) == ("delta", "alpha")
    assert inherited_cluster_variables({"SLURM_CLUSTERS": "a", "SBATCH_CLUSTERS": " ", "X": "y"}) == ["SLURM_CLUSTERS"]


def test_the_service_backend_names_the_clusters_of_its_own_environment() -> None:
    cli = service_slurm_cli(Settings(cluster_id="zzzzz"), {"PATH": "/usr/bin", "SLURM_CLUSTERS": "alpha,beta"})
    assert cli.clusters == ("alpha", "beta")
    assert with_clusters(["scancel", "--quiet", "10"], cli.clusters, cluster="beta") == [
        "scancel", "--clusters=beta", "--quiet", "10"]


def test_clusters_of_reads_every_template_and_the_environment() -> None:
    assert clusters_of(Settings()) == ()
    assert clusters_of(Settings(sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--clusters=beta"))) == ("beta",)
    assert clusters_of(Settings(supervisor_sbatch_arguments=("-M", "gamma"),
                                sbatch_environment={"SLURM_CLUSTERS": "beta, delta"})) == ("gamma", "beta", "delta")
    assert clusters_of(Settings(sbatch_arguments=("--clusters=beta,all",))) == ("all",)


@pytest.mark.parametrize(
    ("argv", "clusters", "cluster", "expected"),
    [
        (["squeue", "--all"], (), "", ["squeue", "--all"]),
        (["squeue", "--all"], ("a", "b"), "", ["squeue", "--clusters=a,b", "--all"]),
        (["scancel", "--name=x"], ("all",), "", ["scancel", "--clusters=all", "--name=x"]),
        (["scancel", "12"], ("a", "b"), "b", ["scancel", "--clusters=b", "12"]),
        (["sinfo", "-N"], ("a",), "", ["sinfo", "--clusters=a", "-N"]),
        (["scontrol", "update", "JobId=1", "Nice=2"], ("a",), "", ["scontrol", "--clusters=a", "update", "JobId=1",
                                                                     "Nice=2"]),
        (["scontrol", "update", "JobId=1", "Nice=2"], ("a", "b"), "b", ["scontrol", "--clusters=b", "update",
                                                                          "JobId=1", "Nice=2"]),
        (["sbatch", "--clusters=a"], ("a",), "", ["sbatch", "--clusters=a"]),
    ],
)
def test_with_clusters(argv: list[str], clusters: tuple[str, ...], cluster: str, expected: list[str]) -> None:
    assert with_clusters(argv, clusters, cluster=cluster) == expected


@pytest.mark.parametrize("clusters", [("a", "b"), ("all",)])
def test_scontrol_needs_one_cluster(clusters: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="one cluster"):
        with_clusters(["scontrol", "update", "JobName=x", "Nice=1"], clusters)


# What squeue --clusters=sdalpha,sdbeta --all --format=... prints on Slurm 22.05 (docs/test-cluster.md, "Two
# clusters"): each cluster's name, its column titles, its rows, a blank line; a cluster with no jobs still gets its
# two lines, and the same job id on both clusters names two jobs.
TWO_CLUSTERS = """\
CLUSTER: sdalpha
JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON
11|0|100|PENDING|UNLIMITED||zzzzz-dz642-aaaaaaaaaaaaaaa|Priority

CLUSTER: sdbeta
JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON
11|0|100|RUNNING|UNLIMITED|beta1|zzzzz-dz642-bbbbbbbbbbbbbbb|None

CLUSTER: sdgamma
JOBID|NICE|PRIORITY|STATE|TIME_LEFT|NODELIST|NAME|REASON
"""


def test_squeue_cluster_lines_give_each_job_its_cluster_and_titles_are_skipped() -> None:
    jobs, errors = parse_squeue_all(TWO_CLUSTERS)
    assert errors == []
    assert [(j.job_id, j.cluster) for j in jobs] == [("11", "sdalpha"), ("11", "sdbeta")]


def test_a_cluster_missing_from_squeue_s_answer_is_found() -> None:
    """A stopped slurmctld's cluster drops out of the answer, exit 0: its jobs must not look gone."""
    assert missing_clusters(TWO_CLUSTERS, ("sdalpha", "sdbeta", "sdgamma")) == []
    assert missing_clusters(TWO_CLUSTERS, ("sdalpha", "sddelta")) == ["sddelta"]
    assert missing_clusters(TWO_CLUSTERS, ("all",), seen=("sdalpha", "sdepsilon")) == ["sdepsilon"]
    assert missing_clusters("", ("all",)) == []


def test_renices_are_grouped_by_cluster_too() -> None:
    jobs = {n: SlurmJob(name=n, nice=0, slurm_priority=1, state="PENDING", reason="None", job_id=i, cluster=c)
            for n, i, c in (("a", "11", "alpha"), ("b", "11", "beta"), ("c", "12", "alpha"))}
    assert renice_commands([("a", 5), ("b", 5), ("c", 5)], jobs) == [
        Renice(nice=5, job_ids=("11", "12"), cluster="alpha"), Renice(nice=5, job_ids=("11",), cluster="beta")]


def test_what_cannot_work_across_clusters_is_said() -> None:
    one = Settings(sbatch_arguments=("--clusters=beta",), broken_node_action="drain")
    assert cluster_warnings(one) == []
    several = Settings(sbatch_arguments=("--clusters=alpha,beta",), broken_node_action="drain")
    assert [w.split(":")[1].strip().split()[0] for w in cluster_warnings(several)] == ["BrokenNodes.Action", "a"]
    assert "--exclude" in cluster_warnings(several)[1] and "set BrokenNodes.Action to none" in cluster_warnings(
        several)[1]
    assert cluster_warnings(Settings(sbatch_arguments=("--clusters=alpha,beta",), broken_node_action="none")) == []
    every = cluster_warnings(Settings(sbatch_arguments=("-M", "all"), broken_node_action="none"))
    assert len(every) == 1 and every[0].startswith("--clusters=all: a cluster whose slurmctld does not answer")
