"""What the service refuses to start with: the checks ``run`` and ``config check`` share.

Owns ``template_problems`` (the sbatch templates) and ``startup_problems`` (everything ``run`` refuses; it
includes ``template_problems``). Each returns one human line per problem; ``run`` and ``config check`` call
the same function, so they refuse exactly the same configs (both exit 2). Pure.

The template grammar is not repeated here: every argument is run through ``slurm.sbatch.substitute``, the
function that builds each real sbatch command, with a value for every token it knows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from slurm_dispatch.errors import SbatchTemplateError
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.sbatch import TEMPLATE_TOKENS, substitute
from slurm_dispatch.slurm.sbatch_options import (
    OPTIONAL,
    Opt,
    ambiguous_in_every_release,
    read_args,
    value_rule,
)

_EVERY_TOKEN = {letter: "1" for letter in TEMPLATE_TOKENS if letter != "%"}
"""A value for every template token, so ``substitute`` fails only on a token it does not know."""
_UNKNOWN_TOKEN_RE = re.compile(r"parameter (%.) in ")
KNOWN_TOKENS = "%U %C %M %T %G %W %P %I %%"
"""The template tokens, as messages list them."""


def template_arg_problem(arg: str) -> str | None:
    """Returns the unknown ``%x`` that ``substitute`` refuses in one argument, or None when it accepts it. Pure."""
    try:
        substitute(arg, _EVERY_TOKEN)
    except SbatchTemplateError as exc:
        found = _UNKNOWN_TOKEN_RE.search(str(exc))
        return found.group(1) if found else str(exc)
    return None


def job_names(args: Sequence[str]) -> list[tuple[int, str, str]]:
    """Returns ``(index, text, name)`` for each argument that sets sbatch's job name, in order. Pure.

    The arguments are read as sbatch reads them (``slurm.sbatch_options.read_args``): ``--job-name=N``,
    ``--job-name N``, any prefix of it that names no other option (``--jo=N``, ``--job-na N``), ``-JN``,
    ``-J N``, and ``J`` in a run of short options (``-HJN``, ``-vJ N``); not a value another option takes
    (``-oJob.out``, ``-o -Jx``, ``--comment -Jx``, ``-kJx``). ``text`` is the word, or the two words joined
    with a space; a ``-J`` in the last word, without a name, counts with the name "". Words after a script
    path or ``--`` (where sbatch stops reading options) are read as options too: this refuses only templates
    that cannot work, and never lets a renamed job through. sbatch takes the last name; squeue finds jobs by
    the name ``%U`` gives them.
    """
    return [(opt.at[0], opt.text, opt.value or "") for opt in read_args(args, past_operands=True)
            if opt.name == "job-name" and opt.kind in ("option", "missing-value")]


RENAMED_JOB = "sbatch takes the last --job-name, and squeue finds jobs by --job-name=%U"
"""Why a job name other than %U after the template's is refused."""


def misread_words(args: Sequence[str]) -> list[tuple[int, str]]:
    """Returns ``(index, why)`` for each word of an sbatch template that sbatch would not read as a template's
    option, whatever the container (``sbatch_options.read_args``). Pure.

    The dispatcher sends sbatch its template, then arguments of its own, and the job's script on stdin. A word
    that is no option (a stray value) would become the job script's path; ``--`` would make the dispatcher's own
    arguments the script's; ``:`` would start a second job component; an option left without its value would
    take the next argument as one; a value given to an option that takes none, or a short option sbatch does not
    have, fails every sbatch; so does a prefix of several options on every release the table was read from (``--exc``:
    ``--exclude``, ``--exclusive``). Unknown long options are not refused: a SPANK plugin adds its own to sbatch
    (src/common/spank.c), and only on the nodes that have it. Nor is a prefix ambiguous only in the union of the
    releases' tables (``--ext``): it names one option on the release at hand.
    """
    found: list[tuple[int, str]] = []
    previous: Opt | None = None
    for opt in read_args(args):
        word = args[opt.at[0]]
        if found and found[-1][0] == opt.at[0]:
            continue  # one line a word (``-10`` is two letters sbatch does not have)
        joined_only = (previous is not None and previous.kind == "option" and previous.value is None
                       and value_rule(previous.name) == OPTIONAL and previous.at[-1] == opt.at[0] - 1)
        previous = opt
        if joined_only and (opt.kind == "operand" or (opt.kind == "unknown" and not word.startswith("--"))):
            # ``--nice 5``, ``--exclusive user``, ``-k x``: getopt gives an optional value only in the same word
            option = args[opt.at[0] - 1]
            joined = f"{option}={word}" if option.startswith("--") else f"{option}{word}"
            why = (f"{option!r} takes its value only joined to it ({joined!r}): sbatch would read {word!r} "
                   + ("as the job script's path" if opt.kind == "operand" else "as an option, and fail"))
        elif opt.kind == "operand":
            why = (f"{opt.text!r} is not an sbatch option: sbatch would take it as the job script's path instead "
                   "of reading crunch-run's script on stdin")
        elif opt.kind == "end":
            why = "'--' ends sbatch's options: the dispatcher's own arguments after it would become the script's"
        elif opt.kind == "separator":
            why = "':' would start a second component of a heterogeneous job; the dispatcher submits one per container"
        elif opt.kind == "missing-value":
            why = (f"{opt.option!r} takes a value and none follows it: it would take the next argument the "
                   "dispatcher adds as its value")
        elif opt.kind == "needless-value":
            why = f"{opt.text!r}: --{opt.name} takes no value; every sbatch would fail"
        elif opt.kind == "ambiguous" and ambiguous_in_every_release(opt.candidates):
            names = ", ".join(f"--{name}" for name in opt.candidates)
            why = f"{opt.text!r}: {opt.option} could be any of {names}; every sbatch would fail"
        elif opt.kind == "unknown" and not opt.option.startswith("--"):
            why = f"{opt.text!r}: sbatch has no option {opt.option}; every sbatch would fail"
        else:
            continue
        found.append((opt.at[0], why))
        if opt.kind in ("operand", "end"):
            break  # every word after it is the script's: one line says it
    return found


