"""What a tracker does after its RunContainer returns: the report of a failure, and the fallback state.

Port of sdk/go/dispatch/dispatch.go ``start`` (its error branch and the loop after RunContainer returns).
``failure_report`` is pure; ``apply_fallback`` reads the tracker's updates until it is closed.

Fallback: when a RunContainer returns, the tracker keeps reading updates until it is closed; from the second
update on, each one still showing Locked makes it set the container to the fallback state (Queued, or Cancelled for
``UnsatisfiableContainer``, with the reason as ``runtime_status``). One difference from Go: a container still
Running is handed back to the dispatcher (the tracker ends), so that the next tick adopts it afresh: its new
RunContainer follows the job if the job is alive, or settles the container if the job has gone; after
``MAX_HAND_BACKS`` hand-backs in a row (a RunContainer that fails every time) it is set to Cancelled. Go PUTs Queued,
which the API refuses for a Running container, on every tick for as long as it lives, and nothing follows its job;
cancelling it instead would kill a healthy container whose RunContainer failed (an sbatch that timed out, yet
created the job, whose crunch-run then started).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slurm_dispatch.dispatch.tracker import UpdateChannel
from slurm_dispatch.errors import DispatchError, UnsatisfiableContainer
from slurm_dispatch.model import ContainerState, with_error

logger = logging.getLogger("slurm_dispatch.dispatch")

MAX_HAND_BACKS = 3
"""Hand-backs of a Running container in a row (each after its RunContainer failed) before the fallback cancels it."""


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


async def apply_fallback(
    channel: UpdateChannel,
    *,
    uuid: str,
    fallback: ContainerState,
    status: Mapping[str, str] | None,
    update: Callable[[str, Mapping[str, Any]], Awaitable[Any]],
    hand_back: bool = True,
) -> bool:
    """Read updates until the channel closes; from the 2nd one still Locked, PUT ``fallback``.

    A Cancelled fallback carries ``status`` (the reason) as ``runtime_status``. From the 2nd update showing the
    container Running: with ``hand_back``, return at once, so that the tracker ends and the next tick adopts the
    container again (see the module docstring); without it (it was handed back ``MAX_HAND_BACKS`` times in a row
    already), PUT Cancelled. Blocks until then or until the channel closes; ``update`` errors are logged (once per
    distinct error at warning) and retried on the next update.

    Returns:
        True if the container was handed back.
    """
    count = 0
    last_error = ""
    async for current in channel:
        count += 1
        # The first update may predate the RunContainer's return: skip it (as Go does).
        if count < 2 or not current.state.is_locked:
            continue
        if current.state is ContainerState.RUNNING and hand_back:
            logger.info("container %s is still Running: handing it back, so that the next tick adopts it and "
                        "follows its Slurm job afresh", uuid)
            return True
        target = ContainerState.CANCELLED if current.state is ContainerState.RUNNING else fallback
        logger.info("container %s state is still %s, changing to %s", uuid, current.state.value, target.value)
        fields: dict[str, Any] = {"state": target.value}
        if target is ContainerState.CANCELLED and status:
            fields["runtime_status"] = with_error(current.runtime_status, status)  # keeps crunch-run's keys
        try:
            await update(uuid, fields)
        except DispatchError as exc:
            level = logging.DEBUG if str(exc) == last_error else logging.WARNING
            last_error = str(exc)
            logger.log(level, "error updating container %s to state %s: %s", uuid, target.value, exc)
    return False
