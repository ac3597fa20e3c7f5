"""Unfolded HDF5 datasets: empty `.b2nd` shells whose data is read from the HDF5 file on access.

A shell carries the dataset's shape, dtype, Blosc2 layout and attributes, plus
vlmeta `_ftype="hdf5"` and `_dsetname` (the dataset's path in the file).  The
HDF5 file is found by walking up one directory per `/` in `_dsetname` and
adding `.h5` or `.hdf5` (compat 3.10); it must stay inside the shell's root.
Every h5py call runs in a worker process (`common.hdf5_workers`): a corrupt
file fails one request, never the subscriber.  Big results are written to a
temporary `.b2nd` chunk by chunk and streamed from there.
"""

from __future__ import annotations

import math
import mimetypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common import b2meta, hdf5_convert, hdf5_workers
from ..common.errors import BadRequest, NotFound, PreconditionFailed
from ..common.falcon_app import etag_matches, file_part
from ..common.hdf5_base import SHELL_FTYPE, HDF5Error
from ..common.paths import HDF5_SUFFIXES
from ..common.slices import Key, is_whole, normalise_key
from .local_roots import TMP_DIR, Location
from .root_interface import RESULT_CPARAMS, Dataset, Download, FetchResult, StreamedFile

INTERNAL_KEYS = ("_ftype", "_dsetname")
STREAM_LIMIT = 64 * 1024 * 1024  # selections bigger than this go through a temporary file

_pool: hdf5_workers.WorkerPool | None = None
_pool_lock = threading.Lock()


