"""The Python client writing: uploads, appends, copies, computations, users; and a
server without logins. Against the real subscriber of conftest.py."""

from __future__ import annotations

import pathlib
import warnings

import httpx
import numpy as np
import pytest

import caterva2 as cat2

from .services import EXPECTED_PUBLIC
from .test_client import example, unique

# --- uploads and writes -------------------------------------------------------


def test_upload_returns_path_and_roundtrips(user, examples_dir):
    dst = f"@personal/{unique()}/ds-2d.b2nd"
    result = user.upload(examples_dir / "dir1/ds-2d.b2nd", dst)
    assert result == pathlib.PurePosixPath(dst)
    np.testing.assert_array_equal(user.fetch(dst), example(examples_dir, "dir1/ds-2d.b2nd")[:])


def test_upload_of_big_regular_file_streams_with_progress(user, tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4, 6_000_000, dtype=np.uint8).tobytes()
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    calls = []
    dst = f"@shared/{unique()}/big.bin"
    assert user.upload(local, dst, progress=lambda *a: calls.append(a)) == pathlib.PurePosixPath(
        dst
    )
    assert len(calls) > 1 and calls[-1] == (len(data), len(data))
    assert user.get_info(dst)["nbytes"] == len(data)
    back = user.download(dst, tmp_path / "back.bin")
    assert back == tmp_path / "back.bin"
    assert back.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "big.bin"]


def test_root_upload_keeps_the_relative_local_path(user, examples_dir, tmp_path, monkeypatch):
    folder = unique("up")
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "README.md").write_bytes((examples_dir / "README.md").read_bytes())
    monkeypatch.chdir(tmp_path)
    uploaded = user.get("@personal").upload(f"{folder}/README.md")
    assert type(uploaded) is cat2.File
    assert uploaded.path == pathlib.PurePosixPath(f"@personal/{folder}/README.md")
    assert f"{folder}/README.md" in user.get("@personal")


def test_root_upload_with_absolute_path_and_no_remote_path_is_refused(user, examples_dir):
    with pytest.raises(ValueError):
        user.get("@personal").upload(examples_dir / "README.md")


def test_root_upload_to_a_remote_path_returns_a_dataset(user, examples_dir):
    name = f"{unique()}.b2nd"
    ds = user.get("@shared").upload(examples_dir / "ds-1d.b2nd", name)
    assert type(ds) is cat2.Dataset and ds.shape == (1000,)


def test_upload_of_missing_local_file_is_file_not_found(user, tmp_path):
    with pytest.raises(FileNotFoundError):
        user.upload(tmp_path / "nope.bin", "@personal/nope.bin")


def test_anonymous_upload_is_unauthorized(anon, examples_dir):
    with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
        anon.upload(examples_dir / "README.md", f"@public/{unique()}.md")


