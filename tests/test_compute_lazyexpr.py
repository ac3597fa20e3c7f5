"""Lazy expressions (`/api/lazyexpr/`, `Client.lazyexpr`) against a real subscriber."""

from __future__ import annotations

import pathlib
import tempfile
import time

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2

from .http_helpers import anonymous, login, unique

# Shapes with two different chunk grids each, so operands never share partitions.
CASES = {
    1: ((1000,), (100,), (333,)),
    2: ((40, 50), (10, 25), (16, 7)),
    3: ((12, 15, 20), (5, 5, 5), (4, 15, 7)),
    4: ((6, 7, 8, 9), (3, 3, 4, 4), (2, 7, 5, 3)),
}


@pytest.fixture(scope="module")
def client(sub):
    with cat2.Client(sub.urlbase, sub.user) as client:
        yield client


@pytest.fixture(scope="module")
def other(sub):
    with cat2.Client(sub.urlbase, sub.other) as client:
        yield client


def upload_array(client, values, chunks=None, root="@personal", name=None) -> str:
    """Store `values` as a new dataset (with the given chunks); returns its path."""
    name = name or unique("arr") + ".b2nd"
    with tempfile.TemporaryDirectory() as tmp:
        local = pathlib.Path(tmp) / pathlib.PurePosixPath(name).name
        blosc2.asarray(np.asarray(values), urlpath=str(local), mode="w", chunks=chunks)
        return str(client.upload(local, f"{root}/{name}"))


def fetch(client, path, key=None):
    return client.fetch(path, key)


