"""State changes only from our own origin: cross-site pages are refused, programs are not."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from .app_support import SUPERUSER, USER, in_process_subscriber

VICTIM = ("victim@example.com", "victimpass1")
OTHER_PORT = "http://127.0.0.1:9999"  # same host, another port: another origin


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(tmp_path, urlbase="http://127.0.0.1:8000")
    app.store.add_user(*VICTIM)
    (tmp_path / "public" / "keep.txt.b2").parent.mkdir(parents=True, exist_ok=True)
    yield app
    app.subscriber.close()


def upload(app, headers, name="keep.txt") -> None:
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\nhello\r\n--b--\r\n"
    resp = app.client.simulate_post(
        f"/api/upload/@public/{name}",
        body=body,
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "browser",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "https://evil.example/page"},
    ],
    ids=["fetch-metadata-cross-site", "fetch-metadata-same-site", "referer-only"],
)
def test_a_link_on_another_site_cannot_delete_a_user(sub, browser):
    su = sub.cookie(SUPERUSER)
    resp = sub.client.simulate_get(f"/api/deluser/{VICTIM[0]}", headers={**su, **browser})
    assert resp.status_code == 403
    assert "another site" in resp.json["detail"]
    assert sub.store.get_user_by_email(VICTIM[0]) is not None


def test_deluser_from_a_program_or_our_own_page_still_works(sub):
    su = sub.cookie(SUPERUSER)
    resp = sub.client.simulate_get(
        f"/api/deluser/{VICTIM[0]}", headers={**su, "Sec-Fetch-Site": "same-origin"}
    )
    assert resp.status_code == 200 and resp.json == f"User deleted: {VICTIM[0]}"
    sub.store.add_user(*VICTIM)
    resp = sub.client.simulate_get(f"/api/deluser/{VICTIM[0]}", headers=su)  # no browser headers
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "origin", [OTHER_PORT, "null", "https://127.0.0.1:8000"], ids=["other-port", "null", "https"]
)
def test_a_form_from_another_origin_cannot_remove_a_file(sub, origin):
    user = sub.cookie(USER)
    upload(sub, user)
    resp = sub.client.simulate_post(
        "/api/remove/@public/keep.txt", headers={**user, "Origin": origin}
    )
    assert resp.status_code == 403
    assert (sub.subscriber.roots.locate("@public/keep.txt", None).path).is_file()


def test_posts_from_our_own_origin_are_served(sub):
    user = sub.cookie(USER)
    upload(sub, user)
    for origin in ("http://127.0.0.1:8000", "http://localhost"):  # urlbase, or the Host asked
        upload(sub, user)
        resp = sub.client.simulate_post(
            "/api/remove/@public/keep.txt",
            headers={**user, "Origin": origin, "Host": "localhost"},
        )
        assert resp.status_code == 200, resp.text


def test_a_login_form_on_another_site_is_refused(sub):
    resp = sub.login(USER, **{"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 403 and "c2subauth" not in resp.cookies


def test_gui_form_from_another_port_gets_a_refusal_page(sub):
    user = sub.cookie(USER)
    upload(sub, user)
    resp = sub.client.simulate_post(
        "/web/delete/@public/keep.txt",
        headers={**user, "Origin": OTHER_PORT, "Content-Type": "application/x-www-form-urlencoded"},
        body=urlencode({}),
    )
    assert resp.status_code == 403 and "another site" in resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert (sub.subscriber.roots.locate("@public/keep.txt", None).path).is_file()
