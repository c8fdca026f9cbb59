"""The real sbatch reads its arguments as slurm_dispatch.slurm.sbatch_options.read_args says it does.

For each list of words, ``sbatch -v --test-only <words>`` (a script on stdin, in an empty directory) either
fails with getopt's message for the first word read_args calls wrong, or with "Unable to open file" for the
first operand (its script path), or lists the options it read ("defined options", one block per component
of a heterogeneous job): the same names, and the same values where sbatch prints them as given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.slurm.sbatch_options import ONLY_IN, Opt, read_args

pytestmark = pytest.mark.slurm

WORDS = [
    ["--job-name=x"], ["--job-name", "x"], ["--job-name", "-Jx"], ["--jo=x"], ["--j", "x"], ["--comment", "-Jx"],
    ["--sig=B:USR1@60"], ["--si", "TERM"], ["--exclud=c9"], ["--cluster=b"], ["--tasks-per=2"],
    ["--job-name==x"], ["--job-name="], ["--nice=5"], ["--nice", "5"], ["--no-requeue", "-Jx"],
    ["--clu=beta"], ["--exc=c9"], ["--jobs=2"], ["--spank-opt", "-Jx"], ["--no-requeue=x"], ["--mem"], ["-t"],
    ["-zJx"], ["-Jx"], ["-J", "x"], ["-J", "-v"], ["-HJx"], ["-vJ", "y"], ["-HM", "beta"], ["-Hx", "c9"],
    ["-Hxc9"], ["-oJob.out"], ["-M=beta"], ["-k", "-Jx"], ["--", "-Jx"], ["job.sh", "-Jx"], ["-", "-Jx"],
    ["-Jx", ":", "-Jy"], ["--ext=1"], ["--time", "5", "--mem=5"], ["-J", "--mem=5"],
]
"""The forms of tests/unit/test_sbatch_options.py and a few more."""

AS_GIVEN = frozenset({"job-name", "comment", "exclude", "clusters", "cluster", "nice", "ntasks-per-node"})
"""Options whose value ``sbatch -v`` prints exactly as given (others are printed reformatted)."""
NOT_LISTED = frozenset({"verbose"})
"""Options ``sbatch -v`` reads but does not list."""
_DEFINED_RE = re.compile(r"sbatch: (\S+) +: ?(.*)\Z")


def defined_options(stderr: str) -> list[dict[str, str]]:
    """The "defined options" blocks ``sbatch -v`` printed: one dict of name → value per job component."""
    blocks: list[dict[str, str]] = []
    inside = False
    for line in stderr.splitlines():
        if line == "sbatch: defined options":
            inside = True
            blocks.append({})
        elif line == "sbatch: end of defined options":
            inside = False
        elif inside and (m := _DEFINED_RE.match(line)) and not m.group(1).startswith("---"):
            blocks[-1][m.group(1)] = m.group(2)
    return blocks


def getopt_error(words: list[str], opt: Opt) -> str:
    """What glibc's getopt_long prints for a word read_args calls wrong."""
    if opt.kind == "ambiguous":
        return f"option '{words[opt.at[0]]}' is ambiguous; possibilities:"
    if opt.kind == "unknown":
        return f"invalid option -- '{opt.option[1]}'" if opt.start else f"unrecognized option '{words[opt.at[0]]}'"
    if opt.kind == "needless-value":
        return f"option '--{opt.name}' doesn't allow an argument"
    assert opt.kind == "missing-value"
    return f"option requires an argument -- '{opt.option[1]}'" if opt.start else \
        f"option '--{opt.name}' requires an argument"


@pytest.fixture(scope="module")
def absent(slurm_cluster: Any) -> frozenset[str]:
    """The options of ``SBATCH_OPTIONS`` this sbatch lacks (``ONLY_IN``: the table is 22.05's and 24.11's union)."""
    version = slurm_cluster.run(["sbatch", "--version"], check=True).stdout.split()[-1]
    release = ".".join(version.split(".")[:2])
    if release not in ONLY_IN.values():
        pytest.skip(f"sbatch {version} is neither 22.05 nor 24.11, the releases the table was read from")
    return frozenset(name for name, only in ONLY_IN.items() if only != release)


@pytest.mark.parametrize("words", WORDS, ids=[" ".join(w) for w in WORDS])
def test_sbatch_reads_what_read_args_reads(slurm_cluster: Any, absent: frozenset[str], tmp_path: Path,
                                           words: list[str]) -> None:
    done = slurm_cluster.run(["sbatch", "-v", "--test-only", *words], input="#!/bin/sh\ntrue\n", cwd=tmp_path)
    opts = read_args(words)
    wrong = [o for o in opts if o.kind in ("unknown", "ambiguous", "needless-value", "missing-value")]
    here = [c for c in wrong[0].candidates if c not in absent] if wrong else []
    if wrong and len(here) == 1:
        # ambiguous only in the union of the releases (--ext): this release reads the one option it has
        assert here[0] in defined_options(done.stderr)[0], done.stderr
        return
    if wrong:
        assert done.returncode != 0 and getopt_error(words, wrong[0]) in done.stderr, done.stderr
        if wrong[0].kind == "ambiguous":
            listed = set(re.findall(r"'--([a-z-]+)'", done.stderr.split("possibilities:", 1)[1]))
            assert listed == set(here), done.stderr
        return
    operands = [o for o in opts if o.kind == "operand"]
    if operands:
        assert done.returncode != 0 and f"Unable to open file {operands[0].text}" in done.stderr, done.stderr
        return
    components: list[list[Opt]] = [[]]
    for opt in opts:
        if opt.kind == "separator":
            components.append([])
        else:
            components[-1].append(opt)
    blocks = defined_options(done.stderr)
    assert len(blocks) == len(components), done.stderr
    for block, component in zip(blocks, components, strict=True):
        expected = {o.name: o.value for o in component if o.name not in NOT_LISTED}
        assert set(expected) | {"test-only"} == set(block) - ({"verbose"} & set(block)), done.stderr
        for name, value in expected.items():
            if name in AS_GIVEN:
                assert block[name] == value, (name, done.stderr)
