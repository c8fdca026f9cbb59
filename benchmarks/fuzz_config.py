"""Fuzz the config loader with many thousands of hostile documents and print figures.

Not a test: the CI version is tests/unit/test_config_fuzz.py (150 cases). The cases cover the cluster config,
the legacy file, slurm-dispatch's own file and the environment. This runs the same generator and
the same check (``cases`` and ``check_case`` from that file) many more times, and prints how the cases ended
(usable settings, startup problems, ConfigError by kind), the slowest case, and any case that broke the
property (an exception other than ConfigError, a failed assertion, or a case slower than the bound). Figures
go to docs/robustness.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fuzz_config.py --cases 10000 --seed 1

Exits 1 when any case broke the property.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from test_config_fuzz import MAX_CASE_S, cases, check_case

KINDS = [
    ("invalid YAML", re.compile(r": invalid YAML: ")),
    ("control character", re.compile(r"control character")),
    ("token", re.compile(r"a token is printable ASCII")),
    ("duration", re.compile(r"duration|at least 100ms|at least 1s|at most 24h|whole number of seconds|65535s")),
    ("template", re.compile(r"substitution parameter|would rename the job")),
    ("reason code", re.compile(r"reason code")),
    ("path", re.compile(r"absolute path")),
    ("byte size", re.compile(r"byte size")),
    ("URL", re.compile(r"URL|ARVADOS_API_HOST")),
    ("range", re.compile(r"must (not )?be|at most|out of range|too large|negative")),
    ("type", re.compile(r"expected |is not one of")),
    ("name", re.compile(r"variable name|instance type name|libpq|multiple entries")),
    ("cluster", re.compile(r"Clusters|cluster")),
]


def kind_of(outcome: str) -> str:
    """Returns the kind of a ConfigError outcome (the first pattern of KINDS its message matches)."""
    for name, pattern in KINDS:
        if pattern.search(outcome):
            return f"ConfigError ({name})"
    return "ConfigError (other)"


FILES = [("slurm-dispatch file", "slurm-dispatch.yml: "), ("legacy file", "legacy.yml: "),
         ("cluster config", "config.yml: ")]


def file_of(outcome: str) -> str:
    """Returns which file a ConfigError outcome names (the environment when none)."""
    for name, marker in FILES:
        if marker in outcome:
            return name
    return "environment"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="how many cases to run (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed (default 1)")
    args = parser.parse_args()

    outcomes: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    started = time.monotonic()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)

        @seed(args.seed)
        @settings(max_examples=args.cases, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases())
        def run(case: dict[str, Any]) -> None:
            nonlocal slowest
            t0 = time.monotonic()
            try:
                outcome = check_case(case, tmp_path)
            except Exception:  # noqa: BLE001 -- the property broke: record the case and go on
                outcome = "BROKEN"
                failures.append(f"{case!r}\n{traceback.format_exc()}")
            took = time.monotonic() - t0
            if took > slowest[0]:
                slowest = (took, f"{outcome[:100]!r}, from {case['cluster'][:60]!r}")
            if took > MAX_CASE_S:
                failures.append(f"{case!r}\ntook {took:.2f} s")
            outcomes[outcome if not outcome.startswith("ConfigError") else kind_of(outcome)] += 1
            if outcome.startswith("ConfigError"):
                by_file[file_of(outcome)] += 1

        run()

    total = sum(outcomes.values())
    print(f"cases: {total} in {time.monotonic() - started:.1f} s (seed {args.seed})")
    for name, count in outcomes.most_common():
        print(f"  {name:34} {count:7}  {100 * count / total:5.1f} %")
    print("ConfigError by file: " + ", ".join(f"{name} {count}" for name, count in by_file.most_common()))
    print(f"slowest case: {slowest[0] * 1000:.1f} ms (bound {MAX_CASE_S:g} s): {slowest[1]}")
    print(f"property broken: {len(failures)}")
    for failure in failures[:5]:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
