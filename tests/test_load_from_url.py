"""`load_from_url`: the subscriber fetches a dataset from a real HTTP server on 127.0.0.1.

Loopback is private: one subscriber is configured to reach it
(`load_from_url_hosts`), another keeps the default and must refuse it.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2

from .app_support import USER, serving

VALUES = np.linspace(0, 1, 5000).reshape(50, 100)
LIMIT = 256 * 1024


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        hosts = {"/to-allowed": "127.0.0.1", "/to-other-loopback": "127.0.0.2"}
        if self.path in hosts:
            self.send_response(302)
            port = self.server.server_port
            self.send_header("Location", f"http://{hosts[self.path]}:{port}/data.b2nd")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving a .b2nd, a big file and a redirect."""
    folder = tmp_path_factory.mktemp("origin")
    blosc2.asarray(VALUES, urlpath=str(folder / "data.b2nd"))
    (folder / "big.bin").write_bytes(os.urandom(LIMIT + 1))
    (folder / "notes.txt").write_text("plain text, stored compressed\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def subscriber(tmp_path_factory, name, **settings):
    with serving(tmp_path_factory.mktemp(name) / "state", **settings) as base:
        yield base


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A subscriber allowed to reach 127.0.0.1, with a small size limit."""
    yield from subscriber(
        tmp_path_factory,
        "lab",
        load_from_url_hosts=["127.0.0.1/32"],
        load_from_url_max_size=LIMIT,
        load_from_url_timeout=10.0,
    )


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """A subscriber with the default policy: no private addresses."""
    yield from subscriber(tmp_path_factory, "default")


def post(base, path, url, user=USER):
    with httpx.Client(base_url=base, timeout=20) as http:
        if user:
            r = http.post("/auth/jwt/login", data={"username": user[0], "password": user[1]})
            assert r.status_code in (200, 204)
        return http.post(f"/api/load_from_url/{path}", data={"remote_url": url})


def test_a_b2nd_is_loaded_under_its_name_or_the_path_given(lab, origin):
    with cat2.Client(lab, USER) as client:
        dataset = client.load_from_url(f"{origin}/data.b2nd", "@personal")
        assert str(dataset.path) == "@personal/data.b2nd"
        np.testing.assert_array_equal(dataset[:], VALUES)
        other = client.get("@personal").load_from_url(f"{origin}/data.b2nd", "sub/copy.b2nd")
        assert str(other.path) == "@personal/sub/copy.b2nd"
        np.testing.assert_array_equal(other[10:12], VALUES[10:12])


def test_a_regular_file_is_stored_compressed_and_reads_back(lab, origin):
    r = post(lab, "@shared", f"{origin}/notes.txt")
    assert r.status_code == 200 and r.json() == "@shared/notes.txt"
    with cat2.Client(lab, USER) as client:
        assert client.fetch("@shared/notes.txt") == b"plain text, stored compressed\n"


@pytest.mark.parametrize(
    "url, words",
    [
        ("file:///etc/passwd", "Only http and https"),
        ("ftp://127.0.0.1/x", "Only http and https"),
        ("http:///nohost", "names no host"),
    ],
)
def test_other_schemes_are_refused_with_400(lab, url, words):
    r = post(lab, "@personal", url)
    assert r.status_code == 400 and words in r.json()["detail"]


def test_private_addresses_are_refused_by_default(default, origin):
    r = post(default, "@personal", f"{origin}/data.b2nd")
    assert r.status_code == 403
    assert "127.0.0.1" in r.json()["detail"] and "load_from_url_hosts" in r.json()["detail"]


def test_each_redirect_is_checked_again(lab, origin):
    # The lab may reach 127.0.0.1 only: a redirect there is followed, one elsewhere refused.
    r = post(lab, "@personal/redirected.b2nd", f"{origin}/to-allowed")
    assert r.status_code == 200 and r.json() == "@personal/redirected.b2nd"
    r = post(lab, "@personal/elsewhere.b2nd", f"{origin}/to-other-loopback")
    assert r.status_code == 403 and "127.0.0.2" in r.json()["detail"]


def test_content_over_the_limit_is_refused_with_413_and_nothing_stored(lab, origin):
    r = post(lab, "@personal/big.bin", f"{origin}/big.bin")
    assert r.status_code == 413 and "bigger than" in r.json()["detail"]
    with cat2.Client(lab, USER) as client:
        assert "big.bin" not in client.get_list("@personal")


def test_an_origin_404_is_a_400_that_says_so(lab, origin):
    r = post(lab, "@personal", f"{origin}/missing.b2nd")
    assert r.status_code == 400 and "HTTP 404" in r.json()["detail"]


def test_anonymous_loads_are_refused_with_401(lab, origin):
    assert post(lab, "@public", f"{origin}/data.b2nd", user=None).status_code == 401


def test_a_missing_remote_url_is_422(lab):
    with httpx.Client(base_url=lab) as http:
        http.post("/auth/jwt/login", data={"username": USER[0], "password": USER[1]})
        r = http.post("/api/load_from_url/@personal", data={"other": "x"})
    assert r.status_code == 422


def test_the_quota_holds_for_loads(tmp_path_factory, origin):
    for base in subscriber(
        tmp_path_factory, "quota", load_from_url_hosts=["127.0.0.1"], quota=1000
    ):
        r = post(base, "@personal", f"{origin}/data.b2nd")
        assert r.status_code == 400 and "quota" in r.json()["detail"]
