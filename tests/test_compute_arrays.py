"""Concatenate, stack and append (`/api/concat/`, `/api/stack/`, `/api/append/`) and
field/filter access through `Dataset[...]`, against a real subscriber."""

from __future__ import annotations

import ast

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2

from .http_helpers import anonymous, login, unique
from .test_compute_lazyexpr import upload_array

CASES = {
    1: [((100,), (30,)), ((57,), (10,)), ((13,), (13,))],
    2: [((20, 30), (7, 11)), ((20, 30), (20, 4)), ((20, 30), (3, 30))],
    3: [((6, 7, 8), (2, 3, 4)), ((6, 7, 8), (6, 2, 3)), ((6, 7, 8), (1, 7, 8))],
    4: [((3, 4, 5, 6), (1, 2, 3, 4)), ((3, 4, 5, 6), (3, 1, 5, 2)), ((3, 4, 5, 6), (2, 4, 2, 6))],
}


@pytest.fixture(scope="module")
def client(sub):
    with cat2.Client(sub.urlbase, sub.user) as client:
        yield client


def sources(client, ndim: int, axis: int | None, dtypes=("int32", "float64", "int16")):
    """Three arrays of different chunks (and, for concat, lengths along `axis`)."""
    paths, values = [], []
    for i, ((shape, chunks), dtype) in enumerate(zip(CASES[ndim], dtypes, strict=True)):
        shape = list(shape if axis is not None else CASES[ndim][0][0])  # stacking: one shape
        if axis is not None:
            shape[axis] += 3 * i  # different lengths along the concatenation axis
        chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))
        data = (np.arange(np.prod(shape)).reshape(shape) * (i + 1)).astype(dtype)
        paths.append(upload_array(client, data, chunks))
        values.append(data)
    return paths, values


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("where", ["first", "last"])
def test_concatenate_equals_numpy(client, ndim, where):
    axis = 0 if where == "first" else ndim - 1
    paths, values = sources(client, ndim, axis)
    dst = f"@personal/{unique('cat')}.b2nd"
    assert str(client.concatenate(paths, dst, axis=axis)) == dst
    expected = np.concatenate(values, axis=axis)
    got = client.fetch(dst)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_stack_equals_numpy(client, ndim, where):
    axis = {"first": 0, "middle": ndim // 2, "last": ndim}[where]
    paths, values = sources(client, ndim, None)
    dst = f"@shared/{unique('stack')}.b2nd"
    assert str(client.stack(paths, dst, axis=axis)) == dst
    np.testing.assert_array_equal(client.fetch(dst), np.stack(values, axis=axis))


def test_concatenate_three_copies_of_the_example(client, examples_dir):
    folder = unique("copies")
    copies = [client.copy("@public/ds-1d.b2nd", f"@personal/{folder}/c{i}.b2nd") for i in range(3)]
    result = client.get(copies[0]).concatenate(copies[1:], f"@shared/{folder}/cat.b2nd", axis=0)
    assert str(result) == f"@shared/{folder}/cat.b2nd"
    a = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[:]
    assert client.get(result).shape == (3000,)
    np.testing.assert_array_equal(client.fetch(result), np.concatenate([a, a, a]))


def test_stack_three_copies_along_axis_1(client, examples_dir):
    folder = unique("copies")
    src = "@public/dir1/ds-2d.b2nd"
    copies = [client.copy(src, f"@personal/{folder}/c{i}.b2nd") for i in range(3)]
    result = client.get(copies[0]).stack(copies[1:], f"@personal/{folder}/stacked", axis=1)
    assert str(result) == f"@personal/{folder}/stacked.b2nd"  # .b2nd added
    a = blosc2.open(str(examples_dir / "dir1" / "ds-2d.b2nd"))[:]
    assert client.get(result).shape == (10, 3, 20)
    np.testing.assert_array_equal(client.fetch(result), np.stack([a, a, a], axis=1))


def test_concatenate_reads_expressions_as_sources(client, examples_dir):
    expr = client.lazyexpr(unique("src"), "a * 2", {"a": "@public/ds-1d.b2nd"})
    dst = f"@personal/{unique('mixed')}.b2nd"
    client.concatenate([expr, "@public/ds-1d.b2nd"], dst)
    a = blosc2.open(str(examples_dir / "ds-1d.b2nd"))[:]
    np.testing.assert_array_equal(client.fetch(dst), np.concatenate([a * 2, a]))


def test_concatenate_structured_arrays(client, examples_dir):
    dst = f"@personal/{unique('fields')}.b2nd"
    client.concatenate(["@public/ds-1d-fields.b2nd", "@public/ds-1d-fields.b2nd"], dst)
    a = blosc2.open(str(examples_dir / "ds-1d-fields.b2nd"))[:]
    np.testing.assert_array_equal(client.fetch(dst), np.concatenate([a, a]))


def test_concatenate_overwrites_destination(client):
    dst = f"@personal/{unique('over')}.b2nd"
    client.concatenate(["@public/ds-1d.b2nd"], dst)
    client.concatenate(["@public/dir1/ds-2d.b2nd", "@public/dir1/ds-2d.b2nd"], dst, axis=1)
    assert client.get(dst).shape == (10, 40)


@pytest.mark.parametrize(
    ("verb", "body", "message"),
    [
        (
            "concat",
            {"srcs": ["@public/ds-1d.b2nd"], "dst": "@shared/x.h5", "axis": 0},
            "must be a .b2nd",
        ),
        (
            "stack",
            {"srcs": ["@public/ds-1d.b2nd"], "dst": "foo/x.b2nd", "axis": 0},
            "Only @personal",
        ),
        ("concat", {"srcs": ["foo/x.b2nd"], "dst": "@shared/x.b2nd", "axis": 0}, "Only @personal"),
        (
            "concat",
            {
                "srcs": ["@public/ds-1d.b2nd", "@public/dir1/ds-2d.b2nd"],
                "dst": "@shared/x",
                "axis": 0,
            },
            "same number of dimensions",
        ),
        (
            "concat",
            {
                "srcs": ["@public/dir1/ds-2d.b2nd", "@public/dir1/ds-3d.b2nd"],
                "dst": "@shared/x",
                "axis": 0,
            },
            "same number of dimensions",
        ),
        (
            "stack",
            {"srcs": ["@public/ds-1d.b2nd", "@public/ds-1d-b.b2nd"], "dst": "@shared/x", "axis": 2},
            "out of range",
        ),
        (
            "concat",
            {"srcs": ["@public/ds-1d.b2nd", "@public/ds-1d-b.b2nd"], "dst": "@shared/x", "axis": 0},
            "incompatible dtypes",
        ),
        (
            "concat",
            {
                "srcs": ["@public/ds-1d.b2nd", "@public/ds-1d-fields.b2nd"],
                "dst": "@shared/x",
                "axis": 0,
            },
            "same dtype",
        ),
        ("concat", {"srcs": [], "dst": "@shared/x", "axis": 0}, "non-empty list"),
        (
            "concat",
            {"srcs": ["@public/nothere.b2nd"], "dst": "@shared/x", "axis": 0},
            "does not exist",
        ),
        ("concat", {"srcs": ["@public/README.md"], "dst": "@shared/x", "axis": 0}, "not an array"),
    ],
)
def test_bad_concat_or_stack_is_4xx_with_a_clear_message(sub, verb, body, message):
    resp = login(sub.urlbase, *sub.user).post(f"/api/{verb}/", json=body)
    assert resp.status_code in (400, 404), resp.text
    assert message in resp.json()["detail"]


def test_concat_and_stack_need_a_login(sub):
    body = {"srcs": ["@public/ds-1d.b2nd"], "dst": "@public/x.b2nd", "axis": 0}
    for verb in ("concat", "stack"):
        assert anonymous(sub.urlbase).post(f"/api/{verb}/", json=body).status_code == 401


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_append_equals_numpy_concatenate_along_axis_0(client, ndim):
    (shape, chunks), (_, other_chunks) = CASES[ndim][0], CASES[ndim][1]
    base = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    path = upload_array(client, base, chunks)
    rows = (np.arange(np.prod((5, *shape[1:]))) * -1).reshape((5, *shape[1:]))
    new_shape = client.get(path).append(blosc2.asarray(rows, chunks=(2, *other_chunks[1:])))
    assert new_shape == (shape[0] + 5, *shape[1:])
    np.testing.assert_array_equal(client.fetch(path), np.concatenate([base, rows]))
    assert client.append(path, rows[:1]) == (shape[0] + 6, *shape[1:])


def test_append_records_to_structured_dataset(client, examples_dir):
    path = client.copy("@public/ds-1d-fields.b2nd", f"@personal/{unique('rec')}.b2nd")
    dtype = np.dtype(ast.literal_eval(client.get_info(path)["dtype"]))
    records = [(1, 2.5, b"x", True), (2, 3.5, b"y", False)]
    assert client.get(path).append(records) == (1002,)
    a = blosc2.open(str(examples_dir / "ds-1d-fields.b2nd"))[:]
    np.testing.assert_array_equal(
        client.fetch(path), np.concatenate([a, np.array(records, dtype=dtype)])
    )


@pytest.mark.parametrize(
    ("target", "data", "message"),
    [
        ("@public/dir1/ds-2d.b2nd", np.zeros((2, 3)), "not compatible"),
        ("@public/ds-1d.b2nd", np.zeros(3) + 0.5, "Cannot append float64 data"),
        ("@personal/nothere.b2nd", np.zeros(3), "does not exist or is not a file"),
        ("@public/ds-hello.b2frame", np.zeros(3), "must be a NDArray"),
        ("@public/ds-sc-attr.b2nd", np.array(["x"]), "0-dimensional"),
    ],
)
def test_bad_append_is_400_and_leaves_the_dataset_alone(client, sub, target, data, message):
    if target.startswith("@public/ds-") or target.startswith("@public/dir1"):
        target = str(client.copy(target, f"@personal/{unique('t')}{target[-6:]}"))
    before = client.get_info(target).get("shape") if "nothere" not in target else None
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.append(target, data)
    assert info.value.response.status_code == 400
    assert message in info.value.response.json()["detail"]
    if before is not None:
        assert client.get_info(target).get("shape") == before


def test_append_to_lazy_expression_is_400(client):
    path = client.lazyexpr(unique("noappend"), "a + 1", {"a": "@public/ds-1d.b2nd"})
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.append(path, np.arange(3))
    assert "lazy expression" in info.value.response.json()["detail"]


def test_append_needs_a_login(sub):
    frame = blosc2.asarray(np.arange(3)).to_cframe()
    resp = anonymous(sub.urlbase).post(
        "/api/append/@public/ds-1d.b2nd", files={"file": ("x.b2nd", frame)}
    )
    assert resp.status_code == 401


# --- fields and filters through Dataset[...] (computed on the server) -----------------


def test_string_key_naming_a_field_returns_that_field(client, examples_dir):
    a = blosc2.open(str(examples_dir / "ds-1d-fields.b2nd"))[:]
    ds = client.get("@public/ds-1d-fields.b2nd")
    for field in ("a", "b", "c", "d"):
        got = ds[field]
        assert isinstance(got, blosc2.NDArray)
        np.testing.assert_array_equal(got[:], a[field])
    b = blosc2.open(str(examples_dir / "ds-2d-fields.b2nd"))[:]
    np.testing.assert_array_equal(client.get("@public/ds-2d-fields.b2nd")["b"][:], b["b"])


@pytest.mark.parametrize(
    ("name", "expression", "mask"),
    [
        ("ds-1d-fields.b2nd", "(a < 500) & (b >= .1)", lambda x: (x["a"] < 500) & (x["b"] >= 0.1)),
        ("ds-1d-fields.b2nd", "d & (a > 10)", lambda x: x["d"] & (x["a"] > 10)),
        (
            "ds-1d-fields.b2nd",
            "(a % 7 == 0) | (c == b'foo')",
            lambda x: (x["a"] % 7 == 0) | (x["c"] == b"foo"),
        ),
        ("ds-2d-fields.b2nd", "(a > 0.5) & (b < 0.7)", lambda x: (x["a"] > 0.5) & (x["b"] < 0.7)),
    ],
)
def test_string_key_that_is_a_filter_returns_matching_rows(
    client, examples_dir, name, expression, mask
):
    a = blosc2.open(str(examples_dir / name))[:]
    got = client.get(f"@public/{name}")[expression]
    assert isinstance(got, blosc2.NDArray)
    np.testing.assert_array_equal(got[:], a[mask(a)])


def test_filter_on_a_plain_array_is_a_value_error(client):
    with pytest.raises(ValueError):
        client.get("@public/ds-1d.b2nd")["a > 1"]


def test_unsafe_filter_is_400(client):
    with pytest.raises(httpx.HTTPStatusError) as info:
        client.get("@public/ds-1d-fields.b2nd")["a.__class__"]
    assert info.value.response.status_code == 400
