"""`cat2import FILE.h5 DIR` and `cat2export DIR FILE.h5`: HDF5 ⇄ a tree of Blosc2 files.

Import writes every dataset as `DIR/<group path>/<name>.b2nd` (attributes as
vlmeta, and exactly in the `hdf5` metalayer), every group as a directory with
a `!_attrs_.json.b2` holding its attributes and soft links.  Export reads such
a tree (or any tree of `.b2nd` files) back into an HDF5 file whose datasets
use the Blosc2 filter.  Both copy one chunk at a time, so files larger than
memory convert; errors go to stderr and make the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODEC_NAMES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 4: "zlib", 5: "zstd"}
INTERNAL_VLMETA = ("_ftype", "_dsetname")


@dataclass
class Report:
    """What went wrong, said as it happens."""

    prog: str
    problems: int = 0
    notes: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.problems += 1
        print(f"{self.prog}: error: {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(f"{self.prog}: {message}", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(total: int, desc: str, quiet: bool):
    """A tqdm byte counter on stderr (none when quiet, not a terminal, or tqdm is missing)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or quiet:
        yield lambda n: None
        return
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=None) as bar:
        yield bar.update


# -- import ------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def import_file(h5path: Path, outdir: Path, report: Report, quiet: bool = False) -> None:
    """Convert every dataset and group of an HDF5 file into a tree below `outdir`."""
    from .common import hdf5_attrs as ha
    from .common import hdf5_base as hb
    from .common import hdf5_convert as hc

    with hb.open_h5(h5path) as f:
        groups: dict[str, tuple[Any, dict[str, str]]] = {}
        datasets = []
        for node in hc.walk(f):
            parent, _, name = node.path.rpartition("/")
            if node.kind == "group":
                groups[node.path] = (node.obj, {})
            elif node.kind in ("softlink", "dangling") or (node.target and node.kind == "dataset"):
                groups[parent][1][name] = node.target  # kept as a link, not a copy
            elif node.kind == "dataset":
                datasets.append(node)
            else:
                report.error(f"/{node.path}: {node.reason}")
        for path, (group, links) in groups.items():
            attrs = ha.read_attrs(group)
            for problem in attrs.problems:
                report.error(f"/{path}: {problem}")
            target = outdir / path / hb.GROUP_ATTRS_NAME
            target.parent.mkdir(parents=True, exist_ok=True)
            ha.write_group_file(target, attrs, links)
        total = sum(_nbytes(node.obj) for node in datasets)
        with progress_bar(total, h5path.name, quiet) as update:
            for node in datasets:
                _import_dataset(node, outdir / f"{node.path}.b2nd", report, update)


def _nbytes(dset: Any) -> int:
    try:
        return int(dset.size or 0) * dset.dtype.itemsize
    except Exception:
        return 0


def _import_dataset(node: Any, target: Path, report: Report, update: Callable) -> None:
    from .common import hdf5_attrs as ha
    from .common import hdf5_base as hb
    from .common import hdf5_convert as hc

    try:
        layout = hc.dataset_layout(node.obj)
    except hb.HDF5Error as exc:
        report.error(f"/{node.path}: {exc}")
        return
    attrs = ha.read_attrs(node.obj)
    for problem in attrs.problems:
        report.error(f"/{node.path}: {problem}")
    tmp = _tmp_name(target)
    try:
        meta = {hb.META_KEY: ha.dataset_meta(node.obj, attrs)}
        array = hc.new_array(layout, tmp, vlmeta=attrs.plain, meta=meta)
        hc.fill_array(node.obj, layout, array, update)
        del array
        os.replace(tmp, target)
    except Exception as exc:  # h5py raises many kinds on damaged data
        report.error(f"/{node.path}: cannot be converted: {exc}")
    finally:
        tmp.unlink(missing_ok=True)


# -- export ------------------------------------------------------------------------


def _blosc2_filter(cparams: Any) -> dict[str, Any]:
    """hdf5plugin arguments for the Blosc2 filter with (about) the same settings."""
    import hdf5plugin

    codec = int(getattr(cparams.codec, "value", cparams.codec))
    filters = [int(getattr(f, "value", f)) for f in cparams.filters]
    shuffle = hdf5plugin.Blosc2.NOFILTER
    if 2 in filters:
        shuffle = hdf5plugin.Blosc2.BITSHUFFLE
    elif 1 in filters:
        shuffle = hdf5plugin.Blosc2.SHUFFLE
    cname = CODEC_NAMES.get(codec, "zstd")
    return dict(hdf5plugin.Blosc2(cname=cname, clevel=cparams.clevel, filters=shuffle))


