"""Accounts through the REST API: login, logout, tokens, registration, user management."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from .http_helpers import anonymous, login, unique
from .services import SubscriberProcess


def test_login_answers_204_with_one_httponly_cookie(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/jwt/login",
        data={"username": sub.user[0], "password": sub.user[1]},
    )
    assert resp.status_code == 204
    cookies = resp.headers.get_list("set-cookie")
    assert len(cookies) == 1
    assert cookies[0].startswith("c2subauth=")
    assert "HttpOnly" in cookies[0] and "Path=/" in cookies[0] and "Secure" not in cookies[0]


def test_login_with_wrong_password_is_400(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/jwt/login", data={"username": sub.user[0], "password": "wrong-pass"}
    )
    assert resp.status_code == 400 and resp.json() == {"detail": "LOGIN_BAD_CREDENTIALS"}


def test_login_of_unknown_user_is_400(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/jwt/login", data={"username": "nobody@x.org", "password": "whatever1"}
    )
    assert resp.json() == {"detail": "LOGIN_BAD_CREDENTIALS"}


def test_login_with_json_body_is_422(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/jwt/login", json={"username": sub.user[0], "password": sub.user[1]}
    )
    assert resp.status_code == 422


def test_cookie_is_replayed_verbatim_as_header(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/jwt/login",
        data={"username": sub.user[0], "password": sub.user[1]},
    )
    cookie = resp.headers["set-cookie"].split(";")[0]
    roots = httpx.get(f"{sub.urlbase}/api/roots", headers={"Cookie": cookie}).json()
    assert "@personal" in roots


def test_logout_invalidates_the_token(sub):
    client = login(sub.urlbase, *sub.user)
    token = client.cookies["c2subauth"]
    resp = client.post("/auth/jwt/logout")
    assert resp.status_code == 204
    assert "Max-Age=0" in resp.headers["set-cookie"]
    again = httpx.get(f"{sub.urlbase}/api/list/@personal", headers={"Cookie": f"c2subauth={token}"})
    assert again.status_code == 401


def test_logout_when_anonymous_is_401(sub):
    assert anonymous(sub.urlbase).post("/auth/jwt/logout").status_code == 401


def test_expired_token_is_refused(sub):
    client = login(sub.urlbase, *sub.user)
    token = client.cookies["c2subauth"]
    with sqlite3.connect(sub.statedir / "db.sqlite") as db:
        db.execute("UPDATE tokens SET expires = ?", [time.time() - 1])
    resp = httpx.get(f"{sub.urlbase}/api/list/@personal", headers={"Cookie": f"c2subauth={token}"})
    assert resp.status_code == 401
    roots = httpx.get(f"{sub.urlbase}/api/roots", headers={"Cookie": f"c2subauth={token}"})
    assert list(roots.json()) == ["@public"]


def test_tokens_are_stored_hashed(sub):
    token = login(sub.urlbase, *sub.user).cookies["c2subauth"]
    with sqlite3.connect(sub.statedir / "db.sqlite") as db:
        stored = [row[0] for row in db.execute("SELECT token_hash FROM tokens")]
    assert stored and token not in stored


def test_adduser_by_superuser_then_login_as_new_user(sub):
    admin = login(sub.urlbase, *sub.superuser)
    email = f"{unique('new')}@example.com"
    resp = admin.post(
        "/api/adduser/", json={"username": email, "password": "newpass123", "superuser": False}
    )
    assert resp.status_code == 200
    assert resp.json() == f"User added: username='{email}' password='newpass123' superuser=False"
    assert login(sub.urlbase, email, "newpass123").get("/api/list/@personal").json() == []


def test_adduser_existing_user_is_accepted(sub):
    admin = login(sub.urlbase, *sub.superuser)
    body = {"username": sub.user[0], "password": "otherpass99", "superuser": False}
    assert admin.post("/api/adduser/", json=body).status_code == 200
    login(sub.urlbase, *sub.user)  # the old password still works


def test_adduser_by_non_superuser_is_401(sub):
    client = login(sub.urlbase, *sub.user)
    resp = client.post(
        "/api/adduser/", json={"username": "x@example.com", "password": "xpass1234", "superuser": 0}
    )
    assert resp.status_code == 401 and resp.json() == {"detail": "Only superusers can add users"}


@pytest.mark.parametrize(
    ("username", "password"), [("not-an-email", "goodpass123"), ("ok@example.com", "short")]
)
def test_adduser_with_bad_email_or_password_is_400(sub, username, password):
    admin = login(sub.urlbase, *sub.superuser)
    resp = admin.post(
        "/api/adduser/", json={"username": username, "password": password, "superuser": False}
    )
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith(f"Error in adding {username}: ")


def test_adduser_missing_field_is_422(sub):
    admin = login(sub.urlbase, *sub.superuser)
    assert admin.post("/api/adduser/", json={"username": "a@b.org"}).status_code == 422


def test_deluser_removes_user_and_personal_folder(sub):
    admin = login(sub.urlbase, *sub.superuser)
    email = f"{unique('gone')}@example.com"
    admin.post("/api/adduser/", json={"username": email, "password": "gonepass1", "superuser": 0})
    user = login(sub.urlbase, email, "gonepass1")
    user.post("/api/upload/@personal/a.txt", files={"file": ("a.txt", b"abc")})
    user_id = admin.get("/api/listusers/", params={"username": email}).json()[0]["id"]
    assert (sub.statedir / "personal" / user_id).is_dir()
    assert admin.get(f"/api/deluser/{email}").json() == f"User deleted: {email}"
    assert not (sub.statedir / "personal" / user_id).exists()
    assert admin.get("/api/listusers/", params={"username": email}).json() == []


def test_deluser_unknown_is_400(sub):
    admin = login(sub.urlbase, *sub.superuser)
    resp = admin.get("/api/deluser/nobody@example.com")
    assert resp.json() == {"detail": "Error in deleting nobody@example.com: UserNotExists"}


def test_deluser_by_non_superuser_is_401(sub):
    resp = login(sub.urlbase, *sub.user).get(f"/api/deluser/{sub.other[0]}")
    assert resp.status_code == 401


def test_listusers_is_for_superusers_and_never_shows_hashes(sub):
    assert login(sub.urlbase, *sub.user).get("/api/listusers/").status_code == 403
    users = login(sub.urlbase, *sub.superuser).get("/api/listusers/").json()
    emails = {u["email"]: u for u in users}
    assert emails[sub.superuser[0]]["is_superuser"] is True
    assert emails[sub.user[0]]["is_superuser"] is False
    assert all(not u["hashed_password"] for u in users)


def test_listusers_anonymous_is_401(sub):
    assert anonymous(sub.urlbase).get("/api/listusers/").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/jwt/login"),
        ("POST", "/api/adduser/"),
        ("GET", "/api/deluser/a@b.org"),
        ("GET", "/api/listusers/"),
        ("POST", "/auth/register"),
    ],
)
def test_user_routes_do_not_exist_without_login(sub_nologin, method, path):
    resp = httpx.request(method, sub_nologin.urlbase + path)
    assert resp.status_code == 404 and resp.reason_phrase == "Not Found"


def test_registration_is_off_by_default(sub):
    resp = httpx.post(
        f"{sub.urlbase}/auth/register", json={"email": "r@x.org", "password": "p" * 9}
    )
    assert resp.status_code == 404


@pytest.fixture(scope="module")
def sub_limits(tmp_path_factory):
    """A subscriber with registration on, at most 3 users and a 300 KB quota."""
    statedir = tmp_path_factory.mktemp("limits") / "state"
    statedir.mkdir()
    server = SubscriberProcess(
        statedir, conf={"login": True, "register": True, "maxusers": 3, "quota": "300K"}
    )
    server.add_user(*server.superuser, superuser=True)
    server.start()
    yield server
    server.stop()


def test_register_creates_a_user_who_can_log_in(sub_limits):
    resp = httpx.post(
        f"{sub_limits.urlbase}/auth/register",
        json={"email": "reg@example.com", "password": "regpass123", "is_superuser": True},
    )
    assert resp.status_code == 201
    body = resp.json()
    assert body["email"] == "reg@example.com" and body["is_superuser"] is False
    assert set(body) == {"id", "email", "is_active", "is_superuser", "is_verified"}
    login(sub_limits.urlbase, "reg@example.com", "regpass123")
    again = httpx.post(
        f"{sub_limits.urlbase}/auth/register",
        json={"email": "reg@example.com", "password": "regpass123"},
    )
    assert again.json() == {"detail": "REGISTER_USER_ALREADY_EXISTS"}


def test_register_with_short_password_is_400(sub_limits):
    resp = httpx.post(
        f"{sub_limits.urlbase}/auth/register", json={"email": "s@example.com", "password": "short"}
    )
    assert resp.json()["detail"]["code"] == "REGISTER_INVALID_PASSWORD"


def test_register_with_invalid_email_is_422(sub_limits):
    resp = httpx.post(
        f"{sub_limits.urlbase}/auth/register", json={"email": "nope", "password": "longenough1"}
    )
    assert resp.status_code == 422


def test_users_beyond_maxusers_are_refused(sub_limits):
    admin = login(sub_limits.urlbase, *sub_limits.superuser)
    body = {"username": "third@example.com", "password": "thirdpass1", "superuser": False}
    admin.post("/api/adduser/", json=body)  # may already be the third user
    resp = admin.post(
        "/api/adduser/",
        json={"username": "fourth@example.com", "password": "fourth123", "superuser": False},
    )
    assert resp.status_code == 400
    assert resp.json() == {"detail": "Only a maximum of 3 users are allowed"}
    reg = httpx.post(
        f"{sub_limits.urlbase}/auth/register",
        json={"email": "fifth@example.com", "password": "fifthpass1"},
    )
    assert reg.status_code == 400 and "maximum" in reg.json()["detail"]
    assert len(admin.get("/api/listusers/").json()) == 3


def test_upload_over_quota_is_400_and_keeps_usage(sub_limits):
    admin = login(sub_limits.urlbase, *sub_limits.superuser)
    ok = admin.post("/api/upload/@personal/small.bin", files={"file": ("small.bin", b"0" * 1000)})
    assert ok.status_code == 200
    big = bytes(range(256)) * 2000  # 512 KB > 300 KB quota
    resp = admin.post("/api/upload/@personal/big.bin", files={"file": ("big.bin", big)})
    assert resp.status_code == 400
    assert resp.json() == {"detail": "Upload failed because quota limit has been exceeded."}
    assert admin.get("/api/list/@personal").json() == ["small.bin"]
    assert not list((sub_limits.statedir / "tmp").iterdir())
