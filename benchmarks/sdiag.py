"""slurmctld's RPC statistics from ``sdiag``: reset them, read and parse them, and diff two readings.

Run: ``.venv/bin/python benchmarks/sdiag.py {read,reset,measure,diff} ...`` or ``--self-test``.

    sdiag.py read                         # the RPC tables now (SLURM_CONF from the environment)
    sdiag.py reset                        # sdiag -r (root or SlurmUser only)
    sdiag.py measure -- squeue --all      # reset, run the command, read: what it cost slurmctld
    sdiag.py diff before.txt after.txt    # two saved sdiag outputs
    sdiag.py --self-test                  # the parser against sdiag_sample_22.05.txt (captured on Slurm 22.05)

What sdiag prints (Slurm 22.05 ``src/sdiag/sdiag.c``; 24.11 the same), after the scheduler figures::

    Remote Procedure Call statistics by message type
    \tREQUEST_JOB_INFO                        ( 2003) count:5      ave_time:2735   total_time:13675
    Remote Procedure Call statistics by user
    \troot            (       0) count:3      ave_time:277    total_time:832
    Pending RPC statistics

Times are in microseconds of slurmctld's handling of each RPC (lock waits included). With
``SlurmctldParameters=enable_rpc_queue`` (24.11 and later) the type lines go on with
``queued:N cycle_last:N cycle_max:N dropped:N``, which are ignored here. The counters start from zero at
``sdiag -r`` and at midnight UTC: a diff across a reset is refused (``SdiagError``), since it would be wrong.

"Our" RPCs (``client_rpcs``): every type except what sdiag itself sends and what slurmd daemons send
(``DAEMON_RPCS``); on a private test cluster where only the benchmark and the dispatcher talk to slurmctld,
that is exactly what the commands under test cost it. The by-user table tells users apart (uid 0 is root:
the dispatcher, sbatch --uid submissions and slurmd alike).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

SAMPLE = Path(__file__).with_name("sdiag_sample_22.05.txt")
"""``sdiag`` output captured on this project's Slurm 22.05 test cluster (two users, nine RPC types)."""

BY_TYPE = "Remote Procedure Call statistics by message type"
BY_USER = "Remote Procedure Call statistics by user"
PENDING = "Pending RPC statistics"

SDIAG_RPCS = frozenset({"REQUEST_STATS_INFO", "REQUEST_RESET_STATS"})
"""What ``sdiag`` and ``sdiag -r`` themselves send."""

DAEMON_RPCS = frozenset({
    "MESSAGE_NODE_REGISTRATION_STATUS",
    "MESSAGE_EPILOG_COMPLETE",
    "MESSAGE_COMPOSITE",
    "REQUEST_COMPLETE_BATCH_SCRIPT",
    "REQUEST_COMPLETE_PROLOG",
    "REQUEST_STEP_COMPLETE",
    "REQUEST_COMPLETE_JOB_ALLOCATION",
    "REQUEST_PERSIST_INIT",
})
"""What slurmd and slurmstepd send slurmctld on their own (registrations, job and step completions)."""

_LINE_RE = re.compile(
    r"^\s+(?P<name>\S.*?)\s*\(\s*(?P<id>\d+)\)\s+count:(?P<count>\d+)\s+ave_time:(?P<ave>\d+)"
    r"\s+total_time:(?P<total>\d+)(?P<rest>.*)$"
)
_STAMP_RE = re.compile(r"^(?P<what>sdiag output at|Data since)\s.*\((?P<epoch>\d+)\)\s*$")


class SdiagError(Exception):
    """sdiag failed, its output could not be read, or two readings cannot be compared."""


@dataclass(frozen=True)
class RpcStat:
    """One line of an RPC table: a message type (with its id) or a user (with its uid)."""

    name: str
    id: int
    count: int
    total_us: int

    @property
    def ave_us(self) -> float:
        """Mean microseconds per RPC (0 for none)."""
        return self.total_us / self.count if self.count else 0.0


@dataclass(frozen=True)
class SdiagReading:
    """The RPC tables of one sdiag output, and when it was taken and since when it counts (epoch seconds)."""

    taken_at: int | None
    data_since: int | None
    by_type: Mapping[str, RpcStat] = field(default_factory=dict)
    by_user: Mapping[str, RpcStat] = field(default_factory=dict)

    def client_rpcs(self, *, exclude: frozenset[str] = SDIAG_RPCS | DAEMON_RPCS) -> dict[str, RpcStat]:
        """Return the by-type lines of client commands: all but sdiag's own and the daemons' (see module doc)."""
        return {k: v for k, v in self.by_type.items() if k not in exclude}

    def client_total_us(self) -> int:
        """Return slurmctld's microseconds spent on client commands' RPCs (``client_rpcs``)."""
        return sum(s.total_us for s in self.client_rpcs().values())


