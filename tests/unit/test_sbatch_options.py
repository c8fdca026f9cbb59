"""How sbatch reads its arguments (slurm_dispatch.slurm.sbatch_options): the table and the reader.

Each row of FORMS is what Slurm 22.05.8's sbatch read from the same words (``sbatch -v --test-only <words>``
with a script on stdin: the "defined options" it lists, or its getopt error); tests/integration/
test_sbatch_options_real.py repeats that comparison against the real sbatch.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.slurm.sbatch_options import (
    NONE,
    ONLY_IN,
    OPTIONAL,
    SBATCH_OPTIONS,
    Opt,
    long_option,
    read_args,
    with_value,
)

SHORT_OPTIONS = "A:a:b:D:M:C:S:c:d:m:e:x:B:G:hHi:J:L:k::F:w:N:n:o:Osp:q:Qt:vVW"
"""sbatch's getopt option string without the leading "+", as slurm_option_table_create builds it in Slurm 22.05
and 24.11 (the same in both; order aside, what checks.SBATCH_SHORT_OPTIONS held before this table)."""

SBATCH_22_05_LONG_OPTIONS = (
    "account", "acctg-freq", "array", "batch", "begin", "bb", "bbf", "cluster-constraint", "chdir", "cluster",
    "clusters", "comment", "container", "context", "contiguous", "constraint", "core-spec", "cores-per-socket",
    "cpu-freq", "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution",
    "error", "exclude", "exclusive", "export", "export-file", "extra-node-info", "get-user-env", "gid",
    "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags",
    "help", "hint", "hold", "ignore-pbs", "input", "job-name", "kill-on-invalid-dep", "licenses", "mail-type",
    "mail-user", "mcs-label", "mem", "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice",
    "no-kill", "no-requeue", "nodefile", "nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu",
    "ntasks-per-node", "ntasks-per-socket", "ntasks-per-tres", "open-mode", "output", "overcommit",
    "oversubscribe", "parsable", "partition", "power", "prefer", "priority", "profile", "propagate", "qos",
    "quiet", "reboot", "requeue", "reservation", "signal", "sockets-per-node", "spread-job", "switches",
    "tasks-per-node", "test-only", "thread-spec", "threads-per-core", "time", "time-min", "tmp", "uid", "usage",
    "use-min-nodes", "verbose", "version", "wait", "wait-all-nodes", "wckey", "wrap"
)
"""The possibilities Slurm 22.05.8's sbatch lists for the ambiguous ``--=x`` (every long option it has)."""


def short_options() -> str:
    """The option string the table gives, in getopt's notation."""
    marks = {NONE: "", OPTIONAL: "::"}
    return "".join(short + marks.get(argument, ":") for _, argument, short in SBATCH_OPTIONS if short)


