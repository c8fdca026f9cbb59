"""End to end on two real Slurm clusters (slurmdbd): jobs sent to another cluster with ``--clusters`` are followed
there, reniced and scancelled there, and a cluster that stops answering is no information, never "gone".

The dispatcher's local cluster is sdalpha (its SLURM_CONF); SbatchArgumentsList adds ``--clusters=sdbeta``. Without
the clusters carried to squeue and scancel, each job would seem to vanish right after sbatch, and its container would
be unlocked and submitted again and again (Go's crunch-dispatch-slurm has that trap).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from plugins.e2e import POLL_S, RunningDispatcher
from plugins.two_clusters import ALPHA, BETA, TwoClusters
from plugins.waiting import wait_until

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.sandbox.background import sandbox_settings
from slurm_dispatch.settings import Settings

# xdist_group: under pytest-xdist every test of the rig runs in one worker, which starts the rig once.
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("two_clusters")]


@dataclass
class World:
    """The emulator, the two clusters, and dispatchers whose local cluster is sdalpha and whose jobs go to sdbeta."""

    rig: TwoClusters
    control: Any
    settings: Settings
    api: ArvadosClient
    started: list[RunningDispatcher] = field(default_factory=list)

    def dispatcher(self) -> RunningDispatcher:
        d = RunningDispatcher(self.settings, self.rig.env(ALPHA)).start()
        self.started.append(d)
        return d

    def container(self, uuid: str) -> Container:
        return self.api.get(uuid)

    def jobs(self, cluster: str, name: str) -> list[dict[str, str]]:
        """``scontrol show job`` of every job named ``name`` that ``cluster``'s slurmctld knows."""
        return [j for j in (self.rig.show_job(i, cluster=cluster) for i in self.rig.job_ids(cluster))
                if j.get("JobName") == name]


@pytest.fixture
def world(emulator: Any, emulator_control: Any, two_clusters_clean: TwoClusters, tmp_path: Path) -> Iterator[World]:
    out = tmp_path / "slurm-out"
    out.mkdir()
    base = sandbox_settings(root_token=emulator.root_token, base_url=emulator.base_url, output_dir=out,
                            poll_interval=POLL_S)
    settings = replace(base, sbatch_arguments=(*base.sbatch_arguments, f"--clusters={BETA}"))
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=5)
    w = World(two_clusters_clean, emulator_control, settings, api)
    try:
        yield w
    finally:
        for d in w.started:
            d.stop()
        api.close()


def _container(world: World, *, seconds: float, priority: int = 5) -> str:
    record = world.control.create_container(priority=priority, command=["sleep", str(seconds)],
                                            runtime_constraints={"ram": 100_000_000, "vcpus": 1})
    return str(record["uuid"])


def test_a_job_sent_to_another_cluster_is_followed_there_to_the_end(world: World) -> None:
    uuid = _container(world, seconds=2)
    world.dispatcher()
    wait_until(lambda: world.container(uuid).state is ContainerState.COMPLETE, timeout=90, what="the container")
    assert world.container(uuid).lock_count == 1, "its job never looked gone: one lock, one job"
    assert world.jobs(ALPHA, uuid) == [], "nothing ran on the local cluster"


def test_a_cancelled_container_s_job_on_the_other_cluster_is_scancelled_and_reniced_there(world: World) -> None:
    for _ in range(2):  # both of sdbeta's nodes taken whole: our jobs pend there, where their nice shows
        blocker = world.rig.run(["sbatch", f"--clusters={BETA}", "--job-name=blocker", "--cpus-per-task=2",
                                 "--mem=10", "--output=/dev/null", "--wrap=sleep 600"], check=True)
        assert "on cluster sdbeta" in blocker.stdout
    first, second = _container(world, seconds=60, priority=5), _container(world, seconds=60, priority=9)
    world.dispatcher()
    wait_until(lambda: len(world.jobs(BETA, first)) == 1 and len(world.jobs(BETA, second)) == 1,
               what="both jobs on sdbeta")
    # the higher priority ends up with the lower nice: reniced on sdbeta (scontrol --clusters=sdbeta)
    wait_until(lambda: int(world.jobs(BETA, second)[0]["Nice"]) < int(world.jobs(BETA, first)[0]["Nice"]),
               what="the renice on sdbeta")
    world.control.set_priority(first, 0)
    wait_until(lambda: all(j["JobState"] == "CANCELLED" for j in world.jobs(BETA, first)),
               what="the scancel on sdbeta")
    assert world.container(second).lock_count == 1


@pytest.mark.parametrize("named", [BETA, f"{ALPHA},{BETA}"])
def test_a_cluster_that_stops_answering_is_no_information(world: World, named: str) -> None:
    """With one cluster named, squeue fails when it is down; with two, measured on 22.05, the stopped one just drops
    out of squeue's answer (exit 0): either way its running job must not look gone."""
    if "," in named:  # sbatch picks the cluster that can start the job first: fill sdalpha so that it is sdbeta
        world.settings = replace(world.settings, sbatch_arguments=(*world.settings.sbatch_arguments[:-1],
                                                                  f"--clusters={named}"))
        for _ in range(2):
            world.rig.run(["sbatch", f"--clusters={ALPHA}", "--job-name=blocker", "--cpus-per-task=2", "--mem=10",
                           "--output=/dev/null", "--wrap=sleep 600"], check=True)
    uuid = _container(world, seconds=600)
    d = world.dispatcher()
    wait_until(lambda: world.container(uuid).state is ContainerState.RUNNING, timeout=90, what="it to run")
    assert len(world.jobs(BETA, uuid)) == 1, "it runs on sdbeta"
    world.rig.stop_slurmctld(BETA)
    try:
        assert d.dispatch is not None
        polls = d.dispatch.squeue.polls_done
        wait_until(lambda: d.dispatch is not None and d.dispatch.squeue.polls_done >= polls + 6,
                   timeout=120, what="six squeue polls")
        current = world.container(uuid)
        assert (current.state, current.lock_count) == (ContainerState.RUNNING, 1), "not cancelled, not unlocked"
    finally:
        world.rig.start()
    world.control.set_priority(uuid, 0)
    wait_until(lambda: world.container(uuid).state is ContainerState.CANCELLED, timeout=90,
               what="the container to end once sdbeta answers again")