def test_append_returns_new_shape_and_appends_values(user, examples_dir):
    dst = user.copy("@public/ds-1d.b2nd", f"@personal/{unique()}/")
    assert user.append(dst, [1, 2, 3]) == (1003,)
    ds = user.get(dst)
    assert ds.append(np.arange(5, dtype=np.int64)) == (1008,)
    np.testing.assert_array_equal(ds[-8:], [1, 2, 3, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ds[:1000], example(examples_dir, "ds-1d.b2nd")[:])


def test_append_records_to_structured_dataset(user):
    ds = user.get(user.copy("@public/ds-1d-fields.b2nd", f"@shared/{unique()}/"))
    assert ds.append([(1, 0.5, b"x", True), (2, 1.5, b"y", False)]) == (1002,)
    tail = ds[-2:]
    assert list(tail["a"]) == [1, 2] and list(tail["c"]) == [b"x", b"y"]


def test_copy_move_and_remove(user, examples_dir):
    folder = unique()
    copied = user.copy("@public/dir1/ds-3d.b2nd", f"@shared/{folder}/")
    assert copied == pathlib.PurePosixPath(f"@shared/{folder}/ds-3d.b2nd")
    moved = user.get(copied).move(f"@personal/{folder}/moved.b2nd")
    assert moved == pathlib.PurePosixPath(f"@personal/{folder}/moved.b2nd")
    np.testing.assert_array_equal(user.fetch(moved), example(examples_dir, "dir1/ds-3d.b2nd")[:])
    assert user.get_list(f"@shared/{folder}") == []
    assert user.get(moved).remove() == moved
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        user.get(moved)


def test_copy_of_regular_file_keeps_logical_name(user, examples_dir, tmp_path):
    folder = unique()
    copied = user.get("@public/README.md").copy(f"@personal/{folder}/")
    assert str(copied) == f"@personal/{folder}/README.md"
    path = user.download(copied, tmp_path / "r.md")
    assert path.read_bytes() == (examples_dir / "README.md").read_bytes()


def test_remove_of_directory_removes_it(user, examples_dir):
    folder = unique()
    user.upload(examples_dir / "ds-1d.b2nd", f"@personal/{folder}/a/x.b2nd")
    assert user.remove(f"@personal/{folder}") == pathlib.PurePosixPath(f"@personal/{folder}")
    assert user.get_list(f"@personal/{folder}") == []


def test_remove_of_missing_path_is_not_found(user):
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        user.remove(f"@personal/{unique()}.b2nd")


@pytest.mark.parametrize("dst", ["..", ".", "foo", "foo/bar"])
def test_copy_outside_the_roots_is_bad_request(user, dst):
    with pytest.raises(httpx.HTTPStatusError, match="Bad Request"):
        user.copy("@public/ds-1d.b2nd", dst)


def test_concatenate_and_stack(user, examples_dir):
    # Destinations at the root level: whether missing parents get created is not our point.
    name = unique("cat")
    cat = user.get("@public/ds-1d.b2nd").concatenate(
        ["@public/ds-1d.b2nd", "@public/ds-1d.b2nd"], f"@shared/{name}", axis=0
    )
    assert cat == pathlib.PurePosixPath(f"@shared/{name}.b2nd")
    one = example(examples_dir, "ds-1d.b2nd")[:]
    np.testing.assert_array_equal(user.fetch(cat), np.concatenate([one, one, one]))
    srcs = ["@public/dir1/ds-2d.b2nd"] * 3
    st = user.stack(srcs, f"@shared/{unique('st')}.b2nd", axis=1)
    assert user.get(st).shape == (10, 3, 20)
    two = example(examples_dir, "dir1/ds-2d.b2nd")[:]
    np.testing.assert_array_equal(user.fetch(st), np.stack([two, two, two], axis=1))


def test_lazy_expression_is_stored_and_evaluated(user, examples_dir):
    name = unique("expr")
    path = user.lazyexpr(name, "a * 2 + 1", {"a": "@public/ds-1d.b2nd"})
    assert path == pathlib.PurePosixPath(f"@personal/{name}.b2nd")
    ds = user.get(path)
    assert ds.meta["expression"] == "a * 2 + 1"
    assert ds.meta["operands"] == {"a": "@public/ds-1d.b2nd"}
    assert ds.shape == (1000,) and np.dtype(ds.dtype) == np.int64
    with pytest.raises(AttributeError):
        _ = ds.chunks
    np.testing.assert_array_equal(ds[10:13], example(examples_dir, "ds-1d.b2nd")[10:13] * 2 + 1)


def test_computed_lazy_expression_is_a_plain_array(user, examples_dir):
    name = unique("computed")
    ds = user.get(user.lazyexpr(name, "sqrt(x)", {"x": "@public/dir1/ds-3d.b2nd"}, compute=True))
    assert "expression" not in ds.meta and ds.chunks
    np.testing.assert_allclose(ds[:], np.sqrt(example(examples_dir, "dir1/ds-3d.b2nd")[:]))


def test_lazy_expression_with_unknown_variable_is_bad_request(user):
    with pytest.raises(httpx.HTTPStatusError, match="Bad Request"):
        user.lazyexpr(unique(), "a + b", {"a": "@public/ds-1d.b2nd"})


def test_slow_request_beyond_timeout_raises_timeout(sub):
    with cat2.Client(sub.urlbase, sub.user) as client:
        client.lazyexpr(unique("big"), "linspace(0, 100, 1000_0000)", compute=True)
        client.timeout = 0.0001
        with pytest.raises(Exception, match="Timeout"):
            client.lazyexpr(unique("big"), "linspace(0, 100, 1000_0000)", compute=True)


def test_unfold_hdf5_returns_stem_and_exposes_datasets(user, examples_dir):
    folder = unique()
    h5 = user.copy("@public/root-example.h5", f"@personal/{folder}/")
    assert user.get(h5).unfold() == pathlib.PurePosixPath("root-example")
    names = user.get_list(f"@personal/{folder}/root-example")
    assert "arrays/3d-blosc2.b2nd" in names and "arrays/soft-link.b2nd" in names
    ds = user.get(f"@personal/{folder}/root-example/arrays/3d-blosc2.b2nd")
    assert ds.chunks == (4, 10, 10)
    expected = (np.arange(1000) % 256).astype(np.uint8).reshape(10, 10, 10)
    np.testing.assert_array_equal(ds[2:5, 1], expected[2:5, 1])


# --- users --------------------------------------------------------------------


def test_superuser_adds_lists_and_deletes_a_user(superuser, user):
    email = f"{unique('new')}@example.com"
    message = superuser.adduser(email, "newpassword", superuser=False)
    assert message == f"User added: username='{email}' password='newpassword' superuser=False"
    listed = superuser.listusers(email)
    assert [(u["email"], u["is_superuser"]) for u in listed] == [(email, False)]
    assert email in [u["email"] for u in superuser.listusers()]
    with pytest.raises(httpx.HTTPStatusError, match="403 Forbidden"):
        user.listusers(email)
    assert superuser.deluser(email) == f"User deleted: {email}"
    assert superuser.listusers(email) == []


def test_new_user_can_log_in(sub, superuser):
    email = f"{unique('login')}@example.com"
    superuser.adduser(email, "loginpassword")
    with cat2.Client(sub.urlbase, (email, "loginpassword")) as client:
        assert "@personal" in client.get_roots()
    superuser.deluser(email)


def test_plain_user_cannot_add_users(user):
    with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
        user.adduser(f"{unique()}@example.com", "whatever123")


def test_deleting_unknown_user_is_bad_request(superuser):
    with pytest.raises(httpx.HTTPStatusError, match="Bad Request"):
        superuser.deluser(f"{unique()}@example.com")


def test_subscribe_to_public_answers_ok(anon):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our server has the route: no fallback warning
        assert anon.subscribe("@public") == "Ok"


# --- server without logins ----------------------------------------------------


def test_nologin_server_reads_public(sub_nologin, examples_dir):
    with cat2.Client(sub_nologin.urlbase) as client:
        assert client.get_list("@public") == EXPECTED_PUBLIC
        np.testing.assert_array_equal(
            client.get("@public/dir1/ds-2d.b2nd")[2], example(examples_dir, "dir1/ds-2d.b2nd")[2]
        )


def test_nologin_server_refuses_writes(sub_nologin, examples_dir):
    with cat2.Client(sub_nologin.urlbase) as client:
        with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
            client.upload(examples_dir / "README.md", "@public/x.md")
        with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
            client.copy("@public/ds-1d.b2nd", "@public/copy.b2nd")
        with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
            client.remove("@public/ds-1d.b2nd")


def test_nologin_server_has_no_user_routes(sub_nologin):
    with cat2.Client(sub_nologin.urlbase) as client:
        for call in (
            lambda: client.adduser("x@example.com", "password123"),
            lambda: client.deluser("x@example.com"),
            client.listusers,
        ):
            with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
                call()
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        cat2.Client(sub_nologin.urlbase, ("x@example.com", "password123"))
