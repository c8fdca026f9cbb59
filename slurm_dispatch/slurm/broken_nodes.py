"""Nodes crunch-run reported broken, and how to keep new jobs off them.

crunch-run detects a node that cannot run containers (a dead container engine, "no space left on device") and
runs its ``--broken-node-hook`` (lib/crunchrun/crunchrun.go: checkBrokenNode, runBrokenNodeHook); on Slurm nothing
reads that, so the node keeps taking jobs and failing them until containers run out of dispatch attempts.
crunch-run-wrapper (docs/crunch-run-wrapper.md) passes itself as the hook and marks the job's Slurm Comment
``slurm-dispatch:broken-node:<node>``; the runner reads the Comment when such a job ends (``reasons.JobEnd``) and
reports the node here. Then, by ``BrokenNodes.Action``:

* ``exclude`` (the default): every new sbatch gets ``--exclude=<nodes>`` (merged with the template's own) for
  ``BrokenNodes.Hold`` (default an hour), after which the node gets a new chance;
* ``drain``: the service drains the node in Slurm (``scontrol update NodeName=<node> State=DRAIN Reason=...``; it
  needs Slurm admin rights), and excludes it too until the drain is confirmed by an admin's resume;
* ``none``: only record it (``slurm-dispatch status`` and the metrics show it).

The registry itself is pure state on an injected wall clock; persistence is the caller's (``persist``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

BROKEN_NODE_MARK = "slurm-dispatch:broken-node"
"""The start of the Slurm job Comment crunch-run-wrapper sets when crunch-run reports the node broken."""


@dataclass(frozen=True)
class BrokenNode:
    """A node crunch-run reported broken."""

    node: str
    since: float
    """Wall-clock seconds when it was reported."""
    reason: str

    def until(self, hold_s: float) -> float | None:
        """Wall-clock seconds when the hold ends (None: a hold of 0 or less never ends). Pure."""
        return self.since + hold_s if hold_s > 0 else None

    def shown(self, hold_s: float, now: float) -> dict[str, float | str | None]:
        """The node as ``status`` and the management API show it: since, reason, until, hold_left_s. Pure."""
        until = self.until(hold_s)
        return {"since": self.since, "reason": self.reason, "until": until,
                "hold_left_s": None if until is None else max(0.0, until - now)}

    def held(self, hold_s: float, now: float) -> bool:
        """True while the hold lasts. Pure."""
        until = self.until(hold_s)
        return until is None or now < until


def broken_node_of(comment: str, nodes: str) -> str | None:
    """Return the node a job's Comment reports broken, or None. Pure.

    The Comment is ``slurm-dispatch:broken-node:<node>``; without a node name, the job's own node list is used
    when it names exactly one node.
    """
    if not comment.startswith(BROKEN_NODE_MARK):
        return None
    named = comment[len(BROKEN_NODE_MARK):].lstrip(":").strip()
    if named:
        return named.split()[0]
    return nodes if nodes and "," not in nodes and "[" not in nodes else None


def with_exclude(args: Sequence[str], nodes: Sequence[str]) -> list[str]:
    """Return sbatch ``args`` with ``nodes`` added to their ``--exclude`` (one is added if there is none). Pure.

    sbatch takes the last ``--exclude``, in any of its forms (``--exclude=L``, ``--exclude L``, ``-xL``, ``-x L``):
    that one gets the nodes, so the site's own exclusions stay whatever form the template writes them in.
    """
    if not nodes:
        return list(args)
    out = list(args)
    for i in range(len(out) - 1, -1, -1):
        arg = out[i]
        for prefix in ("--exclude=", "-x"):
            if arg.startswith(prefix) and len(arg) > len(prefix):
                out[i] = prefix + _merged(arg[len(prefix):], nodes)
                return out
        if arg in ("--exclude", "-x") and i + 1 < len(out):
            out[i + 1] = _merged(out[i + 1], nodes)
            return out
    return [*out, "--exclude=" + ",".join(nodes)]


def _merged(listed: str, nodes: Sequence[str]) -> str:
    have = [n for n in listed.split(",") if n]
    return ",".join([*have, *(n for n in nodes if n not in have)])


class BrokenNodes:
    """The nodes reported broken, each for ``hold_s`` seconds. Not thread-safe: use it from one event loop."""

    def __init__(
        self,
        *,
        action: str,
        hold_s: float,
        clock: Callable[[], float],
        known: Mapping[str, BrokenNode] | None = None,
        persist: Callable[[dict[str, BrokenNode]], None] | None = None,
    ) -> None:
        self.action = action
        self.hold_s = hold_s
        """How long a node is held off after its report (0 or less: until an admin forgets it)."""
        self._clock = clock
        self._nodes: dict[str, BrokenNode] = dict(known or {})
        self._persist = persist

    def report(self, node: str, reason: str) -> bool:
        """Record ``node`` as broken; return True if it was not already. Calls ``persist`` when it changes."""
        self.expire()
        new = node not in self._nodes
        self._nodes[node] = BrokenNode(node=node, since=self._clock(), reason=reason)
        if self._persist is not None:
            self._persist(dict(self._nodes))
        return new

    def expire(self) -> None:
        """Forget the nodes reported longer than the hold ago."""
        now = self._clock()
        stale = [n for n, b in self._nodes.items() if not b.held(self.hold_s, now)]
        for node in stale:
            del self._nodes[node]
        if stale and self._persist is not None:
            self._persist(dict(self._nodes))

    def current(self) -> dict[str, BrokenNode]:
        """Return the nodes currently held off (or recorded), by name."""
        self.expire()
        return dict(self._nodes)

    def shown(self) -> dict[str, dict[str, float | str | None]]:
        """Return the nodes held off, as ``status`` and the management API show them (``BrokenNode.shown``)."""
        now = self._clock()
        return {n: b.shown(self.hold_s, now) for n, b in sorted(self.current().items())}

    def excluded(self) -> list[str]:
        """Return the nodes new jobs must avoid (sorted; empty with action ``none``)."""
        return [] if self.action == "none" else sorted(self.current())


__all__ = ["BROKEN_NODE_MARK", "BrokenNode", "BrokenNodes", "broken_node_of", "with_exclude"]
