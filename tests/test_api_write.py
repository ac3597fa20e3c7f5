"""Writing through the REST API: upload, remove, move, copy, and who may do it."""

from __future__ import annotations

import io

import blosc2
import numpy as np
import pytest

from .http_helpers import anonymous, login, unique


def upload(client, path: str, name: str, content: bytes):
    return client.post(f"/api/upload/{path}", files={"file": (name, io.BytesIO(content))})


def ndarray_bytes(values) -> bytes:
    return blosc2.asarray(np.asarray(values)).to_cframe()


@pytest.mark.parametrize("root", ["@personal", "@shared", "@public"])
def test_upload_dataset_then_read_it_back(sub, root):
    client = login(sub.urlbase, *sub.user)
    name = unique("up") + ".b2nd"
    resp = upload(client, f"{root}/{name}", name, ndarray_bytes(np.arange(50)))
    assert resp.status_code == 200 and resp.json() == f"{root}/{name}"
    data = blosc2.ndarray_from_cframe(client.get(f"/api/fetch/{root}/{name}?slice_=10:13").content)
    np.testing.assert_array_equal(data[:], [10, 11, 12])
    client.post(f"/api/remove/{root}/{name}")


def test_upload_regular_file_is_stored_as_b2_and_named_without(sub):
    client = login(sub.urlbase, *sub.user)
    folder = unique("docs")
    resp = upload(client, f"@personal/{folder}/notes.txt", "notes.txt", b"hello notes\n" * 100)
    assert resp.json() == f"@personal/{folder}/notes.txt"
    assert client.get(f"/api/list/@personal/{folder}").json() == ["notes.txt"]
    assert (
        client.get(f"/api/download/@personal/{folder}/notes.txt").content == b"hello notes\n" * 100
    )
    assert list((sub.statedir / "personal").glob(f"*/{folder}/notes.txt.b2"))


def test_upload_into_existing_directory_appends_file_name(sub):
    client = login(sub.urlbase, *sub.user)
    folder = unique("dir")
    upload(client, f"@shared/{folder}/first.b2nd", "first.b2nd", ndarray_bytes([1]))
    resp = upload(client, f"@shared/{folder}", "second.b2nd", ndarray_bytes([2]))
    assert resp.json() == f"@shared/{folder}/second.b2nd"
    assert client.get(f"/api/list/@shared/{folder}").json() == ["first.b2nd", "second.b2nd"]


def test_upload_to_a_root_appends_file_name(sub):
    client = login(sub.urlbase, *sub.user)
    name = unique("rooted") + ".b2nd"
    assert upload(client, "@personal", name, ndarray_bytes([3])).json() == f"@personal/{name}"


def test_upload_overwrites(sub):
    client = login(sub.urlbase, *sub.user)
    path = f"@personal/{unique('ow')}.b2nd"
    upload(client, path, "x.b2nd", ndarray_bytes([1, 2, 3]))
    upload(client, path, "x.b2nd", ndarray_bytes([4, 5]))
    assert client.get(f"/api/info/{path}").json()["shape"] == [2]


@pytest.mark.parametrize("name", ["bad.b2nd", "bad.b2frame", "bad.b2", "bad.h5"])
def test_upload_of_invalid_container_is_400_and_stores_nothing(sub, name):
    client = login(sub.urlbase, *sub.user)
    folder = unique("bad")
    resp = upload(client, f"@personal/{folder}/{name}", name, b"this is not a container")
    assert resp.status_code == 400 and "not a valid" in resp.json()["detail"]
    assert client.get(f"/api/list/@personal/{folder}").json() == []


def test_upload_of_invalid_file_keeps_the_existing_one(sub):
    client = login(sub.urlbase, *sub.user)
    path = f"@personal/{unique('keep')}.b2nd"
    upload(client, path, "k.b2nd", ndarray_bytes([7, 8, 9]))
    assert upload(client, path, "k.b2nd", b"garbage").status_code == 400
    data = blosc2.ndarray_from_cframe(client.get(f"/api/fetch/{path}?slice_=0:3").content)
    np.testing.assert_array_equal(data[:], [7, 8, 9])


