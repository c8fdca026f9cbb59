"""How sbatch reads its arguments: its option table, and one reader that follows getopt_long as sbatch calls it.

Every place that reasons about sbatch arguments (the ``--job-name=%U`` rule, the dispatcher's own ``--signal``
and ``--exclude``, the clusters the jobs go to, the dropped ``%W``/``%P`` arguments) reads them here, so that
all of them see the same options sbatch sees. Pure: no I/O.

sbatch parses its command line with glibc's getopt_long (Slurm's src/sbatch/opt.c: process_options_first_pass),
on the table and option string built by src/common/slurm_opt.c: slurm_option_table_create. So:

* ``--name=value``; ``--name value`` when the option requires a value; an optional value only with ``=``
  (``--nice 5`` makes ``5`` the script's path). A long option may be shortened to any prefix that names one
  option only (``--jo`` is ``--job-name``; ``--exc`` is ambiguous: ``--exclude``, ``--exclusive``); an exact
  name wins over longer ones (``--cluster``, not ``--clusters``).
* Short options run together (``-HJname``, ``-vJ name``): a letter that takes a value ends the word, with the
  rest of the word as its value, or else the next word (``-k``, whose value is optional, takes only the rest).
* The option string starts with ``+``: the first word that is not an option (the script's path) ends the
  options, and so does ``--``; what follows are the script's arguments.
* A ``:`` word separates the components of a heterogeneous job; each component's options follow.

What getopt refuses (an unknown or ambiguous option, a missing value, a value given to an option that takes
none) makes sbatch exit with an error. The reader reports those words as such rather than guessing. SPANK
plugins may add long options to sbatch's table (src/common/spank.c: spank_option_table_create); the reader
does not know them and calls them unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Argument = Literal["none", "required", "optional"]
"""Whether an option takes a value: getopt's no_argument, required_argument, optional_argument."""

NONE: Argument = "none"
REQUIRED: Argument = "required"
OPTIONAL: Argument = "optional"

