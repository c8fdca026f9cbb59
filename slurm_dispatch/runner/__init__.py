"""The Slurm RunContainer (``SlurmRunner``): one coroutine per container, fed by the dispatch core.

Port of services/crunch-dispatch-slurm/crunch-dispatch-slurm.go (``run``, ``submit``, ``scancel``,
``checkSqueueForOrphans``), on the shape of the product's design card: the dispatch core feeds this
RunContainer, which submits an sbatch job, reconciles squeue with the tracker's updates, scancels the job
when the update channel closes, and uses ``track_container`` at startup to adopt orphaned jobs.

The runner carries out; it does not decide. Each time something happens to a container (a new record, its
channel closing, its job leaving squeue, a scancel round ending) the runner asks
``slurm_dispatch.slurm.decide.next_step`` what to do next, and does it:

* SUBMIT: sbatch the job (``job_for``), once; an sbatch that timed out is looked for in squeue before it
  counts as failed, since slurmctld may have created the job after sbatch gave up. Containers ready at the same
  time take turns by want (``turns``), so their jobs reach Slurm in about Arvados's order and need few renices.
* FOLLOW: record the job's want for the renice pass, then wait for the next record or for the job to leave.
* SCANCEL: scancel the job by its id (``cancels``: one command for the jobs cancelled together; Go's three
  passes by name when squeue gave no id), then wait for the next squeue poll; again after every poll until the
  job has gone, or (for priority 0) a new record wants it back.
* SETTLE: re-read the container and do what ``gone_action`` says (unlock, set Cancelled, or nothing),
  retrying failed API calls with backoff (``JOB_GONE_ATTEMPTS``) before the tracker's fallback takes over.

Shutdown (task cancellation) returns at once and touches nothing: the job keeps running for the next
process to adopt.

Time is injected (``sleep``), so tests need not wait on the wall clock.
"""

from slurm_dispatch.runner.core import (
    ADOPT_CONCURRENCY,
    JOB_GONE_ATTEMPTS,
    JOB_GONE_BACKOFF_CAP_S,
    REFUSALS_REMEMBERED,
    SBATCH_AT_ONCE,
    SLURM_WORKERS,
    SlurmRunner,
    Superseded,
)
from slurm_dispatch.runner.explain import SLURM_ENDED_STATES, Explainer
from slurm_dispatch.runner.ports import ContainerGetter, Dispatch, Squeue

__all__ = [
    "ADOPT_CONCURRENCY",
    "JOB_GONE_ATTEMPTS",
    "JOB_GONE_BACKOFF_CAP_S",
    "REFUSALS_REMEMBERED",
    "SBATCH_AT_ONCE",
    "SLURM_ENDED_STATES",
    "SLURM_WORKERS",
    "ContainerGetter",
    "Dispatch",
    "Explainer",
    "SlurmRunner",
    "Squeue",
    "Superseded",
]
