"""What we hand to sbatch: its arguments, the job script on its stdin, and its environment.

All pure: the caller passes the container, the Settings and (for the
environment) the base environment; nothing here reads the clock, ``os.environ``
or a file. Ports of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go
(Dispatcher.sbatchArgs, Dispatcher.submit, Dispatcher.configure) and script.go
(execScript).

The script carries GatewayAuthSecret, derived from the SystemRootToken, so it
goes to sbatch on stdin and must never be logged. The API token reaches
crunch-run through sbatch's environment (sbatch exports it into the job), which
is why ``sbatch_environment`` exists: the caller passes it as ``env=`` rather
than putting the token into its own ``os.environ``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from slurm_dispatch.errors import SbatchTemplateError, UnsatisfiableContainer
from slurm_dispatch.model import Container, MiB
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.instance_types import choose_instance_type, estimate_scratch
from slurm_dispatch.slurm.sbatch_options import read_args

INITIAL_NICE = 10000
"""Nice of every job at submission. It puts a new job behind the jobs already
queued until the next renice pass moves it to where its Arvados priority says it
belongs, so a low-priority container never starts ahead of higher ones in the
meantime. 10000 was the largest nice that Slurm ≤ 15 accepted; it is kept for
compatibility with the Go dispatcher (services/crunch-dispatch-slurm: initialNiceValue)."""

TEMPLATE_TOKENS = frozenset("CGIMPTUW%")
"""The letters after ``%`` that SbatchArgumentsList and SbatchGPUArgumentsList may use."""

_NOT_IN_A_PARTITION_NAME = re.compile(r"[\s\x00-\x1f\x7f]")
"""What no Slurm partition name holds (slurm.conf separates its words with whitespace). A comma is allowed: the names
are joined with commas for ``%P``, and Slurm reads a name holding one as a list, as Go passes it."""

_TOKEN_RE = re.compile(r"%.")  # like Go's regexp: "." does not match a newline, so "%\n" stays as is
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ceil_div(n: int, d: int) -> int:
    """Return ceil(n / d) in exact integer arithmetic (Go uses float64; equal below 2**53)."""
    return -(-n // d)


def substitute(arg: str, values: Mapping[str, str]) -> str | None:
    """Return one template argument with its ``%x`` tokens replaced, or None to drop it. Pure.

    ``values`` maps a token letter (``"C"``, ``"U"``, ...; see ``TEMPLATE_TOKENS``)
    to its text; ``%%`` always becomes ``%``. An argument with a ``%P`` whose value
    is ``""``, or a ``%W`` whose value is ``"0"``, is dropped whole. A lone ``%``
    at the end of the argument is left as it is. A config validator can check a
    template by calling this with a value for every letter in ``TEMPLATE_TOKENS``.
    Port of the substitution loop in crunch-dispatch-slurm.go: sbatchArgs.

    Raises:
        SbatchTemplateError: a ``%x`` that is not a known token (including ``"% "``),
            or a known one missing from ``values``.
    """
    drop = False
    unknown: list[str] = []

    def replace(m: re.Match[str]) -> str:
        nonlocal drop
        token = m.group(0)
        letter = token[1]
        if letter == "%":
            return "%"
        if letter not in TEMPLATE_TOKENS or letter not in values:
            unknown.append(token)
            return ""
        value = values[letter]
        if (letter == "P" and value == "") or (letter == "W" and value == "0"):
            drop = True
        return value

    result = _TOKEN_RE.sub(replace, arg)
    if unknown:
        # Go keeps the last unknown token it met; so do we.
        raise SbatchTemplateError(
            f"Unknown substitution parameter {unknown[-1]} in SbatchArgumentsList or SbatchGPUArgumentsList"
        )
    return None if drop else result


def template_values(container: Container, settings: Settings) -> dict[str, str]:
    """Return the value of every template token for this container (keys are token letters). Pure.

    ``%M`` is ceil((ram + keep_cache_ram + ReserveExtraRAM) / MiB); ``%T`` is
    ceil(scratch estimate / MiB); ``%W`` is ceil(``time_limit_s`` / 60) minutes;
    ``%P`` is the partitions joined with ","; ``%I`` is the cheapest suitable
    instance type, or "" when none are configured.

    Raises:
        UnsatisfiableContainer: InstanceTypes is configured and none can run the
            container (checked even when no argument uses ``%I``), or a partition name holds whitespace or a
            control character (checked even when no argument uses ``%P``).
    """
    rc = container.runtime_constraints
    sp = container.scheduling_parameters
    for i, name in enumerate(sp.partitions):
        if _NOT_IN_A_PARTITION_NAME.search(name):
            raise UnsatisfiableContainer(
                container.uuid,
                f"scheduling_parameters.partitions[{i}] is {name!r}, which no Slurm partition is named (a name "
                "holds no whitespace or control character)",
                available=None,
            )
    instance_type = choose_instance_type(container, settings)
    return {
        "C": str(rc.vcpus),
        "G": str(rc.gpu.device_count),
        "I": instance_type.name if instance_type else "",
        "M": str(_ceil_div(rc.ram + rc.keep_cache_ram + settings.reserve_extra_ram, MiB)),
        "P": ",".join(sp.partitions),
        "T": str(_ceil_div(estimate_scratch(container), MiB)),
        "U": container.uuid,
        "W": str(time_limit_min(container, settings)),
    }


def max_run_time_s(container: Container, settings: Settings) -> int:
    """Return the container's max_run_time in seconds, or ``TimeLimit.DefaultMaxRunTime`` when it is 0; 0 for
    none. Pure."""
    return container.scheduling_parameters.max_run_time or int(settings.default_max_run_time)


def time_limit_min(container: Container, settings: Settings) -> int:
    """Return the job's time limit as sbatch gets it (``%W``): ``time_limit_s`` rounded up to whole minutes, 0 for
    none. Pure."""
    return _ceil_div(time_limit_s(container, settings), 60)


def time_limit_s(container: Container, settings: Settings) -> int:
    """Return the Slurm time limit of the container's job in seconds, 0 for none. Pure.

    max_run_time (or ``TimeLimit.DefaultMaxRunTime`` when it is 0), plus ``TimeLimit.Overhead`` when there is a
    limit at all: crunch-run enforces max_run_time itself from the moment the container starts (after the image
    is loaded), so Slurm's limit must leave it room to stop the container cleanly. Port of lib/lsf/dispatch.go:
    bsubArgs (MaxRunTimeDefault, MaxRunTimeOverhead); Go's crunch-dispatch-slurm adds nothing.
    """
    limit = max_run_time_s(container, settings)
    return limit + int(settings.max_run_time_overhead) if limit > 0 else 0


def _mentions_signal(args: Sequence[str]) -> bool:
    """Whether sbatch reads a ``--signal`` in ``args``, in any form (``--sig=B:USR1@60``, ``--signal USR1``). Pure."""
    return any(opt.name == "signal" for opt in read_args(args))


def _templated(template: Sequence[str], values: Mapping[str, str]) -> list[str | None]:
    """Return each template argument substituted (``substitute``), None for one dropped. Pure.

    When a dropped argument is the value of the option before it (``-t %W``, ``--partition %P``), the option
    goes too: left alone, it would take the next argument as its value. In a run of short options (``-Ht %W``)
    only its letter goes (``-H`` stays).

    Raises:
        SbatchTemplateError: an unknown ``%x``.
    """
    out = [substitute(arg, values) for arg in template]
    for first, second, start in _split_values(tuple(template)):
        if out[second] is None and out[first] is not None:
            out[first] = substitute(template[first][:start], values) if start > 1 else None
    return out


@functools.lru_cache(maxsize=16)
def _split_values(template: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    """``(option's word, its value's word, where its letter is)`` for each option of ``template`` whose value is the
    next word. Pure; remembered, as a site has one template or a few (read once, not for every container)."""
    return tuple((opt.at[0], opt.at[1], opt.start) for opt in read_args(template) if len(opt.at) == 2)


def sbatch_args(container: Container, settings: Settings) -> list[str]:
    """Return the whole argv after ``sbatch`` for this container. Pure.

    ``--nice=10000 --no-requeue`` always come first; the rest comes only from the
    templated SbatchArgumentsList, then SbatchGPUArgumentsList when the container
    asks for GPUs (``gpu.device_count > 0``; the deprecated ``cuda`` key is not
    read), then ``Limits.SupervisorSbatchArguments`` for a supervisor. When a ``%W``
    argument was kept (the job has a time limit), ``--signal=B:TERM@<StopSignalBefore>``
    follows unless the template already sets ``--signal``. So a template without ``--job-name=%U`` submits jobs the dispatcher can
    never find in squeue. The script goes on stdin: there is no script path.
    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs.

    Raises:
        SbatchTemplateError: an unknown ``%x`` in a template.
        UnsatisfiableContainer: InstanceTypes is configured and none fits.
    """
    values = template_values(container, settings)
    template = _template(container, settings)
    out = _templated(template, values)
    args = [f"--nice={INITIAL_NICE}", "--no-requeue", *(arg for arg in out if arg is not None)]
    limited = any("%W" in arg for arg, kept in zip(template, out, strict=True) if kept is not None)
    if limited and settings.time_limit_signal > 0 and not _mentions_signal(args):
        # SIGTERM to the batch shell (which execs crunch-run) before the hard kill at the limit, so crunch-run
        # stops the container and saves its logs; Slurm may send it up to a minute early (sbatch(1) --signal).
        args.append(f"--signal=B:TERM@{int(settings.time_limit_signal)}")
    return args


def _template(container: Container, settings: Settings) -> list[str]:
    """The template arguments that apply to this container (see ``sbatch_args``). Pure."""
    template = list(settings.sbatch_arguments)
    if container.runtime_constraints.gpu.device_count > 0:
        template += settings.sbatch_gpu_arguments
    if container.scheduling_parameters.supervisor:
        template += settings.supervisor_sbatch_arguments
    return template


def has_time_limit(container: Container, settings: Settings) -> bool:
    """Return True if this container's job gets its time limit from us: a ``%W`` template argument is kept (the
    container has a limit, ``time_limit_s``). A fixed ``--time`` in the template is the site's, not the
    container's max_run_time. Pure."""
    return time_limit_s(container, settings) > 0 and any("%W" in arg for arg in _template(container, settings))


