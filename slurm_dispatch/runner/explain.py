"""The runner's failure reasons, said where admins and users look: the container's log, its runtime_status.

``slurm_dispatch.slurm.reasons`` puts Slurm's answers in words (pure); this module asks Slurm how a job ended
(``JobEndReader``, batched), writes the words on the container, and reports a node crunch-run found broken
(``BrokenNodes``). The runner (``core``) decides when.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from slurm_dispatch.errors import DispatchError, SlurmCommandError
from slurm_dispatch.model import Container, ContainerState, with_error
from slurm_dispatch.runner.ports import Dispatch
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.backend import SlurmBackend
from slurm_dispatch.slurm.broken_nodes import BrokenNodes, broken_node_in
from slurm_dispatch.slurm.decide import RunnerView
from slurm_dispatch.slurm.end_reader import JobEndReader
from slurm_dispatch.slurm.reasons import (
    EndReason,
    JobEnd,
    end_detail,
    end_reason,
    job_started,
    never_runnable_reason,
    time_limit_reason,
)
from slurm_dispatch.slurm.sbatch import has_time_limit, max_run_time_s, time_limit_min

logger = logging.getLogger("slurm_dispatch.runner")

T = TypeVar("T")

REFUSED_COMMENTS_REMEMBERED = 256
"""How many jobs with a refused broken-node Comment the runner remembers, so that each is logged once."""

SLURM_ENDED_STATES = frozenset({"CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
                                "DEADLINE"})
"""End states that mean Slurm (or an admin through Slurm) ended the job. The dispatcher's own scancel of a running
job signals the batch shell only, and such a job ends COMPLETED or FAILED, never CANCELLED."""


class Explainer:
    """Finds out and writes why a container's job failed. Use it from the runner's event loop."""

    def __init__(
        self,
        *,
        settings: Settings,
        backend: SlurmBackend,
        ends: JobEndReader | None,
        broken: BrokenNodes | None,
        slurm: Callable[..., Awaitable[Any]],
        clock: Callable[[], float],
        get: Callable[[str], Container] | None = None,
    ) -> None:
        """Create it; does no I/O.

        Args:
            settings: for the default max_run_time.
            backend: drains a broken node (with BrokenNodes.Action ``drain``).
            ends: where to ask how a vanished job ended (None: the backend cannot say).
            broken: the nodes crunch-run reported broken (None: not tracked).
            slurm: runs a blocking Slurm call off the event loop.
            clock: monotonic seconds.
            get: reads a container (blocking; run through ``Dispatch.call``), so that a reason written on it keeps
                the ``runtime_status`` keys crunch-run wrote since the last poll. None: the runner's latest record.
        """
        self._settings = settings
        self._backend = backend
        self._ends = ends
        self._broken = broken
        self._slurm = slurm
        self._clock = clock
        self._get = get
        self._refused_comments: OrderedDict[str, None] = OrderedDict()
        """Jobs whose broken-node Comment was refused (and said so): each is said once, though its end may be
        read again when an API call around it is retried."""

    async def give_up(self, dispatcher: Dispatch, uuid: str, view: RunnerView) -> RunnerView:
        """The job can never start: remember why (the container is cancelled with it once the job has gone)."""
        assert view.job is not None and view.never_since is not None
        container = view.latest
        limit_min = time_limit_min(container, self._settings) if has_time_limit(container, self._settings) else 0
        reason = never_runnable_reason(view.job, waited_s=self._clock() - view.never_since, time_limit_min=limit_min,
                                       partitions=container.scheduling_parameters.partitions)
        logger.warning("container %s: %s", uuid, reason.error)
        await dispatcher.log(uuid, f"{reason.error}\n{reason.detail}\n")
        return replace(view, give_up=reason)

    async def time_limit(self, dispatcher: Dispatch, uuid: str, view: RunnerView) -> None:
        """Write on the container why it is being stopped at its time limit (before the runner's SIGTERM)."""
        assert view.job is not None
        reason = time_limit_reason(view.job, max_run_time_s=max_run_time_s(view.latest, self._settings))
        logger.info("container %s: %s", uuid, reason.error)
        await dispatcher.log(uuid, f"{reason.error}\n{reason.detail}\n")
        try:
            # Arvados replaces runtime_status whole: read it now, not from the last poll, so that what crunch-run
            # wrote since (its activity, a warning) stays.
            current = view.latest if self._get is None else await dispatcher.call(self._get, uuid)
            if current.state.is_final:
                return
            await dispatcher.update(uuid, {"runtime_status": runtime_status(current, reason)})
        except DispatchError as exc:
            logger.warning("writing the time-limit reason on container %s: %s", uuid, exc)

    async def job_end(self, view: RunnerView) -> JobEnd | None:
        """Ask Slurm how the job ended (batched with other vanished jobs); note a node reported broken."""
        job_id = view.last_job.job_id if view.last_job is not None else ""
        if self._ends is None:
            end = None
        elif job_id:
            end = await self._ends.lookup(job_id, name=view.latest.uuid)
        else:  # a job this process never saw (it ended while the service was down): ask by its name
            end = await self._ends.lookup_named(view.latest.uuid)
        if end is not None:
            await self._note_broken(view.latest.uuid, end)
        return end

    async def end_reason(self, view: RunnerView, container_state: ContainerState) -> EndReason:
        """Ask Slurm how the job ended and put it in words."""
        end = await self.job_end(view)
        job_id = end.job_id if end is not None else view.last_job.job_id if view.last_job is not None else ""
        return end_reason(end, job_id=job_id, container_state=container_state.value,
                          command=self._settings.crunch_run_command)

    async def log_slurm_end(self, dispatcher: Dispatch, uuid: str, view: RunnerView, *, scancelled: str = "") -> None:
        """Write a dispatch log record when the job of a container now Cancelled ended in Slurm, not by crunch-run.

        ``scancelled``: why the dispatcher scancelled the job ("" if it did not). A job that never started and was
        cancelled after that scancel was the dispatcher's doing, and the record says so, unless sacct names
        another user as the one who cancelled it (an admin's scancel just before ours).
        """
        end = await self.job_end(view)
        pending = view.last_job is not None and view.last_job.state == "PENDING"
        by_us = end is None or end.cancelled_by in ("", str(os.geteuid()))
        if scancelled and by_us and (end.state == "CANCELLED" and not job_started(end) if end is not None
                                     else pending):
            job_id = end.job_id if end is not None else view.last_job.job_id if view.last_job is not None else ""
            text = f"Slurm job {job_id or '?'} was scancelled by the dispatcher before it started, because {scancelled}"
            logger.info("container %s: %s", uuid, text)
            await dispatcher.log(uuid, text + "\n" + (f"{end_detail(end)}\n" if end is not None else ""))
            return
        if end is None or end.state not in SLURM_ENDED_STATES:
            return
        reason = end_reason(end, job_id=end.job_id, container_state=ContainerState.RUNNING.value)
        if not job_started(end):  # crunch-run never ran: Arvados cancelled the container
            logger.info("container %s was cancelled, and Slurm ended its job before it started: %s", uuid,
                        reason.error)
            await dispatcher.log(uuid, f"{reason.error}\n{reason.detail}\n")
            return
        logger.info("container %s was cancelled by crunch-run after Slurm ended its job: %s", uuid, reason.error)
        await dispatcher.log(uuid, f"{reason.error}; crunch-run stopped the container and recorded Cancelled\n"
                                   f"{reason.detail}\n")

    async def _note_broken(self, uuid: str, end: JobEnd) -> None:
        """If the job's Comment says crunch-run found its node broken, keep new jobs off that node."""
        node, refused = broken_node_in(end.comment, end.nodes)
        if refused and end.job_id not in self._refused_comments:
            self._refused_comments[end.job_id] = None
            while len(self._refused_comments) > REFUSED_COMMENTS_REMEMBERED:
                self._refused_comments.popitem(last=False)
            logger.warning("ignoring the Comment %r of Slurm job %s (nodes %s) of container %s: %s; no node is held "
                           "off", end.comment[:120], end.job_id, end.nodes or "unknown", uuid, refused)
        if node is None or self._broken is None:
            return
        reason = f"crunch-run reported node {node} broken (Slurm job {end.job_id}, container {uuid})"
        if not self._broken.report(node, reason):
            return
        logger.warning("%s: %s", reason, {"exclude": "new jobs avoid it (--exclude)",
                                          "drain": "draining it in Slurm",
                                          "none": "recorded only"}.get(self._broken.action, ""))
        if self._broken.action == "drain":
            drain = getattr(self._backend, "drain_node", None)
            try:
                if drain is None:
                    raise SlurmCommandError(["scontrol"], None, "this backend cannot drain nodes")
                await self._slurm(drain, node, f"slurm-dispatch: {reason}")
            except SlurmCommandError as exc:
                logger.warning("draining node %s failed (%s); new jobs still avoid it (--exclude)", node, exc)


COMMAND_FAILURES_BEFORE_ERROR = 3
"""Jobs in a row whose command could not be run (exit code 126 or 127) before that is logged at ERROR."""


class CommandFailures:
    """Counts jobs in a row, of any container, whose command could not be run (``EndReason.command_exit``)."""

    def __init__(self, threshold: int = COMMAND_FAILURES_BEFORE_ERROR) -> None:
        """Start with none; does no I/O."""
        self._threshold = threshold
        self._exit: int | None = None
        self._count = 0

    def note(self, command_exit: int | None) -> int:
        """Count one job end (``command_exit``: 126, 127, or None for any other end); return the failures in a row
        when this one makes ``threshold`` of them with the same exit code (log it at ERROR then), else 0."""
        if command_exit is None or command_exit != self._exit:
            self._exit, self._count = command_exit, 0
        if command_exit is None:
            return 0
        self._count += 1
        return self._count if self._count == self._threshold else 0

    def reset(self) -> None:
        """A job's crunch-run started a container: the command can be run."""
        self._exit, self._count = None, 0


def runtime_status(container: Container, reason: EndReason) -> dict[str, Any]:
    """Return the container's runtime_status with the reason as its error (other keys, e.g. a warning, kept)."""
    return with_error(container.runtime_status, {"error": reason.error, "errorDetail": reason.detail})


__all__ = ["COMMAND_FAILURES_BEFORE_ERROR", "SLURM_ENDED_STATES", "CommandFailures", "Explainer", "runtime_status"]
