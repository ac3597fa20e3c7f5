"""Forgotten passwords: the reset link (printed for a localhost urlbase), the API, the GUI."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from .services import SubscriberProcess, free_port, wait_for

LINK = re.compile(r"http://localhost:\d+/reset-password/(\S+)")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A subscriber whose urlbase is http://localhost:PORT: it prints reset mails to its log."""
    statedir = tmp_path_factory.mktemp("reset") / "state"
    statedir.mkdir()
    port = free_port()
    server = SubscriberProcess(
        statedir, conf={"login": True, "urlbase": f"http://localhost:{port}"}, port=port
    )
    server.add_user(*server.superuser, superuser=True)
    yield server.start()
    server.stop()


def new_user(server: SubscriberProcess) -> tuple[str, str]:
    email, password = f"reset-{uuid.uuid4().hex[:8]}@example.com", "firstpass1"
    server.add_user(email, password)
    return email, password


def mailed_token(server: SubscriberProcess, email: str) -> str:
    """The token of the newest reset mail to `email` in the subscriber's log."""
    log = server.statedir.parent / f"{server.statedir.name}.log"
    tokens: list[str] = []

    def mailed() -> bool:
        for text in reversed(log.read_text().split("password reset mail")):
            if f"To: {email}" in text and (found := LINK.search(text)):
                tokens.append(found.group(1))
                return True
        return False

    wait_for(mailed, f"a reset mail to {email} in {log}", timeout=10, interval=0.05)
    return tokens[-1]


def can_log_in(server: SubscriberProcess, email: str, password: str) -> bool:
    resp = httpx.post(
        f"{server.urlbase}/auth/jwt/login", data={"username": email, "password": password}
    )
    return resp.status_code == 204


def test_reset_link_sets_a_new_password_once_and_ends_old_sessions(local):
    email, old = new_user(local)
    session = httpx.post(
        f"{local.urlbase}/auth/jwt/login", data={"username": email, "password": old}
    ).cookies
    forgot = httpx.post(f"{local.urlbase}/auth/forgot-password", json={"email": email})
    assert forgot.status_code == 202 and forgot.json() is None
    token = mailed_token(local, email)
    resp = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": token, "password": "secondpass2"}
    )
    assert resp.status_code == 200, resp.text
    assert can_log_in(local, email, "secondpass2") and not can_log_in(local, email, old)
    # The session opened with the old password is over.
    assert httpx.get(f"{local.urlbase}/api/listusers", cookies=session).status_code == 401
    again = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": token, "password": "thirdpass3"}
    )
    assert again.status_code == 400 and again.json() == {"detail": "RESET_PASSWORD_BAD_TOKEN"}
    assert can_log_in(local, email, "secondpass2")


def test_forgot_password_answers_202_for_unknown_accounts_and_mails_nothing(local):
    resp = httpx.post(f"{local.urlbase}/auth/forgot-password", json={"email": "no@one.org"})
    assert resp.status_code == 202
    log = (local.statedir.parent / f"{local.statedir.name}.log").read_text()
    assert "To: no@one.org" not in log


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", f"{uuid.uuid4()}.{int(time.time()) + 600}.{'0' * 64}"],
)
def test_forged_or_malformed_tokens_are_refused(local, token):
    resp = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": token, "password": "whatever12"}
    )
    assert resp.status_code == 400 and resp.json() == {"detail": "RESET_PASSWORD_BAD_TOKEN"}


def test_token_of_one_user_does_not_reset_another(local):
    email_a, _ = new_user(local)
    email_b, pass_b = new_user(local)
    httpx.post(f"{local.urlbase}/auth/forgot-password", json={"email": email_a})
    user_id, _, rest = mailed_token(local, email_a).partition(".")
    other_id = httpx.get(
        f"{local.urlbase}/api/listusers",
        params={"username": email_b},
        cookies=httpx.post(
            f"{local.urlbase}/auth/jwt/login",
            data={"username": local.superuser[0], "password": local.superuser[1]},
        ).cookies,
    ).json()[0]["id"]
    forged = f"{other_id}.{rest}"  # user A's expiry and signature, user B's id
    resp = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": forged, "password": "stolenpass1"}
    )
    assert resp.status_code == 400 and can_log_in(local, email_b, pass_b)
    assert user_id != other_id


def test_short_new_password_is_refused_and_the_link_still_works(local):
    email, _ = new_user(local)
    httpx.post(f"{local.urlbase}/auth/forgot-password", json={"email": email})
    token = mailed_token(local, email)
    short = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": token, "password": "short"}
    )
    assert short.status_code == 400
    assert short.json()["detail"]["code"] == "RESET_PASSWORD_INVALID_PASSWORD"
    ok = httpx.post(
        f"{local.urlbase}/auth/reset-password", json={"token": token, "password": "longenough1"}
    )
    assert ok.status_code == 200 and can_log_in(local, email, "longenough1")


def test_missing_fields_are_422(local):
    assert httpx.post(f"{local.urlbase}/auth/forgot-password", json={}).status_code == 422
    resp = httpx.post(f"{local.urlbase}/auth/reset-password", json={"token": "x"})
    assert resp.status_code == 422


def test_gui_forgot_and_reset_pages_change_the_password(local):
    email, _ = new_user(local)
    with httpx.Client(base_url=local.urlbase) as browser:
        login_page = browser.get("/login").text
        assert 'href="/forgot-password"' in login_page
        assert "Mail me a link" in browser.get("/forgot-password").text
        sent = browser.post("/forgot-password", data={"email": email})
        assert sent.status_code == 303 and sent.headers["location"] == "/forgot-password-ok"
        assert "is on its way" in browser.get("/forgot-password-ok").text
        token = mailed_token(local, email)
        assert "Choose a new password" in browser.get(f"/reset-password/{token}").text
        differ = browser.post(
            f"/reset-password/{token}", data={"password": "guipass123", "password2": "other123"}
        )
        assert differ.status_code == 400 and "The two passwords differ." in differ.text
        done = browser.post(
            f"/reset-password/{token}", data={"password": "guipass123", "password2": "guipass123"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/login"
        assert "Your password is changed" in browser.get("/login").text
        stale = browser.post(
            f"/reset-password/{token}", data={"password": "guipass456", "password2": "guipass456"}
        )
        assert stale.status_code == 400 and "not valid any more" in stale.text
    assert can_log_in(local, email, "guipass123")


def test_gui_forgot_password_refuses_a_malformed_email(local):
    resp = httpx.post(f"{local.urlbase}/forgot-password", data={"email": "not-an-email"})
    assert resp.status_code == 400 and "Enter a valid email address." in resp.text


def test_forgotten_password_in_a_real_browser(local):
    from .gui_support import LAPTOP, chromium

    email, _ = new_user(local)
    with chromium() as browser:
        context = browser.new_context(viewport=LAPTOP, base_url=local.urlbase)
        tab = context.new_page()
        tab.set_default_timeout(10_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto("/login")
        tab.click("text=Forgot your password?")
        tab.fill("#email", email)
        tab.click("button[type=submit]")
        tab.wait_for_selector("#reset-sent")
        tab.goto(f"/reset-password/{mailed_token(local, email)}")
        tab.fill("#password", "browserpass1")
        tab.fill("#password2", "browserpass1")
        tab.click("button[type=submit]")
        tab.wait_for_url("**/login")
        assert "Your password is changed" in tab.content()
        tab.fill("#username", email)
        tab.fill("#password", "browserpass1")
        tab.click("#login-form button[type=submit]")
        tab.wait_for_selector("#user-menu")
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