def test_upload_without_file_part_is_422(sub):
    client = login(sub.urlbase, *sub.user)
    resp = client.post("/api/upload/@personal/x.b2nd", files={"other": ("x", b"1")})
    assert resp.status_code == 422


@pytest.mark.parametrize("root", ["@personal", "@shared", "@public"])
def test_anonymous_writes_are_401(sub, root):
    client = anonymous(sub.urlbase)
    assert upload(client, f"{root}/a.b2nd", "a.b2nd", ndarray_bytes([1])).status_code == 401
    assert client.post(f"/api/remove/{root}/ds-1d.b2nd").status_code == 401
    for verb in ("move", "copy"):
        resp = client.post(f"/api/{verb}/", json={"src": f"{root}/a", "dst": "@public/b"})
        assert resp.status_code == 401 and resp.reason_phrase == "Unauthorized"


def test_personal_is_private_to_its_owner(sub):
    owner = login(sub.urlbase, *sub.user)
    other = login(sub.urlbase, *sub.other)
    name = unique("mine") + ".b2nd"
    upload(owner, f"@personal/{name}", name, ndarray_bytes([1, 2]))
    assert name in owner.get("/api/list/@personal").json()
    assert name not in other.get("/api/list/@personal").json()
    assert other.get(f"/api/info/@personal/{name}").status_code == 404
    assert other.post(f"/api/remove/@personal/{name}").status_code == 404
    assert owner.get(f"/api/info/@personal/{name}").status_code == 200


def test_shared_is_common_to_all_users(sub):
    owner = login(sub.urlbase, *sub.user)
    other = login(sub.urlbase, *sub.other)
    name = unique("ours") + ".b2nd"
    upload(owner, f"@shared/{name}", name, ndarray_bytes([1, 2]))
    assert other.get(f"/api/info/@shared/{name}").json()["shape"] == [2]
    assert other.post(f"/api/remove/@shared/{name}").json() == f"@shared/{name}"
    assert owner.get(f"/api/info/@shared/{name}").status_code == 404


def test_public_written_by_a_user_is_read_by_anonymous(sub):
    client = login(sub.urlbase, *sub.user)
    name = unique("pub") + ".b2nd"
    upload(client, f"@public/{name}", name, ndarray_bytes([5]))
    assert anonymous(sub.urlbase).get(f"/api/info/@public/{name}").json()["shape"] == [1]
    client.post(f"/api/remove/@public/{name}")


def test_remove_directory_removes_it_and_its_contents(sub):
    client = login(sub.urlbase, *sub.user)
    folder = unique("tree")
    upload(client, f"@personal/{folder}/a/x.b2nd", "x.b2nd", ndarray_bytes([1]))
    upload(client, f"@personal/{folder}/y.txt", "y.txt", b"y")
    assert client.post(f"/api/remove/@personal/{folder}").json() == f"@personal/{folder}"
    assert client.get(f"/api/list/@personal/{folder}").json() == []


def test_remove_regular_file_by_logical_name(sub):
    client = login(sub.urlbase, *sub.user)
    path = f"@personal/{unique('r')}.txt"
    upload(client, path, "r.txt", b"text")
    assert client.post(f"/api/remove/{path}").json() == path
    assert client.get(f"/api/info/{path}").status_code == 404


def test_remove_missing_is_404(sub):
    client = login(sub.urlbase, *sub.user)
    resp = client.post("/api/remove/@personal/nothing-there.b2nd")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "The specified path does not exist"}


