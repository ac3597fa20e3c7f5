"""The Python client's errors say what the server answered: status, URL, explanation.

Against a real subscriber served from a thread of this process (and, for error
bodies our subscriber never sends, a small real WSGI app served the same way).
"""

from __future__ import annotations

import json

import httpx
import pytest

import caterva2 as cat2
from caterva2 import http_errors

from .app_support import SUPERUSER, USER, served, serving
from .services import populate_from_examples


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("errors") / "state"
    populate_from_examples(statedir / "public")
    with serving(statedir) as base:
        yield base


def test_missing_dataset_is_a_not_found_naming_status_url_and_path(url):
    with cat2.Client(url) as client, pytest.raises(httpx.HTTPStatusError) as caught:
        client.get_info("@public/no-such.b2nd")
    exc = caught.value
    assert isinstance(exc, http_errors.NotFound) and isinstance(exc, cat2.APIError)
    assert exc.response.status_code == exc.status_code == 404  # as reachable as before
    assert exc.path == "@public/no-such.b2nd"
    assert str(exc) == (f"404 Not Found for GET {url}/api/info/@public/no-such.b2nd: {exc.detail}")


def test_reads_off_the_connection_raise_the_same_errors(url, tmp_path):
    """`fetch` and `download` read answers without httpx's layers: same errors all the same."""
    with cat2.Client(url) as client:
        with pytest.raises(http_errors.NotFound) as fetched:
            client.fetch("@public/no-such.b2nd", "0:10")
        with pytest.raises(http_errors.NotFound) as downloaded:
            client.download("@public/no-such.b2nd", tmp_path / "x.b2nd")
    assert fetched.value.path == downloaded.value.path == "@public/no-such.b2nd"
    assert "404" in str(fetched.value) and "/api/fetch/@public/no-such.b2nd" in str(fetched.value)
    assert "404" in str(downloaded.value) and "@public/no-such.b2nd" in str(downloaded.value)
    assert not (tmp_path / "x.b2nd").exists()


def test_wrong_password_says_so_in_words(url):
    with pytest.raises(http_errors.BadRequest) as caught:
        cat2.Client(url, (USER[0], "wrong-password"))
    text = str(caught.value)
    assert text.startswith(f"400 Bad Request for POST {url}/auth/jwt/login: ")
    assert "wrong user name or password" in text and "LOGIN_BAD_CREDENTIALS" not in text


def test_refusal_carries_the_servers_explanation(url):
    with cat2.Client(url, USER) as client, pytest.raises(http_errors.APIError) as caught:
        client.listusers()
    assert caught.value.status_code == 403
    assert str(caught.value).endswith(": Listing users is for superusers only")
    with cat2.Client(url, SUPERUSER) as client:
        assert any(u["email"] == USER[0] for u in client.listusers())


def _app(status: str, body: bytes, content_type: str):
    def app(environ, start_response):
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


@pytest.mark.parametrize(
    "body, content_type, said",
    [
        (json.dumps({"message": "upstream publisher down"}), "application/json", None),
        (json.dumps({"title": "upstream publisher down"}), "application/json", None),
        ("upstream publisher\ndown", "text/plain", "upstream publisher down"),
    ],
)
def test_other_servers_error_bodies_are_read_too(body, content_type, said):
    with served(_app("502 Bad Gateway", body.encode(), content_type)) as base:
        with cat2.Client(base) as client, pytest.raises(http_errors.ServerError) as caught:
            client.get_roots()
    assert str(caught.value) == (
        f"502 Bad Gateway for GET {base}/api/roots: {said or 'upstream publisher down'}"
    )


def test_an_error_without_a_body_still_says_its_status():
    with served(_app("418 I'm a teapot", b"", "text/plain")) as base:
        with cat2.Client(base) as client, pytest.raises(http_errors.APIError) as caught:
            client.get_roots()
    assert str(caught.value) == f"418 I'm a teapot for GET {base}/api/roots: I'm a teapot"
