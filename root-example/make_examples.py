"""Regenerate the example datasets of ``root-example/`` in place, deterministically.

How the folder is made
----------------------
Run ``python root-example/make_examples.py`` (with blosc2, numpy, h5py and
hdf5plugin importable, e.g. the project's ``.venv``). It rewrites every file
below, then reopens each one and checks its metadata and values; it exits
non-zero if anything differs. Running it twice yields identical bytes.

- ``README.md``: the 87-byte text that stands for "any regular file".
- ``ds-hello.b2frame``: a Blosc2 SChunk (typesize 1, chunksize 100, 12 chunks)
  holding ``b"Hello world!" * 100``.
- ``ds-*.b2nd``, ``dir1/*.b2nd``, ``dir2/*.b2nd``: Blosc2 NDArrays with the
  shapes, dtypes, chunks, blocks and values listed in ``NDARRAYS``.
- ``root-example.h5``: an HDF5 file exercising Blosc2-filtered, gzip,
  contiguous, soft-linked, array-dtype, compound, null-dataspace and
  unsupported datasets, plus attributes of many types on ``attrs``.
- ``ex-noattr.h5``: an HDF5 file in the style of a PyTables file saved without
  its system attributes (``columns/*`` arrays with a ``TITLE`` and a chunked,
  gzip-compressed ``detector/table`` of 8 fields).

All Blosc2 data uses codec ZSTD, clevel 1, the SHUFFLE filter and splitmode
ALWAYS, compressed by one thread (so the bytes are reproducible). Random
booleans (``ds-1d-fields.b2nd`` field ``d``) come from a fixed seed. Tests may
import this module for the expected values.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import h5py
import hdf5plugin
import numpy as np

HERE = Path(__file__).resolve().parent

README_TEXT = (
    b"# Header example\nThis is a simple example,\n\nwith several lines,\n\nfor showing purposes.\n"
)
HELLO_DATA = b"Hello world!" * 100
SEED = 20250807
SC_ATTR_VLMETA: dict[str, Any] = {"a": 1, "b": "foo", "c": 123.456}
FIELDS_1D_DTYPE = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S10"), ("d", "?")])
FIELDS_2D_DTYPE = np.dtype([("a", "<f4"), ("b", "<f8")])


def cparams(typesize: int | None = None) -> blosc2.CParams:
    """Return the compression parameters shared by every example file."""
    kwargs: dict[str, Any] = {} if typesize is None else {"typesize": typesize}
    return blosc2.CParams(
        codec=blosc2.Codec.ZSTD,
        clevel=1,
        filters=[blosc2.Filter.NOFILTER] * 5 + [blosc2.Filter.SHUFFLE],
        filters_meta=[0] * 6,
        splitmode=blosc2.SplitMode.ALWAYS_SPLIT,
        nthreads=1,  # several threads may store blocks in any order: not reproducible
        **kwargs,
    )


def fields_1d() -> np.ndarray:
    """Return the values of ``ds-1d-fields.b2nd``."""
    arr = np.empty(1000, dtype=FIELDS_1D_DTYPE)
    arr["a"] = np.arange(1000, dtype="<i4")
    arr["b"] = np.linspace(0, 1, 1000)
    arr["c"] = [b"foobar%d" % i for i in range(1000)]
    arr["d"] = np.random.default_rng(SEED).integers(0, 2, 1000).astype(bool)
    return arr


def fields_2d() -> np.ndarray:
    """Return the values of ``ds-2d-fields.b2nd``."""
    arr = np.empty(20000, dtype=FIELDS_2D_DTYPE)
    arr["a"] = np.linspace(0, 1, 20000, dtype="<f4")
    arr["b"] = np.linspace(1, 2, 20000)
    return arr.reshape(100, 200)


def complex_seq(n: int) -> np.ndarray:
    """Return ``k + k*1j`` for k = 0..n-1 as complex128."""
    k = np.arange(n, dtype=np.float64)
    return (k + 1j * k).astype(np.complex128)


@dataclass(frozen=True)
class NDSpec:
    """One Blosc2 NDArray example: where, chunking and values."""

    path: str
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    values: np.ndarray
    vlmeta: dict[str, Any] | None = None


NDARRAYS: list[NDSpec] = [
    NDSpec("ds-1d.b2nd", (100,), (10,), np.arange(1000, dtype=np.int64)),
    NDSpec("ds-1d-b.b2nd", (100,), (10,), np.full(1000, b"foobar", dtype="S6")),
    NDSpec("ds-1d-fields.b2nd", (100,), (10,), fields_1d()),
    NDSpec("ds-2d-fields.b2nd", (100, 200), (25, 200), fields_2d()),
    NDSpec("ds-sc-attr.b2nd", (), (), np.array("foobar", dtype="<U6"), SC_ATTR_VLMETA),
    NDSpec("dir1/ds-2d.b2nd", (5, 5), (2, 3), np.arange(200, dtype=np.uint16).reshape(10, 20)),
    NDSpec(
        "dir1/ds-3d.b2nd", (2, 3, 4), (2, 2, 2), np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    ),
    NDSpec("dir2/ds-4d.b2nd", (1, 2, 3, 4), (1, 2, 2, 2), complex_seq(120).reshape(2, 3, 4, 5)),
]


def write_readme(root: Path) -> None:
    """Write the 87-byte README.md."""
    (root / "README.md").write_bytes(README_TEXT)


def write_hello(root: Path) -> None:
    """Write ds-hello.b2frame, an SChunk of 12 chunks of 100 bytes."""
    path = root / "ds-hello.b2frame"
    blosc2.remove_urlpath(str(path))
    blosc2.SChunk(
        chunksize=100,
        data=HELLO_DATA,
        cparams=cparams(typesize=1),
        urlpath=str(path),
        contiguous=True,
        mode="w",
    )


def write_ndarray(root: Path, spec: NDSpec) -> None:
    """Write one Blosc2 NDArray example file."""
    path = root / spec.path
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.remove_urlpath(str(path))
    arr = blosc2.asarray(
        spec.values,
        chunks=spec.chunks,
        blocks=spec.blocks,
        cparams=cparams(),
        urlpath=str(path),
        contiguous=True,
        mode="w",
    )
    for key, value in (spec.vlmeta or {}).items():
        arr.vlmeta[key] = value


def write_root_example_h5(path: Path) -> None:
    """Write root-example.h5 with every kind of dataset the tests exercise."""
    path.unlink(missing_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.create_dataset("scalar", data=np.float64(123.456))
        f.create_dataset("string", data=np.bytes_(b"Hello world!"))
        ds = f.create_dataset("attrs", data=np.int64(0))
        ds.attrs["Int"] = 42
        ds.attrs["IntT"] = np.int16(42)
        ds.attrs["Bin"] = b"foo"
        ds.attrs["BinT"] = np.bytes_(b"foo")
        ds.attrs["Str"] = "bar"
        ds.attrs["Arr"] = [[0, 1], [2, 3]]
        ds.attrs["ArrT"] = np.array([[0, 1], [2, 3]], dtype=np.uint8)
        ds.attrs["NilBin"] = h5py.Empty("|S4")
        ds.attrs["NilInt"] = h5py.Empty(np.uint8)

        arrays = f.create_group("arrays")
        arrays.create_dataset("1d-raw", data=np.arange(100, dtype=np.uint8))
        arrays["soft-link"] = h5py.SoftLink("/arrays/1d-raw")
        arrays.create_dataset(
            "1ds-blosc2",
            data=np.full(100, b"foobar", dtype="S6"),
            chunks=(50,),
            **hdf5plugin.Blosc2(),
        )
        arrays.create_dataset("2d-nochunks", data=complex_seq(100).reshape(10, 10))
        arrays.create_dataset(
            "2d-gzip", data=complex_seq(100).reshape(10, 10), chunks=(4, 4), compression="gzip"
        )
        arrays.create_dataset(
            "3d-blosc2",
            data=(np.arange(1000) % 256).astype(np.uint8).reshape(10, 10, 10),
            chunks=(4, 10, 10),
            **hdf5plugin.Blosc2(cname="lz4", clevel=7, filters=hdf5plugin.Blosc2.BITSHUFFLE),
        )
        arrays.create_dataset("array-dtype", shape=(10,), dtype=np.dtype(("<f8", (4,))))
        arrays.create_dataset(
            "compound-dtype", data=np.zeros(10, dtype=[("f0", "u1"), ("f1", "<f8")])
        )
        arrays.create_dataset("empty", data=h5py.Empty(np.float64))

        unsupported = f.create_group("unsupported")
        unsupported.create_dataset("too-many-dimensions", data=np.zeros((1,) * 23, dtype=np.uint8))
        unsupported.create_dataset(
            "vlstring", data="Hello world!", dtype=h5py.string_dtype("utf-8")
        )


TABLE_DTYPE = np.dtype(
    [
        ("ADCcount", "<i2"),
        ("TDCcount", "u1"),
        ("grid_i", "<i4"),
        ("grid_j", "<i4"),
        ("idnumber", "<i8"),
        ("name", "S16"),
        ("pressure", "<f4"),
        ("temperature", "<f8"),
    ]
)


def noattr_table() -> np.ndarray:
    """Return the 15 rows of ``detector/table`` in ex-noattr.h5."""
    i = np.arange(15)
    table = np.empty(15, dtype=TABLE_DTYPE)
    table["ADCcount"] = (i * 256) % (1 << 15)
    table["TDCcount"] = i % 256
    table["grid_i"] = i
    table["grid_j"] = 10 - i
    table["idnumber"] = i * (2**34)
    table["name"] = [b"Particle: %6d" % n for n in i]
    table["pressure"] = i.astype("<f4")
    table["temperature"] = i.astype("<f8") ** 2
    return table


def write_noattr_h5(path: Path) -> None:
    """Write ex-noattr.h5, shaped like a PyTables file without system attributes."""
    path.unlink(missing_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        columns = f.create_group("columns")
        tdc = columns.create_dataset("TDC", data=np.arange(10, dtype=np.int32))
        tdc.attrs["TITLE"] = np.bytes_(b"TDCcount column")
        name = columns.create_dataset(
            "name", data=np.array([b"Particle: %6d" % n for n in range(10)], dtype="S16")
        )
        name.attrs["TITLE"] = np.bytes_(b"Name column selection")
        pressure = columns.create_dataset("pressure", shape=(1,), dtype=np.dtype(("<f8", (10,))))
        pressure[0] = np.arange(10, dtype="<f8") * 1.5
        pressure.attrs["TITLE"] = np.bytes_(b"Pressure column selection")
        detector = f.create_group("detector")
        detector.create_dataset(
            "table",
            data=noattr_table(),
            maxshape=(None,),
            chunks=(4096,),
            compression="gzip",
        )


def generate(root: Path = HERE) -> None:
    """Write every example file under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    write_readme(root)
    write_hello(root)
    for spec in NDARRAYS:
        write_ndarray(root, spec)
    write_root_example_h5(root / "root-example.h5")
    write_noattr_h5(root / "ex-noattr.h5")


