"""HDF5 files for the tests: one with every supported type, and a deep comparison of two files."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from caterva2.common.hdf5_convert import write_region

NESTED = np.dtype(
    [
        ("id", "<i4"),
        ("pos", [("x", "<f4"), ("y", "<f4")]),
        ("name", "S8"),
        ("hist", "<u2", (3,)),
        ("ok", "?"),
    ]
)
ENUM = h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 7}, basetype="i1")


def make_all_types(path: Path) -> Path:
    """Write an HDF5 file with every type and layout the conversion supports."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "all types"
        f.attrs["version"] = np.int16(3)
        f.attrs["empty"] = h5py.Empty("<f8")
        num = f.create_group("numbers")
        for dt in ("i1", "<i2", ">i4", "<i8", "u1", ">u2", "<u4", "<u8"):
            info = np.iinfo(dt)
            native = np.dtype(dt).newbyteorder("=")
            data = rng.integers(info.min, info.max, (37, 5), dtype=native, endpoint=True).astype(dt)
            num.create_dataset(f"int-{dt.strip('<>')}{'-be' if '>' in dt else ''}", data=data)
        for dt in ("<f2", "<f4", ">f8", "<c8", "<c16"):
            data = rng.standard_normal((11, 13)).astype(dt)
            if dt.endswith(("c8", "c16")):
                data = data + 1j * rng.standard_normal((11, 13))
            num.create_dataset(f"float-{dt.strip('<>')}", data=data.astype(dt), chunks=(4, 5))
        num.create_dataset("bool", data=rng.integers(0, 2, 50).astype(bool), compression="gzip")
        num.create_dataset("enum", data=np.array([0, 1, 7, 7, 1], dtype="i1"), dtype=ENUM)
        num.create_dataset("nan-inf", data=np.array([np.nan, np.inf, -np.inf, 0.0]))
        text = f.create_group("text")
        text.create_dataset("ascii", data=np.array([b"a", b"bc", b"def"], dtype="S4"))
        words = ["héllo", "wörld"]
        utf = np.array([w.encode() for w in words], dtype="S8")
        utf8 = h5py.string_dtype("utf-8", 8)
        text.create_dataset("utf8", data=utf.astype(utf8), dtype=utf8)
        text.create_dataset("scalar", data=np.bytes_(b"one string"))
        comp = f.create_group("compound")
        rows = np.zeros(23, dtype=NESTED)
        rows["id"] = np.arange(23)
        rows["pos"]["x"] = np.linspace(0, 1, 23)
        rows["name"] = [b"row%d" % i for i in range(23)]
        rows["hist"] = np.arange(69).reshape(23, 3)
        rows["ok"] = np.arange(23) % 3 == 0
        comp.create_dataset("nested", data=rows, chunks=(5,), compression="gzip")
        sub = comp.create_dataset("subarray", shape=(10,), dtype=("<f8", (4,)), chunks=(3,))
        write_region(sub, (slice(0, 10),), np.arange(40.0).reshape(10, 4))
        comp.create_dataset("scalar", data=rows[3])
        shapes = f.create_group("shapes")
        shapes.create_dataset("scalar-int", data=np.int32(-5))
        shapes.create_dataset("scalar-float", data=np.float64(2.5))
        shapes.create_dataset("null", data=h5py.Empty("<i4"))
        shapes.create_dataset("zero", shape=(0,), dtype="<f4")
        shapes.create_dataset("zero-2d", shape=(3, 0), dtype="<i2")
        shapes.create_dataset("4d", data=np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5))
        sparse = shapes.create_dataset(
            "sparse", shape=(100,), chunks=(10,), fillvalue=-1, dtype="i4"
        )
        sparse[30:40] = 5
        shapes.create_dataset("growable", data=np.arange(7), maxshape=(None,), chunks=(1000,))
        b2 = f.create_group("blosc2")
        cube = (np.arange(20 * 30 * 40) % 251).astype("u1").reshape(20, 30, 40)
        b2.create_dataset("cube", data=cube, chunks=(8, 30, 16), **hdf5plugin.Blosc2())
        line = np.arange(10_000, dtype="<f8")
        b2.create_dataset("line", data=line, chunks=(1000,), **hdf5plugin.Blosc2(cname="lz4"))
        ds = f.create_group("attrs").create_dataset("holder", data=np.arange(3))
        ds.attrs["int"] = 42
        ds.attrs["int16"] = np.int16(-7)
        ds.attrs["float"] = 1.5
        ds.attrs["str"] = "text"
        ds.attrs["bytes"] = b"raw"
        ds.attrs["fixed"] = np.bytes_(b"fixed")
        ds.attrs["list"] = [[1, 2], [3, 4]]
        ds.attrs["u8array"] = np.arange(6, dtype="u1").reshape(2, 3)
        ds.attrs["strings"] = np.array(["a", "bb"], dtype=h5py.string_dtype())
        ds.attrs["empty-str"] = h5py.Empty("S4")
        ds.attrs["empty-int"] = h5py.Empty("u1")
        ds.attrs["compound"] = rows[:2]
        ds.attrs["complex"] = np.complex64(1 + 2j)
        ds.attrs["bool"] = np.bool_(True)
        f.create_group("empty-group")
        f["links/to-int"] = h5py.SoftLink("/numbers/int-i1")
        f["links/dangling"] = h5py.SoftLink("/nowhere")
    return path


