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

_EVERY_TOKEN = {letter: "1" for letter in TEMPLATE_TOKENS if letter != "%"}
"""A value for every template token, so ``substitute`` fails only on a token it does not know."""
_UNKNOWN_TOKEN_RE = re.compile(r"parameter (%.) in ")


def _template_arg_problem(arg: str) -> str | None:
    """Returns the unknown ``%x`` that ``substitute`` refuses in one argument, or None when it accepts it."""
    try:
        substitute(arg, _EVERY_TOKEN)
    except SbatchTemplateError as exc:
        found = _UNKNOWN_TOKEN_RE.search(str(exc))
        return found.group(1) if found else str(exc)
    return None


def _has_job_name(args: Sequence[str]) -> bool:
    pairs = zip(args, list(args[1:]) + [""], strict=True)
    return any(a in ("--job-name=%U", "-J%U") or (a in ("--job-name", "-J") and b == "%U") for a, b in pairs)


def template_problems(settings: Settings) -> list[str]:
    """Returns human messages for sbatch templates the service must refuse.

    Checks SbatchArgumentsList and SbatchGPUArgumentsList for an unknown ``%x`` (anything
    ``slurm.sbatch.substitute`` refuses: all but ``%U %C %M %T %G %W %P %I %%``; a lone trailing ``%`` is
    fine) and SbatchArgumentsList for ``--job-name=%U``: the Go dispatcher builds sbatch's arguments only from
    the template (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs) and finds jobs in
    squeue by that name (squeue.go: SqueueChecker.check), so without it every job looks gone and its
    container is unlocked and relocked endlessly. Pure.
    """
    prefix = f"Clusters.{settings.cluster_id}.Containers.SLURM"
    problems: list[str] = []
    for key, args in (("SbatchArgumentsList", settings.sbatch_arguments),
                      ("SbatchGPUArgumentsList", settings.sbatch_gpu_arguments)):
        for i, arg in enumerate(args):
            bad = _template_arg_problem(arg)
            if bad is not None:
                problems.append(f"{prefix}.{key}[{i}] {arg!r}: unknown substitution parameter {bad!r} "
                                "(known: %U %C %M %T %G %W %P %I %%); every sbatch would fail")
    if not _has_job_name(settings.sbatch_arguments):
        problems.append(f"{prefix}.SbatchArgumentsList lacks --job-name=%U: squeue finds jobs by that name, "
                        "so every job would look gone and its container would be unlocked and relocked "
                        "endlessly")
    return problems


def startup_problems(settings: Settings) -> list[str]:
    """Returns every reason the service must refuse to start: ``template_problems`` plus missing InternalURLs.

    Pure.
    """
    problems = template_problems(settings)
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
