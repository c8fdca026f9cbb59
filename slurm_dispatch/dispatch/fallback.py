"""What a tracker writes, and which state it falls back to, when its RunContainer fails.

Port of the error branch of sdk/go/dispatch/dispatch.go ``start``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import ContainerState


@dataclass(frozen=True)
class FailureReport:
    """What the dispatch core does after a RunContainer raised."""

    log_text: str
    """The ``dispatch`` log record written on the container."""
    fallback: ContainerState
    """The state to put the container in: Queued (retry later) or Cancelled (it can never run here)."""
    runtime_status: Mapping[str, str] | None
    """For Cancelled: ``runtime_status`` with the reason (``error``, ``errorDetail``), as users see it."""


def failure_report(uuid: str, error: BaseException) -> FailureReport:
    """Return the log text, the fallback state and the runtime_status for a failed RunContainer. Pure.

    An ``UnsatisfiableContainer`` can never run: the text lists the available instance types
    (services/crunch-dispatch-slurm via sdk/go/dispatch/dispatch.go: ConstraintsNotSatisfiableError; not when
    sbatch refused the job, which is not about instance types), the fallback is Cancelled and the reason goes
    into ``runtime_status`` too, as Arvados's cloud and LSF dispatchers write it (lib/lsf/dispatch.go:
    runContainer). Any other error gives ``Error running container <uuid>: <error>`` and the fallback Queued,
    so another attempt (possibly by another dispatcher) can follow.
    """
    if isinstance(error, UnsatisfiableContainer):
        text = error.log_text()
        status = {"error": str(error), "errorDetail": text.rstrip("\n")}
        return FailureReport(text, ContainerState.CANCELLED, status)
    return FailureReport(f"Error running container {uuid}: {error}", ContainerState.QUEUED, None)
