"""The container state machine and field rules of Rails' services/api/app/models/container.rb.

Pure functions: given the stored record, the caller, the requested attributes and
``now``, return the new record (or raise ``ApiError``) plus what must happen to
the container's token. The store applies the result atomically.

The callback order of ``container.rb`` is kept because it is observable:
``set_timestamps`` runs before ``check_lock``/``check_unlock``, so a container
cancelled by the MaxDispatchAttempts rule keeps ``finished_at`` NULL, as in
Arvados; ``validate_change`` runs before ``validate_lock``; ``assign_auth`` runs
after the validations.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slurm_dispatch.model import parse_timestamp
from slurm_dispatch.sandbox.api import jsonb
from slurm_dispatch.sandbox.api.apierrors import ApiError, humanize, permission_denied, ruby_exc, ruby_inspect
from slurm_dispatch.sandbox.api.schema import CONTAINERS, ColumnType, Table, now_timestamp

QUEUED, LOCKED, RUNNING, COMPLETE, CANCELLED = "Queued", "Locked", "Running", "Complete", "Cancelled"
STATES = (QUEUED, LOCKED, RUNNING, COMPLETE, CANCELLED)
TRANSITIONS: Mapping[str | None, tuple[str, ...]] = {
    None: (QUEUED,),
    QUEUED: (LOCKED, CANCELLED),
    LOCKED: (QUEUED, RUNNING, CANCELLED),
    RUNNING: (COMPLETE, CANCELLED),
    COMPLETE: (CANCELLED,),
}
PROGRESS_ATTRS = ("progress", "runtime_status", "subrequests_cost", "cost", "log", "output",
                  "output_properties", "exit_code")
WELL_KNOWN_STATUS_KEYS = ("error", "errorDetail", "warning", "warningDetail", "activity", "preemptionNotice")
IGNORED_ATTRS = frozenset({"uuid", "kind", "etag", "href", "id", "created_at", "modified_at",
                           "modified_by_user_uuid", "modified_by_client_uuid"})
MAX_DISPATCH_ERROR = ("Failed to start container.  Cancelled after exceeding "
                      "'Containers.MaxDispatchAttempts' (lock_count={n})")
_HASH_ATTRS = ("environment", "mounts", "runtime_constraints", "scheduling_parameters", "runtime_status",
               "output_properties", "published_ports", "secret_mounts")
_STR_ARRAY_ATTRS = ("command", "output_glob", "output_storage_classes", "runtime_auth_scopes")


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the token's uuid and secret, its user, and whether that user is admin."""

    token_uuid: str
    token_secret: str
    user_uuid: str
    admin: bool


@dataclass
class Outcome:
    """The result of an accepted change.

    Attributes:
        record: the new stored record.
        new_auth: True when a container token must be created and its uuid put in ``auth_uuid``.
        expire_auth: the uuid of a container token to expire now, if any.
    """

    record: dict[str, Any]
    new_auth: bool = False
    expire_auth: str | None = None
    changed: list[str] = field(default_factory=list)


def _blank(v: Any) -> bool:
    return v is None or v == [] or v == {}


def really_changed(old: Any, new: Any) -> bool:
    """Return True when a value changed, nil, ``[]`` and ``{}`` counting as equal (whitelist_update.rb). Pure."""
    if _blank(old) and _blank(new):
        return False
    return not jsonb.jeq(old, new)


def _coerce(table: Table, attr: str, value: Any) -> Any:
    """Return ``value`` cast to the column type of ``attr`` as ActiveRecord would."""
    col = table.column(attr)
    assert col is not None
    t = col.type
    if value is None:
        return None
    if t is ColumnType.INTEGER:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+(\.\d*)?\s*", value):
            return int(float(value)) if "." in value else int(value)
        if isinstance(value, str) and value.strip() == "":
            return None
        raise ApiError(422, f"{humanize(attr)} is not a number")
    if t is ColumnType.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ApiError(422, f"{humanize(attr)} is not a number") from None
    if t is ColumnType.DATETIME:
        if value == "":
            return None
        try:
            ts = parse_timestamp(value)
        except ValueError:
            return None  # ActiveRecord casts an unparseable time to nil
        return None if ts is None else now_timestamp(ts)
    if t is ColumnType.BOOLEAN:
        if isinstance(value, str):
            return value.lower() not in ("", "0", "f", "false", "off", "n", "no")
        return bool(value)
    if t is ColumnType.TEXT:
        return value if isinstance(value, str) else str(value)
    return jsonb.copy_json(value)