def check(cond: bool, what: str) -> None:
    """Raise AssertionError with ``what`` unless ``cond``."""
    if not cond:
        raise AssertionError(what)


def check_cparams(cp: blosc2.CParams, what: str) -> None:
    """Check the shared compression parameters."""
    check(cp.codec == blosc2.Codec.ZSTD, f"{what}: codec {cp.codec}")
    check(cp.clevel == 1, f"{what}: clevel {cp.clevel}")
    check(list(cp.filters)[-1] == blosc2.Filter.SHUFFLE, f"{what}: filters {cp.filters}")


def verify(root: Path = HERE) -> None:
    """Reopen every example file and check metadata and values."""
    readme = (root / "README.md").read_bytes()
    check(readme == README_TEXT and len(readme) == 87, "README.md")

    hello = blosc2.open(str(root / "ds-hello.b2frame"))
    check(isinstance(hello, blosc2.SChunk), "ds-hello: not an SChunk")
    check(hello.typesize == 1 and hello.chunksize == 100, "ds-hello: typesize/chunksize")
    check(hello.nchunks == 12 and hello.nbytes == 1200, "ds-hello: nchunks/nbytes")
    check(hello[:] == HELLO_DATA, "ds-hello: content")
    check_cparams(hello.cparams, "ds-hello")

    for spec in NDARRAYS:
        arr = blosc2.open(str(root / spec.path))
        what = spec.path
        check(isinstance(arr, blosc2.NDArray), f"{what}: not an NDArray")
        check(arr.shape == spec.values.shape, f"{what}: shape {arr.shape}")
        check(arr.dtype == spec.values.dtype, f"{what}: dtype {arr.dtype}")
        check(tuple(arr.chunks) == spec.chunks, f"{what}: chunks {arr.chunks}")
        check(tuple(arr.blocks) == spec.blocks, f"{what}: blocks {arr.blocks}")
        check(np.array_equal(arr[()], spec.values), f"{what}: values")
        check(dict(arr.schunk.vlmeta.getall()) == (spec.vlmeta or {}), f"{what}: vlmeta")
        check_cparams(arr.schunk.cparams, what)

    with h5py.File(root / "root-example.h5", "r") as f:
        check(dict(f.attrs) == {}, "root-example.h5: file attributes")
        check(f["scalar"][()] == 123.456, "scalar")
        check(f["string"][()] == b"Hello world!" and f["string"].dtype == "S12", "string")
        attrs = f["attrs"].attrs
        check(f["attrs"][()] == 0 and f["attrs"].dtype == np.int64, "attrs: value")
        check(len(attrs) == 9, f"attrs: {len(attrs)} attributes")
        check(attrs["Int"] == 42 and attrs["IntT"].dtype == np.int16, "attrs: Int/IntT")
        check(attrs["Bin"] == "foo" and attrs["BinT"] == b"foo", "attrs: Bin/BinT")
        check(attrs["Str"] == "bar", "attrs: Str")
        check(np.array_equal(attrs["Arr"], [[0, 1], [2, 3]]), "attrs: Arr")
        check(attrs["ArrT"].dtype == np.uint8, "attrs: ArrT")
        check(isinstance(attrs["NilBin"], h5py.Empty), "attrs: NilBin")
        check(isinstance(attrs["NilInt"], h5py.Empty), "attrs: NilInt")
        raw = f["arrays/1d-raw"]
        check(raw.chunks is None and np.array_equal(raw[()], np.arange(100)), "1d-raw")
        link = f["arrays"].get("soft-link", getlink=True)
        check(isinstance(link, h5py.SoftLink) and link.path == "/arrays/1d-raw", "soft-link")
        b2s = f["arrays/1ds-blosc2"]
        check(b2s.chunks == (50,) and "32026" in b2s._filters, "1ds-blosc2: filter")
        check(bool((b2s[()] == b"foobar").all()) and b2s.dtype == "S6", "1ds-blosc2: values")
        noch = f["arrays/2d-nochunks"]
        check(noch.chunks is None, "2d-nochunks: chunks")
        check(np.array_equal(noch[()], complex_seq(100).reshape(10, 10)), "2d-nochunks")
        gz = f["arrays/2d-gzip"]
        check(gz.chunks == (4, 4) and gz.compression == "gzip", "2d-gzip: storage")
        check(np.array_equal(gz[()], complex_seq(100).reshape(10, 10)), "2d-gzip: values")
        b23 = f["arrays/3d-blosc2"]
        check(b23.chunks == (4, 10, 10) and "32026" in b23._filters, "3d-blosc2: storage")
        expected = (np.arange(1000) % 256).astype(np.uint8).reshape(10, 10, 10)
        check(np.array_equal(b23[()], expected), "3d-blosc2: values")
        ad = f["arrays/array-dtype"]
        check(ad.shape == (10,) and ad.dtype == np.dtype(("<f8", (4,))), "array-dtype")
        cd = f["arrays/compound-dtype"]
        check(cd.dtype == np.dtype([("f0", "u1"), ("f1", "<f8")]), "compound-dtype")
        check(f["arrays/empty"].shape is None, "empty: null dataspace")
        check(f["unsupported/too-many-dimensions"].ndim == 23, "too-many-dimensions")
        vl = f["unsupported/vlstring"]
        check(h5py.check_string_dtype(vl.dtype) is not None and vl.shape == (), "vlstring")

    with h5py.File(root / "ex-noattr.h5", "r") as f:
        check(f["columns/TDC"].shape == (10,) and f["columns/TDC"].dtype == "<i4", "TDC")
        check(f["columns/name"].shape == (10,) and f["columns/name"].dtype == "S16", "name")
        pr = f["columns/pressure"]
        check(pr.shape == (1,) and pr.dtype == np.dtype(("<f8", (10,))), "pressure")
        for name in ("TDC", "name", "pressure"):
            check(isinstance(f["columns"][name].attrs["TITLE"], bytes), f"{name}: TITLE")
        table = f["detector/table"]
        check(table.shape == (15,) and table.dtype == TABLE_DTYPE, "table: shape/dtype")
        check(table.chunks == (4096,) and table.compression == "gzip", "table: storage")
        check(np.array_equal(table[()], noattr_table()), "table: values")


def main() -> int:
    """Regenerate and verify the examples; return the exit status."""
    generate(HERE)
    try:
        verify(HERE)
    except AssertionError as exc:
        print(f"verification failed: {exc}", file=sys.stderr)
        return 1
    files = sorted(
        p.relative_to(HERE).as_posix()
        for p in HERE.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    )
    print(f"wrote and verified {len(files)} files in {HERE}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
