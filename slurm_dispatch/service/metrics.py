"""``Metrics``: the dispatcher's Prometheus metrics, behind plain methods.

Nobody else imports prometheus_client: the dispatcher calls ``metrics.slurm_operation(...)`` and friends, and the HTTP
endpoint serves ``metrics.registry``. Each ``Metrics`` owns its own ``CollectorRegistry`` (never the global
default one), so tests and several instances in one process do not collide.

Names: ``arvados_dispatchslurm_*``, i.e. Arvados's ``arvados`` namespace with the subsystem named after the
service (``Services.DispatchSLURM``), as the Go services name theirs (``arvados_dispatchcloud_*``); dashboards
that select ``{__name__=~"arvados_.*"}`` pick them up. Counters end in ``_total`` and durations are in seconds,
as Prometheus conventions ask.

No ``_created`` series: ``disable_created_metrics`` is called where the registry is built, so a counter or histogram
is exposed without the extra creation-time series the client library would add to each (nothing reads them; see
docs/monitoring.md).

The process collector reads ``psutil.Process()`` at scrape time (resident memory, CPU seconds, open file
descriptors, threads), so the numbers are never older than the scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slurm_dispatch import __version__
from slurm_dispatch.model import ContainerState

PREFIX = "arvados_dispatchslurm_"

SQUEUE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""squeue answers in well under a second on a healthy slurmctld; the long buckets show one under load."""

QUEUE_TO_SBATCH_BUCKETS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
"""From a few seconds (an idle dispatcher) to a day (a container held back by a cap or a drain)."""

LIMITS = ("drain", "cap", "supervisors", "rate", "overload", "busy")
"""What can hold a Queued container back (``dispatch.admission``), one label value each."""


