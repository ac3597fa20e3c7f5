"""Failed logins are throttled per account and per client; every account costs one hash."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import httpx
import pytest

from caterva2.subscriber import passwords
from caterva2.subscriber.login_throttle import LoginThrottle, ThrottleLimits
from caterva2.subscriber.store import Store

from .app_support import SUPERUSER, USER, in_process_subscriber
from .services import SubscriberProcess


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(
        tmp_path, login_failures_per_account=3, login_failures_per_client=5, login_window=600
    )
    yield app
    app.subscriber.close()


def wrong(who: tuple[str, str]) -> tuple[str, str]:
    return who[0], who[1] + "-wrong"


def test_an_account_is_locked_after_its_failures_even_for_the_right_password(sub):
    for _ in range(3):
        assert sub.login(wrong(USER)).status_code == 400
    resp = sub.login(USER)
    assert resp.status_code == 429 and "c2subauth" not in resp.cookies
    assert 1 <= int(resp.headers["retry-after"]) <= 600
    assert "Too many failed logins" in resp.json["detail"]
    # Another account is not locked by this one's failures.
    assert sub.login(SUPERUSER).status_code == 204


def test_a_client_guessing_over_many_accounts_is_throttled(sub):
    for n in range(5):
        assert sub.login((f"nobody{n}@example.com", "whatever1")).status_code == 400
    assert sub.login(SUPERUSER).status_code == 429


def test_a_successful_login_clears_the_account_count(sub):
    for _ in range(2):
        sub.login(wrong(USER))
    assert sub.login(USER).status_code == 204
    for _ in range(2):
        assert sub.login(wrong(USER)).status_code == 400
    assert sub.login(USER).status_code == 204


def test_the_login_page_shares_the_throttle(sub):
    for _ in range(3):
        sub.login(wrong(USER))
    resp = sub.client.simulate_post(
        "/login",
        body=urlencode({"username": USER[0], "password": USER[1]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 429 and "Too many failed logins" in resp.text
    assert "retry-after" in resp.headers


def test_failures_leave_the_window():
    now = [1000.0]
    limits = ThrottleLimits(per_account=2, per_client=100, window=60)
    throttle = LoginThrottle(limits, lambda: now[0])
    throttle.failed("a@example.com", "1.2.3.4")
    now[0] += 30
    throttle.failed("A@example.com", "1.2.3.4")  # accounts are matched without case
    assert throttle.wait_needed("a@example.com", "5.6.7.8") == pytest.approx(30)
    now[0] += 30
    assert throttle.wait_needed("a@example.com", "5.6.7.8") == 0


def test_unknown_known_and_inactive_accounts_cost_one_hash_each(tmp_path, monkeypatch):
    store = Store(tmp_path, "s3cret")
    store.add_user(*USER)
    passwords.decoy_hash()  # made once per process, like the hashes stored at sign-up
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    for email in ("nobody@example.com", USER[0]):
        calls.clear()
        assert store.authenticate(email, "not-the-password") is None
        assert calls == [1 << passwords.SCRYPT_LOG_N]
    store.db["users"].update(store.get_user_by_email(USER[0]).id, {"is_active": 0})
    calls.clear()
    assert store.authenticate(*USER) is None
    assert calls == [1 << passwords.SCRYPT_LOG_N]
    store.close()


def test_behind_a_trusted_proxy_clients_are_counted_by_their_forwarded_address(tmp_path):
    statedir = tmp_path / "state"
    statedir.mkdir()
    conf = {"trusted_proxy": "127.0.0.1", "login_failures_per_client": 2}
    server = SubscriberProcess(statedir, conf=conf)
    server.add_user(*server.user)
    server.start()
    try:

        def attempt(client: str, n: int) -> int:
            resp = httpx.post(
                f"{server.urlbase}/auth/jwt/login",
                data={"username": f"nobody{n}@example.com", "password": "whatever1"},
                headers={"X-Forwarded-For": client},
            )
            return resp.status_code

        assert [attempt("10.0.0.1", n) for n in range(3)] == [400, 400, 429]
        assert attempt("10.0.0.2", 3) == 400  # another client behind the same proxy
    finally:
        server.stop()
