"""Names from outside (broker messages, publisher answers, root announcements) and the
publisher's root boundary, tested in-process."""

from __future__ import annotations

import blosc2
import msgpack
import numpy as np
import pytest
from falcon import testing

from caterva2.broker.messages import MessageError, decode
from caterva2.common.errors import BadRequest
from caterva2.common.paths import (
    check_publisher_url,
    check_relpath,
    check_remote_path,
    check_root_name,
)
from caterva2.publisher.api import create_app
from caterva2.publisher.root_adapters import DirectoryRoot

TRAVERSALS = [
    "../x.b2nd",
    "a/../../x.b2nd",
    "/etc/passwd",
    "a\x00b",
    "..\\..\\x",
    "a\\b",
    "%2e%2e/x",
    "%2E%2e%2Fx",
    "a%5c..",
    "a%00b",
    "line\nbreak",
    "cr\rlf",
    "tab\tname",
    "del\x7f",
    "a" * 256,
    "a/" * 2100 + "x",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_every_way_out_of_a_root_is_refused_for_users_and_remote_names(path):
    with pytest.raises(BadRequest):
        check_relpath(path)
    with pytest.raises(BadRequest):
        check_remote_path(path)


@pytest.mark.parametrize("path", ["", "a//b.b2nd", "./a.b2nd", "a/", "a/./b"])
def test_remote_paths_must_be_given_in_normal_form(path):
    with pytest.raises(BadRequest):
        check_remote_path(path)


@pytest.mark.parametrize(
    "path", ["ds.b2nd", "dir/sub/ds-1.b2nd", "a b/ü.txt", "x" * 200, "100%.txt", "..a/b.."]
)
def test_ordinary_names_pass(path):
    assert check_remote_path(path) == path
    assert check_relpath(path) == path


@pytest.mark.parametrize(
    "name", ["", "@public", "a/b", "..", ".", "a*", "a#b", "a b", "x" * 101, "r" * 5000, "é"]
)
def test_bad_root_names_are_refused(name):
    with pytest.raises(BadRequest):
        check_root_name(name)


@pytest.mark.parametrize("name", ["foo", "foo.bar", "Site_A-1", "x" * 100])
def test_good_root_names_pass(name):
    assert check_root_name(name) == name


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://h/",
        "file:///etc/passwd",
        "http://",
        "http://h:99999/",
        "http://user:pw@h/",
        "http://h/?q=1",
        "http://h/ x",
        "http://h/\n",
        "http://h/" + "a" * 2048,
        "http://h/" + "a" * (1 << 20),
    ],
)
def test_bad_publisher_urls_are_refused(url):
    with pytest.raises(BadRequest):
        check_publisher_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001", "https://pub.example.org/caterva2/"])
def test_http_and_https_publisher_urls_pass(url):
    assert check_publisher_url(url) == url


def _change(**fields) -> bytes:
    body = {"type": "change", "v": 1, "root": "foo", "path": "ds.b2nd", "kind": "deleted"}
    return msgpack.packb({**body, **fields})


@pytest.mark.parametrize("path", TRAVERSALS)
def test_change_messages_naming_a_way_out_do_not_decode(path):
    with pytest.raises(MessageError, match="Invalid path"):
        decode(_change(path=path))


def test_messages_for_bad_roots_or_urls_and_oversized_ones_do_not_decode():
    with pytest.raises(MessageError, match="Invalid root name"):
        decode(_change(root="../foo"))
    announcement = {"type": "root", "v": 1, "root": "foo", "url": "http://h/" + "a" * 5000}
    with pytest.raises(MessageError, match="longer than"):
        decode(msgpack.packb(announcement))
    with pytest.raises(MessageError, match="over"):
        decode(_change(meta={"pad": "x" * (2 << 20)}))


def test_the_sender_is_never_taken_from_the_message_body():
    assert decode(_change(sender="pub-legit")).sender is None


@pytest.fixture
def root_with_links(tmp_path):
    """A published root holding a dataset, and links that lead out of it."""
    root = tmp_path / "root"
    root.mkdir()
    blosc2.asarray(np.arange(10), urlpath=str(root / "inside.b2nd"), mode="w")
    secret = tmp_path / "secret"
    secret.mkdir()
    blosc2.asarray(np.arange(5), urlpath=str(secret / "secret.b2nd"), mode="w")
    (secret / "notes.txt").write_text("top secret")
    (root / "file-link.b2nd").symlink_to(secret / "secret.b2nd")
    (root / "text-link.txt").symlink_to(secret / "notes.txt")
    (root / "dir-link").symlink_to(secret, target_is_directory=True)
    (root / "ok-link.b2nd").symlink_to(root / "inside.b2nd")  # stays inside: fine
    adapter = DirectoryRoot(root, tmp_path / "cache")
    yield testing.TestClient(create_app(adapter))
    adapter.close()


@pytest.mark.parametrize(
    "path", ["file-link.b2nd", "text-link.txt", "dir-link/secret.b2nd", "dir-link/notes.txt"]
)
def test_publisher_serves_nothing_through_links_that_leave_its_root(root_with_links, path):
    for route in ("info", "chunk", "file"):
        query = "nchunk=0" if route == "chunk" else None
        resp = root_with_links.simulate_get(f"/api/{route}/{path}", query_string=query)
        assert resp.status_code == 404, (route, resp.text)
        assert resp.json["detail"].startswith("Not Found") and b"top secret" not in resp.content


def test_publisher_lists_only_what_lies_inside_its_root(root_with_links):
    assert root_with_links.simulate_get("/api/list").json == ["inside.b2nd", "ok-link.b2nd"]
    assert root_with_links.simulate_get("/api/info/ok-link.b2nd").json["shape"] == [10]
