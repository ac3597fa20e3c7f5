"""The subscriber's SQLite store: users, login tokens, subscriptions and remote roots.

One file (`<statedir>/db.sqlite`, WAL mode) through sqlite-utils. The schema
version is SQLite's `user_version`; opening an older file runs the missing
migrations in order, inside one transaction each.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from ..common.errors import BadRequest, Conflict, NotFound
from . import passwords

DB_NAME = "db.sqlite"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_TOKEN_LIFETIME = 12 * 3600
RESET_TOKEN_LIFETIME = 3600  # seconds a password-reset link works


@dataclass(frozen=True)
class User:
    """A user account; `id` (a UUID) names the user's personal folder."""

    id: str
    email: str
    hashed_password: str
    is_active: bool
    is_superuser: bool
    is_verified: bool

    def public_dict(self) -> dict:
        """What `/api/listusers/` shows: never the password hash."""
        return {
            "id": self.id,
            "email": self.email,
            "hashed_password": "",
            "is_active": self.is_active,
            "is_superuser": self.is_superuser,
            "is_verified": self.is_verified,
        }


def _migrate_1(db: sqlite_utils.Database) -> None:
    db["users"].create(
        {
            "id": str,
            "email": str,
            "hashed_password": str,
            "is_active": int,
            "is_superuser": int,
            "is_verified": int,
            "created": float,
        },
        pk="id",
    )
    db["users"].create_index(["email"], unique=True)
    db["tokens"].create(
        {"token_hash": str, "user_id": str, "expires": float},
        pk="token_hash",
        foreign_keys=[("user_id", "users", "id")],
    )
    db["tokens"].create_index(["user_id"])


def _migrate_2(db: sqlite_utils.Database) -> None:
    db["subscriptions"].create({"root": str, "mirror": int, "created": float}, pk="root")
    db["roots"].create(
        {"name": str, "url": str, "etag": str, "online": int, "seen": float}, pk="name"
    )


def _migrate_3(db: sqlite_utils.Database) -> None:
    db["datasets"].create(
        {"root": str, "path": str, "etag": str, "meta": str, "updated": float},
        pk=("root", "path"),
    )
    db["settings"].create({"key": str, "value": str}, pk="key")


def _migrate_4(db: sqlite_utils.Database) -> None:
    # The broker user a root is pinned to, and what was refused in its name.
    db["roots"].add_column("owner", str)
    db["roots"].add_column("refused", int, not_null_default=0)
    db["roots"].add_column("refusal", str)


def _migrate_5(db: sqlite_utils.Database) -> None:
    # The last change of a followed root applied here (its publisher's sequence number);
    # NULL: none known yet (never synced, or a publisher without sequences).
    db["subscriptions"].add_column("seq", int)


