"""Fuzz the record and line parsers with thousands of hostile cases each and print figures.

Not a test: the CI versions are tests/unit/test_records_fuzz.py and test_lines_fuzz.py. This runs the same
generators and checks (``TARGETS`` of those files: API container records, list pages, squeue lines, end-of-job
lines of squeue and sacct, the job script) many more times, and prints for each parser how many cases and items (records, lines, calls,
scripts) ran, how they ended (accepted, refused by kind), the slowest case, the time taken, and every case that
broke the property (an exception other than the documented refusal, a failed assertion, or a case slower than
its bound). Figures go to docs/robustness.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fuzz_records.py --cases 3000 --seed 1

A case that hangs is not waited for: after ``--watchdog`` seconds faulthandler prints where every thread is and
ends the process (exit status 1, no figures), whatever the case was doing (a regex, C code); ``--seed`` and
``--only`` replay it. Exits 1 when any case broke the property.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from test_lines_fuzz import SHELLS
from test_lines_fuzz import TARGETS as LINE_TARGETS
from test_records_fuzz import TARGETS as RECORD_TARGETS
from test_records_fuzz import Target

TARGETS = {**RECORD_TARGETS, **LINE_TARGETS}


def run_target(name: str, target: Target, *, cases: int, seed_: int, watchdog_s: float) -> dict[str, Any]:
    """Run ``cases`` cases of one target; return its figures (and the cases that broke the property)."""
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    ran = 0
    started = time.monotonic()

    @seed(seed_)
    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def run(case: Any) -> None:
        nonlocal slowest, ran
        ran += 1
        faulthandler.dump_traceback_later(watchdog_s, exit=True)
        t0 = time.monotonic()
        try:
            outcomes.update(target.check(case))
        except Exception:  # noqa: BLE001 -- the property broke: record the case and go on
            outcomes["BROKEN"] += 1
            failures.append(f"{repr(case)[:600]}\n{traceback.format_exc()[-1500:]}")
        took = time.monotonic() - t0
        faulthandler.cancel_dump_traceback_later()
        if took > slowest[0]:
            slowest = (took, repr(case)[:100])
        if took > target.max_case_s:
            failures.append(f"{repr(case)[:600]}\ntook {took:.2f} s (bound {target.max_case_s:g} s)")

    run()
    return {"name": name, "what": target.what, "cases": ran, "outcomes": outcomes, "failures": failures,
            "slowest": slowest, "bound": target.max_case_s, "seconds": time.monotonic() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000, help="cases per parser (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed (default 1)")
    parser.add_argument("--only", action="append", choices=sorted(TARGETS), help="run only this parser (repeatable)")
    parser.add_argument("--watchdog", type=float, default=60.0, help="seconds before a case counts as hung (60)")
    args = parser.parse_args()

    print("command: PYTHONPATH=$PWD " + shlex.join([".venv/bin/python", "benchmarks/fuzz_records.py", *sys.argv[1:]]))
    print(f"shells for the job script: {', '.join(' '.join(s) for s in SHELLS)}")
    results = []
    for name in args.only or list(TARGETS):
        result = run_target(name, TARGETS[name], cases=args.cases, seed_=args.seed, watchdog_s=args.watchdog)
        results.append(result)
        print(f"  ... {name}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)

    print(f"\n{'parser':18} {'cases':>6} {'items':>7} {'accepted':>9} {'refused':>8} {'broken':>7}"
          f" {'slowest':>10} {'time':>7}")
    for r in results:
        out = r["outcomes"]
        refused = sum(n for k, n in out.items() if k.startswith(("refused", "skipped")))
        accepted = out["accepted"]
        items = accepted + refused + out["BROKEN"]
        print(f"{r['name']:18} {r['cases']:6} {items:7} {accepted:9} {refused:8} {len(r['failures']):7}"
              f" {r['slowest'][0] * 1000:7.1f} ms {r['seconds']:5.1f} s")
    for r in results:
        out = r["outcomes"]
        kinds = [(k, n) for k, n in out.most_common() if k not in ("accepted", "BROKEN")]
        print(f"\n{r['name']} ({r['what']}; slowest case {r['slowest'][0] * 1000:.1f} ms, bound {r['bound']:g} s: "
              f"{r['slowest'][1]})")
        for kind, n in kinds:
            print(f"  {kind:58} {n:7}")
    failures = [f for r in results for f in r["failures"]]
    print(f"\nproperty broken: {len(failures)} (seed {args.seed})")
    for r in results:
        kinds = collections.Counter(f.strip().splitlines()[-1][:120] for f in r["failures"])
        for kind, n in kinds.most_common():
            print(f"  {r['name']}: {n} x {kind}")
    for r in results:
        for failure in r["failures"][:3]:
            print(f"--- {r['name']}\n{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