def keys_for(shape):
    """Slices to compare: everything, an inner box, and an integer on the first axis."""
    inner = tuple(slice(1, max(2, s - 1)) for s in shape)
    first = (2,) + tuple(slice(0, max(1, s // 2)) for s in shape[1:])
    return [None, inner, first]


def slice_text(key) -> str:
    return ", ".join(str(k) if isinstance(k, int) else f"{k.start}:{k.stop}" for k in key)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_lazy_expression_equals_numpy_for_operands_with_different_chunks(client, sub, ndim):
    shape, chunks_a, chunks_b = CASES[ndim]
    rng = np.random.default_rng(ndim)
    a = rng.integers(-50, 50, size=shape).astype(np.int32)
    b = rng.random(shape)
    path_a, path_b = upload_array(client, a, chunks_a), upload_array(client, b, chunks_b)
    expression = "(a + 1) * b - sqrt(abs(b)) + where(a > 0, a, 0)"
    name = unique("expr")
    path = client.lazyexpr(name, expression, {"a": path_a, "b": path_b})
    assert str(path) == f"@personal/{name}.b2nd"
    expected = (a + 1) * b - np.sqrt(np.abs(b)) + np.where(a > 0, a, 0)
    http = login(sub.urlbase, *sub.user)
    for key in keys_for(shape):
        want = expected if key is None else expected[key]
        np.testing.assert_allclose(client.get(path)[key if key is not None else ()], want)
        params = {} if key is None else {"slice_": slice_text(key)}
        resp = http.get(f"/api/fetch/{path}", params=params)
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(blosc2.ndarray_from_cframe(resp.content)[()], want)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_computed_expression_is_a_plain_array_equal_to_numpy(client, ndim):
    shape, chunks_a, chunks_b = CASES[ndim]
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    b = np.linspace(-1, 1, a.size).reshape(shape)
    path_a, path_b = upload_array(client, a, chunks_a), upload_array(client, b, chunks_b)
    path = client.lazyexpr(unique("computed"), "a * b + 2", {"a": path_a, "b": path_b}, True)
    info = client.get_info(path)
    assert "expression" not in info and "chunks" in info and info["shape"] == list(shape)
    np.testing.assert_allclose(client.fetch(path), a * b + 2)


def test_info_echoes_expression_and_operands_with_operand_shape_and_dtype(client):
    name = unique("info")
    operands = {"a": "@public/ds-1d.b2nd"}
    path = client.lazyexpr(name, "a + 1", operands)
    info = client.get_info(path)
    assert info["expression"] == "a + 1" and info["operands"] == operands
    assert info["shape"] == [1000] and np.dtype(info["dtype"]) == np.dtype("int64")
    assert not {"schunk", "chunks", "blocks"} & info.keys()
    ds = client.get(path)
    assert ds.shape == (1000,)
    with pytest.raises(AttributeError):
        ds.chunks  # noqa: B018 - an expression has no chunks of its own


def test_chunk_of_expression_is_computed_on_the_operands_grid(client, examples_dir):
    path = client.lazyexpr(unique("chunked"), "ds - 0", {"ds": "@public/ds-1d.b2nd"})
    original = blosc2.open(str(examples_dir / "ds-1d.b2nd"))
    for nchunk in (0, 9):
        got = np.frombuffer(blosc2.decompress2(client.get_chunk(path, nchunk)), dtype=np.int64)
        np.testing.assert_array_equal(got, original[nchunk * 100 : (nchunk + 1) * 100])


def test_chunk_out_of_range_is_400(sub, client):
    path = client.lazyexpr(unique("chunked"), "ds * 2", {"ds": "@public/ds-1d.b2nd"})
    resp = login(sub.urlbase, *sub.user).get(f"/api/chunk/{path}", params={"nchunk": 10})
    assert resp.status_code == 400 and "out of range" in resp.json()["detail"]


def test_expression_may_use_another_expression_as_operand(client, examples_dir):
    inner = client.lazyexpr(unique("inner"), "a + 1", {"a": "@public/ds-1d.b2nd"})
    outer = client.lazyexpr(unique("outer"), "e * 2 - a", {"e": inner, "a": "@public/ds-1d.b2nd"})
    assert client.get_info(outer)["operands"] == {"e": str(inner), "a": "@public/ds-1d.b2nd"}
    a = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[:]
    np.testing.assert_array_equal(client.fetch(outer), (a + 1) * 2 - a)
    np.testing.assert_array_equal(client.fetch(outer, slice(10, 20)), ((a + 1) * 2 - a)[10:20])


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("linspace(0, 10, num=50)", np.linspace(0, 10, num=50)),
        ("arange(10)", np.arange(10)),
        ("arange(2, 20, 3) * 2", np.arange(2, 20, 3) * 2),
        ("ones((3, 4)) + eye(3, 4)", np.ones((3, 4)) + np.eye(3, 4)),
    ],
)
def test_constructors_need_no_operands(client, expression, expected):
    path = client.lazyexpr(unique("ctor"), expression, None)
    assert client.get_info(path)["operands"] == {}
    np.testing.assert_allclose(client.fetch(path), expected)


@pytest.mark.parametrize(
    ("expression", "reference"),
    [
        ("sum(a)", lambda a: a.sum()),
        ("mean(a, axis=0)", lambda a: a.mean(axis=0)),
        ("max(a, axis=1) - min(a)", lambda a: a.max(axis=1) - a.min()),
        ("a[2:5] + 1", lambda a: a[2:5] + 1),
        ("a[-3:] * 2", lambda a: a[-3:] * 2),
        ("a[1, 2:12] + a[0, 1:11]", lambda a: a[1, 2:12] + a[0, 1:11]),
        ("a[::3, 1::4] * 2", lambda a: a[::3, 1::4] * 2),
        ("a[..., 3]", lambda a: a[..., 3]),
    ],
)
def test_reductions_and_subscripts_equal_numpy(client, examples_dir, expression, reference):
    a = blosc2.open(str(examples_dir / "dir1" / "ds-2d.b2nd"))[:].astype(np.int64)
    path = client.lazyexpr(unique("red"), expression, {"a": "@public/dir1/ds-2d.b2nd"})
    np.testing.assert_allclose(client.fetch(path), reference(a))


def test_linspace_computed_within_the_client_default_timeout(client, sub):
    start = time.monotonic()
    path = client.lazyexpr(unique("lin"), "linspace(0, 100, 1000_0000)", compute=True)
    assert time.monotonic() - start < 5
    assert client.get_info(path)["shape"] == [10_000_000]
    np.testing.assert_allclose(
        client.fetch(path, slice(5_000_000, 5_000_010)),
        np.linspace(0, 100, 10_000_000)[5_000_000:5_000_010],
    )
    with cat2.Client(sub.urlbase, sub.user) as hasty:
        hasty.timeout = 0.0001
        with pytest.raises(Exception, match="Timeout"):
            hasty.lazyexpr(unique("lin"), "linspace(0, 100, 1000_0000)", compute=True)


def test_reupload_of_operand_changes_next_read(client):
    operand = upload_array(client, np.arange(10))
    path = client.lazyexpr(unique("live"), "o * 10", {"o": operand})
    np.testing.assert_array_equal(client.fetch(path), np.arange(10) * 10)
    upload_array(client, np.arange(5, 25, 2), name=operand.split("/", 1)[1])
    np.testing.assert_array_equal(client.fetch(path), np.arange(5, 25, 2) * 10)
    upload_array(client, np.ones((3, 4)), name=operand.split("/", 1)[1])
    assert client.get_info(path)["shape"] == [3, 4]
    np.testing.assert_array_equal(client.fetch(path), np.ones((3, 4)) * 10)


def test_missing_operand_shows_in_info_and_fetch_says_which(client, sub):
    operand = upload_array(client, np.arange(10))
    path = client.lazyexpr(unique("orphan"), "o + 1", {"o": operand})
    client.remove(operand)
    assert client.get_info(path) == {
        "mtime": None,
        "error": "Lazy expression with missing operands",
        "expr": "o + 1",
        "missing_ops": {"o": operand},
    }
    resp = login(sub.urlbase, *sub.user).get(f"/api/fetch/{path}")
    assert resp.status_code == 404 and operand in resp.json()["detail"]


def test_computed_expression_keeps_its_values_when_operands_change(client):
    operand = upload_array(client, np.arange(10))
    path = client.lazyexpr(unique("frozen"), "o + 1", {"o": operand}, compute=True)
    upload_array(client, np.zeros(10), name=operand.split("/", 1)[1])
    np.testing.assert_array_equal(client.fetch(path), np.arange(10) + 1)


def test_computed_expression_may_overwrite_its_own_operand(client):
    operand = upload_array(client, np.arange(10))
    name = operand.split("/", 1)[1].removesuffix(".b2nd")
    assert str(client.lazyexpr(name, "x * 3", {"x": operand}, compute=True)) == operand
    np.testing.assert_array_equal(client.fetch(operand), np.arange(10) * 3)


def test_lazy_expression_cannot_read_itself(client):
    name = unique("self")
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.lazyexpr(name, "s + 1", {"s": f"@personal/{name}.b2nd"})
    assert info.value.response.status_code == 400


def test_circular_expressions_are_refused_when_created_and_when_read(client):
    first = client.lazyexpr(unique("c1"), "a + 1", {"a": "@public/ds-1d.b2nd"})
    second = client.lazyexpr(unique("c2"), "f + 1", {"f": str(first)})
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.lazyexpr(first.stem, "s + 1", {"s": str(second)})  # first would read second
    assert info.value.response.status_code == 400
    assert "circular" in info.value.response.json()["detail"]
    client.copy(second, first)  # first now reads itself, behind the server's back
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.fetch(second)
    assert info.value.response.status_code == 400
    assert "circular" in info.value.response.json()["detail"]


def test_saved_expression_is_listed_copied_moved_and_removed_like_a_dataset(client, examples_dir):
    folder = unique("dir")
    path = client.lazyexpr(f"{folder}/e", "a * 3", {"a": "@public/ds-1d.b2nd"})
    assert client.get_list(f"@personal/{folder}") == ["e.b2nd"]
    copied = client.copy(path, f"@shared/{folder}/e.b2nd")
    a = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[:]
    np.testing.assert_array_equal(client.fetch(copied), a * 3)
    moved = client.move(copied, f"@shared/{folder}/moved.b2nd")
    assert client.get_info(moved)["expression"] == "a * 3"
    client.remove(moved)
    client.remove(path)
    assert client.get_list(f"@personal/{folder}") == []


def test_download_of_expression_is_a_frame_of_the_computed_result(client, sub, examples_dir):
    path = client.lazyexpr(unique("dl"), "a - 7", {"a": "@public/ds-1d.b2nd"})
    a = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[:]
    resp = login(sub.urlbase, *sub.user).get(f"/api/download/{path}")
    assert resp.status_code == 200
    assert f'filename="{path.name}"' in resp.headers["content-disposition"]
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(resp.content)[:], a - 7)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download(path, pathlib.Path(tmp) / "x.b2nd")
        np.testing.assert_array_equal(blosc2.open(str(local))[:], a - 7)
    assert not list((sub.statedir / "tmp").iterdir())  # temporary results are gone