def _h5_chunks(chunks: tuple[int, ...], shape: tuple[int, ...], maxshape: Any) -> tuple:
    """HDF5 chunk shape: Blosc2's, within the maximum shape HDF5 allows."""
    out = []
    for axis, (c, s) in enumerate(zip(chunks, shape, strict=True)):
        limit = maxshape[axis] if maxshape is not None else s
        out.append(max(1, min(c, limit) if limit is not None else c))
    return tuple(out)


def _as_h5(values: Any, h5dtype: Any) -> Any:
    """Values with their dtype's HDF5 flavour (charset, enum): HDF5 converts no other way."""
    if values.dtype == h5dtype and values.dtype.metadata != h5dtype.metadata:
        return values.view(h5dtype)  # same bytes; `astype` would drop the metadata
    return values.astype(h5dtype, copy=False)


def export_dataset(array: Any, group: Any, name: str, update: Callable[[int], object]) -> list[str]:
    """Write a Blosc2 array as dataset `name` of `group`, chunk by chunk, with the Blosc2 filter.

    Returns the attributes that could not be written.
    """
    import numpy as np

    from .common import hdf5_attrs as ha
    from .common import hdf5_base as hb
    from .common import hdf5_convert as hc
    from .common.b2meta import str_to_dtype

    h5py = hb.h5py_module()
    schunk = array.schunk
    meta = schunk.meta[hb.META_KEY] if hb.META_KEY in schunk.meta else {}
    dtype = str_to_dtype(meta["dtype"]) if meta.get("dtype") else np.dtype(array.dtype)
    if dtype.kind == "U":
        raise hb.Unsupported(f"{dtype} (Unicode) has no HDF5 type; store it as bytes")
    hb.check_dtype(dtype, h5py)
    _base, subshape = hb.split_dtype(dtype)
    h5dtype = ha.h5_dtype(dtype, meta, h5py)
    shape = tuple(array.shape)
    h5shape = shape[: len(shape) - len(subshape)]
    if meta.get("null"):
        dset = group.create_dataset(name, data=h5py.Empty(h5dtype))
    elif not h5shape or 0 in h5shape:  # scalars and empty arrays: nothing to chunk
        data = _as_h5(np.asarray(array[()]), h5dtype)
        dset = group.create_dataset(name, data=data, dtype=h5dtype)
    else:
        maxshape = meta.get("maxshape")
        if maxshape is None or len(maxshape) != len(h5shape):
            maxshape = None
        elif any(m is not None and m < s for m, s in zip(maxshape, h5shape, strict=True)):
            maxshape = None
        chunks = _h5_chunks(tuple(array.chunks)[: len(h5shape)], h5shape, maxshape)
        dset = group.create_dataset(
            name,
            shape=h5shape,
            dtype=h5dtype,
            chunks=chunks,
            maxshape=tuple(maxshape) if maxshape else None,
            **_blosc2_filter(schunk.cparams),
        )
        # Whole HDF5 chunks at a time: each lands in one chunk, compressed once.
        grid = {"shape": list(shape), "chunks": [*chunks, *subshape]}
        grid["nchunks"] = hc.nchunks_of(grid["shape"], grid["chunks"])
        for nchunk in range(grid["nchunks"]):
            region = hc.chunk_slices(grid, nchunk)
            values = np.asarray(array[region])
            if not subshape:
                values = _as_h5(values, h5dtype)
            hc.write_region(dset, region[: len(h5shape)], values)
            update(values.nbytes)
    vlmeta = {k: v for k, v in schunk.vlmeta.getall().items() if k not in INTERNAL_VLMETA}
    return ha.write_attrs(dset, meta.get("attrs", {}), vlmeta)


