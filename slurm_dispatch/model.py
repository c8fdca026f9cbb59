"""The domain's values: containers, their states, and Slurm jobs.

Frozen dataclasses and enums only; this module does no I/O and imports nothing
from the rest of the package.

A *container* is the Arvados record (uuid, state, priority). A *job* is the
Slurm job whose name is the container uuid.

The Arvados controller serialises through Go structs, so empty strings come back
as ``""``, empty lists as ``null`` and a null ``exit_code`` as ``0``; Rails sends
``null`` and may leave keys out (lib/controller/router/response.go: mungeItemFields, and the
``arvados.Container`` struct of sdk/go/arvados/container.go). ``Container.from_api`` treats ``null``
and a missing key as the zero value of the field (``""``, ``[]``, 0, false, none), and so accepts both
shapes; a value of the wrong type is refused, as Go refuses it (see ``Container.from_api``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MiB = 1 << 20
"""Bytes in a mebibyte: the unit of sbatch's ``--mem`` and ``--tmp`` (``%M``, ``%T``)."""

Filter = Sequence[Any]
"""One Arvados list filter: an ``[attribute, operator, operand]`` triple such as ``["state", "=", "Queued"]``,
or a bare expression string (doc/api/methods.html.textile.liquid, "Available list method filters")."""

UUID_BATCH = 20
"""uuids per ``uuid in [...]`` list query, as Go's dispatch library batches them (sdk/go/dispatch/dispatch.go:
checkForUpdates): keeps the URL short."""

CONTAINER_UUID_RE = re.compile(r"^[a-z0-9]{5}-dz642-[a-z0-9]{15}\Z")
"""The pattern of a container uuid; also the name of its Slurm job.

It ends in ``\\Z``, not ``$``: ``$`` also matches before a final newline, so ``.match`` would accept
a uuid followed by a newline."""

CONTAINER_UUID_IN_TEXT_RE = re.compile(r"[a-z0-9]{5}-dz642-[a-z0-9]{15}")
"""A container uuid anywhere in a text (a line that could not be read, but names a container)."""


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


_STATE_VALUES = tuple(s.value for s in ContainerState)


INT64_MAX = 2**63 - 1
"""The largest value of a Go ``int64``, the type of every integer field of ``arvados.Container``."""

MAX_NAME_CHARS = 256
"""The longest text accepted in a field that names something (a partition, a GPU stack, a mount kind, a uuid):
such text ends up in sbatch arguments and log lines, and no real name comes near this."""

MAX_IMAGE_CHARS = 1024
"""The longest ``container_image`` accepted: a portable data hash is under 60 characters."""

ARVADOS_UUID_RE = re.compile(r"^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}\Z")
"""The pattern of any Arvados object uuid (``locked_by_uuid`` and ``auth_uuid`` are token uuids)."""

_SHOWN_CHARS = 40


def _shown(value: Any) -> str:
    """Return a short description of a bad value for an error message: never the whole of it. Pure."""
    if isinstance(value, str):
        text = repr(value[:_SHOWN_CHARS]) + ("…" if len(value) > _SHOWN_CHARS else "")
        return f"{text} ({len(value)} characters)" if len(value) > _SHOWN_CHARS else text
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return f"an object of {len(value)} keys"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def _bad(where: str, problem: str, value: Any) -> ValueError:
    return ValueError(f"{where}: {problem}, not {_shown(value)}")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    """Return a nested object field; null or absent is empty. Pure.

    Raises:
        ValueError: any other JSON value.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(where, "must be an object", value)
    return value


def _str(value: Any, where: str, *, limit: int | None = MAX_NAME_CHARS) -> str:
    """Return a string field; null is ``""``. Pure.

    Raises:
        ValueError: not a string, or longer than ``limit``.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(where, "must be a string", value)
    if limit is not None and len(value) > limit:
        raise _bad(where, f"is longer than {limit} characters", value)
    return value


def _int(value: Any, where: str, *, minimum: int | None = 0) -> int:
    """Return an integer field; null is 0. Pure.

    As Go's encoding/json decoding into ``int64`` (the controller's types), a JSON number with a
    fraction or an exponent is refused even when it is integral (``2.0``, ``1e3``), and so is one
    that Python parsed to infinity (``1e400``) or NaN: the controller only ever sends integers.

    Raises:
        ValueError: a bool, a float, any other non-integer, below ``minimum`` or beyond int64.
    """
    if value is None:
        return 0
    return _opt_int(value, where, minimum=minimum) or 0