SBATCH_OPTIONS: tuple[tuple[str, Argument, str], ...] = (
    # (long name, its value, its short letter or ""): every slurm_cli_opt_t entry of common_options in Slurm's
    # src/common/slurm_opt.c that has a .name and a .set_func or .set_func_sbatch (so that
    # slurm_option_table_create puts it in sbatch's table), with .has_arg, and .val when it is a letter.
    # Read from the tags slurm-22-05-8-1 and slurm-24-11-6-1 (the releases Debian ships). The table is their
    # union: ``ONLY_IN`` names the entries one of them lacks. src/sbatch/opt.c adds no option of its own.
    # The 22.05 part is the list `sbatch --=x` prints (Slurm 22.05.8, Debian). Because of the union, a prefix
    # that one release reads as one option may be ambiguous here (``--ext``: ``--extra-node-info`` on 22.05,
    # also ``--extra`` on 24.11): such a template does not work on every supported release.
    ("account", REQUIRED, "A"),
    ("acctg-freq", REQUIRED, ""),
    ("array", REQUIRED, "a"),
    ("autocomplete", REQUIRED, ""),
    ("batch", REQUIRED, ""),
    ("bb", REQUIRED, ""),
    ("bbf", REQUIRED, ""),
    ("begin", REQUIRED, "b"),
    ("chdir", REQUIRED, "D"),
    ("cluster", REQUIRED, ""),
    ("cluster-constraint", REQUIRED, ""),
    ("clusters", REQUIRED, "M"),
    ("comment", REQUIRED, ""),
    ("constraint", REQUIRED, "C"),
    ("container", REQUIRED, ""),
    ("container-id", REQUIRED, ""),
    ("context", REQUIRED, ""),
    ("contiguous", NONE, ""),
    ("core-spec", REQUIRED, "S"),
    ("cores-per-socket", REQUIRED, ""),
    ("cpu-freq", REQUIRED, ""),
    ("cpus-per-gpu", REQUIRED, ""),
    ("cpus-per-task", REQUIRED, "c"),
    ("deadline", REQUIRED, ""),
    ("delay-boot", REQUIRED, ""),
    ("dependency", REQUIRED, "d"),
    ("distribution", REQUIRED, "m"),
    ("error", REQUIRED, "e"),
    ("exclude", REQUIRED, "x"),
    ("exclusive", OPTIONAL, ""),
    ("export", REQUIRED, ""),
    ("export-file", REQUIRED, ""),
    ("extra", REQUIRED, ""),
    ("extra-node-info", REQUIRED, "B"),
    ("get-user-env", OPTIONAL, ""),
    ("gid", REQUIRED, ""),
    ("gpu-bind", REQUIRED, ""),
    ("gpu-freq", REQUIRED, ""),
    ("gpus", REQUIRED, "G"),
    ("gpus-per-node", REQUIRED, ""),
    ("gpus-per-socket", REQUIRED, ""),
    ("gpus-per-task", REQUIRED, ""),
    ("gres", REQUIRED, ""),
    ("gres-flags", REQUIRED, ""),
    ("help", NONE, "h"),
    ("hint", REQUIRED, ""),
    ("hold", NONE, "H"),
    ("ignore-pbs", NONE, ""),
    ("input", REQUIRED, "i"),
    ("job-name", REQUIRED, "J"),
    ("kill-on-invalid-dep", REQUIRED, ""),
    ("licenses", REQUIRED, "L"),
    ("mail-type", REQUIRED, ""),
    ("mail-user", REQUIRED, ""),
    ("mcs-label", REQUIRED, ""),
    ("mem", REQUIRED, ""),
    ("mem-bind", REQUIRED, ""),
    ("mem-per-cpu", REQUIRED, ""),
    ("mem-per-gpu", REQUIRED, ""),
    ("mincpus", REQUIRED, ""),
    ("network", REQUIRED, ""),
    ("nice", OPTIONAL, ""),
    ("no-kill", OPTIONAL, "k"),
    ("no-requeue", NONE, ""),
    ("nodefile", REQUIRED, "F"),
    ("nodelist", REQUIRED, "w"),
    ("nodes", REQUIRED, "N"),
    ("ntasks", REQUIRED, "n"),
    ("ntasks-per-core", REQUIRED, ""),
    ("ntasks-per-gpu", REQUIRED, ""),
    ("ntasks-per-node", REQUIRED, ""),
    ("ntasks-per-socket", REQUIRED, ""),
    ("ntasks-per-tres", REQUIRED, ""),
    ("oom-kill-step", OPTIONAL, ""),
    ("open-mode", REQUIRED, ""),
    ("output", REQUIRED, "o"),
    ("overcommit", NONE, "O"),
    ("oversubscribe", NONE, "s"),
    ("parsable", NONE, ""),
    ("partition", REQUIRED, "p"),
    ("power", REQUIRED, ""),
    ("prefer", REQUIRED, ""),
    ("priority", REQUIRED, ""),
    ("profile", REQUIRED, ""),
    ("propagate", OPTIONAL, ""),
    ("qos", REQUIRED, "q"),
    ("quiet", NONE, "Q"),
    ("reboot", NONE, ""),
    ("requeue", NONE, ""),
    ("reservation", REQUIRED, ""),
    ("resv-ports", OPTIONAL, ""),
    ("segment", REQUIRED, ""),
    ("signal", REQUIRED, ""),
    ("sockets-per-node", REQUIRED, ""),
    ("spread-job", NONE, ""),
    ("stepmgr", NONE, ""),
    ("switches", REQUIRED, ""),
    ("tasks-per-node", REQUIRED, ""),
    ("test-only", NONE, ""),
    ("thread-spec", REQUIRED, ""),
    ("threads-per-core", REQUIRED, ""),
    ("time", REQUIRED, "t"),
    ("time-min", REQUIRED, ""),
    ("tmp", REQUIRED, ""),
    ("tres-bind", REQUIRED, ""),
    ("tres-per-task", REQUIRED, ""),
    ("uid", REQUIRED, ""),
    ("usage", NONE, ""),
    ("use-min-nodes", NONE, ""),
    ("verbose", NONE, "v"),
    ("version", NONE, "V"),
    ("wait", NONE, "W"),
    ("wait-all-nodes", REQUIRED, ""),
    ("wckey", REQUIRED, ""),
    ("wrap", REQUIRED, ""),
)

ONLY_IN = {
    "power": "22.05",
    "autocomplete": "24.11", "container-id": "24.11", "extra": "24.11", "oom-kill-step": "24.11",
    "resv-ports": "24.11", "segment": "24.11", "stepmgr": "24.11", "tres-bind": "24.11", "tres-per-task": "24.11",
}
"""The entries of ``SBATCH_OPTIONS`` that only one of the two releases has, and which. Every other entry is the
same in both (name, value, letter). Slurm 26.05, which Debian also ships, is not in the table: it adds options with
a value (``--resources``, ``--container-type``, ``--mem-update``), which the reader calls unknown and, written as
two words, gives the next word as a SPANK plugin's option gets it; ``--get-user-env`` takes no value there since
25.05, and ``--requeue`` an optional one since 25.11."""

