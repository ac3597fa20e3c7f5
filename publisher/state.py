"""The publisher's own state: the etags it announced, its change log, and the outbox.

One SQLite file, `<statedir>/state.sqlite` (WAL), through sqlite-utils.  A
dataset's etag, its entry in the change log and the message announcing it are
written in one transaction, so after any crash all exist or none does.  The
schema version is SQLite's `user_version`.

Every change gets the root's next sequence number (`seq`, never reused, kept
across restarts).  The change log keeps the latest `log_size` changes so that a
subscriber which missed some asks for just those (see `changes_since`); one
that is further behind takes a snapshot of the datasets instead.

The announced etags are also kept in memory (loaded once at open), so a file
event costs one lookup, not a reload of the whole root.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

DB_NAME = "state.sqlite"
SCHEMA_VERSION = 2
CONFIRM_DELAY = 0.2
"""Seconds a confirmed message stays in the outbox, to be deleted with the others."""
DEFAULT_LOG_SIZE = 10_000
"""Changes kept for subscribers that missed some; older ones are dropped."""


class StateError(RuntimeError):
    """The state file cannot be used by this version."""


@dataclass(frozen=True)
class Change:
    """One recorded dataset change (created, modified or deleted: then `etag` is None)."""

    relpath: str
    kind: str
    etag: str | None = None
    mtime: float | None = None
    meta: dict[str, Any] | None = None


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


def _create_change_log(conn: sqlite3.Connection) -> None:
    # seq is the rowid: lookups "since S" and trimming the oldest are range scans.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, relpath TEXT NOT NULL, "
        "kind TEXT NOT NULL, etag TEXT, mtime REAL, meta TEXT)"
    )


def _entry_digest(relpath: str, etag: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{relpath}\0{etag}".encode()).digest()[:16], "big")


class State:
    """Thread-safe access to the state file (one connection, one lock)."""

    def __init__(self, statedir: str | Path, log_size: int = DEFAULT_LOG_SIZE) -> None:
        """Open (creating if needed) `<statedir>/state.sqlite`."""
        self.path = Path(statedir) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_size = max(1, int(log_size))
        # One connection shared under a lock: the writers are a worker thread and
        # the broker's I/O thread (confirms), both brief.
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self._confirm_lock = threading.Lock()
        self._confirmed: list[int] = []  # confirmed, still in the outbox (see `confirmed`)
        self._flush_timer: threading.Timer | None = None
        self.db = sqlite_utils.Database(self._conn)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL survives a crash of the process (not of the machine): a
            # change lost with the machine is found again by the start-up scan.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} has schema version {version}, "
                    f"newer than this Caterva2 ({SCHEMA_VERSION})"
                )
            if version < SCHEMA_VERSION:
                with self._conn:
                    _create_schema(self.db)
                    _create_change_log(self._conn)
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._etags: dict[str, str] = dict(
                self._conn.execute("SELECT relpath, etag FROM datasets").fetchall()
            )
            self._digest = 0
            for relpath, etag in self._etags.items():
                self._digest ^= _entry_digest(relpath, etag)
            self._sorted: list[str] | None = None
            row = self._conn.execute("SELECT value FROM settings WHERE key = 'seq'").fetchone()
            self._seq = int(row[0]) if row else 0

    def close(self) -> None:
        """Close the file."""
        self.flush_confirmed()
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
                # The sequence goes on; a log of the other root's changes is of no use.
                self._conn.execute("DELETE FROM datasets")
                self._conn.execute("DELETE FROM changes")
                self._conn.executemany(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                    [("name", name), ("rootdir", rootdir)],
                )
                self._etags.clear()
                self._digest = 0
                self._sorted = None
            return changed

    # -- etags ---------------------------------------------------------------

    def etags(self) -> dict[str, str]:
        """The announced etag of every dataset, by relative path (a copy)."""
        with self._lock:
            return dict(self._etags)

    def known(self) -> KeysView[str]:
        """The announced paths, live: iterate it only in the thread that records changes."""
        return self._etags.keys()

    def etag(self, relpath: str) -> str | None:
        """The announced etag of one dataset, or None."""
        return self._etags.get(relpath)

    def paths(self) -> list[str]:
        """Every announced dataset path, sorted (kept until the next change)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._etags)
            return self._sorted

    def root_etag(self) -> str:
        """One etag for the whole root, kept up to date change by change (order-free)."""
        with self._lock:
            return f"{self._digest:032x}"

    @property
    def seq(self) -> int:
        """The sequence number of the last recorded change (0: none yet)."""
        return self._seq

    def record(self, changes: Iterable[Change], message: Callable[[Change, int], bytes]) -> list:
        """Store changes, each with its new seq, and queue their messages, in one transaction.

        `message(change, seq)` encodes the message announcing a change.  Returns
        `(row id, seq)` of each queued message, in order.
        """
        changes = list(changes)
        now = time.time()
        queued = []
        with self._lock, self._conn:
            seq = self._seq
            for change in changes:
                seq += 1
                meta = json.dumps(change.meta or {}) if change.etag is not None else None
                if change.etag is None:
                    self._conn.execute("DELETE FROM datasets WHERE relpath = ?", (change.relpath,))
                else:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO datasets (relpath, etag, mtime, meta, updated) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (change.relpath, change.etag, change.mtime, meta, now),
                    )
                self._conn.execute(
                    "INSERT INTO changes (seq, relpath, kind, etag, mtime, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, change.relpath, change.kind, change.etag, change.mtime, meta),
                )
                cursor = self._conn.execute(
                    "INSERT INTO outbox (body, created) VALUES (?, ?)",
                    (message(change, seq), now),
                )
                queued.append((cursor.lastrowid, seq))
            self._conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('seq', ?)", (str(seq),)
            )
            self._conn.execute("DELETE FROM changes WHERE seq <= ?", (seq - self.log_size,))
            # Memory follows the file only once the transaction is sure to commit.
            for change in changes:
                old = self._etags.pop(change.relpath, None)
                if old is not None:
                    self._digest ^= _entry_digest(change.relpath, old)
                if change.etag is not None:
                    self._etags[change.relpath] = change.etag
                    self._digest ^= _entry_digest(change.relpath, change.etag)
            self._sorted = None
            self._seq = seq
        return queued

    # -- change log and snapshots ---------------------------------------------

    def changes_since(self, since: int, limit: int) -> tuple[int, list[tuple], bool] | None:
        """(current seq, changes after `since` in order, whether more follow), at most `limit`.

        Each change is (seq, relpath, kind, etag, mtime, meta dict or None).
        None when the log no longer holds every change after `since` (or `since`
        is ahead of us: the subscriber knew another history): take a snapshot.
        """
        with self._lock:
            current = self._seq
            if since > current:
                return None
            oldest = self._conn.execute("SELECT min(seq) FROM changes").fetchone()[0]
            if since < current and (oldest is None or since < oldest - 1):
                return None
            rows = self._conn.execute(
                "SELECT seq, relpath, kind, etag, mtime, meta FROM changes "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (since, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        changes = [
            (seq, relpath, kind, etag, mtime, json.loads(meta) if meta else None)
            for seq, relpath, kind, etag, mtime, meta in rows[:limit]
        ]
        return current, changes, more

    def snapshot(self, after: str, limit: int) -> tuple[int, list[tuple], str | None]:
        """(seq, datasets with a path after `after`, the last path if more follow).

        Each dataset is (relpath, etag, mtime, meta as JSON text, as stored: decoding
        and encoding it again was half a snapshot's cost); the page and seq are read
        together, so the page is the state at that seq or later.
        """
        with self._lock:
            current = self._seq
            rows = self._conn.execute(
                "SELECT relpath, etag, mtime, meta FROM datasets WHERE relpath > ? "
                "ORDER BY relpath LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return current, rows, (rows[-1][0] if more and rows else None)

    # -- outbox --------------------------------------------------------------

    def outbox(self) -> list[tuple[int, bytes]]:
        """Messages not confirmed yet, oldest first."""
        self.flush_confirmed()
        with self._lock:
            return self._conn.execute("SELECT id, body FROM outbox ORDER BY id").fetchall()

    def confirmed(self, row_id: int) -> None:
        """The broker has the message: drop it from the outbox (soon, with others).

        Confirms come one per message, from the broker's I/O thread: one transaction
        each cost a start-up scan of 100,000 datasets more than its own work. They
        are deleted together a moment later; a crash meanwhile only re-sends a few
        messages, which subscribers ignore (they know their seq).
        """
        with self._confirm_lock:
            self._confirmed.append(row_id)
            if self._flush_timer is not None:
                return
            self._flush_timer = threading.Timer(CONFIRM_DELAY, self.flush_confirmed)
            self._flush_timer.daemon = True
            self._flush_timer.start()

    def flush_confirmed(self) -> None:
        """Drop every confirmed message from the outbox now."""
        with self._confirm_lock:
            done, self._confirmed = self._confirmed, []
            self._flush_timer = None
        if not done:
            return
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in done])