def parse_sdiag(text: str) -> SdiagReading:
    """Return the RPC tables of sdiag's output. Pure.

    Raises:
        SdiagError: the by-type table's header is missing (not sdiag output), or a line inside a table is
            neither blank nor an RPC line (a format this parser does not know); the message names the line.
    """
    tables: dict[str, dict[str, RpcStat]] = {BY_TYPE: {}, BY_USER: {}}
    stamps: dict[str, int] = {}
    section: str | None = None
    seen_type_header = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped in (BY_TYPE, BY_USER, PENDING):
            section = stripped if stripped != PENDING else None
            seen_type_header = seen_type_header or stripped == BY_TYPE
            continue
        stamp = _STAMP_RE.match(stripped)
        if stamp:
            stamps[stamp["what"]] = int(stamp["epoch"])
            continue
        if section is None or not stripped:
            continue
        m = _LINE_RE.match(line)
        if m is None:
            if not line[:1].isspace():  # a header of a section this parser does not know: the table ended
                section = None
                continue
            raise SdiagError(f"sdiag output line {number} is not an RPC statistics line: {stripped[:120]!r}")
        stat = RpcStat(m["name"], int(m["id"]), int(m["count"]), int(m["total"]))
        tables[section][stat.name] = stat
    if not seen_type_header:
        raise SdiagError(f"not sdiag output: no {BY_TYPE!r} section")
    return SdiagReading(stamps.get("sdiag output at"), stamps.get("Data since"), tables[BY_TYPE], tables[BY_USER])


def _diff_table(before: Mapping[str, RpcStat], after: Mapping[str, RpcStat]) -> dict[str, RpcStat]:
    out = {}
    for name, a in after.items():
        b = before.get(name)
        count, total = a.count - (b.count if b else 0), a.total_us - (b.total_us if b else 0)
        if count < 0 or total < 0:
            raise SdiagError(f"{name}: counters went down between the readings (were they reset?)")
        if count:
            out[name] = RpcStat(name, a.id, count, total)
    return out


def diff(before: SdiagReading, after: SdiagReading) -> SdiagReading:
    """Return what happened between two readings: counts and times of the later minus the earlier. Pure.

    Raises:
        SdiagError: the statistics were reset between them (``Data since`` differs, or a counter went down).
    """
    if before.data_since != after.data_since:
        raise SdiagError(f"the statistics were reset between the readings (data since {before.data_since}, "
                         f"then {after.data_since}); read again after a reset")
    return SdiagReading(after.taken_at, before.taken_at, _diff_table(before.by_type, after.by_type),
                        _diff_table(before.by_user, after.by_user))


# -- running sdiag --------------------------------------------------------------------------------------------


