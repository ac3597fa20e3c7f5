"""Reading stored datasets: metadata, slices, chunks and whole contents."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common import b2files, b2meta
from ..common.errors import BadRequest, NotFound, UnsupportedMediaType
from ..common.paths import is_hdf5
from ..common.slices import Key, is_whole, normalise_key
from . import field_filters, hdf5_shells
from .local_roots import Location

# Results are built to be sent at once: fast compression beats a better ratio here.
RESULT_CPARAMS = blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=1, nthreads=1)
STREAM_BLOCK = 1024 * 1024


def require_file(loc: Location) -> Path:
    """The stored file of a location; 404 if missing, 400 for a directory."""
    if loc.path.is_dir():
        raise BadRequest(f"{loc.logical} is a directory, not a dataset")
    if not loc.path.is_file():
        raise NotFound("Not Found")
    return loc.path


def open_container(path: Path) -> Any:
    """Open a stored Blosc2 file read-only; 400 when it is not one."""
    try:
        return blosc2.open(str(path), mode="r")
    except Exception as exc:
        raise BadRequest(f"{path.name} is not a readable Blosc2 file: {exc}") from None


def info(loc: Location) -> dict:
    """The `/api/info` object of 3.3 for a stored file."""
    path = require_file(loc)
    mtime = path.stat().st_mtime
    if is_hdf5(path.name):
        return {"mtime": mtime, "size": path.stat().st_size}
    try:
        obj = blosc2.open(str(path), mode="r")
    except Exception:
        return {"mtime": b2meta.iso_mtime(mtime), "error": "Unrecognized format"}
    if hdf5_shells.is_shell(obj):
        return hdf5_shells.info(obj, loc.stored_logical, mtime)
    return b2meta.container_meta(obj, loc.stored_logical, mtime)


@dataclass
class WholeFile:
    """A fetch answered with the stored file itself."""

    path: Path


def frame_of_array(values: np.ndarray) -> bytes:
    """A new NDArray cframe holding `values`."""
    return blosc2.asarray(np.asarray(values), cparams=RESULT_CPARAMS).to_cframe()


def _array_selection(array: blosc2.NDArray, key: Key, field: str | None) -> np.ndarray:
    items = normalise_key(key, array.shape)
    if field is not None:
        names = array.dtype.names or ()
        if field not in names:
            raise BadRequest(f"{field!r} is not a field of this dataset (fields: {list(names)})")
        return np.asarray(array[items] if items else array[()])[field]
    return np.asarray(array[items] if items else array[()])


def item_range(key: Key, nitems: int) -> tuple[int, int]:
    """The [start, stop) item range a key selects in a byte stream."""
    if key is None:
        return 0, nitems
    if isinstance(key, tuple):
        if len(key) != 1:
            raise BadRequest("Invalid slice: a byte stream has one dimension")
        key = key[0]
    if isinstance(key, int):
        if not -nitems <= key < nitems:
            raise BadRequest(f"Invalid slice: index {key} out of range (size {nitems})")
        start = key % nitems
        stop, step = start + 1, 1
    else:
        start, stop, step = key.indices(nitems)
    if step != 1:
        raise BadRequest("Invalid slice: byte streams support only step 1")
    return start, max(start, stop)


def _schunk_selection(schunk: blosc2.SChunk, key: Key) -> bytes:
    start, stop = item_range(key, schunk.nbytes // schunk.typesize)
    data = schunk.get_slice(start, stop) if stop > start else b""
    cparams = blosc2.CParams(typesize=schunk.typesize, codec=blosc2.Codec.LZ4, clevel=1, nthreads=1)
    out = blosc2.SChunk(chunksize=max(len(data), schunk.typesize), cparams=cparams)
    if data:
        out.append_data(data)
    return out.to_cframe()


def fetch(loc: Location, key: Key, field: str | None, filter_: str | None) -> WholeFile | bytes:
    """What `/api/fetch` answers: the stored file when whole, else a new frame."""
    path = require_file(loc)
    if field and filter_:
        raise BadRequest("Cannot use 'field' and 'filter' together")
    if is_hdf5(path.name):
        raise UnsupportedMediaType(
            f"{loc.logical} is a raw HDF5 file: unfold it to read its datasets"
        )
    obj = open_container(path)
    if hdf5_shells.is_shell(obj):
        return hdf5_shells.fetch(loc, obj, key, field, filter_)
    if filter_:
        return filtered_frame(obj, key, filter_)
    if is_whole_read(obj_shape(obj), key, field):
        return WholeFile(path)
    return selection_frame(obj, key, field)


def obj_shape(obj: Any) -> tuple[int, ...]:
    """The shape of a container; a byte stream counts its items."""
    if isinstance(obj, blosc2.NDArray):
        return obj.shape
    return (obj.nbytes // obj.typesize,)


def is_whole_read(shape: tuple[int, ...], key: Key, field: str | None) -> bool:
    """Whether a read is answered with the stored file as it is."""
    return field is None and is_whole(key, shape)


def filtered_frame(obj: Any, key: Key, filter_: str) -> bytes:
    """A frame with the rows matching `filter_`, then sliced by `key`."""
    if not isinstance(obj, blosc2.NDArray):
        raise BadRequest("Filters work only on structured arrays (with fields)")
    rows = field_filters.filter_rows(obj, filter_)
    items = normalise_key(key, rows.shape)
    return frame_of_array(rows[items] if items else rows)


def selection_frame(obj: Any, key: Key, field: str | None) -> bytes:
    """A new frame with the part of a container that `key` (and `field`) select."""
    if isinstance(obj, blosc2.NDArray):
        return frame_of_array(_array_selection(obj, key, field))
    if field:
        raise BadRequest("A byte stream has no fields")
    return _schunk_selection(obj, key)


def schunk_of(obj: Any) -> blosc2.SChunk:
    return obj.schunk if isinstance(obj, blosc2.NDArray) else obj


def chunk(loc: Location, nchunk: int) -> bytes:
    """The `nchunk`-th compressed chunk, exactly as stored."""
    path = require_file(loc)
    if is_hdf5(path.name):
        raise UnsupportedMediaType(f"{loc.logical} is a raw HDF5 file: it has no Blosc2 chunks")
    obj = open_container(path)  # keep the container alive: its SChunk does not own the data
    if hdf5_shells.is_shell(obj):
        return hdf5_shells.chunk(loc, obj, nchunk)
    schunk = schunk_of(obj)
    if not 0 <= nchunk < schunk.nchunks:
        raise BadRequest(f"Chunk {nchunk} out of range (the dataset has {schunk.nchunks} chunks)")
    return schunk.get_chunk(nchunk)


def file_blocks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Stream part of a file from disk in blocks, without holding it in memory."""
    with open(path, "rb") as f:
        f.seek(start)
        left = os.path.getsize(path) - start if length is None else length
        while left > 0:
            block = f.read(min(STREAM_BLOCK, left))
            if not block:
                break
            left -= len(block)
            yield block


@dataclass
class Download:
    """The content `/api/download` streams."""

    filename: str
    content_type: str | None
    blocks: Iterator[bytes]
    length: int | None


def download(loc: Location) -> Download:
    """The content of a dataset: frames as stored, regular files decompressed."""
    path = require_file(loc)
    filename = loc.relpath.rsplit("/", 1)[-1]
    ctype = mimetypes.guess_type(filename)[0]
    if path.name.endswith(".b2") and not path.name.endswith((".b2nd", ".b2frame")):
        schunk = open_container(path)
        if isinstance(schunk, blosc2.NDArray):
            raise BadRequest(f"{loc.logical} is not a compressed regular file")
        return Download(filename, ctype, b2files.decompressed_chunks(schunk), schunk.nbytes)
    if not is_hdf5(path.name):
        obj = open_container(path)  # validate before the 200 header goes out
        if hdf5_shells.is_shell(obj):
            return hdf5_shells.download(loc, obj)
    return Download(filename, ctype, file_blocks(path), path.stat().st_size)