# Index i upgrades a file from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
    _migrate_5,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in an open database."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> None:
    """Bring a database up to `target`, one committed step at a time."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{DB_NAME} has schema version {version}, newer than this Caterva2 ({SCHEMA_VERSION})"
        )
    db = sqlite_utils.Database(conn)
    for step in range(version, target):
        with conn:
            MIGRATIONS[step](db)
            conn.execute(f"PRAGMA user_version = {step + 1}")


class Store:
    """Thread-safe access to the SQLite file (one connection per thread)."""

    def __init__(self, statedir: str | Path, secret: str | None = None) -> None:
        self.path = Path(statedir) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Tokens are stored as HMACs keyed by the secret: a stolen file holds no usable token.
        self._token_key = (secret or "").encode()
        self._local = threading.local()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils view of this thread's connection."""
        return sqlite_utils.Database(self._conn())

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # Users

    @staticmethod
    def _user(row: dict | None) -> User | None:
        if row is None:
            return None
        return User(
            id=row["id"],
            email=row["email"],
            hashed_password=row["hashed_password"],
            is_active=bool(row["is_active"]),
            is_superuser=bool(row["is_superuser"]),
            is_verified=bool(row["is_verified"]),
        )

    def add_user(self, email: str, password: str, superuser: bool = False) -> User:
        """Create a user; `Conflict` if the email is taken, `BadRequest` if invalid."""
        email = email.strip()
        if not EMAIL_RE.match(email):
            raise BadRequest(f"{email!r} is not a valid email address")
        problem = passwords.password_problem(password)
        if problem:
            raise BadRequest(problem)
        row = {
            "id": str(uuid.uuid4()),
            "email": email,
            "hashed_password": passwords.hash_password(password),
            "is_active": 1,
            "is_superuser": int(superuser),
            "is_verified": 0,
            "created": time.time(),
        }
        try:
            self.db["users"].insert(row)
        except sqlite3.IntegrityError:
            raise Conflict(f"User {email} already exists") from None
        return self._user(row)

    def get_user(self, user_id: str) -> User | None:
        rows = list(self.db["users"].rows_where("id = ?", [user_id]))
        return self._user(rows[0] if rows else None)

    def get_user_by_email(self, email: str) -> User | None:
        rows = list(self.db["users"].rows_where("email = ? COLLATE NOCASE", [email.strip()]))
        return self._user(rows[0] if rows else None)

    def list_users(self, email: str | None = None) -> list[User]:
        if email:
            user = self.get_user_by_email(email)
            return [user] if user else []
        return [self._user(r) for r in self.db["users"].rows_where(order_by="created")]

    def count_users(self) -> int:
        return self.db["users"].count

    def delete_user(self, email: str) -> User:
        """Delete a user and their tokens; `NotFound` if there is none."""
        user = self.get_user_by_email(email)
        if user is None:
            raise NotFound(f"User {email} does not exist")
        conn = self._conn()
        with conn:
            conn.execute("DELETE FROM tokens WHERE user_id = ?", [user.id])
            conn.execute("DELETE FROM users WHERE id = ?", [user.id])
        return user

    def authenticate(self, email: str, password: str) -> User | None:
        """The active user with these credentials, or None."""
        user = self.get_user_by_email(email)
        # Exactly one hash whatever the account: timing must not tell which accounts exist.
        hashed = user.hashed_password if user is not None else passwords.decoy_hash()
        matches = passwords.verify_password(password, hashed)
        if user is None or not user.is_active or not matches:
            return None
        return user

    # Tokens

    def _token_hash(self, token: str) -> str:
        return hmac.new(self._token_key, token.encode(), hashlib.sha256).hexdigest()

    def create_token(self, user: User, lifetime: float = DEFAULT_TOKEN_LIFETIME) -> str:
        """A new random login token for `user`, valid for `lifetime` seconds."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        conn = self._conn()
        with conn:
            conn.execute("DELETE FROM tokens WHERE expires < ?", [now])
            conn.execute(
                "INSERT INTO tokens (token_hash, user_id, expires) VALUES (?, ?, ?)",
                [self._token_hash(token), user.id, now + lifetime],
            )
        return token

    def user_for_token(self, token: str | None) -> User | None:
        """The active user a valid, unexpired token belongs to, or None."""
        if not token:
            return None
        row = self._conn().execute(
            "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ? AND t.expires > ?",
            [self._token_hash(token), time.time()],
        )
        cols = [c[0] for c in row.description]
        found = row.fetchone()
        user = self._user(dict(zip(cols, found, strict=True)) if found else None)
        return user if user and user.is_active else None

    def delete_token(self, token: str) -> None:
        self._conn().execute("DELETE FROM tokens WHERE token_hash = ?", [self._token_hash(token)])

    # Password resets

    def _reset_signature(self, user: User, expires: int) -> str:
        # Signed over the current password hash: once the password changes, every
        # reset token given before stops working (each is good for one reset).
        message = f"reset|{user.id}|{expires}|{user.hashed_password}".encode()
        return hmac.new(self._token_key, message, hashlib.sha256).hexdigest()

    def create_reset_token(self, user: User, lifetime: float = RESET_TOKEN_LIFETIME) -> str:
        """A token that lets whoever holds it set `user`'s password once, within `lifetime` s."""
        if not self._token_key:
            raise RuntimeError("password resets need a secret (CATERVA2_SECRET)")
        expires = int(time.time() + lifetime)
        return f"{user.id}.{expires}.{self._reset_signature(user, expires)}"

    def reset_password(self, token: str, password: str) -> User:
        """Set the password a reset token names; BadRequest with fastapi-users' codes if not."""
        user_id, _, rest = str(token).partition(".")
        expires_text, _, signature = rest.partition(".")
        user = self.get_user(user_id) if user_id else None
        valid = (
            user is not None
            and user.is_active
            and expires_text.isdigit()
            and int(expires_text) > time.time()
            and self._token_key
            and hmac.compare_digest(signature, self._reset_signature(user, int(expires_text)))
        )
        if not valid:
            raise BadRequest("RESET_PASSWORD_BAD_TOKEN")
        problem = passwords.password_problem(password)
        if problem:
            raise BadRequest({"code": "RESET_PASSWORD_INVALID_PASSWORD", "reason": problem})
        conn = self._conn()
        with conn:  # a new password ends every session the old one opened
            conn.execute(
                "UPDATE users SET hashed_password = ? WHERE id = ?",
                [passwords.hash_password(password), user.id],
            )
            conn.execute("DELETE FROM tokens WHERE user_id = ?", [user.id])
        return self.get_user(user.id)

    # Subscriptions (remote roots followed by this subscriber)

    def add_subscription(self, root: str, mirror: bool = False) -> None:
        self.db["subscriptions"].upsert(
            {"root": root, "mirror": int(mirror), "created": time.time()}, pk="root"
        )

    def remove_subscription(self, root: str) -> None:
        self._conn().execute("DELETE FROM subscriptions WHERE root = ?", [root])

    def subscriptions(self) -> dict[str, bool]:
        """Followed roots → whether they are mirrored."""
        # Plain SQL: every read of a remote root asks, and sqlite-utils costs ~0.15 ms here.
        rows = self._conn().execute("SELECT root, mirror FROM subscriptions").fetchall()
        return {root: bool(mirror) for root, mirror in rows}

    # Remote roots announced by publishers, and the datasets of the followed ones

    def upsert_root(
        self, name: str, url: str, etag: str | None, online: bool, owner: str | None = None
    ) -> dict | None:
        """Record an announcement; returns the previous record of that root, if any.

        `owner` pins the root to a broker user when it has none yet (a pin is never moved here).
        """
        rows = list(self.db["roots"].rows_where("name = ?", [name]))
        record = {
            "name": name,
            "url": url,
            "etag": etag or "",
            "online": int(online),
            "seen": time.time(),
        }
        if owner and not (rows and rows[0].get("owner")):
            record["owner"] = owner
        self.db["roots"].upsert(record, pk="name")
        return rows[0] if rows else None

    def set_root_owner(self, name: str, owner: str | None) -> bool:
        """Pin a known root to `owner` (None: unpinned, the next announcer pins it)."""
        with self._conn() as conn:
            cursor = conn.execute(
                "UPDATE roots SET owner = ?, refused = 0, refusal = NULL WHERE name = ?",
                [owner, name],
            )
        return cursor.rowcount > 0

    def pin_root_owner(self, name: str, owner: str) -> None:
        """Pin a known root that has no owner yet (a root recorded before owners existed)."""
        with self._conn() as conn:
            conn.execute(
                "UPDATE roots SET owner = ? WHERE name = ? AND owner IS NULL", [owner, name]
            )

    def record_refusal(self, name: str, reason: str) -> None:
        """Count a message refused in the name of a root, keeping the latest reason."""
        with self._conn() as conn:
            conn.execute(
                "UPDATE roots SET refused = refused + 1, refusal = ? WHERE name = ?",
                [reason[:500], name],
            )

    def remote_roots(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.db["roots"].rows_where(order_by="name")}

    def remote_root(self, name: str) -> dict | None:
        # Plain SQL: every read of a remote root asks (see `subscriptions`).
        cursor = self._conn().execute("SELECT * FROM roots WHERE name = ?", [name])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    def put_dataset(self, root: str, path: str, etag: str, meta: dict) -> None:
        self.db["datasets"].upsert(
            {
                "root": root,
                "path": path,
                "etag": etag,
                "meta": json.dumps(meta),
                "updated": time.time(),
            },
            pk=("root", "path"),
        )

    def put_datasets(self, root: str, rows: list[tuple[str, str, dict | str]]) -> None:
        """Store many (path, etag, meta) of a root in one transaction (snapshots, deltas).

        `meta` is a map, or JSON text already checked (stored as it is)."""
        now = time.time()
        values = [
            (root, path, etag, meta if isinstance(meta, str) else json.dumps(meta), now)
            for path, etag, meta in rows
        ]
        conn = self._conn()
        # The connection is in autocommit mode (`with conn` opens no transaction there):
        # one explicit transaction, or each row would be one, with its own sync to disk.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO datasets (root, path, etag, meta, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                values,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def dataset_paths(self, root: str) -> list[str]:
        """The paths of a root's datasets, sorted (by the primary key's index: no sort)."""
        rows = (
            self._conn()
            .execute("SELECT path FROM datasets WHERE root = ? ORDER BY path", [root])
            .fetchall()
        )
        return [row[0] for row in rows]

    def count_datasets(self, root: str) -> int:
        return (
            self._conn()
            .execute("SELECT count(*) FROM datasets WHERE root = ?", [root])
            .fetchone()[0]
        )

    def root_seq(self, root: str) -> int | None:
        """The publisher's sequence number of the last change applied to a followed root."""
        row = (
            self._conn().execute("SELECT seq FROM subscriptions WHERE root = ?", [root]).fetchone()
        )
        return row[0] if row else None

    def set_root_seq(self, root: str, seq: int | None) -> None:
        self._conn().execute("UPDATE subscriptions SET seq = ? WHERE root = ?", [seq, root])

    def delete_dataset(self, root: str, path: str) -> None:
        self._conn().execute("DELETE FROM datasets WHERE root = ? AND path = ?", [root, path])

    def delete_root_datasets(self, root: str) -> None:
        self._conn().execute("DELETE FROM datasets WHERE root = ?", [root])

    def dataset(self, root: str, path: str) -> tuple[str, dict] | None:
        """(etag, metadata) of a remote dataset, or None."""
        row = (
            self._conn()
            .execute("SELECT etag, meta FROM datasets WHERE root = ? AND path = ?", [root, path])
            .fetchone()
        )
        return (row[0], json.loads(row[1])) if row else None

    def dataset_etags(self, root: str) -> dict[str, str]:
        rows = self._conn().execute("SELECT path, etag FROM datasets WHERE root = ?", [root])
        return dict(rows.fetchall())

    def get_setting(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        self.db["settings"].upsert({"key": key, "value": value}, pk="key")
