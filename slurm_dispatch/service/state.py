"""What the service keeps across restarts: the drain, and the nodes reported broken. One small JSON file.

``<Service.StateDirectory>/state.json`` (default /var/lib/slurm-dispatch/state.json; systemd's
``StateDirectory=slurm-dispatch`` makes the directory). ``slurm-dispatch drain`` and ``resume``, the management
API and the service all read and write it, so a drain survives a restart until resumed, and an admin can drain a
dispatcher that is not running (before an upgrade, say).

Reads cost one ``stat`` when nothing changed (the service asks every tick, through ``StateWatch``, which logs each
change of the drain once, whoever made it). Writes replace the file atomically
(a temporary file and ``rename``), so a reader never sees half a file; a missing file is "not drained, no broken
node"; an unreadable or malformed file is reported once and read as that too for broken nodes, but as DRAINED
for the drain (missing information never unlocks the gates: an admin who drained must not be surprised).

A change (``set_drain``, ``set_broken``) reads the file and writes it back with one part changed, and several
processes make changes: ``slurm-dispatch drain`` and ``resume``, and the service (the management API's drain, the
broken nodes). Each change holds an exclusive ``flock`` on ``.state.lock`` beside the file from its read to its
write, so that two changes at once cannot both start from the same contents and lose one of them. Reads take no
lock: the rename makes them whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.errors import DispatchError
from slurm_dispatch.slurm.broken_nodes import BrokenNode

logger = logging.getLogger("slurm_dispatch.service.state")

STATE_FILE = "state.json"
LOCK_FILE = ".state.lock"
"""Beside the state file: what a change of it locks (the state file itself is replaced by each write, so a lock on
it would be on a file nobody opens next)."""
MAX_BYTES = 1 << 20
"""A state file larger than this is refused (it holds a few lines)."""


def _own_lock_file(fd: int, path: Path) -> None:
    """Make the open lock file a regular file that only the state directory's owner (the service user) and root can
    open: with 0644 any local user could hold its flock and stall every change; root, running ``drain`` first,
    hands the file it created to that owner, or the service could not open it. Blocks on fstat/fchmod/fchown.

    Raises:
        StateError: it is not a regular file.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise StateError(f"cannot write {path.parent / STATE_FILE}: {path} is not a regular file")
    try:
        if os.geteuid() == 0:
            owner = os.stat(path.parent)
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.fchown(fd, owner.st_uid, owner.st_gid)
        if (st.st_uid == os.geteuid() or os.geteuid() == 0) and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    except OSError as exc:
        logger.warning("cannot restrict %s to the service user: %s", path, exc.strerror or exc)


class StateError(DispatchError):
    """The state file could not be written (permissions, disk): the change did not happen."""


@dataclass(frozen=True)
class State:
    """The contents of the state file."""

    drain: Drain | None = None
    broken: dict[str, BrokenNode] = field(default_factory=dict)
    drained_by: str = ""
    """Who drained: ``user@host`` of ``slurm-dispatch drain``, or ``MANAGEMENT_API`` ("" when not recorded)."""
    problem: str = ""
    """Why the file could not be read ("" when it could, or does not exist)."""


class _BadState(ValueError):
    """The state file's contents are not what this module writes."""


def _parse(data: Any) -> State:
    if not isinstance(data, dict):
        raise _BadState("not a JSON object")
    drain, drained_by = None, ""
    raw_drain = data.get("drain")
    if raw_drain is not None:
        if not isinstance(raw_drain, dict):
            raise _BadState("drain: not an object")
        drain = Drain(reason=str(raw_drain.get("reason", "")), since=str(raw_drain.get("since", "")))
        drained_by = str(raw_drain.get("by", ""))
    broken: dict[str, BrokenNode] = {}
    raw_broken = data.get("broken_nodes") or {}
    if not isinstance(raw_broken, dict):
        raise _BadState("broken_nodes: not an object")
    for node, entry in raw_broken.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("since"), int | float):
            raise _BadState(f"broken_nodes.{node}: not an object with a numeric 'since'")
        broken[str(node)] = BrokenNode(node=str(node), since=float(entry["since"]), reason=str(entry.get("reason", "")))
    return State(drain=drain, broken=broken, drained_by=drained_by)


def _dump(state: State) -> dict[str, Any]:
    return {
        "drain": None if state.drain is None else {"reason": state.drain.reason, "since": state.drain.since,
                                                   "by": state.drained_by},
        "broken_nodes": {n: {"since": b.since, "reason": b.reason} for n, b in sorted(state.broken.items())},
    }