def pool() -> hdf5_workers.WorkerPool:
    """The subscriber's HDF5 worker processes (started on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = hdf5_workers.WorkerPool()
        return _pool


def close_pool() -> None:
    """Stop the worker processes; the next HDF5 read starts new ones."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def run(fn: Any, *args: Any) -> Any:
    """Run an HDF5 task in a worker; HDF5 problems become 400 with the reason."""
    try:
        return pool().run(fn, *args)
    except HDF5Error as exc:
        raise BadRequest(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise BadRequest(f"The HDF5 file cannot be read: {exc}") from None


# -- recognising shells ---------------------------------------------------------


def is_shell(obj: Any) -> bool:
    """Whether an opened Blosc2 container is an unfolded HDF5 dataset."""
    if not isinstance(obj, blosc2.NDArray):
        return False
    vlmeta = obj.schunk.vlmeta
    return "_ftype" in vlmeta and vlmeta["_ftype"] == SHELL_FTYPE


def _params(shell: blosc2.NDArray) -> dict[str, Any]:
    return {
        "shape": list(shell.shape),
        "chunks": list(shell.chunks),
        "blocks": list(shell.blocks),
        "dtype": b2meta.dtype_to_str(shell.dtype),
        "cparams": b2meta.cparams_dict(shell.schunk.cparams),
    }


@dataclass(frozen=True)
class Source:
    """Where a shell's data lives, and the layout it promises."""

    h5path: str
    dsetname: str
    params: dict[str, Any]


def source(loc: Location, shell: blosc2.NDArray) -> Source:
    """The HDF5 file and dataset behind a shell; 404 when the file is gone."""
    dsetname = shell.schunk.vlmeta["_dsetname"]
    if not isinstance(dsetname, str) or not dsetname.strip("/"):
        raise BadRequest(f"{loc.logical} names no HDF5 dataset")
    dsetname = dsetname.strip("/")
    base = loc.path.parent
    for _ in range(dsetname.count("/")):
        base = base.parent
    real_root = os.path.realpath(loc.rootdir)
    for suffix in HDF5_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        real = os.path.realpath(candidate)
        # A shell is a file anyone may upload: it must not reach outside its root.
        if not real.startswith(real_root + os.sep):
            raise BadRequest(f"{loc.logical} points to an HDF5 file outside its root")
        if os.path.isfile(real):
            return Source(real, dsetname, _params(shell))
    raise NotFound(f"The HDF5 file behind {loc.logical} is missing ({base.name}.h5)")


def _tmpdir(loc: Location) -> Path:
    """The state's temporary folder (same file system as the roots)."""
    statedir = loc.rootdir.parent.parent if loc.root == "@personal" else loc.rootdir.parent
    tmpdir = statedir / TMP_DIR
    tmpdir.mkdir(parents=True, exist_ok=True)
    return tmpdir


def _user_vlmeta(shell: blosc2.NDArray) -> dict[str, Any]:
    """The HDF5 attributes, without what marks the shell (a copy is a plain array)."""
    return {k: v for k, v in shell.schunk.vlmeta.getall().items() if k not in INTERNAL_KEYS}


# -- tasks run in the worker processes ------------------------------------------------


def _dataset(src: Source) -> tuple[Any, dict[str, Any]]:
    f = hdf5_workers.h5file(src.h5path)
    try:
        dset = f[src.dsetname]
    except KeyError:
        raise HDF5Error(f"the HDF5 file has no dataset {src.dsetname!r} any more") from None
    return dset, hdf5_convert.layout_for(dset, src.params)


def chunk_task(src: Source, nchunk: int) -> bytes:
    """Chunk `nchunk` in the shell's layout: as stored when Blosc2-filtered, else compressed."""
    dset, layout = _dataset(src)
    return hdf5_convert.read_chunk(dset, layout, nchunk)


def selection_task(src: Source, items: tuple, field: str | None) -> bytes:
    """A new NDArray frame with `dset[items]` (or one field of it)."""
    dset, layout = _dataset(src)
    values = np.asarray(hdf5_convert.read_region(dset, layout, items))
    if field is not None:
        names = values.dtype.names or ()
        if field not in names:
            raise HDF5Error(f"{field!r} is not a field of this dataset (fields: {list(names)})")
        values = np.ascontiguousarray(values[field])
    return blosc2.asarray(values, cparams=RESULT_CPARAMS).to_cframe()


def write_task(src: Source, items: tuple | None, vlmeta: dict[str, Any], out: str) -> None:
    """Write the whole dataset (items None, in the shell's layout) or a selection to `out`."""
    dset, layout = _dataset(src)
    if items is None:
        array = hdf5_convert.new_array(layout, out, vlmeta=vlmeta)
        hdf5_convert.fill_array(dset, layout, array)
        return
    shape = hdf5_convert.selection_shape(items, tuple(layout["shape"]))
    blosc2.remove_urlpath(out)
    array = blosc2.uninit(
        shape,
        dtype=b2meta.str_to_dtype(layout["dtype"]),
        urlpath=out,
        mode="w",
        cparams=RESULT_CPARAMS,
    )
    hdf5_convert.write_selection(dset, layout, items, array)


# -- the read hooks -------------------------------------------------------------------


def info(shell: blosc2.NDArray, urlpath: str, mtime: float | None) -> dict[str, Any]:
    """Info of a shell (compat 3.3 g): the empty array's, with no compressed bytes."""
    meta = b2meta.ndarray_meta(shell, urlpath, mtime)
    meta["schunk"]["cbytes"] = 0
    meta["schunk"]["cratio"] = 0.0
    return meta


def _checked_items(key: Key, shape: tuple[int, ...]) -> tuple[int | slice, ...]:
    items = normalise_key(key, shape)
    for item, size in zip(items, shape, strict=False):
        if isinstance(item, slice) and item.indices(size)[2] < 0:
            raise BadRequest("Invalid slice: HDF5-backed datasets support only positive steps")
    return items


def _streamed(loc: Location, src: Source, items: tuple | None, vlmeta: dict) -> StreamedFile:
    """A temporary `.b2nd` written by a worker, as blocks that delete it when done."""
    tmp = _tmpdir(loc) / f"{os.urandom(8).hex()}-{Path(loc.relpath).name}"
    try:
        run(write_task, src, items, vlmeta, str(tmp))
        f = open(tmp, "rb")
    finally:
        tmp.unlink(missing_ok=True)  # the open handle keeps the data until it is closed
    return StreamedFile(None, os.fstat(f.fileno()).st_size, file_part(f))


class ShellDataset(Dataset):
    """An unfolded HDF5 dataset: its shell's layout, its data read from the HDF5 file.

    Shells have no version of their own (their chunks come from a file whose
    changes they would miss): no ETag, and `If-Match` matches only `*`.
    """

    def __init__(self, loc: Location, shell: blosc2.NDArray, mtime: float | None) -> None:
        self.loc = loc
        self.logical = loc.logical
        self.shell = shell
        self.mtime = mtime

    def source(self) -> Source:
        """Where the data lives (the HDF5 file next to the shell)."""
        return source(self.loc, self.shell)

    def download_name(self) -> str:
        return self.loc.relpath.rsplit("/", 1)[-1]

    def info(self) -> tuple[dict, str | None]:
        return info(self.shell, self.loc.stored_logical, self.mtime), None

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        """A slice read from HDF5: a frame, or a stream for big selections."""
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")
        src = self.source()
        shape = tuple(self.shell.shape)
        if filter_:
            from .datasets import filtered_result  # datasets imports this module

            whole = blosc2.ndarray_from_cframe(run(selection_task, src, (), None))
            return filtered_result(whole, key, filter_)
        items = _checked_items(key, shape)
        size = math.prod(hdf5_convert.selection_shape(items, shape)) * self.shell.dtype.itemsize
        if field is None and size > STREAM_LIMIT:
            if is_whole(key, shape):  # in the shell's own layout: Blosc2 chunks go as stored
                return _streamed(self.loc, src, None, _user_vlmeta(self.shell))
            return _streamed(self.loc, src, items, {})
        return run(selection_task, src, items, field)

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        if if_match is not None and not etag_matches(if_match, ""):
            raise PreconditionFailed(f"{self.logical} has no version to match")
        nchunks = hdf5_convert.nchunks_of(self.shell.shape, self.shell.chunks)
        if not 0 <= nchunk < nchunks:
            raise BadRequest(f"Chunk {nchunk} out of range (the dataset has {nchunks} chunks)")
        return run(chunk_task, self.source(), nchunk), None

    def download(self) -> Download:
        """The whole dataset as a `.b2nd` frame, streamed."""
        filename = self.download_name()
        stream = _streamed(self.loc, self.source(), None, _user_vlmeta(self.shell))
        ctype = mimetypes.guess_type(filename)[0]
        return Download(filename, ctype, stream.blocks, stream.length)
