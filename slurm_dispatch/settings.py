"""Frozen settings: what the dispatcher reads from the Arvados cluster config.

``slurm_dispatch.config`` builds these from ``/etc/arvados/config.yml`` (or the
legacy standalone file) once at startup; everything else receives them. Field
names follow the config keys (sdk/go/arvados/config.go; docs/configuration.md lists
them); defaults are Arvados's (lib/config/config.default.yml).
No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from slurm_dispatch.model import MiB

DEFAULT_SBATCH_ARGUMENTS: tuple[str, ...] = (
    "--job-name=%U",
    "--mem=%M",
    "--cpus-per-task=%C",
    "--tmp=%T",
    "--partition=%P",
)
DEFAULT_SBATCH_GPU_ARGUMENTS: tuple[str, ...] = ("--gpus=%G",)

DEFAULT_NEVER_RUNNABLE_REASONS: tuple[str, ...] = (
    "BadConstraints",
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "DependencyNeverSatisfied",
    "JobHoldMaxRequeue",
    "MaxMemPerLimit",
)
"""Pending reasons that waiting cannot clear: the job asks for what its partition, account or QOS never allows.

From squeue(1) "JOB REASON CODES" (Slurm 22.05, 24.11) and ``job_reason_string`` in Slurm's
src/common/slurm_protocol_defs.c. ``PartitionConfig`` is not in the man page but is what Slurm shows for a job
asking for more than its partition's nodes have. The per-job QOS and association limits (``QOSMax*PerJob*``,
``AssocMax*PerJob*``) count too (``slurm.reasons.never_runnable``). Holds (JobHeldUser, JobHeldAdmin), a down
partition or node, and the group limits that clear when other jobs end are not in it: an admin can fix those
without touching the container."""

BROKEN_NODE_ACTIONS = ("exclude", "drain", "none")
"""What the service does with a node crunch-run reported broken: keep new jobs off it with sbatch
``--exclude``, drain it in Slurm (``scontrol update NodeName=... State=DRAIN``; needs Slurm admin rights), or
only record it."""


@dataclass(frozen=True)
class InstanceTypeGPU:
    """``InstanceTypes.<name>.GPU``."""

    stack: str = ""
    driver_version: str = ""
    hardware_target: str = ""
    device_count: int = 0
    vram: int = 0


@dataclass(frozen=True)
class InstanceType:
    """``InstanceTypes.<name>``; ``scratch`` is IncludedScratch + AddedScratch."""

    name: str
    provider_type: str = ""
    vcpus: int = 0
    ram: int = 0
    included_scratch: int = 0
    added_scratch: int = 0
    price: float = 0.0
    preemptible: bool = False
    gpu: InstanceTypeGPU = field(default_factory=InstanceTypeGPU)

    @property
    def scratch(self) -> int:
        """Total scratch bytes: IncludedScratch + AddedScratch."""
        return self.included_scratch + self.added_scratch


@dataclass(frozen=True)
class Settings:
    """Everything slurm-dispatch reads from one cluster's config. Durations in seconds, sizes in bytes."""

    cluster_id: str = "zzzzz"
    """The cluster id (the key under ``Clusters``); prefix for orphan adoption."""
    system_root_token: str = field(default="", repr=False)
    """``SystemRootToken``: the API token and the GatewayAuthSecret HMAC key. Never logged."""
    controller_url: str = ""
    """``Services.Controller.ExternalURL``, e.g. ``https://ctrl.example:443/``."""
    tls_insecure: bool = False
    """``TLS.Insecure``: skip certificate checks (ARVADOS_API_HOST_INSECURE=1 for crunch-run)."""
    dispatch_internal_urls: tuple[str, ...] = ()
    """``Services.DispatchSLURM.InternalURLs`` keys: where health/metrics listen."""
    management_token: str = field(default="", repr=False)
    """``ManagementToken``: Bearer token for /_health and /metrics. Never logged."""
    postgresql_connection: Mapping[str, str] = field(default_factory=dict, repr=False)
    """``PostgreSQL.Connection``: libpq keywords; empty means no advisory lock."""
    batch_size: int = 1000
    """``API.MaxItemsPerResponse`` (0 → 100): page size of list queries."""
    poll_interval: float = 10.0
    """``Containers.CloudVMs.PollInterval``: both the API poll and the squeue poll."""
    min_retry_period: float = 0.0
    """``Containers.MinRetryPeriod``: per-container lock/adopt throttle; 0 disables it."""
    reserve_extra_ram: int = 550 * MiB
    """``Containers.ReserveExtraRAM``: added to ``%M``."""
    crunch_run_command: str = "crunch-run"
    """``Containers.CrunchRunCommand``: argv[0] of the job script."""
    crunch_run_arguments: tuple[str, ...] = ()
    """``Containers.CrunchRunArgumentsList``: extra crunch-run arguments, not templated."""
    runtime_engine: str = "docker"
    """``Containers.RuntimeEngine``: ``docker`` or ``singularity``."""
    priority_spread: int = 0
    """``Containers.SLURM.PrioritySpread`` (≤ 0 means 10)."""
    sbatch_arguments: tuple[str, ...] = DEFAULT_SBATCH_ARGUMENTS
    """``Containers.SLURM.SbatchArgumentsList``: the sbatch template."""
    sbatch_gpu_arguments: tuple[str, ...] = DEFAULT_SBATCH_GPU_ARGUMENTS
    """``Containers.SLURM.SbatchGPUArgumentsList``: appended when gpu.device_count > 0."""
    sbatch_environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    """``Containers.SLURM.SbatchEnvironmentVariables``: put into sbatch's (and the job's) environment."""
    instance_types: Mapping[str, InstanceType] = field(default_factory=dict)
    """``InstanceTypes``: when non-empty, instance choice runs for every container."""
    maximum_price_factor: float = 1.5
    """``Containers.MaximumPriceFactor``: instance choice only."""
    local_keep_blob_buffers_per_vcpu: int = 1
    """``Containers.LocalKeepBlobBuffersPerVCPU``: instance choice only (keepstore RAM overhead)."""
    preemptible_price_factor: float = 0.0
    """``Containers.PreemptiblePriceFactor``: the loader adds ``<name>.preemptible`` variants."""
    log_level: str = "info"
    """``SystemLogs.LogLevel``."""
    log_format: str = "json"
    """``SystemLogs.Format``: ``json`` or ``text``."""

    # -- slurm-dispatch's own settings (its own file, not Arvados keys: docs/configuration.md) --------------------

    dispatch_config_path: str = ""
    """The file the settings below came from ("" when none was read and all are defaults)."""
    never_runnable_reasons: tuple[str, ...] = DEFAULT_NEVER_RUNNABLE_REASONS
    """``FailureReasons.NeverRunnableReasons``: pending reasons after which a job is given up (empty: never)."""
    never_runnable_grace: float = 300.0
    """``FailureReasons.NeverRunnableGracePeriod``: how long a job may pend with such a reason before the
    container is cancelled with it."""
    max_run_time_overhead: float = 300.0
    """``TimeLimit.Overhead``: added to max_run_time for Slurm's ``--time`` (``%W``), so crunch-run's own limit,
    which counts from the container's start, comes first (as Arvados's LSF dispatcher's MaxRunTimeOverhead)."""
    default_max_run_time: float = 0.0
    """``TimeLimit.DefaultMaxRunTime``: the limit of containers whose max_run_time is 0 (0: none)."""
    time_limit_signal: float = 120.0
    """``TimeLimit.StopSignalBefore``: seconds before Slurm's time limit at which crunch-run gets SIGTERM
    (``--signal=B:TERM@N``), so it stops the container and saves its logs (0: no signal)."""
    max_containers_in_slurm: int = 0
    """``Limits.MaxContainersInSlurm``: at most this many containers locked or running at once (0: no cap)."""
    max_submits_per_minute: float = 0.0
    """``Limits.MaxSubmitsPerMinute``: the sbatch rate limit (0: none)."""
    supervisor_fraction: float = 0.5
    """``Limits.SupervisorFraction``: with a cap, at most floor(cap × this) (at least 1) supervisors (workflow
    runners) at once, as Arvados's cloud dispatcher's Containers.CloudVMs.SupervisorFraction."""
    max_supervisors: int = 0
    """``Limits.MaxSupervisors``: at most this many supervisors at once, cap or not (0: from the fraction)."""
    supervisor_sbatch_arguments: tuple[str, ...] = ()
    """``Limits.SupervisorSbatchArguments``: templated sbatch arguments added for supervisors (e.g. a partition)."""
    broken_node_action: str = "exclude"
    """``BrokenNodes.Action``: one of ``BROKEN_NODE_ACTIONS``."""
    broken_node_hold: float = 3600.0
    """``BrokenNodes.Hold``: how long a node reported broken is kept off (then it gets a new chance)."""
    state_directory: str = "/var/lib/slurm-dispatch"
    """``Service.StateDirectory``: where the service keeps what must survive a restart (drain, broken nodes)."""

    @property
    def api_host(self) -> str:
        """``host[:port]`` of the controller, with no scheme (what crunch-run gets as ARVADOS_API_HOST)."""
        url = self.controller_url
        if "://" in url:
            url = url.split("://", 1)[1]
        return re.split(r"[/?#]", url, maxsplit=1)[0]  # as Go's URL.Host: no path, query or fragment
