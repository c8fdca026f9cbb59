"""With InstanceTypes, the node-type feature step runs before the first submission (we submit at once, Go one
PollInterval after start): otherwise the first --constraint=instancetype=X would be refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loop_helpers import run_loop_until
from plugins.fake_slurm import FakeSlurm

from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, InstanceType, Settings

GiB = 1 << 30


class RecordingFeatures:
    """sinfo/scontrol for node features; notes how many sbatch had run when the features were set."""

    def __init__(self, slurm: FakeSlurm) -> None:
        self.slurm = slurm
        self.features: list[str] = []
        self.submits_before_update: list[int] = []

    def sinfo_features(self, node: str) -> list[str]:
        time.sleep(0.5)  # a slow sinfo (a busy slurmctld): the dispatcher must not race ahead of it
        return list(self.features)

    def set_node_features(self, node: str, features: Any) -> None:
        self.submits_before_update.append(self.slurm.count("submit"))
        self.features = list(features)
        self.slurm.features = tuple(features)  # sbatch now accepts these constraints


def test_features_are_set_before_the_first_sbatch(emulator: Any, emulator_control: Any) -> None:
    fake_slurm = FakeSlurm(features=())  # no node has a feature yet: a constraint is refused until the step runs
    uuid = emulator_control.create_container(runtime_constraints={"ram": 100_000_000, "vcpus": 1})["uuid"]
    settings = Settings(
        controller_url=emulator.base_url, system_root_token=emulator.root_token, tls_insecure=True,
        poll_interval=0.2, crunch_run_command="crunch-run",
        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, "--constraint=instancetype=%I"),
        instance_types={"a1.small": InstanceType(name="a1.small", vcpus=2, ram=4 * GiB, included_scratch=100 * GiB)},
    )
    features = RecordingFeatures(fake_slurm)
    loop = DispatchLoop(settings, base_env={}, backend=fake_slurm, feature_cli=features)

    asyncio.run(run_loop_until(loop, lambda: uuid in fake_slurm.names()))
    assert features.features == ["instancetype=a1.small"]
    assert features.submits_before_update[:1] == [0], "the features went in before any sbatch"
    (submit,) = fake_slurm.calls_of("submit")
    assert "--constraint=instancetype=a1.small" in submit.args, "the first sbatch was the accepted one"