def test_shared_expression_reads_operands_with_the_readers_rights(client, other):
    mine = upload_array(client, np.arange(6))
    name = unique("private")
    path = client.lazyexpr(name, "p + 1", {"p": mine})
    shared = client.copy(path, f"@shared/{name}.b2nd")
    np.testing.assert_array_equal(client.fetch(shared), np.arange(1, 7))
    # For another user `@personal` is their own: the operand is simply not there.
    assert other.get_info(shared)["error"] == "Lazy expression with missing operands"
    with pytest.raises(httpx.HTTPStatusError) as info:
        other.fetch(shared)
    assert info.value.response.status_code == 404


def test_public_expression_over_personal_data_is_refused_to_anonymous_readers(client, sub):
    mine = upload_array(client, np.arange(6))
    name = unique("leak")
    public = client.copy(client.lazyexpr(name, "p + 1", {"p": mine}), f"@public/{name}.b2nd")
    try:
        resp = anonymous(sub.urlbase).get(f"/api/fetch/{public}")
        assert resp.status_code == 400 and "requires authentication" in resp.json()["detail"]
    finally:
        client.remove(public)  # other tests expect @public to hold the examples only


@pytest.mark.parametrize(
    ("expression", "operands", "message"),
    [
        ("a.__class__", {"a": "@public/ds-1d.b2nd"}, "attribute access"),
        ("a.T + 1", {"a": "@public/ds-1d.b2nd"}, "attribute access"),
        ("__import__('os').system('id')", {}, "attribute access ('.system')"),
        ("__import__('os')", {}, "names starting with '_' (__import__)"),
        ("__builtins__", {}, "names starting with '_'"),
        ("open('/etc/passwd')", {}, "function open() is not allowed"),
        ("a + 1", {"a": "/etc/passwd"}, "absolute paths are not allowed"),
        ("a + 1", {"a": "@public/../../../etc/passwd"}, "'..' is not allowed"),
        ("a + 1", {"a": "../personal/x.b2nd"}, "must start with a root name"),
        ("a + 1", {"a": "@public/README.md"}, "is not an array"),
        ("a + 1", {"a": "@public/dir1"}, "is a directory"),
        ("a + 1", {"a": "@nowhere/x.b2nd"}, "does not exist"),
        ("a + 1", {"a": "@public/missing.b2nd"}, "operands not found"),
        ("a + b", {"a": "@public/ds-1d.b2nd"}, "b is not in the list of available datasets"),
        ("a +* 2", {"a": "@public/ds-1d.b2nd"}, "Invalid name or expression"),
        ("", {}, "Invalid name or expression"),
    ],
)
def test_unsafe_or_invalid_expressions_are_400_with_a_clear_message(
    sub, expression, operands, message
):
    http = login(sub.urlbase, *sub.user)
    body = {"name": unique("bad"), "expression": expression, "operands": operands, "compute": False}
    resp = http.post("/api/lazyexpr/", json=body)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["detail"]
    assert http.get(f"/api/info/@personal/{body['name']}.b2nd").status_code == 404


