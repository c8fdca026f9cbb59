"""Nodes crunch-run reported broken, and how to keep new jobs off them.

crunch-run detects a node that cannot run containers (a dead container engine, "no space left on device") and
runs its ``--broken-node-hook`` (lib/crunchrun/crunchrun.go: checkBrokenNode, runBrokenNodeHook); on Slurm nothing
reads that, so the node keeps taking jobs and failing them until containers run out of dispatch attempts.
crunch-run-wrapper (docs/crunch-run-wrapper.md) passes itself as the hook and marks the job's Slurm Comment
``slurm-dispatch:broken-node:<node>``; the runner reads the Comment when such a job ends (``reasons.JobEnd``) and
reports the node here, if it is one of that job's own nodes (a job's owner can set its Comment to anything:
``broken_node_in``). Then, by ``BrokenNodes.Action``:

* ``exclude`` (the default): every new sbatch gets ``--exclude=<nodes>`` (merged with the template's own) for
  ``BrokenNodes.Hold`` (default an hour), after which the node gets a new chance;
* ``drain``: the service drains the node in Slurm (``scontrol update NodeName=<node> State=DRAIN Reason=...``; it
  needs Slurm admin rights), and excludes it too until the drain is confirmed by an admin's resume;
* ``none``: only record it (``slurm-dispatch status`` and the metrics show it).

The registry itself is pure state on an injected wall clock; persistence is the caller's (``persist``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from slurm_dispatch.slurm.sbatch_options import read_args, with_value

BROKEN_NODE_MARK = "slurm-dispatch:broken-node"
"""The Slurm job Comment crunch-run-wrapper sets when crunch-run reports the node broken, then ``:<node>``."""

NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""One node name, as crunch-run-wrapper/crunch_run_wrapper.py (NODE_NAME_RE) writes it: no hostlist brackets,
commas or spaces, which would make ``--exclude`` or a drain cover other nodes."""

_HOSTLIST_ITEM_RE = re.compile(r"([^\[\],]*)\[([0-9,-]+)\]([^\[\],]*)\Z")
"""One item of a Slurm hostlist with one bracket group: prefix, ranges, suffix (``c[1-3,7]``, ``rack1-n[01-16]``)."""


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


def in_hostlist(node: str, hostlist: str) -> bool | None:
    """Return whether ``node`` is one of the nodes of a Slurm hostlist (``c1``, ``c[1-3,07],gpu2``). Pure.

    Understands items with at most one bracket group of numbers and ranges; a zero-padded range (``[01-10]``)
    names zero-padded nodes, as Slurm's hostlist.c prints them. None: the list has an item of another shape
    (several bracket groups), so the answer is unknown.
    """
    items = re.findall(r"(?:[^,\[]|\[[^\]]*\])+", hostlist)
    if ",".join(items) != hostlist:  # unbalanced brackets, empty items: not a list Slurm writes
        return None
    unknown = False
    for item in items:
        if "[" not in item:
            if item == node:
                return True
            continue
        parts = _HOSTLIST_ITEM_RE.match(item)
        if parts is None:
            unknown = True
            continue
        prefix, ranges, suffix = parts.groups()
        number = re.match(re.escape(prefix) + r"([0-9]+)" + re.escape(suffix) + r"\Z", node)
        if number is None:
            continue
        digits = number.group(1)
        for one in ranges.split(","):
            low, _, high = one.partition("-")
            if low.isdigit() and (high or low).isdigit() and int(low) <= int(digits) <= int(high or low) \
                    and digits == digits.lstrip("0").zfill(len(low)):
                return True
    return None if unknown else False


def broken_node_in(comment: str, nodes: str) -> tuple[str | None, str]:
    """Return the node a job's Comment reports broken (or None), and why the Comment is refused ("" if it is not).
    Pure.

    The Comment must be ``slurm-dispatch:broken-node:<node>``: exactly that prefix, then one node name that is
    among the job's own ``nodes`` (its NodeList, a hostlist): a job's owner can set its Comment, and must not be
    able to get another node excluded or drained. Plain ``slurm-dispatch:broken-node`` (or with nothing after
    the colon) means the job's node, when it ran on exactly one. A Comment that does not start with the mark is
    not ours: (None, "").
    """
    if not comment.startswith(BROKEN_NODE_MARK):
        return None, ""
    rest = comment[len(BROKEN_NODE_MARK):]
    if rest and not rest.startswith(":"):
        return None, f"it does not have the form {BROKEN_NODE_MARK}:<node>"
    named = rest[1:].strip()
    if not nodes:
        return None, "Slurm does not say which nodes the job ran on"
    if not named:
        if NODE_NAME_RE.match(nodes):
            return nodes, ""
        return None, f"it names no node, and the job ran on several ({nodes})"
    if not NODE_NAME_RE.match(named):
        return None, f"{named[:80]!r} is not one node name"
    found = in_hostlist(named, nodes)
    if found is None:
        return None, f"cannot tell whether node {named} is one of the job's nodes ({nodes})"
    if not found:
        return None, f"it names node {named}, but the job ran on {nodes}"
    return named, ""


def with_exclude(args: Sequence[str], nodes: Sequence[str]) -> list[str]:
    """Return sbatch ``args`` with ``nodes`` added to their ``--exclude`` (one is added if there is none). Pure.

    sbatch takes the last ``--exclude``, in any form it reads (``slurm.sbatch_options.read_args``):
    ``--exclude=L``, ``--exclude L``, a prefix (``--exclud=L``; ``--exc`` is ambiguous with ``--exclusive``
    and sbatch refuses it), ``-xL``, ``-x L``, ``x`` in a run of short options (``-HxL``, ``-Hx L``). That one
    gets the nodes, so the site's own exclusions stay whatever form the template writes them in.
    """
    if not nodes:
        return list(args)
    excludes = [opt for opt in read_args(args) if opt.name == "exclude" and opt.value is not None]
    if excludes:
        return with_value(args, excludes[-1], _merged(excludes[-1].value or "", nodes))
    return [*args, "--exclude=" + ",".join(nodes)]


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


__all__ = ["BROKEN_NODE_MARK", "NODE_NAME_RE", "BrokenNode", "BrokenNodes", "broken_node_in",
           "in_hostlist", "with_exclude"]
