"""Fault injection for the emulator's API paths (never the ``/_sandbox/`` control paths).

A rule matches requests by method and path prefix and does one of:

* ``status``: answer ``status`` (default 503) with an Arvados-shaped error body,
  without touching state (optionally with ``retry_after`` seconds);
* ``hang``: wait ``seconds``, then handle the request normally (a slow server:
  a client that times out may find its request applied anyway);
* ``drop``: close the connection without answering, before handling;
* ``drop_after``: handle the request (state changes!), then close without answering.

A rule applies to its next ``count`` matching requests (unlimited when absent),
with probability ``fraction`` (default 1, drawn from ``random.Random(seed)``), until
``duration`` seconds have passed (forever when absent). The first live matching
rule wins. Thread-safe; pure apart from the clock and the random draw.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from slurm_dispatch.sandbox.api.apierrors import ApiError

Mode = Literal["status", "hang", "drop", "drop_after"]
MODES: tuple[str, ...] = ("status", "hang", "drop", "drop_after")


@dataclass
class FaultRule:
    """One fault-injection rule; see the module docstring."""

    id: int
    mode: Mode
    status: int = 503
    seconds: float = 0.0
    count: int | None = None
    fraction: float = 1.0
    until: float | None = None
    method: str | None = None
    path_prefix: str | None = None
    retry_after: int | None = None

    def public(self) -> dict[str, Any]:
        """Return the rule as JSON-able data (for the control API)."""
        return {k: v for k, v in self.__dict__.items()}


def parse_rule(spec: Mapping[str, Any], *, rule_id: int, now: float) -> FaultRule:
    """Return the rule described by a ``POST /_sandbox/faults`` body. Pure.

    Raises:
        ApiError: 422 for an unknown mode or a bad field.
    """
    mode = spec.get("mode", "status")
    if mode not in MODES:
        raise ApiError(422, f"unknown fault mode {mode!r}; use one of {', '.join(MODES)}")
    try:
        duration = spec.get("duration")
        count = spec.get("count")
        return FaultRule(
            id=rule_id,
            mode=mode,
            status=int(spec.get("status", 503)),
            seconds=float(spec.get("seconds", 0.0)),
            count=None if count is None else int(count),
            fraction=float(spec.get("fraction", 1.0)),
            until=None if duration is None else now + float(duration),
            method=str(spec["method"]).upper() if spec.get("method") else None,
            path_prefix=str(spec["path_prefix"]) if spec.get("path_prefix") else None,
            retry_after=None if spec.get("retry_after") is None else int(spec["retry_after"]),
        )
    except (TypeError, ValueError) as exc:
        raise ApiError(422, f"bad fault spec: {exc}") from None


class Faults:
    """The active fault rules. Thread-safe.

    Args:
        clock: monotonic seconds (injected for tests).
        seed: seed of the ``fraction`` draws.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, seed: int | None = None):
        self._clock = clock
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected = 0

    def add(self, spec: Mapping[str, Any]) -> FaultRule:
        """Add a rule from its spec and return it.

        Raises:
            ApiError: 422 for a bad spec.
        """
        with self._lock:
            if spec.get("seed") is not None:
                self._random.seed(spec["seed"])
            rule = parse_rule(spec, rule_id=self._next_id, now=self._clock())
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        """Return the live rules as data."""
        with self._lock:
            now = self._clock()
            return [r.public() for r in self._rules if r.until is None or r.until > now]

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the rule to apply to this request (consuming one of its count), or None."""
        with self._lock:
            now = self._clock()
            self._rules = [r for r in self._rules if (r.until is None or r.until > now) and r.count != 0]
            for rule in self._rules:
                if rule.method and rule.method != method.upper():
                    continue
                if rule.path_prefix and not path.startswith(rule.path_prefix):
                    continue
                if rule.fraction < 1.0 and self._random.random() >= rule.fraction:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                self.injected += 1
                return rule
            return None