SAME_OPTION = {"tasks-per-node": "ntasks-per-node"}
"""A long name that is another option under a second name (the same .val, LONG_OPT_NTASKSPERNODE, in
slurm_opt.c; sbatch -v prints it as ntasks-per-node): the reader gives the option the name on the right.
getopt_long would not call a prefix of both ambiguous, but no prefix is one of both."""

_ARGUMENT = {name: argument for name, argument, _ in SBATCH_OPTIONS}


def ambiguous_in_every_release(candidates: Sequence[str]) -> bool:
    """Whether the long options a prefix could mean (an ``ambiguous`` ``Opt``'s ``candidates``) are several in the
    table of each release it was read from, not only in their union (``ONLY_IN``). Pure."""
    releases = sorted(set(ONLY_IN.values()))
    return all(sum(1 for name in candidates if ONLY_IN.get(name, release) == release) > 1 for release in releases)


def value_rule(name: str) -> Argument | None:
    """Whether the option ``name`` (a long name of ``SBATCH_OPTIONS``) takes a value; None for no such option."""
    return _ARGUMENT.get(name)
_SHORT = {short: name for name, _, short in SBATCH_OPTIONS if short}

Kind = Literal["option", "missing-value", "needless-value", "unknown", "ambiguous", "end", "operand", "separator"]
"""What a word (or a letter of a short-option word) is to sbatch:

* ``option``: a known option, with its value (None when it takes none, or an optional one was not given);
* ``missing-value``: a known option that requires a value, in the last word (sbatch fails);
* ``needless-value``: ``--name=value`` for an option that takes none (sbatch fails);
* ``unknown``: no sbatch option, or a SPANK plugin's (sbatch without that plugin fails), or one of a release
  newer than the table's; written ``--name value``, the next word (one that does not start with ``-``) is taken
  as its value, as a plugin's option with a value would take it;
* ``ambiguous``: a prefix of several long options (sbatch fails), listed in ``candidates``; the next word as for
  ``unknown`` (the table is the union of releases, so the prefix may name one option on the release at hand);
* ``end``: ``--``, after which every word is an operand;
* ``operand``: a word that is not an option: sbatch takes the first as the job script's path (instead of
  reading the script on stdin, as the dispatcher sends it) and the rest as the script's arguments;
* ``separator``: ``:`` between the components of a heterogeneous job.
"""


@dataclass(frozen=True)
class Opt:
    """One option (or other word) as sbatch reads it."""

    kind: Kind
    at: tuple[int, ...]
    """Its words' indexes in the arguments: one, or two when its value is the next word."""
    name: str
    """The option's long name as in ``SBATCH_OPTIONS`` (``"job-name"`` for ``--jo`` or ``-J``); "" for a word that
    is no known option (an ``ambiguous`` one has ``candidates``)."""
    value: str | None
    """Its value, or None. When not None, always the end of the word ``at[-1]`` (``with_value``)."""
    text: str
    """Its word or words as written, joined with a space (``"-vJ name"``); the whole word for a letter inside
    a run of short options."""
    option: str = ""
    """The option as written, without its value: ``"--jo"``, ``"-J"``; "" for an operand, ``--`` or ``:``."""
    start: int = 0
    """Where a short option's letter is in the word ``at[0]`` (1 for ``-J``, 2 for the ``J`` of ``-vJ``): the
    word before it, ``word[:start]``, holds the options before it; 0 for any other word."""
    candidates: tuple[str, ...] = ()
    """The long options an ``ambiguous`` prefix could mean, in ``SBATCH_OPTIONS`` order."""


def long_option(written: str) -> tuple[str, tuple[str, ...]]:
    """Return the long option that ``written`` (the part after ``--`` and before any ``=``) names, as getopt_long
    matches it: ``(name, ())`` for an exact name or a prefix of one option only; ``("", candidates)`` for a
    prefix of several; ``("", ())`` for none. Pure."""
    if written in _ARGUMENT:
        return SAME_OPTION.get(written, written), ()
    found = [name for name, _, _ in SBATCH_OPTIONS if name.startswith(written)]
    if len(found) == 1:
        return SAME_OPTION.get(found[0], found[0]), ()
    return "", tuple(found)


