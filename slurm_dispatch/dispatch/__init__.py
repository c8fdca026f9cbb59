"""The generic dispatch core, a port of Arvados's sdk/go/dispatch; it knows nothing of Slurm.

A backend writes one coroutine, ``async def run_container(dispatcher, container, updates)``,
and hands it to ``Dispatcher``; the dispatcher polls the queue, locks what it may run,
starts one tracker task per container and feeds it updates until the container leaves.
"""

from slurm_dispatch.dispatch.client import DispatchClient, ListPageLike
from slurm_dispatch.dispatch.dispatcher import Dispatcher, RunContainer, TickReport
from slurm_dispatch.dispatch.fallback import failure_report
from slurm_dispatch.dispatch.throttle import Throttle
from slurm_dispatch.dispatch.tracker import Tracker, UpdateChannel

__all__ = [
    "DispatchClient",
    "Dispatcher",
    "ListPageLike",
    "RunContainer",
    "Throttle",
    "TickReport",
    "Tracker",
    "UpdateChannel",
    "failure_report",
]
