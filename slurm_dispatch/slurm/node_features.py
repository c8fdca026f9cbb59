"""The node-type feature step: make Slurm accept ``--constraint=instancetype=<name>`` for every InstanceType.

Port of services/crunch-dispatch-slurm/node_type.go (``loadNodeTypes`` and its caller in
crunch-dispatch-slurm.go). With InstanceTypes configured, a template that asks for
``--constraint=instancetype=%I`` would be refused by sbatch ("Invalid feature specification") until some node
has that feature. Go therefore keeps the features of one node, ``compute0``, equal to the whole instance-type
list, every 2 s, so that Slurm knows every feature before any node of that type has booted. Only meaningful
with InstanceTypes; with none configured the step never runs.

``wanted_features`` is pure; ``sync_node_features`` runs one pass; ``keep_node_features`` loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from slurm_dispatch.errors import DispatchError
from slurm_dispatch.settings import Settings

logger = logging.getLogger("slurm_dispatch.slurm.node_features")

NODE_FEATURES_PERIOD_S = 2.0
"""How often the step runs (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: every 2 s, as Go)."""

FEATURE_NODE = "compute0"
"""The node whose features Go's dispatcher keeps in line with InstanceTypes (hard-coded there too)."""


@runtime_checkable
class NodeFeatureCLI(Protocol):
    """The two admin-side Slurm commands the step needs; ``SlurmCLI`` implements them. Both block."""

    def sinfo_features(self, node: str) -> list[str]:
        """Return the features of ``node`` (sinfo)."""
        ...

    def set_node_features(self, node: str, features: Sequence[str]) -> None:
        """Set the features of ``node`` (scontrol update NodeName=...)."""
        ...


def wanted_features(settings: Settings) -> list[str]:
    """Return ``instancetype=<name>`` for every configured instance type, sorted. Pure.

    Go builds the list from a map, in random order, so its comparison with sinfo can trigger a needless update
    once per start; sorting makes the comparison stable.
    """
    return sorted(f"instancetype={name}" for name in settings.instance_types)


async def sync_node_features(cli: NodeFeatureCLI, settings: Settings, *, node: str = FEATURE_NODE) -> None:
    """One pass of the step: set ``node``'s features to the instance-type list if they differ.

    Blocks (in threads) on sinfo and, when needed, scontrol.

    Raises:
        DispatchError: a Slurm command failed.
    """
    want = wanted_features(settings)
    have = await asyncio.to_thread(cli.sinfo_features, node)
    if sorted(have) != want:
        await asyncio.to_thread(cli.set_node_features, node, want)


async def keep_node_features(
    cli: NodeFeatureCLI,
    settings: Settings,
    *,
    node: str = FEATURE_NODE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run the step every ``NODE_FEATURES_PERIOD_S``, until cancelled. Blocks.

    Errors are logged when they change, and the step is retried at the next period.
    """
    last_error = ""
    while True:
        try:
            await sync_node_features(cli, settings, node=node)
            last_error = ""
        except DispatchError as exc:
            if str(exc) != last_error:
                logger.warning("updating the features of node %s: %s", node, exc)
                last_error = str(exc)
        await sleep(NODE_FEATURES_PERIOD_S)


__all__ = [
    "FEATURE_NODE",
    "NODE_FEATURES_PERIOD_S",
    "NodeFeatureCLI",
    "keep_node_features",
    "sync_node_features",
    "wanted_features",
]