def _opt_int(value: Any, where: str, *, minimum: int | None = 0) -> int | None:
    """Return an integer field that may be null (None). Pure.

    Raises:
        ValueError: as ``_int``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "must be an integer", value)
    if minimum is not None and value < minimum:
        raise _bad(where, f"must be at least {minimum}", value)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _bad(where, "must fit in a 64-bit integer", value)
    return value


def _bool(value: Any, where: str) -> bool:
    """Return a boolean field; null is False. Pure.

    Raises:
        ValueError: anything but a JSON boolean or null.
    """
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(where, "must be true or false", value)
    return value


def _str_list(value: Any, where: str, *, limit: int | None = MAX_NAME_CHARS) -> tuple[str, ...]:
    """Return a list-of-strings field; null is empty. Pure.

    Raises:
        ValueError: not a list, or an item that is not a string (or is longer than ``limit``).
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise _bad(where, "must be a list of strings", value)
    return tuple(_str(v, f"{where}[{i}]", limit=limit) for i, v in enumerate(value))


def _partitions(value: Any, where: str) -> tuple[str, ...]:
    """Return the partition names; empty names are dropped. Pure.

    Any string is kept, as Arvados accepts any list of strings here (services/api/app/models/container.rb). A
    name Slurm cannot have (whitespace, a control character) makes the container unsatisfiable when its job is
    built (``slurm.sbatch.template_values``), so it is cancelled with the reason instead of waiting for ever.

    Raises:
        ValueError: not a list of strings.
    """
    return tuple(p for p in _str_list(value, where) if p)


def _uuid(value: Any, where: str, pattern: re.Pattern[str], what: str) -> str:
    """Return a uuid field; null or ``""`` is ``""``. Pure.

    Raises:
        ValueError: not a string matching ``pattern``.
    """
    text = _str(value, where)
    if text and not pattern.fullmatch(text):
        raise _bad(where, f"must be {what}", value)
    return text


_TIMESTAMP_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_TIMESTAMP_MAX_CHARS = 64


