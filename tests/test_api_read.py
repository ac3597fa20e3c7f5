"""Reading through the REST API: roots, list, info, fetch, chunk, download."""

from __future__ import annotations

import http.client
import io
import json
import os
import threading

import blosc2
import numpy as np
import pytest

from .http_helpers import anonymous, login
from .services import EXPECTED_PUBLIC


def decode(body: bytes):
    """Decode a fetch body the way the client does."""
    try:
        return blosc2.ndarray_from_cframe(body)[()]
    except RuntimeError:
        return blosc2.schunk_from_cframe(body)[:]


def test_roots_anonymous_sees_only_public(sub):
    assert anonymous(sub.urlbase).get("/api/roots").json() == {
        "@public": {"name": "@public", "http": "", "subscribed": True}
    }


def test_roots_logged_in_sees_three_roots_in_order(sub):
    roots = login(sub.urlbase, *sub.user).get("/api/roots").json()
    assert list(roots) == ["@public", "@personal", "@shared"]


def test_roots_with_forged_cookie_is_anonymous(sub):
    client = anonymous(sub.urlbase)
    resp = client.get("/api/roots", headers={"Cookie": "c2subauth=forged-token"})
    assert resp.status_code == 200 and list(resp.json()) == ["@public"]


def test_list_public_is_sorted_and_strips_b2(sub):
    assert anonymous(sub.urlbase).get("/api/list/@public").json() == EXPECTED_PUBLIC


@pytest.mark.parametrize("suffix", ["", "/"])
def test_list_directory_with_or_without_trailing_slash(sub, suffix):
    resp = anonymous(sub.urlbase).get(f"/api/list/@public/dir1{suffix}")
    assert resp.status_code == 200
    assert resp.json() == ["ds-2d.b2nd", "ds-3d.b2nd"]


def test_list_single_file_gives_its_name(sub):
    client = anonymous(sub.urlbase)
    assert client.get("/api/list/@public/dir1/ds-2d.b2nd").json() == ["ds-2d.b2nd"]
    assert client.get("/api/list/@public/README.md").json() == ["README.md"]


def test_list_missing_directory_is_empty(sub):
    assert anonymous(sub.urlbase).get("/api/list/@public/nothing-here").json() == []


@pytest.mark.parametrize("root", ["@personal", "@shared"])
def test_private_roots_refuse_anonymous_with_401(sub, root):
    client = anonymous(sub.urlbase)
    for verb in ("list", "info", "fetch", "chunk", "download"):
        resp = client.get(f"/api/{verb}/{root}/x.b2nd", params={"nchunk": 0})
        assert resp.status_code == 401, verb
        assert resp.reason_phrase == "Unauthorized"
        assert resp.json()["detail"]


def test_unknown_root_is_404(sub):
    resp = anonymous(sub.urlbase).get("/api/list/@nothing")
    assert resp.status_code == 404 and resp.reason_phrase == "Not Found"
    assert "@nothing" in resp.json()["detail"]


@pytest.mark.parametrize(
    "path",
    ["@public/../db.sqlite", "@public/dir1/../../db.sqlite", "@public/%2e%2e/db.sqlite"],
)
def test_path_with_dotdot_is_400(sub, path):
    # http.client sends the path verbatim (httpx would resolve the dot segments itself).
    conn = http.client.HTTPConnection("127.0.0.1", sub.port, timeout=10)
    conn.request("GET", f"/api/info/{path}")
    resp = conn.getresponse()
    assert resp.status == 400
    assert ".." in json.loads(resp.read())["detail"]


def test_path_with_nul_byte_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/info/@public/ds%00.b2nd")
    assert resp.status_code == 400
    assert "NUL" in resp.json()["detail"]


def test_absolute_path_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/info//etc/passwd")
    assert resp.status_code == 400
    assert resp.json()["detail"]


