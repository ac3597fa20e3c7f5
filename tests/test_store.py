"""The SQLite store: users, hashed passwords and tokens, schema versions and migrations."""

from __future__ import annotations

import sqlite3

import pytest

from caterva2.common.errors import BadRequest, Conflict, NotFound
from caterva2.subscriber import passwords
from caterva2.subscriber.store import SCHEMA_VERSION, Store, migrate, schema_version


def test_password_hash_is_salted_and_verifies():
    first, second = passwords.hash_password("secret123"), passwords.hash_password("secret123")
    assert first != second and first.startswith("$scrypt$")
    assert passwords.verify_password("secret123", first)
    assert not passwords.verify_password("secret124", first)
    assert not passwords.verify_password("secret123", "garbage")


def test_users_have_uuid_ids_and_unique_emails(tmp_path):
    store = Store(tmp_path, secret="s")
    user = store.add_user("a@example.com", "apassword", superuser=True)
    assert len(user.id) == 36 and user.is_superuser and user.is_active
    with pytest.raises(Conflict):
        store.add_user("a@example.com", "another-pass")
    with pytest.raises(BadRequest):
        store.add_user("not an email", "apassword")
    with pytest.raises(NotFound):
        store.delete_user("b@example.com")


def test_authenticate_checks_password_and_active_flag(tmp_path):
    store = Store(tmp_path, secret="s")
    store.add_user("a@example.com", "apassword")
    assert store.authenticate("a@example.com", "apassword").email == "a@example.com"
    assert store.authenticate("a@example.com", "wrong-one") is None
    store.db["users"].update(store.get_user_by_email("a@example.com").id, {"is_active": 0})
    assert store.authenticate("a@example.com", "apassword") is None


def test_token_depends_on_secret(tmp_path):
    store = Store(tmp_path, secret="one")
    token = store.create_token(store.add_user("a@example.com", "apassword"))
    assert store.user_for_token(token).email == "a@example.com"
    assert Store(tmp_path, secret="two").user_for_token(token) is None


def test_new_file_has_current_schema_version(tmp_path):
    Store(tmp_path)
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert schema_version(conn) == SCHEMA_VERSION


def test_opening_an_older_file_migrates_it_and_keeps_users(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    migrate(conn, target=1)
    assert schema_version(conn) == 1
    conn.execute(
        "INSERT INTO users VALUES ('11111111-1111-1111-1111-111111111111', 'old@example.com', ?,"
        " 1, 0, 0, 0)",
        [passwords.hash_password("oldpassword")],
    )
    conn.close()
    store = Store(tmp_path)
    with sqlite3.connect(tmp_path / "db.sqlite") as check:
        assert schema_version(check) == SCHEMA_VERSION
    assert store.authenticate("old@example.com", "oldpassword") is not None
    store.add_subscription("remote-root", mirror=True)
    assert store.subscriptions() == {"remote-root": True}


def test_file_from_a_newer_version_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path)