def test_another_users_personal_data_cannot_be_named(sub, client, other):
    """`@personal` always means the caller's own folder: no path reaches another user's."""
    secret = upload_array(other, np.arange(5))
    other_id = next((sub.statedir / "personal").glob(f"*/{secret.split('/', 1)[1]}")).parent.name
    http = login(sub.urlbase, *sub.user)
    for path in (
        secret,
        f"@personal/../{other_id}/{secret.split('/', 1)[1]}",
        f"personal/{other_id}/{secret.split('/', 1)[1]}",
        f"@shared/../personal/{other_id}/{secret.split('/', 1)[1]}",
    ):
        body = {"name": unique("spy"), "expression": "s + 0", "operands": {"s": path}}
        resp = http.post("/api/lazyexpr/", json={**body, "compute": True})
        assert resp.status_code == 400, (path, resp.text)
        detail = resp.json()["detail"]
        assert any(reason in detail for reason in ("not found", "not allowed", "does not exist")), (
            detail
        )


def test_lazyexpr_needs_a_login(sub):
    body = {"name": "x", "expression": "a", "operands": {"a": "@public/ds-1d.b2nd"}}
    resp = anonymous(sub.urlbase).post("/api/lazyexpr/", json={**body, "compute": False})
    assert resp.status_code == 401


