"""The publisher's own state: the etags it announced, and the outbox of unconfirmed messages.

One SQLite file, `<statedir>/state.sqlite` (WAL), through sqlite-utils.  A
dataset's etag and the message announcing it are written in one transaction,
so after any crash either both exist or neither does.  The schema version is
SQLite's `user_version`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import sqlite_utils

DB_NAME = "state.sqlite"
SCHEMA_VERSION = 1


class StateError(RuntimeError):
    """The state file cannot be used by this version."""


def _create_schema(db: sqlite_utils.Database) -> None:
    # if_not_exists: DDL is not transactional in sqlite3's default mode, so a crash
    # between two statements must leave a file the next start can finish.
    db["datasets"].create(
        {"relpath": str, "etag": str, "mtime": float, "meta": str, "updated": float},
        pk="relpath",
        if_not_exists=True,
    )
    db["outbox"].create({"id": int, "body": bytes, "created": float}, pk="id", if_not_exists=True)
    db["settings"].create({"key": str, "value": str}, pk="key", if_not_exists=True)


class State:
    """Thread-safe access to the state file (one connection, one lock)."""

    def __init__(self, statedir: str | Path) -> None:
        """Open (creating if needed) `<statedir>/state.sqlite`."""
        self.path = Path(statedir) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: the writers are a worker thread and
        # the broker's I/O thread (confirms), both brief.
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self.db = sqlite_utils.Database(self._conn)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode = WAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} has schema version {version}, "
                    f"newer than this Caterva2 ({SCHEMA_VERSION})"
                )
            if version == 0:
                with self._conn:
                    _create_schema(self.db)
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()

    # -- which root this state describes ----------------------------------

    def bind_root(self, name: str, rootdir: str) -> bool:
        """Record which root this state is about; forget the etags if it changed."""
        with self._lock, self._conn:
            rows = dict(self._conn.execute("SELECT key, value FROM settings").fetchall())
            changed = (rows.get("name"), rows.get("rootdir")) != (name, rootdir)
            if changed:
                # Etags of another root say nothing about this one: announce it all anew.
                self._conn.execute("DELETE FROM datasets")
                self._conn.executemany(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                    [("name", name), ("rootdir", rootdir)],
                )
            return changed

    # -- etags ---------------------------------------------------------------

    def etags(self) -> dict[str, str]:
        """The announced etag of every dataset, by relative path."""
        with self._lock:
            return dict(self._conn.execute("SELECT relpath, etag FROM datasets").fetchall())

    def etag(self, relpath: str) -> str | None:
        """The announced etag of one dataset, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT etag FROM datasets WHERE relpath = ?", (relpath,)
            ).fetchone()
        return row[0] if row else None

    def record(
        self,
        relpath: str,
        etag: str | None,
        mtime: float | None,
        meta: dict[str, Any] | None,
        message: bytes,
    ) -> int:
        """Store a dataset's new etag (None = deleted) and queue its message; return the row id."""
        now = time.time()
        with self._lock, self._conn:
            if etag is None:
                self._conn.execute("DELETE FROM datasets WHERE relpath = ?", (relpath,))
            else:
                self._conn.execute(
                    "INSERT OR REPLACE INTO datasets (relpath, etag, mtime, meta, updated) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (relpath, etag, mtime, json.dumps(meta or {}), now),
                )
            cursor = self._conn.execute(
                "INSERT INTO outbox (body, created) VALUES (?, ?)", (message, now)
            )
            return cursor.lastrowid

    # -- outbox --------------------------------------------------------------

    def outbox(self) -> list[tuple[int, bytes]]:
        """Messages not confirmed yet, oldest first."""
        with self._lock:
            return self._conn.execute("SELECT id, body FROM outbox ORDER BY id").fetchall()

    def confirmed(self, row_id: int) -> None:
        """The broker has the message: drop it from the outbox."""
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