class Metrics:
    """The dispatcher's metrics, in a registry of their own. Every method is cheap and does no I/O."""

    def __init__(self, *, process: psutil.Process | None = None) -> None:
        """Create the metrics; ``process`` is what the process collector reads (default: this process).

        Turns the client library's ``_created`` series off, for the whole process (a switch of the library's own:
        every registry of this process is the service's).
        """
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._containers = Gauge(
            PREFIX + "containers", "Containers this dispatcher tracks, by Arvados state.", ["state"], registry=r
        )
        for state in ContainerState:
            self._containers.labels(state=state.value).set(0)
        self._submits = Counter(PREFIX + "sbatch_submits", "Jobs submitted with sbatch.", registry=r)
        self._submit_failures = Counter(PREFIX + "sbatch_failures", "sbatch commands that failed.", registry=r)
        self._squeue_duration = Histogram(
            PREFIX + "squeue_duration_seconds", "Time taken by successful squeue polls.", buckets=SQUEUE_BUCKETS_S,
            registry=r,
        )
        self._squeue_failures = Counter(PREFIX + "squeue_failures", "squeue polls that failed.", registry=r)
        self._renices = Counter(PREFIX + "renices", "scontrol update Nice= commands run.", registry=r)
        self._scancels = Counter(PREFIX + "scancels", "scancel commands run.", registry=r)
        self._oldest_pending = Gauge(
            PREFIX + "oldest_pending_job_age_seconds",
            "Age of the oldest of our Slurm jobs still pending (0 when none is).", registry=r,
        )
        self._slurm_operations = Counter(
            PREFIX + "slurm_operations", "Slurm operations run, by operation and outcome (ok, failed).",
            ["operation", "outcome"], registry=r,
        )
        self._queue_to_sbatch = Histogram(
            PREFIX + "queue_to_sbatch_seconds",
            "Time from a container's creation (Queued) to the sbatch of its job.", buckets=QUEUE_TO_SBATCH_BUCKETS_S,
            registry=r,
        )
        self._drained = Gauge(PREFIX + "drained", "1 while the dispatcher is drained (locks no new container).",
                              registry=r)
        self._limit_reached = Gauge(
            PREFIX + "limit_reached", "1 while this limit holds Queued containers back, by limit.", ["limit"],
            registry=r,
        )
        for limit in LIMITS:
            self._limit_reached.labels(limit=limit).set(0)
        self._broken_nodes = Gauge(PREFIX + "broken_nodes", "Nodes crunch-run reported broken, kept off.",
                                   registry=r)
        self._api_overloads = Counter(
            PREFIX + "api_overloads", "API calls that failed with 429, 502, 503 or 504 ('too busy') after the client's retries.",
            registry=r,
        )
        self._last_overload = Gauge(
            PREFIX + "api_last_overload_time_seconds",
            "When an API call last failed with 429, 502, 503 or 504 after the client's retries (Unix time; 0: never).",
            registry=r,
        )
        self._dispatching = Gauge(
            PREFIX + "dispatching",
            "1 while this instance holds its locks and dispatches; 0 while it waits for a lock (a standby), and "
            "once it stops.", registry=r,
        )
        # Not Arvados's own arvados_version_running: Arvados's health aggregator (sdk/go/health/aggregator.go)
        # compares that version with its own and would report the whole cluster as ERROR ("version mismatch").
        version = Gauge(PREFIX + "version_info", "Always 1; version is the slurm-dispatch version.", ["version"],
                        registry=r)
        version.labels(version=__version__).set(1)
        self._api_errors = Counter(
            PREFIX + "api_errors", "Failed Arvados API calls, by kind of failure.", ["kind"], registry=r
        )
        r.register(ProcessCollector(process if process is not None else psutil.Process()))

    def set_containers(self, counts: Mapping[ContainerState | str, int]) -> None:
        """Set the containers-by-state gauge; states missing from ``counts`` are set to 0."""
        given = {(s.value if isinstance(s, ContainerState) else str(s)): n for s, n in counts.items()}
        for state in ContainerState:
            self._containers.labels(state=state.value).set(given.pop(state.value, 0))
        for other, n in given.items():  # an unknown state (a newer API): still shown, not dropped
            self._containers.labels(state=other).set(n)

    def slurm_operation(self, operation: str, *, ok: bool, seconds: float) -> None:
        """Count one Slurm operation (``submit``, ``cancel``, ``cancel_jobs``, ``queue``, ``renice``,
        ``renice_jobs``, ``release``, ``node_features_read``, ``node_features_set``, ...) that took ``seconds``; also
        feeds the per-command counters and the squeue histogram below."""
        self._slurm_operations.labels(operation=operation, outcome="ok" if ok else "failed").inc()
        if operation == "submit":
            (self._submits if ok else self._submit_failures).inc()
        elif operation == "queue":
            if ok:
                self._squeue_duration.observe(seconds)
            else:
                self._squeue_failures.inc()
        elif operation in ("renice", "renice_jobs") and ok:
            self._renices.inc()
        elif operation in ("cancel", "cancel_jobs") and ok:
            self._scancels.inc()

    def queued_to_sbatch(self, seconds: float) -> None:
        """Record how long a container waited from its creation to its sbatch."""
        self._queue_to_sbatch.observe(max(0.0, seconds))

    def set_admission(self, *, drained: bool, limits: frozenset[str] | set[str]) -> None:
        """Set the drained gauge and which limits held containers back in the latest tick."""
        self._drained.set(1 if drained else 0)
        for limit in LIMITS:
            self._limit_reached.labels(limit=limit).set(1 if limit in limits else 0)

    def set_broken_nodes(self, count: int) -> None:
        """Set how many nodes are held off as broken."""
        self._broken_nodes.set(count)

    def set_dispatching(self, dispatching: bool) -> None:
        """Say whether this instance dispatches (holds its locks and its first poll worked) or not."""
        self._dispatching.set(1 if dispatching else 0)

    def api_overloaded(self, when: float) -> None:
        """Count one API call that failed with "too busy" (429, 502, 503 or 504) after the client's retries, at Unix time
        ``when``."""
        self._api_overloads.inc()
        self._last_overload.set(when)

    def set_oldest_pending_age(self, seconds: float) -> None:
        """Set the age of the oldest pending job (pass 0 when none is pending)."""
        self._oldest_pending.set(max(0.0, seconds))

    def api_error(self, kind: str) -> None:
        """Count one failed Arvados API call; ``kind`` is a short fixed word (``unavailable``, ``auth``,
        ``conflict``, ``not_found``...), never a message, so the label set stays small."""
        self._api_errors.labels(kind=kind).inc()


class ProcessCollector(Collector):
    """Reads a ``psutil.Process`` at scrape time. A vanished or unreadable process yields no samples."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process

    def collect(self) -> Iterable[Metric]:
        """Yield the process metrics; does a few /proc reads."""
        p = self._process
        try:
            with p.oneshot():
                rss = p.memory_info().rss
                cpu = p.cpu_times()
                fds = p.num_fds()
                threads = p.num_threads()
        except psutil.Error:
            return
        yield GaugeMetricFamily(PREFIX + "process_resident_memory_bytes", "Resident memory size.", value=rss)
        yield CounterMetricFamily(
            PREFIX + "process_cpu_seconds", "User and system CPU time spent.", value=cpu.user + cpu.system
        )
        yield GaugeMetricFamily(PREFIX + "process_open_fds", "Open file descriptors.", value=fds)
        yield GaugeMetricFamily(PREFIX + "process_threads", "Operating system threads.", value=threads)