def test_lazyexpr_without_compute_is_422(sub):
    body = {"name": "x", "expression": "a", "operands": {"a": "@public/ds-1d.b2nd"}}
    resp = login(sub.urlbase, *sub.user).post("/api/lazyexpr/", json=body)
    assert resp.status_code == 422


def test_runtime_errors_are_400(client):
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.lazyexpr(
            unique("rt"), "a + b", {"a": "@public/ds-1d.b2nd", "b": "@public/dir1/ds-2d.b2nd"}
        )
    assert info.value.response.status_code == 400


@pytest.mark.parametrize(
    "expression",
    ["a + 50", "a ** 2.3 + b / 2.3", "sqrt(a) ** sin(b)", "where(a < 50, a + 50, b)"],
)
def test_expressions_equal_numexpr_on_shared_operands(client, expression):
    import numexpr as ne

    a = np.linspace(-1, 2, 1000).reshape(10, 10, 10)
    b = np.linspace(-1, 2, 1000).reshape(10, 10, 10)
    folder = unique("arrays")
    operands = {
        "a": upload_array(client, a, (5, 10, 10), "@shared", f"{folder}/a.b2nd"),
        "b": upload_array(client, b, (3, 5, 5), "@shared", f"{folder}/b.b2nd"),
    }
    path = client.lazyexpr(unique("ne"), expression, operands)
    result = client.get_slice(path)
    assert isinstance(result, blosc2.NDArray)
    np.testing.assert_allclose(result[:], ne.evaluate(expression, {"a": a, "b": b}))


def test_operand_used_but_not_given_is_400(client):
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.lazyexpr(unique("noop"), "ds + linspace(0, 10, num=50)")
    assert "ds is not in the list of available datasets" in info.value.response.json()["detail"]


def test_uploaded_shell_with_a_forbidden_expression_is_refused_when_read(client, sub):
    """A saved expression is checked again on every read: uploads cannot smuggle code in."""
    from caterva2.subscriber.lazy_expressions import MARKER

    with tempfile.TemporaryDirectory() as tmp:
        local = pathlib.Path(tmp) / "evil.b2nd"
        shell = blosc2.zeros((0,), dtype=np.int8, urlpath=str(local), mode="w")
        shell.schunk.vlmeta[MARKER] = {
            "expression": "__import__('os').system('touch /tmp/pwned') + a",
            "operands": {"a": "@public/ds-1d.b2nd"},
        }
        del shell
        path = client.upload(local, f"@personal/{unique('evil')}.b2nd")
    resp = login(sub.urlbase, *sub.user).get(f"/api/fetch/{path}")
    assert resp.status_code == 400 and "not allowed" in resp.json()["detail"]