def test_symlink_out_of_the_root_is_refused(sub, tmp_path):
    secret = tmp_path / "secret.b2nd"
    blosc2.asarray(np.arange(3), urlpath=str(secret), mode="w")
    link = sub.statedir / "public" / "escape.b2nd"
    link.symlink_to(secret)
    try:
        resp = anonymous(sub.urlbase).get("/api/fetch/@public/escape.b2nd")
        assert resp.status_code == 400
    finally:
        link.unlink()


def test_info_of_ndarray_matches_the_file(sub, examples_dir):
    meta = anonymous(sub.urlbase).get("/api/info/@public/ds-1d.b2nd").json()
    array = blosc2.open(str(examples_dir / "ds-1d.b2nd"))
    assert meta["shape"] == [1000] and meta["chunks"] == [100] and meta["blocks"] == [10]
    assert meta["dtype"] == "int64"
    schunk = meta["schunk"]
    assert schunk["nbytes"] == 8000 and schunk["nchunks"] == 10
    assert schunk["cbytes"] == array.schunk.cbytes
    assert schunk["cparams"]["codec"] == 5 and schunk["cparams"]["clevel"] == 1
    assert schunk["cparams"]["filters"] == [0, 0, 0, 0, 0, 1]
    assert schunk["cparams"]["filters, meta"] == [[1, 0]]
    assert schunk["vlmeta"] == {} and schunk["mtime"] is None
    assert meta["mtime"].endswith("Z")


def test_info_of_structured_dtype_is_a_python_literal(sub):
    meta = anonymous(sub.urlbase).get("/api/info/@public/ds-1d-fields.b2nd").json()
    assert meta["dtype"] == "[('a', '<i4'), ('b', '<f8'), ('c', 'S10'), ('d', '?')]"


def test_info_vlmeta_of_scalar_has_only_user_attributes(sub):
    meta = anonymous(sub.urlbase).get("/api/info/@public/ds-sc-attr.b2nd").json()
    assert meta["shape"] == [] and meta["schunk"]["vlmeta"] == {"a": 1, "b": "foo", "c": 123.456}


def test_info_of_regular_file_is_an_schunk_of_its_bytes(sub, examples_dir):
    meta = anonymous(sub.urlbase).get("/api/info/@public/README.md").json()
    assert meta["nbytes"] == (examples_dir / "README.md").stat().st_size
    assert meta["cparams"]["typesize"] == 1 and meta["nchunks"] == 1
    assert meta["urlpath"].endswith("README.md.b2") and meta["vlmeta"] == {}
    assert meta["mtime"].endswith("Z")


def test_info_of_frame(sub):
    meta = anonymous(sub.urlbase).get("/api/info/@public/ds-hello.b2frame").json()
    assert meta["nbytes"] == 1200 and meta["chunksize"] == 100 and meta["nchunks"] == 12


def test_info_of_hdf5_gives_size_and_numeric_mtime(sub, examples_dir):
    meta = anonymous(sub.urlbase).get("/api/info/@public/root-example.h5").json()
    assert meta["size"] == (examples_dir / "root-example.h5").stat().st_size
    assert isinstance(meta["mtime"], float)


def test_info_of_directory_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/info/@public/dir1")
    assert resp.status_code == 400 and "directory" in resp.json()["detail"]


def test_info_of_missing_file_is_404(sub):
    resp = anonymous(sub.urlbase).get("/api/info/@public/missing.b2nd")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}


