"""The emulator's state: containers, tokens and logs in SQLite, cached in memory.

Every write goes to SQLite at once (one transaction per change), so a server
restarted on the same database file loses nothing. Reads come from the in-memory
cache, which is loaded from the file at start. One re-entrant lock, ``Store.lock``,
serialises every read-modify-write: callers hold it around ``get`` + ``put`` to get
the row lock Rails takes in ``Container#lock``.

Blocks on the lock and on SQLite file I/O.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from slurm_dispatch.sandbox.api.jsonb import copy_json
from slurm_dispatch.sandbox.api.rules import random_tail
from slurm_dispatch.sandbox.api.schema import now_timestamp

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (uuid TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (uuid TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT UNIQUE, doc TEXT NOT NULL);
"""


class Store:
    """SQLite-backed state of one emulated cluster. Thread-safe.

    Args:
        db_path: a database file (kept across restarts), or None for memory only.
        cluster_id: the five-character cluster prefix.
    """

    def __init__(self, db_path: str | None, *, cluster_id: str):
        self.cluster_id = cluster_id
        self.lock = threading.RLock()
        if db_path:
            # The file holds the root token and every container token in clear: owner-only from the start.
            os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(db_path, 0o600)
        self._db = sqlite3.connect(db_path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._containers: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._by_secret: dict[str, str] = {}
        self._logs: list[dict[str, Any]] = []
        for uuid, doc in self._db.execute("SELECT uuid, doc FROM containers"):
            self._containers[uuid] = json.loads(doc)
        for uuid, doc in self._db.execute("SELECT uuid, doc FROM tokens"):
            self._remember_token(json.loads(doc))
        for row_id, doc in self._db.execute("SELECT id, doc FROM logs ORDER BY id"):
            rec = json.loads(doc)
            rec["id"] = row_id
            self._logs.append(rec)

    @property
    def system_user_uuid(self) -> str:
        """The system user, owner of containers and of the root token."""
        return f"{self.cluster_id}-tpzed-000000000000000"

    @property
    def root_token_uuid(self) -> str:
        """The SystemRootToken's uuid, always ``<ClusterID>-gj3su-000000000000000``."""
        return f"{self.cluster_id}-gj3su-000000000000000"

    def close(self) -> None:
        """Close the database. Blocks on the lock."""
        with self.lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # containers

    def container(self, uuid: str) -> dict[str, Any] | None:
        """Return a copy of the stored container ``uuid``, or None."""
        with self.lock:
            rec = self._containers.get(uuid)
            return copy_json(rec) if rec is not None else None

    def containers(self) -> list[dict[str, Any]]:
        """Return the stored containers (shared objects: do not mutate)."""
        with self.lock:
            return list(self._containers.values())

    def put_container(self, rec: dict[str, Any]) -> None:
        """Insert or replace a container record. Writes the database."""
        with self.lock, self._tx() as db:
            db.execute("INSERT OR REPLACE INTO containers (uuid, doc) VALUES (?, ?)", (rec["uuid"], json.dumps(rec)))
            self._containers[rec["uuid"]] = copy_json(rec)

    # tokens

    def _remember_token(self, tok: dict[str, Any]) -> None:
        old = self._tokens.get(tok["uuid"])
        if old is not None:
            self._by_secret.pop(old["api_token"], None)
        self._tokens[tok["uuid"]] = tok
        self._by_secret[tok["api_token"]] = tok["uuid"]

    def token(self, uuid: str) -> dict[str, Any] | None:
        """Return a copy of the token record ``uuid`` (secret included), or None."""
        with self.lock:
            tok = self._tokens.get(uuid)
            return copy_json(tok) if tok is not None else None

    def token_by_secret(self, secret: str) -> dict[str, Any] | None:
        """Return a copy of the token whose secret is ``secret`` (a v1 token), or None."""
        with self.lock:
            uuid = self._by_secret.get(secret)
            return self.token(uuid) if uuid else None

    def put_token(self, tok: dict[str, Any]) -> None:
        """Insert or replace a token record. Writes the database."""
        with self.lock, self._tx() as db:
            db.execute("INSERT OR REPLACE INTO tokens (uuid, doc) VALUES (?, ?)", (tok["uuid"], json.dumps(tok)))
            self._remember_token(copy_json(tok))

    def new_token(
        self, *, owner_uuid: str, admin: bool, scopes: list[str], now: datetime, uuid: str | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        """Create, store and return a token. Writes the database."""
        stamp = now_timestamp(now)
        tok = {
            "uuid": uuid or f"{self.cluster_id}-gj3su-{random_tail()}",
            "api_token": secret or random_tail(50),
            "owner_uuid": owner_uuid,
            "admin": admin,
            "scopes": list(scopes),
            "expires_at": None,
            "created_at": stamp,
            "modified_at": stamp,
        }
        self.put_token(tok)
        return tok

    def expire_token(self, uuid: str, *, now: datetime) -> None:
        """Set a token's ``expires_at`` to ``now``, which makes it invalid. Writes the database."""
        with self.lock:
            tok = self.token(uuid)
            if tok is not None:
                tok["expires_at"] = now_timestamp(now)
                tok["modified_at"] = now_timestamp(now)
                self.put_token(tok)

    def ensure_root_token(self, secret: str | None, *, now: datetime) -> str:
        """Return the root token's secret, creating or re-keying the root token. Writes the database.

        With ``secret`` None an existing root token (from a database file) keeps its
        secret; otherwise a random one is made.
        """
        with self.lock:
            tok = self.token(self.root_token_uuid)
            if tok is not None and (secret is None or tok["api_token"] == secret):
                return str(tok["api_token"])
            if tok is not None:
                tok["api_token"] = secret
                self.put_token(tok)
                return str(secret)
            return str(self.new_token(
                owner_uuid=self.system_user_uuid, admin=True, scopes=["all"], now=now,
                uuid=self.root_token_uuid, secret=secret or secrets.token_hex(25),
            )["api_token"])

    # logs

    def add_log(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Store a log record, assigning its ``id``; return a copy. Writes the database."""
        with self.lock, self._tx() as db:
            cur = db.execute("INSERT INTO logs (uuid, doc) VALUES (?, ?)", (rec["uuid"], json.dumps(rec)))
            stored = dict(rec, id=cur.lastrowid)
            self._logs.append(stored)
            return copy_json(stored)

    def logs(self) -> list[dict[str, Any]]:
        """Return the stored logs, oldest first (shared objects: do not mutate)."""
        with self.lock:
            return list(self._logs)