def _long(args: Sequence[str], i: int) -> tuple[Opt, int]:
    """Read the long option in ``args[i]``; return it and the index of the next word to read."""
    word = args[i]
    written, equals, value = word[2:].partition("=")
    name, candidates = long_option(written)
    option = "--" + written
    if not name:
        kind: Kind = "ambiguous" if candidates else "unknown"
        following = args[i + 1] if i + 1 < len(args) else None
        if not equals and following is not None and not following.startswith("-") and following != ":":
            # A SPANK plugin's option (``--container-image img``), one of a later release, or a prefix that only
            # the union of the releases' tables makes ambiguous may take the next word as its value: whether it
            # does is not known here, and reading that word as the script's path would refuse a working template.
            return Opt(kind, (i, i + 1), "", following, f"{word} {following}", option, candidates=candidates), i + 2
        return Opt(kind, (i,), "", None, word, option, candidates=candidates), i + 1
    argument = _ARGUMENT[name]
    if equals:
        if argument == NONE:
            return Opt("needless-value", (i,), name, None, word, option), i + 1
        return Opt("option", (i,), name, value, word, option), i + 1
    if argument != REQUIRED:
        return Opt("option", (i,), name, None, word, option), i + 1
    if i + 1 < len(args):
        return Opt("option", (i, i + 1), name, args[i + 1], f"{word} {args[i + 1]}", option), i + 2
    return Opt("missing-value", (i,), name, None, word, option), i + 1


def _short(args: Sequence[str], i: int) -> tuple[list[Opt], int]:
    """Read the run of short options in ``args[i]``; return them and the index of the next word to read."""
    word = args[i]
    found: list[Opt] = []
    for at in range(1, len(word)):
        letter, rest = word[at], word[at + 1:]
        name = _SHORT.get(letter, "")
        if not name:
            found.append(Opt("unknown", (i,), "", None, word, "-" + letter, at))
            continue
        argument = _ARGUMENT[name]
        if argument == NONE:
            found.append(Opt("option", (i,), name, None, word, "-" + letter, at))
            continue
        if rest or argument == OPTIONAL:
            found.append(Opt("option", (i,), name, rest or None, word, "-" + letter, at))
        elif i + 1 < len(args):
            found.append(Opt("option", (i, i + 1), name, args[i + 1], f"{word} {args[i + 1]}", "-" + letter, at))
            return found, i + 2
        else:
            found.append(Opt("missing-value", (i,), name, None, word, "-" + letter, at))
        break
    return found, i + 1


def read_args(args: Sequence[str], *, past_operands: bool = False) -> list[Opt]:
    """Return what sbatch reads in ``args`` (the words after ``sbatch``), in order: one ``Opt`` per option (each
    letter of a run of short options is one), per ``--``, ``:`` and operand. Pure.

    The rules are getopt_long's as sbatch calls it (this module's docstring). ``past_operands``: go on reading
    options after an operand or ``--``, as if they were not there. sbatch does not, but a check that must not
    miss an option (a job name) in a template that sbatch would refuse anyway may ask for it.
    """
    found: list[Opt] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            found.append(Opt("end", (i,), "", None, word))
            i += 1
            if not past_operands:
                found += [Opt("operand", (j,), "", None, args[j]) for j in range(i, len(args))]
                break
        elif word == ":":
            found.append(Opt("separator", (i,), "", None, word))
            i += 1
        elif word.startswith("--"):
            opt, i = _long(args, i)
            found.append(opt)
        elif word.startswith("-") and word != "-":
            opts, i = _short(args, i)
            found += opts
        elif past_operands:
            found.append(Opt("operand", (i,), "", None, word))
            i += 1
        else:
            found += [Opt("operand", (j,), "", None, args[j]) for j in range(i, len(args))]
            break
    return found


def with_value(args: Sequence[str], opt: Opt, value: str) -> list[str]:
    """Return ``args`` with the value of ``opt`` (read from these ``args``) replaced by ``value``, in the same form
    (``--exclude=V``, ``--exclude V``, ``-xV``, ``-HxV``, ``-x V``). Pure.

    Raises:
        ValueError: ``opt`` has no value.
    """
    if opt.value is None:
        raise ValueError(f"{opt.text!r} has no value to replace")
    out = list(args)
    word = out[opt.at[-1]]
    out[opt.at[-1]] = word[:len(word) - len(opt.value)] + value
    return out


__all__ = [
    "NONE",
    "ONLY_IN",
    "OPTIONAL",
    "REQUIRED",
    "SAME_OPTION",
    "SBATCH_OPTIONS",
    "Argument",
    "Kind",
    "Opt",
    "ambiguous_in_every_release",
    "long_option",
    "read_args",
    "value_rule",
    "with_value",
]