def test_the_short_options_are_sbatchs() -> None:
    def letters(spec: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, c in enumerate(spec):
            if c != ":":
                out[c] = "::" if spec[i + 1:i + 3] == "::" else ":" if spec[i + 1:i + 2] == ":" else ""
        return out

    assert letters(short_options()) == letters(SHORT_OPTIONS)


def test_the_2205_part_of_the_table_is_what_sbatch_2205_lists() -> None:
    names = {name for name, _, _ in SBATCH_OPTIONS if ONLY_IN.get(name) != "24.11"}
    assert names == set(SBATCH_22_05_LONG_OPTIONS)
    assert set(ONLY_IN) <= {name for name, _, _ in SBATCH_OPTIONS}


Read = tuple[str, tuple[int, ...], str, str | None]
"""What a row expects of one ``Opt``: (kind, at, name, value)."""


def o(at: tuple[int, ...], name: str, value: str | None) -> Read:
    """The expected reading of one known option."""
    return ("option", at, name, value)


FORMS = [
    # long options: = or the next word; a prefix that names one option; an exact name before longer ones
    pytest.param(["--job-name=x"], [o((0,), "job-name", "x")], id="long-equals"),
    pytest.param(["--job-name", "x"], [o((0, 1), "job-name", "x")], id="long-next-word"),
    pytest.param(["--job-name", "-Jx"], [o((0, 1), "job-name", "-Jx")], id="long-next-word-looks-like-an-option"),
    pytest.param(["--jo=x"], [o((0,), "job-name", "x")], id="long-prefix-equals"),
    pytest.param(["--j", "x"], [o((0, 1), "job-name", "x")], id="long-one-letter-prefix"),
    pytest.param(["--comment", "-Jx"], [o((0, 1), "comment", "-Jx")], id="another-options-value-is-no-job-name"),
    pytest.param(["--sig=B:USR1@60"], [o((0,), "signal", "B:USR1@60")], id="signal-prefix"),
    pytest.param(["--si", "TERM"], [o((0, 1), "signal", "TERM")], id="signal-shortest-prefix"),
    pytest.param(["--exclud=c9"], [o((0,), "exclude", "c9")], id="exclude-prefix"),
    pytest.param(["--cluster=b"], [o((0,), "cluster", "b")], id="exact-cluster-not-clusters"),
    pytest.param(["--tasks-per=2"], [o((0,), "ntasks-per-node", "2")], id="second-name-of-ntasks-per-node"),
    pytest.param(["--job-name==x"], [o((0,), "job-name", "=x")], id="value-after-the-first-equals"),
    pytest.param(["--job-name="], [o((0,), "job-name", "")], id="empty-value"),
    # optional values only with =
    pytest.param(["--nice=5"], [o((0,), "nice", "5")], id="optional-value-with-equals"),
    pytest.param(["--nice", "5"], [o((0,), "nice", None), ("operand", (1,), "", None)],
                 id="optional-value-never-the-next-word"),
    pytest.param(["--no-requeue", "-Jx"], [o((0,), "no-requeue", None), o((1,), "job-name", "x")],
                 id="no-value"),
    # what sbatch refuses
    pytest.param(["--clu=beta"], [("ambiguous", (0,), "", None)], id="ambiguous-clusters-prefix"),
    pytest.param(["--exc=c9"], [("ambiguous", (0,), "", None)], id="ambiguous-exclude-prefix"),
    pytest.param(["--jobs=2"], [("unknown", (0,), "", None)], id="unknown-long"),
    pytest.param(["--spank-opt", "-Jx"], [("unknown", (0,), "", None), o((1,), "job-name", "x")],
                 id="unknown-long-takes-no-word"),
    # a SPANK plugin's option (pyxis) or a newer release's, written as two words: sbatch with that plugin reads
    # the next word as its value (checked with a plugin on 22.05), and the options after it are still options
    pytest.param(["--container-image", "img", "--exclude=c1"],
                 [("unknown", (0, 1), "", "img"), o((2,), "exclude", "c1")], id="unknown-long-takes-a-word"),
    pytest.param(["--ext", "1", "-Jx"], [("ambiguous", (0, 1), "", "1"), o((2,), "job-name", "x")],
                 id="ambiguous-only-in-the-union-takes-a-word"),
    pytest.param(["--no-requeue=x"], [("needless-value", (0,), "no-requeue", None)], id="needless-value"),
    pytest.param(["--mem"], [("missing-value", (0,), "mem", None)], id="missing-long-value"),
    pytest.param(["-t"], [("missing-value", (0,), "time", None)], id="missing-short-value"),
    pytest.param(["-zJx"], [("unknown", (0,), "", None), o((0,), "job-name", "x")], id="unknown-letter"),
    # short options: the rest of the word or the next word; runs of letters; a letter with a value ends the run
    pytest.param(["-Jx"], [o((0,), "job-name", "x")], id="short-joined"),
    pytest.param(["-J", "x"], [o((0, 1), "job-name", "x")], id="short-next-word"),
    pytest.param(["-J", "-v"], [o((0, 1), "job-name", "-v")], id="short-next-word-looks-like-an-option"),
    pytest.param(["-HJx"], [o((0,), "hold", None), o((0,), "job-name", "x")], id="run-joined"),
    pytest.param(["-vJ", "y"], [o((0,), "verbose", None), o((0, 1), "job-name", "y")], id="run-next-word"),
    pytest.param(["-HM", "beta"], [o((0,), "hold", None), o((0, 1), "clusters", "beta")], id="run-clusters"),
    pytest.param(["-Hx", "c9"], [o((0,), "hold", None), o((0, 1), "exclude", "c9")], id="run-exclude"),
    pytest.param(["-oJob.out"], [o((0,), "output", "Job.out")], id="value-that-looks-like-letters"),
    pytest.param(["-M=beta"], [o((0,), "clusters", "=beta")], id="short-equals-is-part-of-the-value"),
    pytest.param(["-kJx"], [o((0,), "no-kill", "Jx")], id="optional-short-value-rest-of-word"),
    pytest.param(["-k", "-Jx"], [o((0,), "no-kill", None), o((1,), "job-name", "x")],
                 id="optional-short-value-never-the-next-word"),
    # where options end
    pytest.param(["--", "-Jx"], [("end", (0,), "", None), ("operand", (1,), "", None)], id="double-dash"),
    pytest.param(["job.sh", "-Jx"], [("operand", (0,), "", None), ("operand", (1,), "", None)],
                 id="script-path-then-its-arguments"),
    pytest.param(["-", "-Jx"], [("operand", (0,), "", None), ("operand", (1,), "", None)], id="lone-dash"),
    pytest.param(["-Jx", ":", "-Jy"], [o((0,), "job-name", "x"), ("separator", (1,), "", None),
                                       o((2,), "job-name", "y")], id="het-job-components"),
]


@pytest.mark.parametrize(("args", "expected"), FORMS)
def test_read_args(args: list[str], expected: list[Read]) -> None:
    assert [(opt.kind, opt.at, opt.name, opt.value) for opt in read_args(args)] == expected


def test_an_ambiguous_prefix_lists_its_candidates() -> None:
    (opt,) = read_args(["--clu=beta"])
    assert opt.candidates == ("cluster", "cluster-constraint", "clusters")
    assert opt.option == "--clu" and opt.text == "--clu=beta"


def test_the_union_of_the_releases_makes_ext_ambiguous() -> None:
    # --ext is --extra-node-info on 22.05 (checked), but 24.11 adds --extra
    assert long_option("ext") == ("", ("extra", "extra-node-info"))
    assert long_option("extra") == ("extra", ())


def test_text_option_and_start_say_where_an_option_is_written() -> None:
    hold, name = read_args(["-vJ", "y"])
    assert (hold.text, hold.option, hold.start) == ("-vJ", "-v", 1)
    assert (name.text, name.option, name.start) == ("-vJ y", "-J", 2)
    (long,) = read_args(["--job-na", "x"])
    assert (long.text, long.option, long.start) == ("--job-na x", "--job-na", 0)


def test_past_operands_reads_on_as_if_they_were_not_there() -> None:
    words = ["--job-name=a", "job.sh", "-Jb", "--", "--jo=c"]
    assert [opt.value for opt in read_args(words) if opt.name == "job-name"] == ["a"]
    assert [opt.value for opt in read_args(words, past_operands=True) if opt.name == "job-name"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--exclude=c9"], ["--exclude=new"], id="long-equals"),
        pytest.param(["--exclud", "c9"], ["--exclud", "new"], id="long-next-word"),
        pytest.param(["-Hxc9"], ["-Hxnew"], id="run-joined"),
        pytest.param(["-Hx", "c9"], ["-Hx", "new"], id="run-next-word"),
        pytest.param(["--exclude="], ["--exclude=new"], id="empty-value"),
    ],
)
def test_with_value_keeps_the_form(args: list[str], expected: list[str]) -> None:
    (opt,) = [opt for opt in read_args(args) if opt.name == "exclude"]
    assert with_value(args, opt, "new") == expected


def test_with_value_refuses_an_option_without_one() -> None:
    (opt,) = read_args(["--no-requeue"])
    with pytest.raises(ValueError, match="no value"):
        with_value(["--no-requeue"], opt, "x")


WORDS = st.lists(st.one_of(
    st.sampled_from(["-", "--", ":", "-J", "-HJ", "--jo", "--nice", "-k", "--mem=", "--clu", "x", "-vx", "-t"]),
    st.text(alphabet="-=:HJMxktvz ab", max_size=6),
), max_size=8)


@given(WORDS, st.booleans())
def test_every_word_is_read_once_and_every_value_ends_its_word(args: list[str], past: bool) -> None:
    opts = read_args(args, past_operands=past)
    seen: list[int] = []
    for opt in opts:
        assert isinstance(opt, Opt)
        if opt.value is not None:
            assert args[opt.at[-1]].endswith(opt.value)
            assert with_value(args, opt, opt.value) == args
        for i in opt.at:
            if not seen or seen[-1] != i:
                seen.append(i)
    assert seen == list(range(len(args)))