class StateStore:
    """Reads and writes the state file. Blocking (small file I/O); cheap when nothing changed."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / STATE_FILE
        self.lock_path = Path(directory) / LOCK_FILE
        self._seen: tuple[int, int, int] | None = None
        self._state = State()
        self._logged = ""

    def read(self) -> State:
        """Return the current state, reading the file only when it changed. Blocks on one stat (and a read)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._state = None, State()
            return self._state
        except OSError as exc:
            return self._unreadable(f"cannot stat {self.path}: {exc.strerror or exc}")
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # the inode too: a rewrite replaces the file
        if stamp == self._seen:
            return self._state
        try:
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")  # a FIFO would block the read for ever
            if st.st_size > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            state = _parse(json.loads(self.path.read_text(encoding="utf-8")))
        except RecursionError:
            return self._unreadable(f"cannot read {self.path}: its JSON is nested too deeply")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return self._unreadable(f"cannot read {self.path}: {exc}")
        self._seen, self._state, self._logged = stamp, state, ""
        return state

    def _unreadable(self, problem: str) -> State:
        if problem != self._logged:
            logger.error("%s; treating the dispatcher as drained until it can be read", problem)
            self._logged = problem
        self._seen = None
        self._state = State(drain=Drain(reason=f"the state file is unreadable: {problem}", since="?"),
                            problem=problem)
        return self._state

    def write(self, state: State) -> None:
        """Replace the file with ``state``, atomically. Blocks.

        Raises:
            StateError: the directory or file could not be written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(_dump(state), out, indent=2, sort_keys=True)
                    out.write("\n")
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._seen = None

    def drain(self) -> Drain | None:
        """Return the drain (None: not drained). Blocks on one stat."""
        return self.read().drain

    @contextlib.contextmanager
    def _changing(self) -> Iterator[State]:
        """Hold the exclusive lock of a change and yield the state as the file has it now (read afresh, not from
        the stamp cache: another process may have written within the file system's timestamp granularity).

        Blocks until no other change holds the lock (each holds it for one small read and write).

        Raises:
            StateError: the lock file could not be opened or locked.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Never through a symlink (an admin runs drain as root in a directory the service user owns: a link
            # there would make root create a file anywhere), and never a FIFO (its open would block).
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                         0o600)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: cannot open {self.lock_path}: {exc.strerror or exc}"
                             ) from exc
        try:
            _own_lock_file(fd, self.lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # only root and the service user can open it (_own_lock_file)
            except OSError as exc:
                raise StateError(f"cannot write {self.path}: cannot lock {self.lock_path}: {exc.strerror or exc}"
                                 ) from exc
            self._seen = None
            yield self.read()
        finally:
            os.close(fd)  # releases the lock

    def set_drain(self, drain: Drain | None, *, by: str = "") -> State:
        """Drain (or resume, with None) and return the new state; ``by`` says who drained. Blocks, under the
        change lock.

        Raises:
            StateError: the file could not be written.
        """
        with self._changing() as current:
            state = State(drain=drain, broken=dict(current.broken) if not current.problem else {},
                          drained_by=by if drain is not None else "")
            self.write(state)
        return state

    def set_broken(self, broken: dict[str, BrokenNode]) -> None:
        """Record the broken nodes (the drain is kept). Blocks, under the change lock.

        Raises:
            StateError: the file could not be written.
        """
        with self._changing() as current:
            if current.problem:
                raise StateError(f"not recording broken nodes: {current.problem}")
            self.write(State(drain=current.drain, broken=dict(broken), drained_by=current.drained_by))


MANAGEMENT_API = "the management API"
"""``State.drained_by`` of a drain made through the service's management API."""


def drain_change(before: State | None, after: State) -> str | None:
    """Return the line to log when the drain read from the state file changed, None when it did not. Pure.

    ``before`` is the state read last (None: nothing read yet, so nothing to compare with). The broken nodes are
    not the drain: their changes are logged where they happen. An unreadable file is logged by ``StateStore``.
    """
    if before is None or after.problem:
        return None
    if (before.drain, before.drained_by, before.problem) == (after.drain, after.drained_by, after.problem):
        return None
    if after.drain is not None:
        by = after.drained_by
        who = f" by {by}" if by and by not in after.drain.reason else ""
        return (f"drained{who} since {after.drain.since}: {after.drain.reason}; no new container is locked until "
                "`slurm-dispatch resume`")
    if before.drain is None or before.problem:
        return "the state file is readable again and says not drained: locking new containers again"
    return (f"resumed (was drained since {before.drain.since}: {before.drain.reason}): locking new containers "
            "again")


class StateWatch:
    """The service's view of the state file: every read compares the drain with the last one and logs a change
    once (``drain_change``), whoever made it: ``slurm-dispatch drain``/``resume`` from another process, or the
    management API in this one (which logs its own line, so its changes are not logged again here).

    Thread-safe: the dispatch loop reads every tick, the management API writes from a worker thread, and one
    lock keeps a write and the read after it in order. Blocks as ``StateStore`` does.
    """

    def __init__(self, store: StateStore) -> None:
        """Watch ``store``; does no I/O (the first read is the one nothing is compared with)."""
        self.store = store
        self._lock = threading.Lock()
        self._last: State | None = None

    @property
    def path(self) -> Path:
        """The state file."""
        return self.store.path

    def read(self) -> State:
        """Return the current state, logging a change of the drain since the last read at INFO. Blocks."""
        with self._lock:
            state = self.store.read()
            line = drain_change(self._last, state)
            self._last = state
        if line is not None:
            logger.info("%s", line)
        return state

    def drain(self) -> Drain | None:
        """Return the drain (None: not drained), as ``read``. Blocks on one stat."""
        return self.read().drain

    def set_drain(self, drain: Drain | None, *, by: str) -> State:
        """Drain (or resume, with None) on behalf of ``by`` and return the new state; the caller logs it. Blocks.

        Raises:
            StateError: the file could not be written.
        """
        with self._lock:
            self._last = self.store.set_drain(drain, by=by)
            return self._last

    def set_broken(self, broken: dict[str, BrokenNode]) -> None:
        """Record the broken nodes (the drain is kept). Blocks.

        Raises:
            StateError: the file could not be written.
        """
        with self._lock:
            self.store.set_broken(broken)


__all__ = ["LOCK_FILE", "MANAGEMENT_API", "MAX_BYTES", "STATE_FILE", "BrokenNode", "State", "StateError", "StateStore", "StateWatch",
           "drain_change"]