def _trojan(tmp: pathlib.Path, target: pathlib.Path, form: str) -> bytes:
    """A Blosc2 saved expression whose operand is the file `target`, as an attacker writes it."""
    path = tmp / "trojan.b2nd"
    if form == "b2o":  # how Blosc2 4 saves expressions
        operand = blosc2.asarray(np.zeros(5), urlpath=str(tmp / "o.b2nd"), mode="w")
        blosc2.lazyexpr("o + 0", {"o": operand}).save(urlpath=str(path))
        saved = blosc2.open(str(path), mode="a", deserialize="full")
        payload = saved.array.schunk.vlmeta["b2o"]
        payload["operands"]["o"]["urlpath"] = str(target)
        saved.array.schunk.vlmeta["b2o"] = payload
        del saved
    else:  # how Blosc2 3 saved them
        from blosc2.lazyexpr import LazyArrayEnum

        shell = blosc2.zeros(
            (5,), urlpath=str(path), mode="w", meta={"LazyArray": LazyArrayEnum.Expr.value}
        )
        shell.schunk.vlmeta["_LazyArray"] = {
            "expression": "o + 0",
            "UDF": None,
            "operands": {"o": str(target)},
        }
        del shell
    return path.read_bytes()


@pytest.mark.parametrize("form", ["b2o", "LazyArray"])
def test_blosc2_saved_expression_naming_files_is_never_evaluated(client, other, sub, form):
    """Blosc2's own saved expressions name operands by file path: they must not be opened."""
    secret = upload_array(other, np.full(5, 4242.0))
    target = next((sub.statedir / "personal").glob(f"*/{secret.split('/', 1)[1]}"))
    with tempfile.TemporaryDirectory() as tmp:
        content = _trojan(pathlib.Path(tmp), target, form)
    http = login(sub.urlbase, *sub.user)
    name = f"@personal/{unique('trojan')}.b2nd"
    resp = http.post(f"/api/upload/{name}", files={"file": ("t.b2nd", content)})
    if resp.status_code != 200:
        assert resp.status_code == 400  # refused as a whole: fine too
        return
    for verb in ("info", "fetch", "download"):
        got = http.get(f"/api/{verb}/{name}")
        assert "4242" not in got.text
        if got.status_code == 200 and verb != "info":
            values = blosc2.ndarray_from_cframe(got.content)[()]
            assert not np.any(np.asarray(values) == 4242.0)


@pytest.mark.parametrize(
    ("expression", "reference"),
    [
        ("a + 1", lambda a, b: a + 1),
        ("a * b", lambda a, b: a * b),
        ("sum(a) + 0", lambda a, b: a.sum()),
        ("where(a > 100, a, 0) - abs(b)", lambda a, b: np.where(a > 100, a, 0) - abs(b)),
    ],
)
def test_expressions_over_unfolded_hdf5_datasets_equal_numpy(
    client, examples_dir, expression, reference
):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")  # registers the Blosc2 filter for h5py
    folder = unique("h5")
    client.upload(examples_dir / "root-example.h5", f"@personal/{folder}/root-example.h5")
    client.unfold(f"@personal/{folder}/root-example.h5")
    base = f"@personal/{folder}/root-example/arrays"
    operands = {"a": f"{base}/3d-blosc2.b2nd", "b": f"{base}/2d-gzip.b2nd"}
    path = client.lazyexpr(unique("h5expr"), expression, operands)
    with h5py.File(examples_dir / "root-example.h5") as f:
        a, b = f["arrays/3d-blosc2"][()], f["arrays/2d-gzip"][()]
    np.testing.assert_allclose(client.fetch(path), reference(a, b))
    computed = client.lazyexpr(unique("h5comp"), expression, operands, compute=True)
    np.testing.assert_allclose(client.fetch(computed), reference(a, b))
