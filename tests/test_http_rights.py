"""Who may follow, mirror and drop remote roots, list accounts; cookies over https."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from .app_support import SUPERUSER, USER, in_process_subscriber


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(tmp_path, remote_root="faraway")
    yield app
    app.subscriber.close()


def subscriptions(app) -> set[str]:
    return set(app.store.subscriptions())


def test_anonymous_users_cannot_subscribe_or_mirror_a_remote_root(sub):
    for query in ("", "mirror=true"):
        resp = sub.client.simulate_post("/api/subscribe/faraway", query_string=query)
        assert resp.status_code == 401 and "authentication" in resp.json["detail"]
    assert subscriptions(sub) == set()


def test_a_logged_in_user_subscribes_and_mirrors(sub):
    user = sub.cookie(USER)
    resp = sub.client.simulate_post("/api/subscribe/faraway?mirror=true", headers=user)
    assert resp.status_code == 200 and resp.json == "Ok"
    assert subscriptions(sub) == {"faraway"}


def test_only_a_superuser_unsubscribes_a_shared_remote_root(sub):
    sub.client.simulate_post("/api/subscribe/faraway", headers=sub.cookie(USER))
    assert sub.client.simulate_post("/api/unsubscribe/faraway").status_code == 401
    resp = sub.client.simulate_post("/api/unsubscribe/faraway", headers=sub.cookie(USER))
    assert resp.status_code == 403 and "superusers" in resp.json["detail"]
    assert subscriptions(sub) == {"faraway"}
    resp = sub.client.simulate_post("/api/unsubscribe/faraway", headers=sub.cookie(SUPERUSER))
    assert resp.status_code == 200 and subscriptions(sub) == set()


def test_gui_and_command_box_follow_the_same_rules(sub):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert sub.client.simulate_post("/web/subscribe/faraway", headers=form).status_code == 401
    user = {**form, **sub.cookie(USER)}
    assert sub.client.simulate_post("/web/subscribe/faraway", headers=user).status_code == 303
    assert sub.client.simulate_post("/web/unsubscribe/faraway", headers=user).status_code == 403
    resp = sub.client.simulate_post(
        "/web/command", headers=user, body=urlencode({"command": "unsubscribe faraway"})
    )
    assert resp.status_code == 400 and subscriptions(sub) == {"faraway"}
    lsu = sub.client.simulate_post("/web/command", headers=user, body=urlencode({"command": "lsu"}))
    assert lsu.status_code == 400 and SUPERUSER[0] not in lsu.text


def test_listing_users_is_for_superusers(sub):
    assert sub.client.simulate_get("/api/listusers").status_code == 401
    resp = sub.client.simulate_get("/api/listusers", headers=sub.cookie(USER))
    assert resp.status_code == 403
    resp = sub.client.simulate_get("/api/listusers", headers=sub.cookie(SUPERUSER))
    assert resp.status_code == 200
    assert {u["email"] for u in resp.json} == {SUPERUSER[0], USER[0]}


def login_cookies(app) -> list:
    """The cookies answered to a login through the API and through the login page."""
    api = app.login(USER)
    page = app.client.simulate_post(
        "/login",
        body=urlencode({"username": USER[0], "password": USER[1]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert api.status_code == 204 and page.status_code == 303
    return [api.cookies["c2subauth"], page.cookies["c2subauth"], page.cookies["c2flash"]]


def test_login_cookies_are_secure_when_served_over_https(tmp_path):
    app = in_process_subscriber(tmp_path, urlbase="https://data.example.org")
    try:
        assert all(cookie.secure for cookie in login_cookies(app))
    finally:
        app.subscriber.close()


def test_login_cookies_are_not_secure_over_plain_http(tmp_path):
    app = in_process_subscriber(tmp_path, urlbase="http://localhost:8000")
    try:
        assert not any(cookie.secure for cookie in login_cookies(app))
    finally:
        app.subscriber.close()