def template_list_problems(args: Sequence[str], *, job_name: bool = True) -> list[tuple[int, str]]:
    """Returns ``(index, why)`` for each problem of one sbatch template list that every container would meet, in
    the order of the arguments; each ``why`` starts with the argument, quoted. Pure.

    An unknown ``%x`` (anything ``slurm.sbatch.substitute`` refuses: all but ``%U %C %M %T %G %W %P %I %%``; a
    lone trailing ``%`` is fine); a word sbatch would misread (``misread_words``); and, with ``job_name``, a last
    job name other than ``%U``: sbatch takes the last ``--job-name`` (or ``-J``, in any form: ``job_names``),
    and squeue finds jobs by the name ``%U`` gives them. The one list of these rules for SbatchArgumentsList,
    SbatchGPUArgumentsList and ``Limits.SupervisorSbatchArguments``.
    """
    found = [(i, f"{arg!r}: unknown substitution parameter {bad!r} (known: {KNOWN_TOKENS}); every sbatch would fail")
             for i, arg in enumerate(args) if (bad := template_arg_problem(arg)) is not None]
    found += misread_words(args)
    names = job_names(args)
    if job_name and names and names[-1][2] != "%U":
        at, text, _ = names[-1]
        found.append((at, (f"{text!r} would rename the job: {RENAMED_JOB}, so every job would look gone and its "
                          "container would be unlocked and relocked endlessly")))
    return sorted(found, key=lambda problem: problem[0])


def template_problems(settings: Settings) -> list[str]:
    """Returns human messages for sbatch templates the service must refuse.

    Each of SbatchArgumentsList and SbatchGPUArgumentsList gets ``template_list_problems``, and
    SbatchArgumentsList must name the job ``%U``: the Go dispatcher builds sbatch's arguments only from the
    template (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs) and finds jobs in squeue by
    that name (squeue.go: SqueueChecker.check), so without it every job looks gone and its container is
    unlocked and relocked endlessly. Pure.
    """
    prefix = f"Clusters.{settings.cluster_id}.Containers.SLURM"
    named = any(name == "%U" for _, _, name in job_names(settings.sbatch_arguments))
    problems: list[str] = []
    for key, args in (("SbatchArgumentsList", settings.sbatch_arguments),
                      ("SbatchGPUArgumentsList", settings.sbatch_gpu_arguments)):
        # without %U at all, "lacks --job-name=%U" below says it: not also "would rename the job"
        problems += [f"{prefix}.{key}[{i}] {why}" for i, why in template_list_problems(args, job_name=named)]
    if not settings.sbatch_arguments:
        problems.append(f"{prefix}.SbatchArgumentsList is empty: sbatch would get no --job-name=%U, so every job "
                        "would look gone and its container would be unlocked and relocked endlessly (remove the "
                        "key to use the default template)")
    elif not named:
        problems.append(f"{prefix}.SbatchArgumentsList lacks --job-name=%U: squeue finds jobs by that name, "
                        "so every job would look gone and its container would be unlocked and relocked "
                        "endlessly")
    return problems


def startup_problems(settings: Settings) -> list[str]:
    """Returns every reason the service must refuse to start with these settings, one line each.

    ``template_problems``, then a missing SystemRootToken or Services.Controller.ExternalURL (after the
    ARVADOS_API_TOKEN / ARVADOS_API_HOST fill-ins: without them the API client cannot be built), then missing
    or unusable Services.DispatchSLURM.InternalURLs (the health and metrics server). Everything else ``run``
    needs from the config is refused by the loader. Pure.
    """
    problems = template_problems(settings)
    cluster = f"Clusters.{settings.cluster_id}"
    if not settings.system_root_token:
        problems.append(f"{cluster}.SystemRootToken is empty: the dispatcher has no Arvados API token (set it, "
                        "or ARVADOS_API_TOKEN in the service's environment)")
    if not settings.controller_url:
        problems.append(f"{cluster}.Services.Controller.ExternalURL is empty: the dispatcher does not know "
                        "where the Arvados API is (set it, or ARVADOS_API_HOST in the service's environment)")
    key = f"Clusters.{settings.cluster_id}.Services.DispatchSLURM.InternalURLs"
    if not settings.dispatch_internal_urls:
        problems.append(f"{key} is empty: could "
                        "not enable the \"crunch-dispatch-slurm\" service (add e.g. "
                        "\"http://localhost:9006\": {})")
    for url in settings.dispatch_internal_urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "http" or port is None:
            problems.append(f"{key}: {url!r} cannot serve the health and metrics endpoint: it must be "
                            "http:// with an explicit port (e.g. \"http://localhost:9006\")")
    return problems