def test_fetch_whole_dataset_is_the_stored_file(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/dir1/ds-3d.b2nd")
    assert resp.status_code == 200
    assert resp.content == (examples_dir / "dir1" / "ds-3d.b2nd").read_bytes()
    assert resp.headers["content-disposition"] == 'attachment; filename="ds-3d.b2nd"'
    assert resp.headers["accept-ranges"] == "bytes" and resp.headers["etag"]


def test_fetch_whole_regular_file_names_it_b2(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/README.md")
    assert resp.headers["content-disposition"] == 'attachment; filename="README.md.b2"'
    assert blosc2.schunk_from_cframe(resp.content)[:] == (examples_dir / "README.md").read_bytes()


def test_fetch_with_range_returns_that_part(sub, examples_dir):
    data = (examples_dir / "ds-1d.b2nd").read_bytes()
    resp = anonymous(sub.urlbase).get(
        "/api/fetch/@public/ds-1d.b2nd", headers={"Range": "bytes=10-99"}
    )
    assert resp.status_code == 206 and resp.content == data[10:100]


@pytest.mark.parametrize(
    ("path", "slice_", "key"),
    [
        ("ds-1d.b2nd", "10:20", slice(10, 20)),
        ("ds-1d.b2nd", "-3:", slice(-3, None)),
        ("ds-1d.b2nd", "5", 5),
        ("dir1/ds-2d.b2nd", "1, 2:7", (1, slice(2, 7))),
        ("dir1/ds-3d.b2nd", "0:2, 1:3, :", (slice(0, 2), slice(1, 3), slice(None))),
        ("dir2/ds-4d.b2nd", "1, 0:2, 3, 1:4", (1, slice(0, 2), 3, slice(1, 4))),
        ("ds-1d-fields.b2nd", "100:110", slice(100, 110)),
        ("ds-1d.b2nd", "::7", slice(None, None, 7)),
    ],
)
def test_fetch_slice_equals_numpy(sub, examples_dir, path, slice_, key):
    resp = anonymous(sub.urlbase).get(f"/api/fetch/@public/{path}", params={"slice_": slice_})
    assert resp.status_code == 200, resp.text
    assert "content-disposition" not in resp.headers
    expected = blosc2.open(str(examples_dir / path))[()][key]
    np.testing.assert_array_equal(decode(resp.content), expected)


def test_fetch_scalar_dataset(sub):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-sc-attr.b2nd", params={"slice_": "()"})
    assert resp.status_code == 400
    whole = anonymous(sub.urlbase).get("/api/fetch/@public/ds-sc-attr.b2nd")
    assert blosc2.ndarray_from_cframe(whole.content)[()] == "foobar"


def test_fetch_bytes_of_regular_file(sub):
    client = anonymous(sub.urlbase)
    assert decode(client.get("/api/fetch/@public/README.md?slice_=0:10").content) == b"# Header e"
    assert decode(client.get("/api/fetch/@public/README.md?slice_=1").content) == b" "
    hello = client.get("/api/fetch/@public/ds-hello.b2frame", params={"slice_": "12:24"})
    assert decode(hello.content) == b"Hello world!"


def test_fetch_field_of_structured_array(sub, examples_dir):
    resp = anonymous(sub.urlbase).get(
        "/api/fetch/@public/ds-1d-fields.b2nd", params={"field": "a", "slice_": "3:6"}
    )
    np.testing.assert_array_equal(decode(resp.content), [3, 4, 5])


@pytest.mark.parametrize("slice_", ["a:b", "1:2:3:4", "1,,2", "0:1:0", "x"])
def test_fetch_malformed_slice_is_400(sub, slice_):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-1d.b2nd", params={"slice_": slice_})
    assert resp.status_code == 400 and resp.reason_phrase == "Bad Request"
    assert "slice" in resp.json()["detail"].lower()


@pytest.mark.parametrize("slice_", ["1000", "-1001", "0, 0", "10, 0:1"])
def test_fetch_out_of_range_slice_is_400(sub, slice_):
    path = "/api/fetch/@public/ds-1d.b2nd"
    resp = anonymous(sub.urlbase).get(path, params={"slice_": slice_})
    assert resp.status_code == 400, resp.text


def test_fetch_unknown_field_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-1d-fields.b2nd?field=zz")
    assert resp.status_code == 400 and "zz" in resp.json()["detail"]


def test_fetch_raw_hdf5_is_415(sub):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/root-example.h5")
    assert resp.status_code == 415 and "unfold" in resp.json()["detail"]


def test_fetch_answers_npy_only_to_who_asks_for_it(sub, examples_dir):
    client = anonymous(sub.urlbase)
    path, params = "/api/fetch/@public/dir1/ds-3d.b2nd", {"slice_": "0:2, 1:3, :"}
    expected = blosc2.open(str(examples_dir / "dir1" / "ds-3d.b2nd"))[()][0:2, 1:3, :]
    # Upstream clients send no such header (or */*): they keep getting Blosc2 frames.
    for accept in (None, "*/*", "application/octet-stream", "application/x-npy;q=0"):
        resp = client.get(path, params=params, headers={"Accept": accept} if accept else {})
        assert resp.headers["content-type"] == "application/octet-stream", accept
        np.testing.assert_array_equal(decode(resp.content), expected)
    resp = client.get(path, params=params, headers={"Accept": "application/x-npy, */*;q=0.5"})
    assert resp.headers["content-type"] == "application/x-npy"
    assert "accept" in resp.headers["vary"].lower()
    got = np.load(io.BytesIO(resp.content), allow_pickle=False)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_fetch_answers_big_results_as_frames_even_to_npy_clients(sub):
    path = sub.statedir / "public" / "big-for-npy.b2nd"
    data = np.arange(300_000, dtype=np.float64)  # a 1.6 MB slice: above the .npy limit
    blosc2.asarray(data, urlpath=str(path), mode="w")
    try:
        resp = anonymous(sub.urlbase).get(
            "/api/fetch/@public/big-for-npy.b2nd",
            params={"slice_": "0:200000"},
            headers={"Accept": "application/x-npy"},
        )
        assert resp.headers["content-type"] == "application/octet-stream"
        np.testing.assert_array_equal(decode(resp.content), data[:200_000])
    finally:
        path.unlink(missing_ok=True)


def test_dataset_rewritten_or_replaced_by_another_process_is_read_anew(sub):
    public = sub.statedir / "public"
    path = public / "rewritten.b2nd"
    client = anonymous(sub.urlbase)
    fetch = "/api/fetch/@public/rewritten.b2nd"
    npy = {"Accept": "application/x-npy"}
    try:
        for offset, n in ((0, 5), (1, 9), (2, 9)):  # the last one: same shape, other values
            values = np.arange(n) * 10 + offset
            blosc2.asarray(values, urlpath=str(path), mode="w")
            assert client.get(f"/api/info/@public/{path.name}").json()["shape"] == [n]
            for headers in ({}, npy):  # every server thread must see the new file
                for _ in range(8):
                    resp = client.get(fetch, params={"slice_": "0:3"}, headers=headers)
                    got = resp.content
                    got = np.load(io.BytesIO(got)) if headers else decode(got)
                    np.testing.assert_array_equal(got, values[:3])
        aside = sub.statedir / "tmp" / "replacement.b2nd"
        blosc2.asarray(np.arange(4) + 100, urlpath=str(aside), mode="w")
        os.replace(aside, path)
        for _ in range(8):
            resp = client.get(fetch, params={"slice_": "0:3"})
            np.testing.assert_array_equal(decode(resp.content), [100, 101, 102])
        path.unlink()
        for _ in range(8):
            assert client.get(fetch, params={"slice_": "0:3"}).status_code == 404
    finally:
        path.unlink(missing_ok=True)


def test_concurrent_reads_of_one_dataset_all_get_their_own_values(sub, examples_dir):
    expected = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[()]
    errors: list[str] = []

    def read(seed: int) -> None:
        client = anonymous(sub.urlbase)
        rng = np.random.default_rng(seed)
        for n in range(40):
            start = int(rng.integers(0, 990))
            headers = {"Accept": "application/x-npy"} if n % 2 else {}
            resp = client.get(
                "/api/fetch/@public/ds-1d.b2nd",
                params={"slice_": f"{start}:{start + 10}"},
                headers=headers,
            )
            got = np.load(io.BytesIO(resp.content)) if n % 2 else decode(resp.content)
            if not np.array_equal(got, expected[start : start + 10]):
                errors.append(f"{start}: {got}")

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_chunk_is_the_stored_compressed_chunk(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/chunk/@public/ds-1d.b2nd", params={"nchunk": 3})
    array = blosc2.open(str(examples_dir / "ds-1d.b2nd"))
    stored = array.schunk.get_chunk(3)
    assert resp.content == stored
    values = np.frombuffer(blosc2.decompress2(resp.content), dtype=np.int64)
    np.testing.assert_array_equal(values, np.arange(300, 400))


def test_chunk_without_nchunk_is_422(sub):
    resp = anonymous(sub.urlbase).get("/api/chunk/@public/ds-1d.b2nd")
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["query", "nchunk"]


@pytest.mark.parametrize("nchunk", ["10", "-1", "abc"])
def test_chunk_out_of_range_or_not_integer(sub, nchunk):
    resp = anonymous(sub.urlbase).get(f"/api/chunk/@public/ds-1d.b2nd?nchunk={nchunk}")
    assert resp.status_code in (400, 422) and resp.json()["detail"]


def test_download_regular_file_is_decompressed(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/download/@public/README.md")
    assert resp.content == (examples_dir / "README.md").read_bytes()
    assert resp.headers["content-disposition"] == 'attachment; filename="README.md"'
    assert resp.headers["content-type"].startswith("text/markdown")


def test_download_dataset_is_its_frame(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/download/@public/dir2/ds-4d.b2nd")
    assert resp.content == (examples_dir / "dir2" / "ds-4d.b2nd").read_bytes()


def test_download_missing_file_is_404_before_any_body(sub):
    resp = anonymous(sub.urlbase).get("/api/download/@public/missing.txt")
    assert resp.status_code == 404 and resp.json()["detail"]


def test_file_dropped_into_public_appears_at_once(sub):
    public = sub.statedir / "public"
    (public / "dropped-notes.txt").write_text("dropped by another process\n")
    client = anonymous(sub.urlbase)
    try:
        assert "dropped-notes.txt" in client.get("/api/list/@public").json()
        content = client.get("/api/download/@public/dropped-notes.txt").content
        assert content == b"dropped by another process\n"
        blosc2.asarray(np.arange(7), urlpath=str(public / "dropped.b2nd"), mode="w")
        assert client.get("/api/info/@public/dropped.b2nd").json()["shape"] == [7]
    finally:
        for name in ("dropped-notes.txt", "dropped-notes.txt.b2", "dropped.b2nd"):
            (public / name).unlink(missing_ok=True)


def test_unknown_route_is_404_with_detail(sub):
    resp = anonymous(sub.urlbase).get("/api/nothing")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}


def test_filter_returns_matching_rows_in_order(sub, examples_dir):
    resp = anonymous(sub.urlbase).get(
        "/api/fetch/@public/ds-1d-fields.b2nd", params={"filter": "(a < 500) & (b >= .1)"}
    )
    assert resp.status_code == 200, resp.text
    data = blosc2.open(str(examples_dir / "ds-1d-fields.b2nd"))[:]
    expected = data[(data["a"] < 500) & (data["b"] >= 0.1)]
    np.testing.assert_array_equal(decode(resp.content), expected)


def test_filter_on_bare_boolean_field(sub, examples_dir):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-1d-fields.b2nd?filter=d")
    data = blosc2.open(str(examples_dir / "ds-1d-fields.b2nd"))[:]
    np.testing.assert_array_equal(decode(resp.content), data[data["d"]])


@pytest.mark.parametrize(
    "expr",
    ["a", "__import__('os')", "a.real > 1", "open('x')", "zz > 1", "(a <", "a[0] > 1"],
)
def test_unsafe_or_invalid_filter_is_400(sub, expr):
    resp = anonymous(sub.urlbase).get(
        "/api/fetch/@public/ds-1d-fields.b2nd", params={"filter": expr}
    )
    assert resp.status_code == 400 and "filter" in resp.json()["detail"].lower()


def test_filter_on_plain_array_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-1d.b2nd?filter=a>1")
    assert resp.status_code == 400


def test_filter_with_field_is_400(sub):
    resp = anonymous(sub.urlbase).get("/api/fetch/@public/ds-1d-fields.b2nd?filter=d&field=a")
    assert resp.status_code == 400