def coerce_attrs(table: Table, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request's attributes cast to column types, server-owned ones dropped. Pure.

    Raises:
        ApiError: 422 for an unknown attribute (ActiveModel::UnknownAttributeError) or a bad number.
    """
    out: dict[str, Any] = {}
    model = "Container" if table is CONTAINERS else table.kind.split("#", 1)[1].capitalize()
    for attr, value in attrs.items():
        if attr in IGNORED_ATTRS:
            continue
        if table.column(attr) is None:
            raise ApiError(422, ruby_exc("ActiveModel::UnknownAttributeError",
                                         f"unknown attribute '{attr}' for {model}."))
        out[attr] = _coerce(table, attr, value)
    return out


def priority_errors(raw: Any) -> list[str]:
    """Return Rails' numericality errors for a ``priority`` as the client sent it, before casting. Pure.

    ``validates :priority, numericality: {only_integer: true}`` looks at the value before ActiveRecord casts
    it to an integer (which would truncate 2.5 to 2): a float or a decimal string is not an integer, and a
    boolean or a non-numeric string is not a number.
    """
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool)):
        return []
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"[+-]?\d+", text) or text == "":
            return []
        if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            return ["Priority must be an integer"]
        return ["Priority is not a number"]
    if isinstance(raw, float):
        return ["Priority must be an integer"]
    return ["Priority is not a number"]


def _shape_errors(rec: Mapping[str, Any]) -> list[str]:
    errors = []
    for attr in ("command", "container_image", "output_path", "cwd", "priority"):
        if rec.get(attr) in (None, "", [], {}):
            errors.append(f"{humanize(attr)} can't be blank")
    prio = rec.get("priority")
    if isinstance(prio, int) and prio < 0:
        errors.append("Priority must be greater than or equal to 0")
    for attr in _HASH_ATTRS:
        if rec.get(attr) is not None and not isinstance(rec.get(attr), dict):
            errors.append(f"{humanize(attr)} must be a hash")
    for attr in _STR_ARRAY_ATTRS:
        v = rec.get(attr)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            errors.append(f"{humanize(attr)} must be an array of strings")
    status = rec.get("runtime_status")
    if isinstance(status, dict):
        for k in WELL_KNOWN_STATUS_KEYS:
            if k in status and not isinstance(status[k], str):
                errors.append(f"Runtime status '{k}' value must be a string")
    return errors


def apply_update(
    old: Mapping[str, Any],
    attrs: Mapping[str, Any],
    *,
    caller: Caller,
    now: datetime,
    max_dispatch_attempts: int,
) -> Outcome:
    """Return the outcome of ``PUT containers/{uuid}`` with ``attrs``, as Rails decides it. Pure.

    Port of services/api/app/models/container.rb: set_timestamps, check_lock,
    check_unlock, validate_runtime_status, validate_state_change, validate_change,
    validate_lock, assign_auth, scrub_secrets, clear_runtime_status_when_queued.

    Raises:
        ApiError: 422 for a refused transition or field change (every validation
            message), 422 LockFailedError for a lock with priority 0, 403 for a
            non-admin caller or an unlock by a token that does not hold the lock.
    """
    new = jsonb.copy_json(dict(old))
    new.update(coerce_attrs(CONTAINERS, attrs))
    old_state = old.get("state")
    state_changed = new.get("state") != old_state
    stamp = now_timestamp(now)

    # before_validation: set_timestamps
    if state_changed and new.get("state") == RUNNING and new.get("started_at") is None:
        new["started_at"] = stamp
    if state_changed and new.get("state") in (COMPLETE, CANCELLED) and new.get("finished_at") is None:
        new["finished_at"] = stamp
    # before_validation: check_lock
    if old_state == QUEUED and new.get("state") == LOCKED:
        prio = new.get("priority")
        if not isinstance(prio, int) or prio <= 0:
            raise ApiError(422, ruby_exc("ArvadosModel::LockFailedError", "cannot lock when priority<=0"))
        new["lock_count"] = int(new.get("lock_count") or 0) + 1
    # before_validation: check_unlock
    if old_state == LOCKED and new.get("state") == QUEUED:
        if old.get("locked_by_uuid") != caller.token_uuid:
            raise permission_denied("locked by a different token")
        if int(new.get("lock_count") or 0) >= max_dispatch_attempts:
            new["state"] = CANCELLED
            new["runtime_status"] = {"error": MAX_DISPATCH_ERROR.format(n=new.get("lock_count"))}
    state = new.get("state")
    state_changed = state != old_state

    errors = _shape_errors(new) + priority_errors(attrs.get("priority"))
    # validate_state_change
    if state_changed and state not in TRANSITIONS.get(old_state, ()):
        errors.append(f"State cannot change from {old_state} to {state}")
    # validate_change
    permitted: set[str] = {"state"}
    if state == LOCKED:
        permitted |= {"priority", "runtime_status", "log", "lock_count"}
    elif state == QUEUED:
        permitted |= {"priority"}
    elif state == RUNNING:
        permitted |= {"priority", "output_properties", "gateway_address", *PROGRESS_ATTRS}
        if state_changed:
            permitted.add("started_at")
        if not old.get("interactive_session_started"):
            permitted.add("interactive_session_started")
    elif state == COMPLETE:
        if old_state == RUNNING:
            permitted |= {"finished_at", *PROGRESS_ATTRS}
    elif state == CANCELLED:
        if old_state == RUNNING:
            permitted |= {"finished_at", *PROGRESS_ATTRS}
        elif old_state in (QUEUED, LOCKED):
            permitted |= {"finished_at", "log", "runtime_status", "cost"}
    if state in STATES:
        own_token = caller.token_uuid == old.get("auth_uuid") or (
            old.get("runtime_token") is not None and caller.token_secret == old.get("runtime_token")
        )
        if old_state == RUNNING and own_token:
            permitted.add("finished_at")
            permitted -= {"log", "priority"}
        elif not caller.admin:
            if errors:
                raise ApiError(403, *errors)
            raise permission_denied()
        elif new.get("locked_by_uuid") and new.get("locked_by_uuid") != caller.token_uuid:
            permitted -= set(PROGRESS_ATTRS)
        for col in CONTAINERS.columns:
            name = col.name
            if name in permitted or name in ("created_at", "modified_at", "modified_by_user_uuid"):
                continue
            if really_changed(old.get(name), new.get(name)):
                errors.append(f"{humanize(name)} cannot be modified in state '{state}' "
                              f"({ruby_inspect(old.get(name))}, {ruby_inspect(new.get(name))})")
    # validate_lock
    if state in (LOCKED, RUNNING):
        need_lock = old.get("locked_by_uuid") or caller.token_uuid
    else:
        need_lock = None
    if new.get("locked_by_uuid") != old.get("locked_by_uuid") and new.get("locked_by_uuid") != need_lock:
        errors.append(f"Locked by uuid can only change to {need_lock or ''}")
    new["locked_by_uuid"] = need_lock
    # after_validation: assign_auth (readonly check)
    if new.get("auth_uuid") != old.get("auth_uuid"):
        errors.append("Auth uuid is readonly")
    if errors:
        raise ApiError(422, *errors)

    outcome = Outcome(record=new)
    if state not in (LOCKED, RUNNING):
        if old.get("auth_uuid"):
            outcome.expire_auth = old.get("auth_uuid")
        new["auth_uuid"] = None
    elif not new.get("auth_uuid") and new.get("runtime_token") is None:
        outcome.new_auth = True
    # before_save: scrub_secrets, clear_runtime_status_when_queued
    if state_changed and state in (COMPLETE, CANCELLED):
        new["secret_mounts"] = {}
        new["runtime_token"] = None
    if old_state == LOCKED and state == QUEUED:
        new["runtime_status"] = {}
    outcome.changed = [c.name for c in CONTAINERS.columns if really_changed(old.get(c.name), new.get(c.name))]
    if outcome.changed or outcome.new_auth:
        new["modified_at"] = stamp
        new["modified_by_user_uuid"] = caller.user_uuid
    return outcome


def lock(old: Mapping[str, Any], *, caller: Caller, now: datetime, max_dispatch_attempts: int) -> Outcome:
    """Return the outcome of ``POST containers/{uuid}/lock`` (Container#lock). Pure.

    Raises:
        ApiError: 422 LockFailedError unless Queued with priority > 0; 403 for a non-admin.
    """
    if old.get("state") != QUEUED:
        raise ApiError(422, ruby_exc("ArvadosModel::LockFailedError", f"cannot lock when {old.get('state')}"))
    return apply_update(old, {"state": LOCKED}, caller=caller, now=now,
                        max_dispatch_attempts=max_dispatch_attempts)


def unlock(old: Mapping[str, Any], *, caller: Caller, now: datetime, max_dispatch_attempts: int) -> Outcome:
    """Return the outcome of ``POST containers/{uuid}/unlock`` (Container#unlock). Pure.

    At ``lock_count >= max_dispatch_attempts`` the container is Cancelled instead (container.rb: check_unlock).

    Raises:
        ApiError: 422 InvalidStateTransitionError unless Locked; 403 when another token holds the lock.
    """
    if old.get("state") != LOCKED:
        raise ApiError(422, ruby_exc("ArvadosModel::InvalidStateTransitionError",
                                     f"cannot unlock when {old.get('state')}"))
    return apply_update(old, {"state": QUEUED}, caller=caller, now=now,
                        max_dispatch_attempts=max_dispatch_attempts)


_BASE36 = string.digits + string.ascii_lowercase


def random_tail(n: int = 15) -> str:
    """Return ``n`` random base-36 characters (a uuid tail, or a token's secret). Reads the OS random source once.

    One ``secrets.randbits`` call gives all the characters (its 6·n + 16 bits make the bias of repeated
    division by 36 negligible): choosing each character with ``secrets.choice`` made one system call per
    character, 65 for a lock's new container token, which was the largest CPU cost of a lock.
    """
    value = secrets.randbits(6 * n + 16)
    chars = []
    for _ in range(n):
        value, digit = divmod(value, 36)
        chars.append(_BASE36[digit])
    return "".join(chars)


def bound_keep_cache_disk(ram: Any) -> int:
    """Return ``ram`` clamped to [2 GiB, 32 GiB] (Container.bound_keep_cache_disk). Pure."""
    value = ram if isinstance(ram, int) and not isinstance(ram, bool) else 0
    return min(max(value, 2 << 30), 32 << 30)


def resolve_runtime_constraints(rc: Mapping[str, Any], *, default_keep_cache_ram: int = 0) -> dict[str, Any]:
    """Return runtime constraints as the API stores them (Container.resolve_runtime_constraints). Pure.

    Ranges ``[min, max]`` become their first element; a zero ``keep_cache_ram`` gets
    the cluster default; when both cache sizes are zero ``keep_cache_disk`` becomes
    ``ram`` clamped to [2 GiB, 32 GiB]; a ``cuda`` request is translated into ``gpu``.
    Absent cache sizes count as 0, as a container request fills them.
    """
    out = {k: (v[0] if isinstance(v, list) else v) for k, v in rc.items()}
    out.setdefault("keep_cache_ram", 0)
    out.setdefault("keep_cache_disk", 0)
    if out["keep_cache_ram"] == 0:
        out["keep_cache_ram"] = default_keep_cache_ram
    if out["keep_cache_disk"] == 0 and out["keep_cache_ram"] == 0:
        out["keep_cache_disk"] = bound_keep_cache_disk(out.get("ram"))
    cuda = out.get("cuda")
    gpu = out.get("gpu")
    if isinstance(cuda, dict) and int(cuda.get("device_count") or 0) > 0 and not (
        isinstance(gpu, dict) and int(gpu.get("device_count") or 0) > 0
    ):
        cap = cuda.get("hardware_capability")
        out["gpu"] = {
            "stack": "cuda",
            "device_count": int(cuda.get("device_count") or 0),
            "driver_version": cuda.get("driver_version") or "",
            "hardware_target": [cap] if cap else [],
            "vram": 0,
        }
    return {k: out[k] for k in sorted(out)}


def new_container(
    fields: Mapping[str, Any], *, cluster_id: str, now: datetime, system_user_uuid: str, runtime_user_uuid: str
) -> dict[str, Any]:
    """Return a stored container record built from ``fields`` and the API's defaults. Pure but for the uuid.

    Defaults: state Queued, priority 1, the ``zzzzz-dz642-queuedcontainer`` fixture's
    command/image/paths, ``runtime_auth_scopes ["all"]``; runtime constraints are
    resolved (``keep_cache_disk``, as container.rb: Container.resolve_runtime_constraints).

    Raises:
        ApiError: 422 for an unknown attribute or a record Rails would not save.
    """
    stamp = now_timestamp(now)
    attrs = coerce_attrs(CONTAINERS, {k: v for k, v in fields.items() if k not in ("created_at", "modified_at")})
    rec: dict[str, Any] = {c.name: None for c in CONTAINERS.columns}
    rec.update({
        "uuid": f"{cluster_id}-dz642-{random_tail()}",
        "owner_uuid": system_user_uuid,
        "created_at": stamp,
        "modified_at": stamp,
        "modified_by_user_uuid": system_user_uuid,
        "state": QUEUED,
        "priority": 1,
        "command": ["echo", "hello"],
        "container_image": "fa3c1a9cb6783f85f2ecda037e07b8c3+167",
        "cwd": ".",
        "output_path": "/tmp",
        "environment": {},
        "mounts": {},
        "runtime_constraints": {"ram": 12000000000, "vcpus": 4},
        "scheduling_parameters": {},
        "output_glob": [],
        "runtime_status": {},
        "runtime_user_uuid": runtime_user_uuid,
        "runtime_auth_scopes": ["all"],
        "lock_count": 0,
        "interactive_session_started": False,
        "output_storage_classes": ["default"],
        "output_properties": {},
        "cost": 0.0,
        "subrequests_cost": 0.0,
        "service": False,
        "published_ports": {},
        "secret_mounts": {},
        "secret_mounts_md5": "99914b932bd37a50b983c5e7c90ae93b",
    })
    if "uuid" in fields:
        rec["uuid"] = str(fields["uuid"])
    for k in ("created_at", "modified_at"):
        if fields.get(k):
            rec[k] = _coerce(CONTAINERS, k, fields[k])
    rec.update(attrs)
    if isinstance(rec.get("runtime_constraints"), dict):
        rec["runtime_constraints"] = resolve_runtime_constraints(rec["runtime_constraints"])
    errors = _shape_errors(rec) + priority_errors(fields.get("priority"))
    if rec.get("state") not in STATES:
        errors.append("State is not included in the list")
    if not re.fullmatch(r"[a-z0-9]{5}-dz642-[a-z0-9]{15}", str(rec["uuid"])):
        errors.append("Uuid is not a container uuid")
    if errors:
        raise ApiError(422, *errors)
    if rec["state"] not in (LOCKED, RUNNING):
        rec["locked_by_uuid"] = None
        rec["auth_uuid"] = None
    return rec