def export_tree(srcdir: Path, h5path: Path, report: Report, quiet: bool = False) -> None:
    """Write the `.b2nd` files and groups below `srcdir` into a new HDF5 file."""
    import blosc2

    from .common import hdf5_attrs as ha
    from .common import hdf5_base as hb

    h5py = hb.h5py_module()
    arrays, groups, links = [], [], []
    for dirpath, dirnames, filenames in os.walk(srcdir):
        dirnames.sort()
        base = Path(dirpath).relative_to(srcdir).as_posix()
        prefix = "" if base == "." else base
        groups.append(prefix)
        for fname in sorted(filenames):
            rel = f"{prefix}/{fname}" if prefix else fname
            if fname == hb.GROUP_ATTRS_NAME:
                continue
            if fname.endswith(".b2nd") and not fname.startswith("."):
                arrays.append(rel)
            else:
                report.note(f"{rel}: not a Blosc2 array, left out")
    tmp = _tmp_name(h5path)
    try:
        with h5py.File(tmp, "w") as f:
            for prefix in groups:
                group = f.require_group(prefix) if prefix else f
                attrs_file = srcdir / prefix / hb.GROUP_ATTRS_NAME
                if attrs_file.is_file():
                    try:
                        plain, typed, group_links = ha.read_group_file(attrs_file)
                    except Exception as exc:
                        report.error(f"{prefix or '/'}: attributes not restored: {exc}")
                        continue
                    for problem in ha.write_attrs(group, typed, plain):
                        report.error(f"{prefix or '/'}: {problem}")
                    links.extend((group, name, target) for name, target in group_links.items())
            opened = []
            for rel in arrays:
                try:
                    array = blosc2.open(str(srcdir / rel), mode="r")
                except Exception as exc:
                    report.error(f"{rel}: not a readable Blosc2 file: {exc}")
                    continue
                if not isinstance(array, blosc2.NDArray):
                    report.note(f"{rel}: not a Blosc2 NDArray, left out")
                    continue
                opened.append((rel, array))
            total = sum(int(a.nbytes) for _rel, a in opened)
            with progress_bar(total, h5path.name, quiet) as update:
                for rel, array in opened:
                    parent, _, name = rel[: -len(".b2nd")].rpartition("/")
                    group = f.require_group(parent) if parent else f
                    try:
                        for problem in export_dataset(array, group, name, update):
                            report.error(f"{rel}: {problem}")
                    except Exception as exc:
                        report.error(f"{rel}: cannot be exported: {exc}")
                        if name in group:
                            del group[name]
            for group, name, target in links:
                if name not in group:
                    group[name] = h5py.SoftLink(target)
        os.replace(tmp, h5path)
    finally:
        tmp.unlink(missing_ok=True)


# -- command lines -----------------------------------------------------------------


def _main(prog: str, argv: list[str] | None, work: Callable[..., None], help_: dict) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=help_["description"])
    parser.add_argument("src", help=help_["src"])
    parser.add_argument("dst", help=help_["dst"])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    report = Report(prog)
    try:
        work(Path(args.src), Path(args.dst), report, args.quiet)
    except FileNotFoundError as exc:
        report.error(f"{exc.filename or args.src}: no such file or directory")
    except KeyboardInterrupt:
        report.error("interrupted")
        return 130
    except Exception as exc:  # HDF5Error, OSError...: say it plainly, no traceback
        report.error(str(exc))
    if report.problems:
        report.note(f"{report.problems} problem(s); see above")
        return 1
    return 0


def _import(src: Path, dst: Path, report: Report, quiet: bool) -> None:
    if not src.is_file():
        raise FileNotFoundError(2, "not found", str(src))
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"{dst} exists and is not a directory")
    dst.mkdir(parents=True, exist_ok=True)
    import_file(src, dst, report, quiet)


def _export(src: Path, dst: Path, report: Report, quiet: bool) -> None:
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a directory")
    export_tree(src, dst, report, quiet)


def import_main(argv: list[str] | None = None) -> int:
    """Entry point of `cat2import`."""
    return _main(
        "cat2import",
        argv,
        _import,
        {
            "description": "Convert an HDF5 file into a directory tree of Blosc2 files",
            "src": "HDF5 file to read",
            "dst": "directory to write (created if needed)",
        },
    )


def export_main(argv: list[str] | None = None) -> int:
    """Entry point of `cat2export`."""
    return _main(
        "cat2export",
        argv,
        _export,
        {
            "description": "Convert a directory tree of Blosc2 files into an HDF5 file",
            "src": "directory to read (.b2nd files and !_attrs_.json.b2 group attributes)",
            "dst": "HDF5 file to write (replaced if it exists)",
        },
    )


if __name__ == "__main__":
    # `python -m caterva2.hdf5_tools import|export SRC DST`
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("import", "export"):
        sys.exit("usage: python -m caterva2.hdf5_tools import|export SRC DST")
    sys.exit((import_main if command == "import" else export_main)(sys.argv[2:]))
