"""Bad requests found by fuzzing answer 4xx with a message, never 5xx or a traceback."""

from __future__ import annotations

from urllib.parse import quote

import blosc2
import falcon
import numpy as np
import pytest

from caterva2.common.falcon_app import set_attachment

from .app_support import SUPERUSER, USER, in_process_subscriber

MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}
GUI_FORMS = [
    "/web/transfer/@public/ds.b2nd",
    "/web/command",
    "/login",
    "/forgot-password",
    "/reset-password/some-token",
]


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(tmp_path)
    yield app
    app.subscriber.close()


def multipart(name: str, data: bytes, filename: str = "x") -> bytes:
    head = f'--b\r\nContent-Disposition: form-data; name={name}; filename="{filename}"\r\n\r\n'
    return head.encode() + data + b"\r\n--b--\r\n"


def upload(app, path: str, data: bytes, who=USER):
    return app.client.simulate_post(
        "/api/upload/" + quote(path, safe="/@"),
        body=multipart("file", data),
        headers={**app.cookie(who), **MULTIPART},
    )


@pytest.mark.parametrize("route", GUI_FORMS)
@pytest.mark.parametrize("kind", ["multipart", "json-list", "json-object"])
def test_gui_forms_given_other_bodies_answer_400_pages(sub, route, kind):
    headers = sub.cookie(USER)
    if kind == "multipart":
        resp = sub.client.simulate_post(
            route, body=multipart("dst", b"x"), headers={**headers, **MULTIPART}
        )
    else:
        body = [1, 2] if kind == "json-list" else {"dst": 1, "command": ["ls"], "email": 5}
        resp = sub.client.simulate_post(route, json=body, headers=headers)
    assert resp.status_code == 400
    assert "must be sent as a web form" in resp.text and "Traceback" not in resp.text


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "/api/upload/@public/{name}"),
        ("GET", "/api/info/@public/{name}"),
        ("GET", "/api/list/@public/{name}"),
        ("GET", "/api/fetch/@public/dir/{name}"),
        ("GET", "/roots/@public/{name}"),
    ],
)
def test_names_longer_than_a_file_system_allows_are_refused(sub, method, route):
    name = "é" * 130 + ".txt"  # 264 bytes in UTF-8
    resp = sub.client.simulate_request(
        method,
        route.format(name=quote(name)),
        body=multipart("file", b"hi"),
        headers={**sub.cookie(USER), **MULTIPART},
    )
    assert resp.status_code == 400 and "longer than 200 bytes" in resp.text


def test_a_long_name_for_a_saved_expression_is_refused(sub):
    resp = sub.client.simulate_post(
        "/api/lazyexpr",
        json={"name": "n" * 256, "expression": "1", "operands": {}, "compute": False},
        headers=sub.cookie(USER),
    )
    assert resp.status_code == 400 and "longer than 200 bytes" in resp.json["detail"]


@pytest.mark.parametrize("name", ["a\nb.txt", "a\r\nSet-Cookie: x=1.txt", "tab\there.txt"])
def test_control_characters_in_names_are_refused(sub, name):
    resp = upload(sub, f"@public/{name}", b"hi")
    assert resp.status_code == 400 and "control characters" in resp.json["detail"]
    assert sub.client.simulate_get(f"/api/download/@public/{quote(name)}").status_code == 400


def test_damaged_chunks_answer_400_naming_the_dataset(sub):
    values = np.random.default_rng(0).random(100_000)
    frame = bytearray(blosc2.asarray(values, chunks=(10_000,)).to_cframe())
    rng = np.random.default_rng(1)
    for i in rng.integers(300, len(frame) - 300, 400):
        frame[i] = rng.integers(0, 256)
    assert upload(sub, "@public/damaged.b2nd", bytes(frame)).status_code == 200
    for accept in ("application/x-npy", "*/*"):
        resp = sub.client.simulate_get(
            "/api/fetch/@public/damaged.b2nd",
            query_string="slice_=0:100000",
            headers={"Accept": accept},
        )
        assert resp.status_code == 400
        assert "@public/damaged.b2nd cannot be read: its stored data is damaged" in resp.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "n@example.com", "password": 12345678, "superuser": False}, "password"),
        ({"username": 5, "password": None, "superuser": False}, "username"),
        ({"username": "n@example.com", "password": None, "superuser": "maybe"}, "superuser"),
    ],
)
def test_adduser_with_wrong_types_answers_422(sub, body, field):
    resp = sub.client.simulate_post("/api/adduser", json=body, headers=sub.cookie(SUPERUSER))
    assert resp.status_code == 422 and resp.json["detail"][0]["loc"] == ["body", field]
    assert sub.store.get_user_by_email("n@example.com") is None


def test_download_names_lose_control_characters_and_may_be_absent():
    resp = falcon.Response()
    set_attachment(resp, "a\r\nSet-Cookie: x.txt")
    assert resp.headers["content-disposition"] == 'attachment; filename="a__Set-Cookie: x.txt"'
    set_attachment(resp, None)
    assert "content-disposition" not in resp.headers
