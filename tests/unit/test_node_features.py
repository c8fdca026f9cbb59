"""The node-type feature step, with a stand-in for SlurmCLI's two admin methods.

Go's is services/crunch-dispatch-slurm/node_type.go: SlurmNodeTypeFeatureKludge, slurmKludge.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slurm_dispatch.settings import InstanceType, Settings
from slurm_dispatch.slurm.node_features import keep_node_features, wanted_features


class FeatureCLI:
    def __init__(self, features: list[str]) -> None:
        self.features = features
        self.updates: list[tuple[str, list[str]]] = []
        self.asked = asyncio.Event()

    def sinfo_features(self, node: str) -> list[str]:
        return list(self.features)

    def set_node_features(self, node: str, features: Any) -> None:
        self.updates.append((node, list(features)))
        self.features = list(features)


def _settings(*names: str) -> Settings:
    return Settings(instance_types={n: InstanceType(name=n) for n in names})


def test_wanted_features_are_sorted_instance_types() -> None:
    assert wanted_features(_settings("b2.large", "a1.small")) == ["instancetype=a1.small", "instancetype=b2.large"]


class _Stop(Exception):
    pass


def _one_pass(cli: FeatureCLI, settings: Settings) -> None:
    """Run the loop until its first sleep (after exactly one pass), which ends it."""

    async def stop_at_sleep(seconds: float) -> None:
        assert seconds == 2.0
        raise _Stop

    try:
        asyncio.run(keep_node_features(cli, settings, sleep=stop_at_sleep))  # type: ignore[arg-type]
    except _Stop:
        return
    raise AssertionError("the loop ended without sleeping")


def test_features_are_set_when_they_differ() -> None:
    cli = FeatureCLI(["instancetype=a1.small"])
    _one_pass(cli, _settings("a1.small", "a1.large"))
    assert cli.updates == [("compute0", ["instancetype=a1.large", "instancetype=a1.small"])]


def test_nothing_is_done_when_the_features_match_in_another_order() -> None:
    cli = FeatureCLI(["instancetype=b", "instancetype=a"])
    _one_pass(cli, _settings("a", "b"))
    assert cli.updates == []
