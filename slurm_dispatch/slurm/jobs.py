"""The Slurm job of a container: what ``sbatch`` gets, as one value, from (container, settings).

The runner submits exactly this, and ``slurm-dispatch explain`` shows exactly this (with GatewayAuthSecret
redacted), so the two cannot disagree. Pure: no runner, backend or API client is needed to build it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from slurm_dispatch.model import Container
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.broken_nodes import with_exclude
from slurm_dispatch.slurm.sbatch import (
    batch_script,
    crunch_run_argv,
    gateway_auth_secret,
    sbatch_args,
    sbatch_environment,
)


@dataclass(frozen=True)
class SbatchJob:
    """Everything sbatch gets for one container. ``script`` and ``env`` hold secrets: never log them."""

    args: tuple[str, ...]
    """The argv after ``sbatch`` (no script path: the script goes on stdin)."""
    script: str = field(repr=False)
    """The job script, which ``exec``s crunch-run; it carries GatewayAuthSecret."""
    env: Mapping[str, str] = field(repr=False)
    """What sbatch gets beyond the backend's own environment: the Arvados API variables (the SystemRootToken
    among them) and SbatchEnvironmentVariables, which sbatch exports into the job."""


def job_for(container: Container, settings: Settings, *, exclude: Sequence[str] = ()) -> SbatchJob:
    """Return the sbatch arguments, job script and extra environment for ``container``. Pure.

    Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: submit (sbatchArgs, execScript, and the
    environment its configure step puts in the process environment). The backend already starts every Slurm
    command from PATH, SLURM_CONF and SbatchEnvironmentVariables (``slurm_command_env``); ``env`` repeats
    SbatchEnvironmentVariables so that they also win over the backend's ``LC_ALL=C``. ``exclude`` are nodes
    reported broken (``slurm.broken_nodes``): they join the job's ``--exclude``.

    Raises:
        SbatchTemplateError: the template has an unknown ``%x``.
        UnsatisfiableContainer: instance types are configured and none fits, or a partition name is one no Slurm
            partition can have.
    """
    args = with_exclude(sbatch_args(container, settings), exclude)
    secret = gateway_auth_secret(settings.system_root_token, container.uuid)
    script = batch_script(crunch_run_argv(container.uuid, settings), {"GatewayAuthSecret": secret})
    return SbatchJob(args=tuple(args), script=script, env=sbatch_environment(settings, {}))


__all__ = ["SbatchJob", "job_for"]