def parse_timestamp(value: Any) -> datetime | None:
    """Return the UTC datetime of an Arvados timestamp, or None when it is blank.

    Arvados sends 9 fractional digits with a ``Z`` suffix
    (``2016-01-11T11:11:11.111111000Z``); the stored precision is microseconds, so
    digits past the sixth are dropped. Pure.

    Raises:
        ValueError: ``value`` is not a timestamp (nor null, ``""`` or a datetime).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > _TIMESTAMP_MAX_CHARS:
        raise ValueError(f"not an Arvados timestamp: {_shown(value)}")
    m = _TIMESTAMP_RE.fullmatch(value.strip())
    if not m:
        raise ValueError(f"not an Arvados timestamp: {_shown(value)}")
    date, clock, frac, tz = m.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    tz = "+00:00" if tz in (None, "Z") else tz
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{micro}{tz}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13; year 1 or 9999 pushed out of range by its offset
        raise ValueError(f"not an Arvados timestamp: {_shown(value)} ({exc})") from None


def _timestamp(value: Any, where: str) -> datetime | None:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


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
    def from_api(cls, raw: Any, *, where: str = "runtime_constraints.gpu") -> GPU:
        """Return the GPU constraints of a raw ``gpu`` object (null fields are zero). Pure.

        Raises:
            ValueError: a field has the wrong type or range; the message names it (``where`` prefixes it).
        """
        d = _object(raw, where)
        return cls(
            stack=_str(d.get("stack"), f"{where}.stack"),
            device_count=_int(d.get("device_count"), f"{where}.device_count"),
            driver_version=_str(d.get("driver_version"), f"{where}.driver_version"),
            hardware_target=_str_list(d.get("hardware_target"), f"{where}.hardware_target"),
            vram=_int(d.get("vram"), f"{where}.vram"),
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
    def from_api(cls, raw: Any, *, where: str = "runtime_constraints") -> RuntimeConstraints:
        """Return the constraints of a raw ``runtime_constraints`` object. Pure.

        The deprecated ``cuda`` key is ignored, as the Go dispatcher ignores it
        (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs reads only
        ``RuntimeConstraints.GPU``).

        Raises:
            ValueError: a field has the wrong type or range (sizes and counts are int64 ≥ 0).
        """
        d = _object(raw, where)
        return cls(
            ram=_int(d.get("ram"), f"{where}.ram"),
            vcpus=_int(d.get("vcpus"), f"{where}.vcpus"),
            keep_cache_ram=_int(d.get("keep_cache_ram"), f"{where}.keep_cache_ram"),
            keep_cache_disk=_int(d.get("keep_cache_disk"), f"{where}.keep_cache_disk"),
            api=_bool(d.get("API"), f"{where}.API"),
            gpu=GPU.from_api(d.get("gpu"), where=f"{where}.gpu"),
        )


@dataclass(frozen=True)
class SchedulingParameters:
    """``scheduling_parameters``: where and how long a container may run."""

    partitions: tuple[str, ...] = ()
    max_run_time: int = 0
    preemptible: bool = False
    supervisor: bool = False

    @classmethod
    def from_api(cls, raw: Any, *, where: str = "scheduling_parameters") -> SchedulingParameters:
        """Return the parameters of a raw ``scheduling_parameters`` object; empty partition names are dropped. Pure.

        Raises:
            ValueError: a field has the wrong type or range.
        """
        d = _object(raw, where)
        return cls(
            partitions=_partitions(d.get("partitions"), f"{where}.partitions"),
            max_run_time=_int(d.get("max_run_time"), f"{where}.max_run_time"),
            preemptible=_bool(d.get("preemptible"), f"{where}.preemptible"),
            supervisor=_bool(d.get("supervisor"), f"{where}.supervisor"),
        )


@dataclass(frozen=True)
class Mount:
    """One entry of ``mounts``; only ``kind`` and ``capacity`` matter to a dispatcher."""

    kind: str = ""
    capacity: int = 0

    @classmethod
    def from_api(cls, raw: Any, *, where: str = "mounts") -> Mount:
        """Return the mount of a raw mount object (the other keys are not read). Pure.

        Raises:
            ValueError: not an object, or ``kind`` or ``capacity`` has the wrong type or range.
        """
        d = _object(raw, where)
        return cls(kind=_str(d.get("kind"), f"{where}.kind"), capacity=_int(d.get("capacity"), f"{where}.capacity"))


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
    def from_api(cls, raw: Any) -> Container:
        """Return a Container from an API record (full, selected, or a lock response). Pure.

        ``raw`` may be any JSON value: everything a dispatcher reads is checked here, where the record
        enters, so that nothing fails later in arithmetic, sbatch arguments or log lines. Null and a
        missing key mean the zero value; other wrong types are refused, as Go's encoding/json refuses
        them when it decodes into ``arvados.Container`` (sdk/go/arvados/container.go):

        * ``uuid`` must be a container uuid (it becomes the Slurm job's name and crunch-run's argument);
          ``state`` one of the five; ``locked_by_uuid``/``auth_uuid`` empty or an Arvados uuid.
        * Integers must be JSON integers (no ``2.0``, ``1e3``, ``1e400`` or NaN) within int64; counts and
          sizes (priority, lock_count, ram, vcpus, keep cache sizes, GPU count and VRAM, max_run_time,
          mount capacity) must not be negative.
        * Booleans must be JSON booleans; ``runtime_constraints``, ``scheduling_parameters``, ``gpu``,
          ``mounts`` (and each mount) and ``runtime_status`` objects; ``command``, ``partitions`` and
          ``hardware_target`` lists of strings.
        * Names and identifiers are at most ``MAX_NAME_CHARS`` long. Partition names may hold anything, as in
          Arvados: one Slurm cannot have makes the job unsatisfiable (``slurm.sbatch.template_values``).

        Raises:
            ValueError: the first problem found; the message names the field and what was wrong,
                and shows at most a short excerpt of the value, never the record.
        """
        if isinstance(raw, Mapping) and raw.get("uuid") in (None, ""):
            raise ValueError("container record has no uuid")
        uuid, state, locked_by_uuid = routing_fields(raw)
        mounts = {
            str(k): Mount.from_api(v, where=f"mounts[{_shown(k)}]")
            for k, v in _object(raw.get("mounts"), "mounts").items()
        }
        return cls(
            uuid=uuid,
            state=state,
            priority=_int(raw.get("priority"), "priority"),
            locked_by_uuid=locked_by_uuid,
            auth_uuid=_uuid(raw.get("auth_uuid"), "auth_uuid", ARVADOS_UUID_RE, "an Arvados uuid"),
            lock_count=_int(raw.get("lock_count"), "lock_count"),
            created_at=_timestamp(raw.get("created_at"), "created_at"),
            modified_at=_timestamp(raw.get("modified_at"), "modified_at"),
            container_image=_str(raw.get("container_image"), "container_image", limit=MAX_IMAGE_CHARS),
            command=_str_list(raw.get("command"), "command", limit=None),
            runtime_constraints=RuntimeConstraints.from_api(raw.get("runtime_constraints")),
            scheduling_parameters=SchedulingParameters.from_api(raw.get("scheduling_parameters")),
            mounts=mounts,
            exit_code=_opt_int(raw.get("exit_code"), "exit_code", minimum=None),
            runtime_status=dict(_object(raw.get("runtime_status"), "runtime_status")),
            raw=dict(raw),
        )


def with_error(runtime_status: Mapping[str, Any], error: Mapping[str, str]) -> dict[str, Any]:
    """Return ``runtime_status`` with ``error`` (``error``, and ``errorDetail`` when there is one) in place of any
    earlier error. Pure.

    Arvados replaces ``runtime_status`` whole on an update, so what crunch-run wrote (its activity, a warning) is
    sent back with the new error; an earlier ``errorDetail`` is dropped, not left beside another error.
    """
    kept = {k: v for k, v in runtime_status.items() if k not in ("error", "errorDetail")}
    return {**kept, **error}


def routing_fields(raw: Any) -> tuple[str, ContainerState, str]:
    """Return ``(uuid, state, locked_by_uuid)`` of a raw container record, checked as ``Container.from_api``
    checks them. Pure.

    For a caller that sorts thousands of records per poll by these three fields and parses only the
    changed ones whole (the dispatcher): reading them raw would let a bad ``locked_by_uuid`` (a number,
    say) pass for another dispatcher's lock.

    Raises:
        ValueError: the record is not an object, or one of the three fields is not valid.
    """
    if not isinstance(raw, Mapping):
        raise _bad("container record", "must be an object", raw)
    uuid = raw.get("uuid")
    if not isinstance(uuid, str) or not CONTAINER_UUID_RE.fullmatch(uuid):
        raise _bad("uuid", "must be a container uuid (xxxxx-dz642-xxxxxxxxxxxxxxx)", uuid)
    state = raw.get("state")
    if not isinstance(state, str) or state not in _STATE_VALUES:
        raise _bad("state", f"must be one of {', '.join(_STATE_VALUES)}", state)
    locked_by = _uuid(raw.get("locked_by_uuid"), "locked_by_uuid", ARVADOS_UUID_RE, "an Arvados uuid")
    return uuid, ContainerState(state), locked_by


@dataclass(frozen=True)
class SlurmJob:
    """One line of the squeue snapshot: a Slurm job, named after a container uuid (or not ours)."""

    name: str
    nice: int
    slurm_priority: int
    state: str
    """Slurm's job state, e.g. PENDING, RUNNING, COMPLETING (squeue's ``%T``)."""
    reason: str
    """Why the job is in its state, whole ("None", "Resources", "ReqNodeNotAvail, UnavailableNodes:c1")."""
    job_id: str = ""
    """The job id as squeue prints it ("123"; another user's array job may print "123_4")."""
    nodes: str = ""
    """The nodes of a running job, as Slurm prints a node list ("c1", "c[1-2]"); "" while pending."""
    time_left_s: int | None = None
    """Seconds before the job's time limit (squeue's ``%L``); None when it has none or Slurm does not say."""
    cluster: str = ""
    """The Slurm cluster squeue printed the job under (``CLUSTER: <name>`` with ``--clusters``); "" for the local
    cluster, when no clusters are named."""
