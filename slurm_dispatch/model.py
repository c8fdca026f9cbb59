"""The domain's values: containers, their states, and Slurm jobs.

Frozen dataclasses and enums only; this module does no I/O and imports nothing
from the rest of the package.

A *container* is the Arvados record (uuid, state, priority). A *job* is the
Slurm job whose name is the container uuid.

The Arvados controller serialises through Go structs, so empty strings come back
as ``""``, empty lists as ``null`` and a null ``exit_code`` as ``0``; Rails sends
``null`` and may leave keys out (lib/controller/router/response.go: mungeItemFields, and the
``arvados.Container`` struct of sdk/go/arvados/container.go). ``Container.from_api`` treats ``null``,
``""``, ``[]`` and a missing key alike.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Filter = Sequence[Any]
"""One Arvados list filter: an ``[attribute, operator, operand]`` triple such as ``["state", "=", "Queued"]``,
or a bare expression string (doc/api/methods.html.textile.liquid, "Available list method filters")."""

CONTAINER_UUID_RE = re.compile(r"^[a-z0-9]{5}-dz642-[a-z0-9]{15}$")
"""The pattern of a container uuid; also the name of its Slurm job."""


class ContainerState(str, enum.Enum):
    """The five states of an Arvados container."""

    QUEUED = "Queued"
    LOCKED = "Locked"
    RUNNING = "Running"
    COMPLETE = "Complete"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        """True for Complete and Cancelled, which never change again (but Complete→Cancelled)."""
        return self in (ContainerState.COMPLETE, ContainerState.CANCELLED)

    @property
    def is_locked(self) -> bool:
        """True for Locked and Running: the states in which a dispatcher holds the lock."""
        return self in (ContainerState.LOCKED, ContainerState.RUNNING)


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _str(value: Any) -> str:
    return "" if _blank(value) else str(value)


def _int(value: Any) -> int:
    if _blank(value):
        return 0
    if isinstance(value, bool):
        return int(value)
    return int(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _str_list(value: Any) -> tuple[str, ...]:
    if _blank(value):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_timestamp(value: Any) -> datetime | None:
    """Return the UTC datetime of an Arvados timestamp, or None when it is blank.

    Arvados sends 9 fractional digits with a ``Z`` suffix
    (``2016-01-11T11:11:11.111111000Z``); the stored precision is microseconds, so
    digits past the sixth are dropped. Pure.

    Raises:
        ValueError: the text is not a timestamp.
    """
    if _blank(value):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    m = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?", text
    )
    if not m:
        raise ValueError(f"not an Arvados timestamp: {text!r}")
    date, clock, frac, tz = m.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    tz = "+00:00" if tz in (None, "Z") else tz
    return datetime.fromisoformat(f"{date}T{clock}.{micro}{tz}").astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Return ``value`` in the controller's fixed format, 9 fractional digits and ``Z``. Pure."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


def timestamp_ns(value: datetime) -> int:
    """Return nanoseconds since the epoch for ``value``, exactly (no float rounding). Pure."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    delta = value.astimezone(UTC) - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True)
class GPU:
    """``runtime_constraints.gpu``: what a container needs of GPUs."""

    stack: str = ""
    device_count: int = 0
    driver_version: str = ""
    hardware_target: tuple[str, ...] = ()
    vram: int = 0

    @classmethod
    def from_api(cls, raw: Any) -> GPU:
        """Return the GPU constraints of a raw ``gpu`` object (blank fields are zero). Pure."""
        d = _mapping(raw)
        return cls(
            stack=_str(d.get("stack")),
            device_count=_int(d.get("device_count")),
            driver_version=_str(d.get("driver_version")),
            hardware_target=_str_list(d.get("hardware_target")),
            vram=_int(d.get("vram")),
        )