@pytest.mark.parametrize("verb", ["copy", "move"])
def test_copy_and_move_into_a_directory_keep_the_name(sub, verb):
    client = login(sub.urlbase, *sub.user)
    src = f"@personal/{unique('src')}.b2nd"
    upload(client, src, "s.b2nd", ndarray_bytes(np.arange(4)))
    folder = unique("into")
    resp = client.post(f"/api/{verb}/", json={"src": src, "dst": f"@shared/{folder}"})
    basename = src.rsplit("/", 1)[1]
    assert resp.status_code == 200 and resp.json() == f"@shared/{folder}/{basename}"
    assert client.get(f"/api/info/@shared/{folder}/{basename}").json()["shape"] == [4]
    still_there = client.get(f"/api/info/{src}").status_code == 200
    assert still_there is (verb == "copy")


def test_copy_regular_file_keeps_b2_on_disk_only(sub, examples_dir):
    client = login(sub.urlbase, *sub.user)
    folder = unique("cp")
    resp = client.post("/api/copy/", json={"src": "@public/README.md", "dst": f"@shared/{folder}"})
    assert resp.json() == f"@shared/{folder}/README.md"
    assert (sub.statedir / "shared" / folder / "README.md.b2").is_file()
    content = client.get(f"/api/download/@shared/{folder}/README.md").content
    assert content == (examples_dir / "README.md").read_bytes()


def test_copy_to_a_new_name(sub):
    client = login(sub.urlbase, *sub.user)
    dst = f"@personal/{unique('renamed')}.b2nd"
    resp = client.post("/api/copy", json={"src": "@public/ds-1d.b2nd", "dst": dst})
    assert resp.json() == dst
    assert client.get(f"/api/info/{dst}").json()["shape"] == [1000]


def test_copy_directory_copies_the_tree(sub):
    client = login(sub.urlbase, *sub.user)
    folder = unique("tree")
    resp = client.post("/api/copy/", json={"src": "@public/dir1", "dst": f"@personal/{folder}"})
    assert resp.json() == f"@personal/{folder}/dir1"
    assert client.get(f"/api/list/@personal/{folder}").json() == [
        "dir1/ds-2d.b2nd",
        "dir1/ds-3d.b2nd",
    ]


@pytest.mark.parametrize("dst", ["..", ".", "foo", "foo/bar", "/etc"])
def test_move_to_a_path_outside_the_roots_is_400(sub, dst):
    client = login(sub.urlbase, *sub.user)
    resp = client.post("/api/move/", json={"src": "@public/ds-1d.b2nd", "dst": dst})
    assert resp.status_code == 400 and resp.reason_phrase == "Bad Request"
    assert client.get("/api/info/@public/ds-1d.b2nd").status_code == 200


def test_move_missing_source_is_404(sub):
    client = login(sub.urlbase, *sub.user)
    resp = client.post("/api/move/", json={"src": "@personal/none.b2nd", "dst": "@shared/x.b2nd"})
    assert resp.status_code == 404


def test_move_with_missing_field_is_422(sub):
    client = login(sub.urlbase, *sub.user)
    assert client.post("/api/move/", json={"src": "@public/ds-1d.b2nd"}).status_code == 422


def test_move_directory_into_itself_is_400(sub):
    client = login(sub.urlbase, *sub.user)
    folder = unique("self")
    upload(client, f"@personal/{folder}/a.b2nd", "a.b2nd", ndarray_bytes([1]))
    resp = client.post(
        "/api/move/", json={"src": f"@personal/{folder}", "dst": f"@personal/{folder}/inner"}
    )
    assert resp.status_code == 400
    assert client.get(f"/api/list/@personal/{folder}").json() == ["a.b2nd"]


def test_login_disabled_refuses_every_write_with_a_message(sub_nologin):
    client = anonymous(sub_nologin.urlbase)
    resp = upload(client, "@public/x.b2nd", "x.b2nd", ndarray_bytes([1]))
    assert resp.status_code == 401 and resp.json() == {
        "detail": "Uploading requires authentication"
    }
    resp = client.post("/api/move/", json={"src": "@public/ds-1d.b2nd", "dst": "@public/y"})
    assert resp.json() == {"detail": "Moving files requires authentication"}
    assert client.get("/api/list/@public/dir1").json() == ["ds-2d.b2nd", "ds-3d.b2nd"]
