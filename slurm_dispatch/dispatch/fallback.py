"""What a tracker writes and which state it falls back to when its RunContainer fails.

Port of the error branch of sdk/go/dispatch/dispatch.go ``start``. Pure.
"""

from __future__ import annotations

from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import ContainerState


def failure_report(uuid: str, error: BaseException) -> tuple[str, ContainerState]:
    """Return the ``dispatch`` log text for a failed RunContainer and its fallback state. Pure.

    An ``UnsatisfiableContainer`` can never run: the text lists the available instance
    types (arvados-reference.md §6.7; not when sbatch refused the job, which is not about
    instance types) and the fallback is Cancelled. Any other error
    gives ``Error running container <uuid>: <error>`` and the fallback Queued, so another
    attempt (possibly by another dispatcher) can follow.
    """
    if isinstance(error, UnsatisfiableContainer):
        return error.log_text(), ContainerState.CANCELLED
    return f"Error running container {uuid}: {error}", ContainerState.QUEUED
