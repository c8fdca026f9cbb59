"""Frozen settings: what the dispatcher reads from the Arvados cluster config.

``slurm_dispatch.config`` builds these from ``/etc/arvados/config.yml`` (or the
legacy standalone file) once at startup; everything else receives them. Field
names follow the config keys (arvados-reference.md §4.1); defaults are Arvados's.
No I/O here.
"""

from __future__ import annotations

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

    @property
    def api_host(self) -> str:
        """``host[:port]`` of the controller, with no scheme (what crunch-run gets as ARVADOS_API_HOST)."""
        url = self.controller_url
        if "://" in url:
            url = url.split("://", 1)[1]
        return url.split("/", 1)[0]
