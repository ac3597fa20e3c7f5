"""Drive the real upstream caterva2 client against a running subscriber; print JSON results.

Runs under the upstream venv's python (``caterva2==2025.8.7``, ``blosc2==3.7.2``),
never under ours, and imports nothing from this repository. Usage::

    python upstream_driver.py --urlbase http://127.0.0.1:8000 \\
        --examples root-example --workdir /tmp/x \\
        --user user@example.com:userpass123 --other other@example.com:otherpass123 \\
        read write

Sections: ``read`` (roots, list, info, slices, fields, filters, chunks, bytes,
downloads, error statuses) and ``write`` (upload, copy, move, remove, across
``@personal`` and ``@shared``, and user isolation). Every check is run even if
earlier ones fail; stdout receives exactly one JSON document
``{"versions": {...}, "checks": [{"section", "name", "ok", "detail"}, ...]}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import blosc2
import httpx
import numpy as np
from upstream_common import (
    PUBLIC,
    Report,
    example_files,
    expect,
    expect_http_error,
    local_vlmeta,
    parse_dtype,
    split_auth,
)
from upstream_writes import write_checks

import caterva2 as cat2

# ---------------------------------------------------------------- read section


def read_checks(
    rep: Report, urlbase: str, examples: Path, workdir: Path, auth: tuple[str, str] | None
) -> None:
    """Exercise every read operation of the client on the @public examples."""
    rep.section = "read"
    anon = cat2.Client(urlbase)
    files = example_files(examples)
    arrays = [f for f in files if f.endswith(".b2nd")]
    local_nd: dict[str, Any] = {f: blosc2.open(str(examples / f)) for f in arrays}
    readme = (examples / "README.md").read_bytes()

    def roots_anonymous() -> str:
        roots = anon.get_roots()
        expect(PUBLIC in roots, f"@public missing from {roots}")
        expect(roots[PUBLIC]["name"] == PUBLIC, f"bad @public entry {roots[PUBLIC]}")
        expect("@personal" not in roots, f"anonymous sees @personal: {roots}")
        return json.dumps(roots)

    rep.run("roots anonymous", roots_anonymous)

    def roots_logged_in() -> str:
        expect(auth, "no --user given")
        client = cat2.Client(urlbase, auth)
        expect(client.cookie, "login gave no cookie")
        roots = client.get_roots()
        for name in (PUBLIC, "@personal", "@shared"):
            expect(name in roots, f"{name} missing from {roots}")
        return json.dumps(roots)

    rep.run("roots logged in", roots_logged_in)

    def list_public() -> str:
        listing = anon.get_list(PUBLIC)
        expect(set(files) <= set(listing), f"missing {set(files) - set(listing)}")
        expect(listing == sorted(listing), f"not sorted: {listing}")
        expect(not any(x.endswith(".b2") for x in listing), f".b2 leaked: {listing}")
        return json.dumps(listing)

    rep.run("list @public", list_public)

    def list_dir() -> str:
        plain = anon.get_list(f"{PUBLIC}/dir1")
        slash = anon.get_list(f"{PUBLIC}/dir1/")
        expect(plain == slash, f"{plain} != {slash} (trailing slash)")
        expect(plain[:2] == ["ds-2d.b2nd", "ds-3d.b2nd"], f"dir1 listing {plain}")
        return json.dumps(plain)

    rep.run("list dir1 (with and without slash)", list_dir)

    def list_file() -> str:
        got = anon.get_list(f"{PUBLIC}/dir1/ds-2d.b2nd")
        expect(got == ["ds-2d.b2nd"], f"list of a file gave {got}")
        return json.dumps(got)

    rep.run("list of a file", list_file)

    def root_object() -> str:
        root = anon.get(PUBLIC)
        expect(isinstance(root, cat2.Root), f"get(@public) gave {type(root)}")
        expect("ds-1d.b2nd" in root and "README.md" in root, "membership test failed")
        expect(len(root) >= len(files), f"len(root) = {len(root)}")
        ds = root["dir1/ds-2d.b2nd"]
        expect(isinstance(ds, cat2.Dataset), f"root[...] gave {type(ds)}")
        f = root["README.md"]
        expect(type(f) is cat2.File, f"root['README.md'] gave {type(f)}")
        expect(str(ds.path) == "@public/dir1/ds-2d.b2nd", f"path {ds.path}")
        return repr(root)

    rep.run("Root object", root_object)

    for relpath in arrays:

        def info_ndarray(relpath: str = relpath) -> str:
            local = local_nd[relpath]
            ds = anon.get(f"{PUBLIC}/{relpath}")
            expect(isinstance(ds, cat2.Dataset), f"{type(ds)}")
            expect(ds.shape == local.shape, f"shape {ds.shape} != {local.shape}")
            expect(ds.chunks == local.chunks, f"chunks {ds.chunks} != {local.chunks}")
            expect(ds.blocks == local.blocks, f"blocks {ds.blocks} != {local.blocks}")
            expect(parse_dtype(ds.dtype) == local.dtype, f"dtype {ds.dtype} != {local.dtype}")
            expect(ds.dtype == str(local.dtype), f"dtype text {ds.dtype!r} != {local.dtype}")
            expect(ds.vlmeta == local_vlmeta(local.schunk), f"vlmeta {ds.vlmeta}")
            sc = ds.meta["schunk"]
            expect(sc["nbytes"] == local.schunk.nbytes, f"nbytes {sc['nbytes']}")
            expect(sc["nchunks"] == local.schunk.nchunks, f"nchunks {sc['nchunks']}")
            cp = sc["cparams"]
            expect(cp["codec"] == 5 and cp["clevel"] == 1, f"cparams {cp}")
            expect(cp["filters"][-1] == 1 and cp["typesize"] == local.dtype.itemsize, f"{cp}")
            expect("vlmeta" in sc, "schunk.vlmeta missing")
            return f"dtype={ds.dtype} vlmeta={ds.vlmeta}"

        rep.run(f"info {relpath}", info_ndarray)

    def info_frame() -> str:
        local = blosc2.open(str(examples / "ds-hello.b2frame"))
        ds = anon.get(f"{PUBLIC}/ds-hello.b2frame")
        meta = ds.meta
        expect(meta["nbytes"] == local.nbytes == 1200, f"nbytes {meta['nbytes']}")
        expect(meta["chunksize"] == 100 and meta["nchunks"] == 12, f"{meta}")
        expect(meta["cparams"]["typesize"] == 1, f"{meta['cparams']}")
        expect(meta["vlmeta"] == {} and meta["mtime"], f"{meta}")
        return json.dumps(meta)

    rep.run("info ds-hello.b2frame", info_frame)

    def info_readme() -> str:
        f = anon.get(f"{PUBLIC}/README.md")
        meta = f.meta
        expect(meta["nbytes"] == len(readme) == 87, f"nbytes {meta['nbytes']}")
        expect(meta["cparams"]["typesize"] == 1, f"{meta['cparams']}")
        expect(meta["vlmeta"] == {} and f.vlmeta == {}, f"vlmeta {meta.get('vlmeta')}")
        return json.dumps(meta)

    rep.run("info README.md", info_readme)

    for h5 in (f for f in files if f.endswith(".h5")):

        def info_h5(h5: str = h5) -> str:
            meta = anon.get_info(f"{PUBLIC}/{h5}")
            size = (examples / h5).stat().st_size
            expect(meta["size"] == size, f"size {meta.get('size')} != {size}")
            expect(isinstance(meta["mtime"], int | float), f"mtime {meta.get('mtime')!r}")
            return json.dumps(meta)

        rep.run(f"info {h5}", info_h5)

    slices: list[tuple[str, Any]] = [
        ("ds-1d.b2nd", slice(10, 20)),
        ("ds-1d.b2nd", slice(95, 215)),
        ("ds-1d.b2nd", slice(None, 5)),
        ("ds-1d.b2nd", slice(-3, None)),
        ("ds-1d.b2nd", 7),
        ("ds-1d.b2nd", slice(None)),
        ("ds-1d-b.b2nd", slice(5, 8)),
        ("ds-1d-fields.b2nd", slice(100, 110)),
        ("ds-2d-fields.b2nd", (slice(10, 12), slice(20, 30))),
        ("ds-sc-attr.b2nd", ()),
        ("dir1/ds-2d.b2nd", (slice(1, 3), slice(4, 10))),
        ("dir1/ds-2d.b2nd", 2),
        ("dir1/ds-2d.b2nd", (2, 3)),
        ("dir1/ds-2d.b2nd", (slice(None), 7)),
        ("dir1/ds-3d.b2nd", (1, slice(0, 2), slice(1, 4))),
        ("dir2/ds-4d.b2nd", (slice(0, 1), 1, slice(1, 3), slice(None))),
    ]
    for relpath, key in slices:

        def slice_check(relpath: str = relpath, key: Any = key) -> str:
            expected = local_nd[relpath][()][key]
            path = f"{PUBLIC}/{relpath}"
            got = anon.get(path)[key]
            fetched = anon.fetch(path, slice_=key)
            for what, value in (("dataset[key]", got), ("fetch", fetched)):
                value = np.asarray(value)
                expect(value.shape == np.shape(expected), f"{what} shape {value.shape}")
                expect(value.dtype == expected.dtype, f"{what} dtype {value.dtype}")
                expect(np.array_equal(value, expected), f"{what} values differ")
            nd = anon.get_slice(path, key, as_blosc2=True)
            expect(isinstance(nd, blosc2.NDArray), f"get_slice gave {type(nd)}")
            expect(np.array_equal(nd[()], expected), "get_slice values differ")
            return f"shape={np.shape(expected)}"

        rep.run(f"slice {relpath}[{key!r}]", slice_check)

    def fields_and_filters() -> str:
        local = local_nd["ds-1d-fields.b2nd"][()]
        ds = anon.get(f"{PUBLIC}/ds-1d-fields.b2nd")
        for name in local.dtype.names:
            got = ds[name]
            expect(isinstance(got, blosc2.NDArray), f"field {name}: {type(got)}")
            expect(np.array_equal(got[()], local[name]), f"field {name} differs")
        flt = ds["(a < 500) & (b >= .1)"][()]
        want = local[(local["a"] < 500) & (local["b"] >= 0.1)]
        expect(np.array_equal(flt, want), f"filter gave {len(flt)} rows, want {len(want)}")
        # A string naming a field is a field access in File.__getitem__; get_slice
        # always sends a string key as a filter, so this is the bare-boolean filter.
        flt = anon.get_slice(f"{PUBLIC}/ds-1d-fields.b2nd", "d")
        expect(np.array_equal(flt[()], local[local["d"]]), "bare boolean field filter differs")
        return f"filter rows={len(want)}"

    rep.run("fields and filters of ds-1d-fields", fields_and_filters)

    def frame_slices() -> str:
        ds = anon.get(f"{PUBLIC}/ds-hello.b2frame")
        expect(ds[0:12] == b"Hello world!", f"ds-hello[0:12] = {ds[0:12]!r}")
        expect(ds[1188:1200] == b"Hello world!", f"tail = {ds[1188:1200]!r}")
        expect(ds[1] == b"e", f"ds-hello[1] = {ds[1]!r}")
        whole = anon.fetch(f"{PUBLIC}/ds-hello.b2frame")
        expect(whole == b"Hello world!" * 100, f"whole fetch gave {len(whole)} bytes")
        sc = anon.get_slice(f"{PUBLIC}/ds-hello.b2frame", slice(0, 24), as_blosc2=True)
        expect(isinstance(sc, blosc2.SChunk) and sc.typesize == 1, f"{type(sc)}")
        return "ok"

    rep.run("slices of ds-hello.b2frame", frame_slices)

    def readme_bytes() -> str:
        head = anon.fetch(f"{PUBLIC}/README.md", slice_=slice(0, 10))
        expect(head == b"# Header e", f"README[0:10] = {head!r}")
        one = anon.fetch(f"{PUBLIC}/README.md", slice_=1)
        expect(len(one) == 1 and ord(one) == readme[1], f"README[1] = {one!r}")
        whole = anon.get(f"{PUBLIC}/README.md")[:]
        expect(whole == readme, f"README[:] = {whole!r}")
        mid = anon.get(f"{PUBLIC}/README.md")[17:43]
        expect(mid == readme[17:43], f"README[17:43] = {mid!r}")
        return repr(head)

    rep.run("bytes of README.md", readme_bytes)

    def chunks() -> str:
        for relpath, nchunk in (("ds-1d.b2nd", 0), ("ds-1d.b2nd", 3), ("dir1/ds-3d.b2nd", 1)):
            raw = anon.get_chunk(f"{PUBLIC}/{relpath}", nchunk)
            stored = local_nd[relpath].schunk.get_chunk(nchunk)
            expect(raw == stored, f"chunk {nchunk} of {relpath} differs from the stored one")
        raw = anon.get_chunk(f"{PUBLIC}/ds-1d.b2nd", 3)
        values = np.frombuffer(blosc2.decompress2(raw), dtype=np.int64)
        expect(np.array_equal(values, np.arange(300, 400)), "chunk 3 values")
        return "ok"

    rep.run("raw chunks", chunks)

    dldir = workdir / "downloads"
    dldir.mkdir(parents=True, exist_ok=True)
    for relpath in [f for f in files if f.endswith((".b2nd", ".b2frame"))]:

        def download(relpath: str = relpath) -> str:
            target = dldir / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            got = anon.download(f"{PUBLIC}/{relpath}", target)
            expect(Path(got) == target, f"returned {got}, expected {target}")
            original = (examples / relpath).read_bytes()
            expect(target.read_bytes() == original, f"{relpath}: downloaded bytes differ")
            return f"{len(original)} bytes"

        rep.run(f"download {relpath}", download)

    def download_readme() -> str:
        target = dldir / "readme-dir"
        target.mkdir(exist_ok=True)
        # Client.download needs a PurePosixPath here: it takes ``dataset.name``
        # when localpath is a directory (a plain str raises AttributeError).
        got = anon.download(PurePosixPath(f"{PUBLIC}/README.md"), target)
        expect(Path(got) == target / "README.md", f"returned {got}")
        expect((target / "README.md").read_bytes() == readme, "README.md content differs")
        expect(not (target / "README.md.b2").exists(), "README.md.b2 left behind")
        return str(got)

    rep.run("download README.md (decompressed)", download_readme)

    def download_default() -> str:
        old = Path.cwd()
        os.chdir(workdir)
        try:
            got = anon.download(f"{PUBLIC}/dir1/ds-3d.b2nd")
            expect(
                PurePosixPath(got) == PurePosixPath("@public/dir1/ds-3d.b2nd"), f"returned {got}"
            )
            data = (workdir / "@public/dir1/ds-3d.b2nd").read_bytes()
            expect(data == (examples / "dir1/ds-3d.b2nd").read_bytes(), "bytes differ")
            got = anon.get(f"{PUBLIC}/README.md").download()
            expect(PurePosixPath(got) == PurePosixPath("@public/README.md"), f"returned {got}")
            expect((workdir / "@public/README.md").read_bytes() == readme, "README differs")
        finally:
            os.chdir(old)
        return str(got)

    rep.run("download to the default path", download_default)

    def url() -> str:
        ds = anon.get(f"{PUBLIC}/ds-1d.b2nd")
        got = ds.get_download_url()
        expect(got == f"{urlbase}/api/fetch/@public/ds-1d.b2nd", f"url {got}")
        with httpx.Client() as http:
            resp = http.get(got)
        expect(resp.status_code == 200, f"GET {got}: {resp.status_code}")
        expect(resp.content == (examples / "ds-1d.b2nd").read_bytes(), "url bytes differ")
        return got

    rep.run("download url", url)

    def errors() -> str:
        out = [
            expect_http_error(lambda: anon.get_list("@personal"), "Unauthorized"),
            expect_http_error(lambda: anon.get_info("@shared/x.b2nd"), "Unauthorized"),
            expect_http_error(lambda: anon.get_info(f"{PUBLIC}/nope.b2nd"), "Not Found"),
            expect_http_error(lambda: anon.get(f"{PUBLIC}/nope/README.md"), "Not Found"),
            expect_http_error(lambda: anon.get_list("@nosuchroot"), "Not Found"),
        ]
        if auth:
            bad = (auth[0], auth[1] + "-wrong")
            out.append(expect_http_error(lambda: cat2.Client(urlbase, bad), "Bad Request"))
        return "; ".join(out)

    rep.run("error statuses", errors)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the requested sections and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urlbase", required=True)
    parser.add_argument("--examples", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--user", help="EMAIL:PASSWORD of a regular user")
    parser.add_argument("--other", help="EMAIL:PASSWORD of a second regular user")
    parser.add_argument("sections", nargs="+", choices=["read", "write"])
    args = parser.parse_args(argv)
    examples = args.examples.resolve()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rep = Report()
    with contextlib.redirect_stdout(sys.stderr):
        if "read" in args.sections:
            read_checks(rep, args.urlbase, examples, workdir, split_auth(args.user))
        if "write" in args.sections:
            write_checks(
                rep,
                args.urlbase,
                examples,
                workdir,
                split_auth(args.user),
                split_auth(args.other),
            )
    versions = {
        "python": sys.version.split()[0],
        "caterva2": cat2.__version__,
        "caterva2_file": str(pathlib.Path(cat2.__file__).parent),
        "blosc2": blosc2.__version__,
        "numpy": np.__version__,
        "httpx": httpx.__version__,
    }
    print(json.dumps({"versions": versions, "checks": rep.checks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
