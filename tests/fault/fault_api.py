"""The fault suite's Arvados side: the emulator with a history of every container write, and crunch-run's
trail in the Slurm jobs' output files.

The emulator keeps its containers in SQLite (``EmulatorServer(db_path=...)``). Before it serves, a trigger is
added to that database that copies the state, lock holder, lock count and priority of every container write
into a ``fault_history`` table, with the time: the emulator's own record of every transition (Queued → Locked,
Locked → Running, ...), whoever made it (the dispatcher, crunch-run, the test). Nothing in the emulator changes.

crunch-run-stub prints one line per step, each with the container uuid, into the job's output file
(``--output=<dir>/%j.out``): a start (``crunch-run-stub starting``), a start that found the container Locked
and went on (``container is Locked``), the move to Running (``state Running``), and a start that found the
container in any other state (``dispatch error detected``: a job that should not have run).

Plain Python (no pytest): the soak script uses it too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_dispatch.sandbox.api import EmulatorServer

ROOT_TOKEN = "systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy"
DISPATCHER_TOKEN_UUID = "zzzzz-gj3su-000000000000000"
"""The uuid of the emulator's root token: ``locked_by_uuid`` of everything the dispatcher locks."""

FINAL = frozenset({"Complete", "Cancelled"})

_HISTORY_SQL = """
CREATE TABLE IF NOT EXISTS fault_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    uuid TEXT NOT NULL,
    state TEXT,
    locked_by TEXT,
    lock_count INTEGER,
    priority INTEGER
);
CREATE TRIGGER IF NOT EXISTS fault_history_write AFTER INSERT ON containers BEGIN
    INSERT INTO fault_history (at, uuid, state, locked_by, lock_count, priority) VALUES (
        (julianday('now') - 2440587.5) * 86400.0, NEW.uuid,
        json_extract(NEW.doc, '$.state'), json_extract(NEW.doc, '$.locked_by_uuid'),
        json_extract(NEW.doc, '$.lock_count'), json_extract(NEW.doc, '$.priority'));
END;
"""
# The store writes every change with INSERT OR REPLACE, which fires INSERT triggers.


@dataclass(frozen=True)
class Write:
    """One container write, as the trigger recorded it."""

    id: int
    at: float
    uuid: str
    state: str
    locked_by: str | None
    lock_count: int
    priority: int


class History:
    """Reads the ``fault_history`` table of an emulator's database (a connection of its own)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db = sqlite3.connect(str(db_path), timeout=30, check_same_thread=False)

    @staticmethod
    def install(db_path: Path) -> None:
        """Create the history table and trigger in the emulator's database (before it serves)."""
        db = sqlite3.connect(str(db_path), timeout=30)
        try:
            db.executescript(_HISTORY_SQL)
        finally:
            db.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def writes(self, *, after: int = 0, uuid: str | None = None) -> list[Write]:
        """Every recorded write with id > ``after`` (of one container when ``uuid`` is given), oldest first."""
        sql = "SELECT id, at, uuid, state, locked_by, lock_count, priority FROM fault_history WHERE id > ?"
        args: tuple[Any, ...] = (after,)
        if uuid is not None:
            sql += " AND uuid = ?"
            args += (uuid,)
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [Write(r[0], r[1], r[2], r[3], r[4], int(r[5] or 0), int(r[6] or 0)) for r in rows]

    def last_id(self) -> int:
        """The id of the latest write (0: none)."""
        row = self._db.execute("SELECT MAX(id) FROM fault_history").fetchone()
        return int(row[0] or 0)

    def transitions(self) -> dict[str, list[str]]:
        """Each container's states in order, repeats of one state folded (a priority change is no transition)."""
        out: dict[str, list[str]] = {}
        for w in self.writes():
            states = out.setdefault(w.uuid, [])
            if not states or states[-1] != w.state:
                states.append(w.state)
        return out

    def current(self) -> dict[str, Write]:
        """The latest write of every container (its state now)."""
        out: dict[str, Write] = {}
        for w in self.writes():
            out[w.uuid] = w
        return out


def start_emulator(workdir: Path) -> tuple[EmulatorServer, History]:
    """Start an HTTPS emulator whose database is in ``workdir``, with the history trigger installed.

    Does not block (the server runs in a thread).
    """
    db = workdir / "emulator.sqlite"
    server = EmulatorServer(root_token=ROOT_TOKEN, db_path=str(db))
    History.install(db)
    server.start()
    return server, History(db)


_STUB_LINE_RE = re.compile(r"^\S+ (?P<uuid>\S+) (?P<what>crunch-run-stub starting|container is Locked|state Running)")
_DISPATCH_ERROR_RE = re.compile(r'dispatch error detected: container "(?P<uuid>[^"]+)" has state "(?P<state>[^"]+)"')
_API_ERROR_RE = re.compile(r"^\S+ (?P<uuid>\S+) (?P<what>cannot record the result|cannot set state|could not set state"
                           r"|cannot get the container token)")


@dataclass
class CrunchRunTrail:
    """What crunch-run-stub wrote about one container in the job output files."""

    starts: list[str] = field(default_factory=list)
    """Job ids whose crunch-run started for this container."""
    went_on: list[str] = field(default_factory=list)
    """Job ids whose crunch-run found the container Locked and went on to run it."""
    running: list[str] = field(default_factory=list)
    """Job ids whose crunch-run set the container Running."""
    refused: list[str] = field(default_factory=list)
    """``dispatch error detected`` lines: a crunch-run that found the container in another state than Locked."""
    api_errors: list[str] = field(default_factory=list)
    """Lines where crunch-run could not read or write the container (the API failing)."""


def crunch_run_trails(out_dir: Path, *, job_ids: Iterable[str] | None = None) -> dict[str, CrunchRunTrail]:
    """Read every job output file ``<out_dir>/<job id>.out`` (only ``job_ids`` when given); return the trail of
    each container. Reads files."""
    wanted = set(job_ids) if job_ids is not None else None
    trails: dict[str, CrunchRunTrail] = {}
    for path in sorted(out_dir.glob("*.out")):
        job_id = path.stem
        if not job_id.isdigit() or (wanted is not None and job_id not in wanted):
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = _STUB_LINE_RE.match(line)
            if m:
                trail = trails.setdefault(m.group("uuid"), CrunchRunTrail())
                {"crunch-run-stub starting": trail.starts, "container is Locked": trail.went_on,
                 "state Running": trail.running}[m.group("what")].append(job_id)
                continue
            a = _API_ERROR_RE.match(line)
            if a:
                trails.setdefault(a.group("uuid"), CrunchRunTrail()).api_errors.append(f"job {job_id}: {line.strip()}")
                continue
            e = _DISPATCH_ERROR_RE.search(line)
            if e:
                trails.setdefault(e.group("uuid"), CrunchRunTrail()).refused.append(f"job {job_id}: {line.strip()}")
    return trails