@dataclass(frozen=True)
class RuntimeConstraints:
    """``runtime_constraints``: sizes in bytes, counts as ints."""

    ram: int = 0
    vcpus: int = 0
    keep_cache_ram: int = 0
    keep_cache_disk: int = 0
    api: bool = False
    gpu: GPU = field(default_factory=GPU)

    @classmethod
    def from_api(cls, raw: Any) -> RuntimeConstraints:
        """Return the constraints of a raw ``runtime_constraints`` object. Pure.

        The deprecated ``cuda`` key is ignored, as the Go dispatcher ignores it
        (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs reads only
        ``RuntimeConstraints.GPU``).
        """
        d = _mapping(raw)
        return cls(
            ram=_int(d.get("ram")),
            vcpus=_int(d.get("vcpus")),
            keep_cache_ram=_int(d.get("keep_cache_ram")),
            keep_cache_disk=_int(d.get("keep_cache_disk")),
            api=bool(d.get("API") or False),
            gpu=GPU.from_api(d.get("gpu")),
        )


@dataclass(frozen=True)
class SchedulingParameters:
    """``scheduling_parameters``: where and how long a container may run."""

    partitions: tuple[str, ...] = ()
    max_run_time: int = 0
    preemptible: bool = False
    supervisor: bool = False

    @classmethod
    def from_api(cls, raw: Any) -> SchedulingParameters:
        """Return the parameters of a raw ``scheduling_parameters`` object. Pure."""
        d = _mapping(raw)
        return cls(
            partitions=tuple(p for p in _str_list(d.get("partitions")) if p),
            max_run_time=_int(d.get("max_run_time")),
            preemptible=bool(d.get("preemptible") or False),
            supervisor=bool(d.get("supervisor") or False),
        )


@dataclass(frozen=True)
class Mount:
    """One entry of ``mounts``; only ``kind`` and ``capacity`` matter to a dispatcher."""

    kind: str = ""
    capacity: int = 0

    @classmethod
    def from_api(cls, raw: Any) -> Mount:
        """Return the mount of a raw mount object. Pure."""
        d = _mapping(raw)
        return cls(kind=_str(d.get("kind")), capacity=_int(d.get("capacity")))


@dataclass(frozen=True)
class Container:
    """An Arvados container record, as much of it as a dispatcher reads.

    Build it with ``Container.from_api``; ``raw`` keeps the record as received
    (read-only by convention) for callers that need a field not modelled here.
    """

    uuid: str
    state: ContainerState
    priority: int = 0
    locked_by_uuid: str = ""
    auth_uuid: str = ""
    lock_count: int = 0
    created_at: datetime | None = None
    modified_at: datetime | None = None
    container_image: str = ""
    command: tuple[str, ...] = ()
    runtime_constraints: RuntimeConstraints = field(default_factory=RuntimeConstraints)
    scheduling_parameters: SchedulingParameters = field(default_factory=SchedulingParameters)
    mounts: Mapping[str, Mount] = field(default_factory=dict)
    exit_code: int | None = None
    runtime_status: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Container:
        """Return a Container from an API record (full, selected, or a lock response). Pure.

        Raises:
            ValueError: ``uuid`` is missing, or ``state`` or a timestamp is not valid.
        """
        uuid = _str(raw.get("uuid"))
        if not uuid:
            raise ValueError("container record has no uuid")
        mounts = {str(k): Mount.from_api(v) for k, v in _mapping(raw.get("mounts")).items()}
        return cls(
            uuid=uuid,
            state=ContainerState(_str(raw.get("state"))),
            priority=_int(raw.get("priority")),
            locked_by_uuid=_str(raw.get("locked_by_uuid")),
            auth_uuid=_str(raw.get("auth_uuid")),
            lock_count=_int(raw.get("lock_count")),
            created_at=parse_timestamp(raw.get("created_at")),
            modified_at=parse_timestamp(raw.get("modified_at")),
            container_image=_str(raw.get("container_image")),
            command=_str_list(raw.get("command")),
            runtime_constraints=RuntimeConstraints.from_api(raw.get("runtime_constraints")),
            scheduling_parameters=SchedulingParameters.from_api(raw.get("scheduling_parameters")),
            mounts=mounts,
            exit_code=_opt_int(raw.get("exit_code")),
            runtime_status=dict(_mapping(raw.get("runtime_status"))),
            raw=dict(raw),
        )


@dataclass(frozen=True)
class SlurmJob:
    """One line of the squeue snapshot: a Slurm job, named after a container uuid (or not ours)."""

    name: str
    nice: int
    slurm_priority: int
    state: str
    reason: str