def _run(argv: Sequence[str], env: Mapping[str, str] | None) -> str:
    try:
        proc = subprocess.run(list(argv), env=dict(env) if env is not None else None, capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SdiagError(f"{' '.join(argv)}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise SdiagError(f"{' '.join(argv)} exited {proc.returncode}: {detail[-1] if detail else 'no message'}")
    return proc.stdout


def reset(env: Mapping[str, str] | None = None) -> None:
    """Run ``sdiag -r``: slurmctld's statistics start again from zero. Blocks.

    Raises:
        SdiagError: sdiag failed (only root and SlurmUser may reset: "Access/permission denied").
    """
    _run(["sdiag", "-r"], env)


def read(env: Mapping[str, str] | None = None) -> SdiagReading:
    """Run ``sdiag`` and return its RPC tables. Blocks.

    Raises:
        SdiagError: sdiag failed or printed something this parser cannot read.
    """
    return parse_sdiag(_run(["sdiag"], env))


# -- printing ---------------------------------------------------------------------------------------------------


def format_table(reading: SdiagReading, *, seconds: float | None = None) -> str:
    """Return the RPC tables as aligned text, with per-minute times when ``seconds`` (the window) is given. Pure."""
    lines = []
    per_min = f" {'ms/min':>9}" if seconds else ""
    for title, table in (("by message type", reading.by_type), ("by user", reading.by_user)):
        lines.append(f"{title:<36} {'count':>7} {'total ms':>10} {'ave ms':>8}{per_min}")
        for s in sorted(table.values(), key=lambda s: -s.total_us):
            extra = f" {s.total_us / 1000 / seconds * 60:9.2f}" if seconds else ""
            lines.append(f"  {s.name:<34} {s.count:>7} {s.total_us / 1000:10.2f} {s.ave_us / 1000:8.3f}{extra}")
    total = reading.client_total_us()
    lines.append(f"client commands' RPCs (all but sdiag's and slurmd's): {total / 1000:.2f} ms"
                 + (f", {total / 1000 / seconds * 60:.2f} ms per minute over {seconds:.1f} s" if seconds else ""))
    return "\n".join(lines)


def _as_json(reading: SdiagReading) -> str:
    return json.dumps(asdict(reading), indent=1, sort_keys=True)


# -- self-test --------------------------------------------------------------------------------------------------

_SAMPLE_24_11_QUEUED = """\
*******************************************************
sdiag output at Mon Dec 07 11:22:29 2026 (1796642549)
Data since      Mon Dec 07 11:20:03 2026 (1796642403)
*******************************************************
Remote Procedure Call statistics by message type
\tREQUEST_JOB_INFO                        ( 2003) count:12     ave_time:900    total_time:10800  queued:0      \
cycle_last:0      cycle_max:3      dropped:0
\tREQUEST_STATS_INFO                      ( 2035) count:1      ave_time:200    total_time:200    queued:0      \
cycle_last:0      cycle_max:0      dropped:0

Remote Procedure Call statistics by user
\troot            (       0) count:13     ave_time:846    total_time:11000

Pending RPC statistics
\tNo pending RPCs
"""
"""Constructed from 24.11's format string with ``enable_rpc_queue`` (no 24.11 cluster was at hand)."""


def self_test() -> None:
    """Check the parser and the diff against the captured sample and constructed variants.

    Raises:
        AssertionError: a check failed.
    """
    sample = parse_sdiag(SAMPLE.read_text())
    assert (sample.taken_at, sample.data_since) == (1796642549, 1796642403), (sample.taken_at, sample.data_since)
    assert len(sample.by_type) == 9, sorted(sample.by_type)
    assert sample.by_type["REQUEST_JOB_INFO"] == RpcStat("REQUEST_JOB_INFO", 2003, 7, 5119)
    assert sample.by_type["REQUEST_SUBMIT_BATCH_JOB"].count == 200
    assert sample.by_user["nobody"] == RpcStat("nobody", 65534, 5, 2371)
    assert sample.by_user["root"].total_us == 228838
    assert "REQUEST_STATS_INFO" not in sample.client_rpcs()
    assert "MESSAGE_NODE_REGISTRATION_STATUS" not in sample.client_rpcs()
    assert sample.client_total_us() == 216412 + 5119 + 1342 + 756 + 4853 + 312 + 436

    queued = parse_sdiag(_SAMPLE_24_11_QUEUED)
    assert queued.by_type["REQUEST_JOB_INFO"] == RpcStat("REQUEST_JOB_INFO", 2003, 12, 10800)
    assert queued.client_total_us() == 10800

    later = parse_sdiag(SAMPLE.read_text().replace("count:7      ave_time:731    total_time:5119",
                                                   "count:9      ave_time:700    total_time:6300"))
    delta = diff(sample, later)
    assert delta.by_type == {"REQUEST_JOB_INFO": RpcStat("REQUEST_JOB_INFO", 2003, 2, 1181)}, delta.by_type
    assert delta.by_user == {}

    reset_between = parse_sdiag(SAMPLE.read_text().replace("(1796642403)", "(1796650000)"))
    try:
        diff(sample, reset_between)
    except SdiagError as exc:
        assert "reset" in str(exc)
    else:
        raise AssertionError("a diff across a reset was accepted")

    for bad, why in (("hello\n", "no by-type section"),
                     (f"{BY_TYPE}\n\tREQUEST_JOB_INFO ( 2003) count:x\n", "a malformed RPC line")):
        try:
            parse_sdiag(bad)
        except SdiagError:
            pass
        else:
            raise AssertionError(f"{why} was accepted")
    text = format_table(delta, seconds=30.0)
    assert "REQUEST_JOB_INFO" in text and "2.36" in text, text  # 1.181 ms in 30 s = 2.36 ms per minute


# -- CLI ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true", help="check the parser against the captured sample")
    sub = parser.add_subparsers(dest="command")
    p_read = sub.add_parser("read", help="print the RPC tables now")
    p_read.add_argument("--json", action="store_true")
    sub.add_parser("reset", help="sdiag -r (root or SlurmUser only)")
    p_measure = sub.add_parser("measure", help="reset, run a command, read: what it cost slurmctld")
    p_measure.add_argument("argv", nargs=argparse.REMAINDER, help="-- the command to run")
    p_diff = sub.add_parser("diff", help="diff two saved sdiag outputs")
    p_diff.add_argument("before", type=Path)
    p_diff.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.self_test:
            self_test()
            print(f"sdiag parser self-test passed ({SAMPLE.name})")
            return 0
        if args.command == "read":
            reading = read()
            print(_as_json(reading) if args.json else format_table(reading))
        elif args.command == "reset":
            reset()
        elif args.command == "measure":
            command = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else list(args.argv)
            if not command:
                parser.error("measure needs a command after --")
            reset()
            before = read()
            t0 = os.times().elapsed
            run = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
            seconds = os.times().elapsed - t0
            after = read()
            print(f"{' '.join(command)}: exit {run.returncode}, {seconds:.2f} s")
            print(format_table(diff(before, after)))
        elif args.command == "diff":
            try:
                before, after = (parse_sdiag(p.read_text()) for p in (args.before, args.after))
            except OSError as exc:
                raise SdiagError(f"cannot read {exc.filename}: {exc.strerror}") from None
            delta = diff(before, after)
            span = (delta.taken_at - delta.data_since) if delta.taken_at and delta.data_since else None
            print(format_table(delta, seconds=float(span) if span else None))
        else:
            parser.print_help()
            return 2
    except SdiagError as exc:
        print(f"sdiag.py: {exc}", file=sys.stderr)
        return 1
    except AssertionError as exc:
        print(f"sdiag.py: self-test failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