def _same_value(a, b, where: str) -> None:
    if isinstance(a, h5py.Empty) or isinstance(b, h5py.Empty):
        assert isinstance(a, h5py.Empty) and isinstance(b, h5py.Empty), where
        assert a.dtype == b.dtype, where
        return
    if isinstance(a, str | bytes):
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{where}: {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{where}: {a.shape} != {b.shape}"
    if a.dtype.kind in "fc":
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif a.dtype.kind == "O":
        assert a.tolist() == b.tolist(), where
    else:
        assert a.tobytes() == b.tobytes(), where


def _same_attrs(a, b, where: str) -> None:
    assert sorted(a.attrs) == sorted(b.attrs), where
    for name in a.attrs:
        _same_value(a.attrs[name], b.attrs[name], f"{where} attribute {name}")
        da, db = a.attrs.get_id(name).dtype, b.attrs.get_id(name).dtype
        assert h5py.check_string_dtype(da) == h5py.check_string_dtype(db), f"{where} {name}"


def assert_same_h5(path_a: Path, path_b: Path) -> None:
    """Both files have the same groups, links, datasets (values, dtypes) and attributes."""
    with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
        seen = []

        a.visit(seen.append)
        _same_attrs(a, b, "/")
        for name in seen:
            link_a = a.get(name, getlink=True)
            link_b = b.get(name, getlink=True)
            assert type(link_a) is type(link_b), name
            if isinstance(link_a, h5py.SoftLink):
                assert link_a.path == link_b.path, name
                continue
            oa, ob = a[name], b[name]
            assert type(oa) is type(ob), name
            _same_attrs(oa, ob, name)
            if isinstance(oa, h5py.Dataset):
                assert oa.dtype == ob.dtype, f"{name}: {oa.dtype} != {ob.dtype}"
                assert h5py.check_string_dtype(oa.dtype) == h5py.check_string_dtype(ob.dtype)
                assert h5py.check_enum_dtype(oa.dtype) == h5py.check_enum_dtype(ob.dtype)
                assert oa.shape == ob.shape, name
                _same_value(oa[()], ob[()], name)
        # Links that `visit` does not follow (dangling ones) must be there too.
        for group in [a, *(a[n] for n in seen if isinstance(a.get(n), h5py.Group))]:
            for key in group:
                link = group.get(key, getlink=True)
                if isinstance(link, h5py.SoftLink):
                    other = b[group.name].get(key, getlink=True)
                    assert isinstance(other, h5py.SoftLink) and other.path == link.path