def gateway_auth_secret(root_token: str, uuid: str) -> str:
    """Return GatewayAuthSecret: lowercase hex HMAC-SHA256 of the container uuid, keyed by the root token. Pure.

    crunch-run's container gateway accepts connections that prove they know it.
    Port of crunch-dispatch-slurm.go: submit.
    """
    return hmac.new(root_token.encode(), uuid.encode(), hashlib.sha256).hexdigest()


def crunch_run_argv(container_uuid: str, settings: Settings) -> list[str]:
    """Return the command the job runs: CrunchRunCommand, CrunchRunArgumentsList, --runtime-engine, uuid. Pure.

    Port of crunch-dispatch-slurm.go: submit.
    """
    return [
        settings.crunch_run_command,
        *settings.crunch_run_arguments,
        f"--runtime-engine={settings.runtime_engine}",
        container_uuid,
    ]


def _sh_quote(word: str) -> str:
    """Return ``word`` in single quotes for /bin/sh, each ``'`` written as ``'\\''``."""
    return "'" + word.replace("'", "'\\''") + "'"


def _shown_name(name: str) -> str:
    """Return an environment variable name for an error message: its repr, cut to 60 characters. Pure.

    The names come from the config (SbatchEnvironmentVariables): a very long one must not make a very long
    message.
    """
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def batch_script(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Return the job script: a shebang line, then ``K='v' ... exec 'arg' ...`` and a newline. Pure.

    Each env entry is ``K='v' `` and each argv word `` 'w'``, every ``'`` inside a
    value written as ``'\\''``; entries keep the mapping's order. The text holds
    secrets (GatewayAuthSecret): send it on stdin and never log it.
    Port of services/crunch-dispatch-slurm/script.go: execScript.

    Raises:
        ValueError: an env name is not a shell variable name, or a word contains a
            NUL (which no shell word or environment entry can hold).
    """
    parts = ["#!/bin/sh\n"]
    for name, value in env.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"batch script: {_shown_name(name)} is not a valid environment variable name")
        if "\0" in value:
            raise ValueError(f"batch script: the value of {_shown_name(name)} contains a NUL character")
        parts.append(f"{name}={_sh_quote(value)} ")
    parts.append("exec")
    for word in argv:
        if "\0" in word:
            raise ValueError("batch script: a command word contains a NUL character")
        parts.append(" " + _sh_quote(word))
    parts.append("\n")
    return "".join(parts)


def _sets_environment(settings: Settings) -> bool:
    """Whether the config sets the Slurm commands' environment: Go does only when the controller URL or the
    token is configured (otherwise it falls back on the inherited environment, deprecated). Pure."""
    return bool(settings.api_host or settings.system_root_token)


def sbatch_environment(settings: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """Return the explicit environment for the sbatch child (and so for the job and crunch-run). Pure.

    ``base_env`` (what the caller chooses to pass on, e.g. PATH and SLURM_CONF)
    plus ARVADOS_API_HOST (host[:port], no scheme), ARVADOS_API_TOKEN,
    ARVADOS_API_HOST_INSECURE ("1" or "") and then SbatchEnvironmentVariables,
    which win over everything else. As in Go, when neither the controller URL nor
    the token is configured nothing is added: the job relies on ``base_env``.
    The result holds the SystemRootToken: never log it.
    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: configure
    (which sets these in its own process environment instead).
    """
    env = dict(base_env)
    if not _sets_environment(settings):
        return env
    env["ARVADOS_API_HOST"] = settings.api_host
    env["ARVADOS_API_TOKEN"] = settings.system_root_token
    env["ARVADOS_API_HOST_INSECURE"] = "1" if settings.tls_insecure else ""
    env.update(settings.sbatch_environment)
    return env


def slurm_command_env(settings: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of every Slurm command: ``base_env`` plus SbatchEnvironmentVariables. Pure.

    The Go dispatcher sets SbatchEnvironmentVariables in its own process environment, so squeue, scancel,
    scontrol and sinfo see them as sbatch does: a ``SLURM_CONF`` there must point every command, not only
    sbatch, at the same cluster. The Arvados API variables are not added here; only sbatch needs them. As in
    ``sbatch_environment``, nothing is added when neither the controller URL nor the token is configured.
    """
    if not _sets_environment(settings):
        return dict(base_env)
    return {**base_env, **settings.sbatch_environment}


__all__ = [
    "INITIAL_NICE",
    "TEMPLATE_TOKENS",
    "batch_script",
    "crunch_run_argv",
    "gateway_auth_secret",
    "has_time_limit",
    "max_run_time_s",
    "sbatch_args",
    "sbatch_environment",
    "slurm_command_env",
    "substitute",
    "template_values",
    "time_limit_min",
]
