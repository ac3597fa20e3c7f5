"""Reading stored datasets: metadata, slices, chunks and whole contents."""

from __future__ import annotations

import itertools
import mimetypes
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common import b2files, b2meta, block_stream, chunk_plan
from ..common.errors import BadRequest, NotFound, PreconditionFailed, UnsupportedMediaType
from ..common.falcon_app import etag_matches, file_part
from ..common.slices import Key, is_whole, normalise_key
from ..common.stored_chunks import (
    Identity,
    Piece,
    file_identity,
    file_version,
    read_chunk,
    stored_piece,
)
from . import field_filters, hdf5_shells
from .local_roots import Location
from .root_interface import ArrayResult, BlockStream, Dataset, Download, WholeFile

# Selections from this size go as stored blocks to clients that take them: less work
# at both ends than a new frame (see `common.block_stream`).  Below it the frame won
# for thin selections, whose chunks each give one block, decompressed on one thread
# (a 2 MB plane of a 400 MB array: 6 ms as a frame, 12 ms as blocks; 8 MB: 25 / 18 ms).
BLOCKS_MIN = 8 << 20


def require_file(loc: Location) -> Path:
    """The stored file of a location; 404 if missing, 400 for a directory."""
    st = loc.found
    if st is None:
        try:
            st = os.stat(loc.path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("Not Found") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"{loc.logical} is a directory, not a dataset")
    if not stat.S_ISREG(st.st_mode):
        raise NotFound("Not Found")
    return loc.path


@dataclass
class OpenFile:
    """A container opened read-only, valid while its file keeps `ident`."""

    ident: Identity
    stat: os.stat_result
    obj: Any
    derived: dict[str, Any] = field(default_factory=dict)  # answers computed from `obj`

    def derive(self, name: str, compute: Callable[[Any], Any]) -> Any:
        """`compute(obj)`, computed once for this version of the file."""
        if name not in self.derived:
            self.derived[name] = compute(self.obj)
        return self.derived[name]

    @property
    def is_shell(self) -> bool:
        """Whether the container is an unfolded HDF5 dataset."""
        return self.derive("is_shell", hdf5_shells.is_shell)


class OpenContainers:
    """Small LRUs of open read-only containers, one per thread.

    Opening costs more than most small reads; other processes may replace or
    rewrite a file at any time, so each use stats it and reopens when its
    identity changed.  Sharing one container between threads is safe (Blosc2
    reads hold the GIL and NDArray slices take a lock of their own: 8 threads
    reading one shared array 36000 times got every value right), but readers of
    one array would then queue on that lock, releasing the GIL to wait for it.
    Each thread keeps its own instead (the servers' threads live long); the
    throughput measured was the same either way.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size  # per thread; each open container holds a file descriptor
        self._local = threading.local()

    def get(self, path: Path, st: os.stat_result | None = None) -> OpenFile:
        """The open container of `path` as it is now (`st`: its stat, just taken).

        Raises what `os.stat` and `blosc2.open` do.
        """
        key = os.fspath(path)
        if st is None:
            st = os.stat(key)
        ident = file_identity(st)
        entries: OrderedDict[str, OpenFile] | None = getattr(self._local, "entries", None)
        if entries is None:
            entries = self._local.entries = OrderedDict()
        entry = entries.get(key)
        if entry is not None and entry.ident == ident:
            entries.move_to_end(key)
            return entry
        entry = OpenFile(ident, st, blosc2.open(key, mode="r"))
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self.size:
            entries.popitem(last=False)
        return entry


CONTAINERS = OpenContainers()


def open_file(path: Path, st: os.stat_result | None = None) -> OpenFile:
    """The (shared) open container of a stored Blosc2 file; 400 when it is not one."""
    try:
        return CONTAINERS.get(path, st)
    except FileNotFoundError:
        raise NotFound("Not Found") from None
    except Exception as exc:
        raise BadRequest(f"{path.name} is not a readable Blosc2 file: {exc}") from None


def open_container(path: Path) -> Any:
    """Open a stored Blosc2 file read-only (shared, see `OpenContainers`); 400 when not one."""
    return open_file(path).obj


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


@contextmanager
def damaged_data(logical: str) -> Iterator[None]:
    """Blosc2 failing to decompress stored chunks (an upload of damaged bytes) becomes a 400."""
    try:
        yield
    except RuntimeError as exc:
        raise BadRequest(f"{logical} cannot be read: its stored data is damaged ({exc})") from None


def block_stream_of(
    layout: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    dtype: np.dtype,
    key: Key,
    get_chunk: Callable[[int], bytes] | None = None,
    get_piece: Callable[[int, list[int] | None], Piece] | None = None,
) -> BlockStream | None:
    """The selection `key` of an array as stored blocks; None when too small to gain.

    `layout`: the array's (shape, chunks, blocks).  Its chunks come from
    `get_piece(nchunk, blocks)` (a `stored_chunks.Piece`, whose size gives the
    stream a length), else from `get_chunk(nchunk)`, a stored chunk.
    """
    shape, chunks, blocks = (tuple(int(n) for n in dims) for dims in layout)
    if not shape or dtype.hasobject:
        return None
    items = normalise_key(key, shape)
    found = chunk_plan.selection_bounds(items, shape)
    if found is None:
        return None
    bounds, squeeze = found
    the_plan = chunk_plan.plan(shape, chunks, blocks, bounds, squeeze)
    if chunk_plan.nbytes(the_plan, dtype.itemsize) < BLOCKS_MIN:
        return None
    head = block_stream.header(shape, chunks, blocks, dtype, bounds, squeeze)
    if get_piece is not None:
        parts = block_stream.pieces_of(the_plan, get_piece)
        body = block_stream.piece_records(the_plan, parts)
        return BlockStream(itertools.chain([head], body), block_stream.length(head, parts))
    body = block_stream.records(the_plan, get_chunk)
    return BlockStream(itertools.chain([head], body), None)


def obj_shape(obj: Any) -> tuple[int, ...]:
    """The shape of a container; a byte stream counts its items."""
    if isinstance(obj, blosc2.NDArray):
        return obj.shape
    return (obj.nbytes // obj.typesize,)


def is_whole_read(shape: tuple[int, ...], key: Key, field: str | None) -> bool:
    """Whether a read is answered with the stored file as it is."""
    return field is None and is_whole(key, shape)


def filtered_result(obj: Any, key: Key, filter_: str) -> ArrayResult:
    """The rows matching `filter_`, then sliced by `key`."""
    if not isinstance(obj, blosc2.NDArray):
        raise BadRequest("Filters work only on structured arrays (with fields)")
    rows = field_filters.filter_rows(obj, filter_)
    items = normalise_key(key, rows.shape)
    return ArrayResult(np.asarray(rows[items] if items else rows))


def selection_result(obj: Any, key: Key, field: str | None) -> ArrayResult | bytes:
    """The part of a container that `key` (and `field`) select: values, or an SChunk frame."""
    if isinstance(obj, blosc2.NDArray):
        return ArrayResult(_array_selection(obj, key, field))
    if field:
        raise BadRequest("A byte stream has no fields")
    return _schunk_selection(obj, key)


def schunk_of(obj: Any) -> blosc2.SChunk:
    return obj.schunk if isinstance(obj, blosc2.NDArray) else obj


def version_tag(opened: OpenFile) -> str:
    """The ETag of this version of a stored Blosc2 container: its file's identity.

    A client reading a dataset chunk by chunk can then ask for chunks of one
    version only (`If-Match`).
    """
    return file_version(opened.stat)


def file_blocks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Stream part of a file from disk in blocks, without holding it in memory."""
    return file_part(open(path, "rb"), start, length)


class StoredDataset(Dataset):
    """A Blosc2 container stored in a local root (a regular file is stored as a `.b2` one)."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.logical = loc.logical

    def info(self) -> tuple[dict, str | None]:
        """The `/api/info` object of 3.3, and the ETag of the version it describes."""
        path = require_file(self.loc)
        try:
            opened = CONTAINERS.get(path, self.loc.found)
        except FileNotFoundError:
            raise NotFound("Not Found") from None
        except Exception:
            mtime = b2meta.iso_mtime(path.stat().st_mtime)
            return {"mtime": mtime, "error": "Unrecognized format"}, None
        meta = b2meta.container_meta(opened.obj, self.loc.stored_logical, opened.stat.st_mtime)
        return meta, version_tag(opened)

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> WholeFile | ArrayResult | BlockStream | bytes:
        """The stored file when whole, else the selection.

        `blocks`: the client takes big array selections as stored blocks (`BlockStream`).
        """
        loc = self.loc
        path = require_file(loc)
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")
        opened = open_file(path, loc.found)
        obj = opened.obj
        if filter_:
            with damaged_data(loc.logical):
                return filtered_result(obj, key, filter_)
        if blocks and field is None and isinstance(obj, blosc2.NDArray):
            schunk = obj.schunk  # `obj` lives as long as the stream: its schunk stays valid

            def piece(nchunk: int, blocks: list[int] | None) -> Piece:
                return stored_piece(schunk, nchunk, opened.ident, blocks)

            layout = (obj.shape, obj.chunks, obj.blocks)
            stream = block_stream_of(layout, obj.dtype, key, get_piece=piece)
            if stream is not None:
                return stream
        if is_whole_read(obj_shape(obj), key, field):
            return WholeFile(path)
        with damaged_data(loc.logical):
            return selection_result(obj, key, field)

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        """The `nchunk`-th compressed chunk, exactly as stored, and the version it is of."""
        path = require_file(self.loc)
        opened = open_file(path, self.loc.found)
        obj = opened.obj  # keep the container alive: its SChunk does not own the data
        tag = version_tag(opened)
        if if_match is not None and not etag_matches(if_match, tag):
            raise PreconditionFailed(f"{self.logical} changed: its version is now {tag}")
        schunk = schunk_of(obj)
        if not 0 <= nchunk < schunk.nchunks:
            raise BadRequest(
                f"Chunk {nchunk} out of range (the dataset has {schunk.nchunks} chunks)"
            )
        return read_chunk(schunk, nchunk, opened.ident), tag

    def download(self) -> Download:
        """The content: frames as stored, regular files decompressed."""
        path = require_file(self.loc)
        filename, ctype = download_name(self.loc)
        obj = open_container(path)  # validate before the 200 header goes out
        if path.name.endswith(".b2") and not path.name.endswith((".b2nd", ".b2frame")):
            if isinstance(obj, blosc2.NDArray):
                raise BadRequest(f"{self.logical} is not a compressed regular file")
            return Download(filename, ctype, b2files.decompressed_chunks(obj), obj.nbytes)
        return Download(filename, ctype, file_blocks(path), path.stat().st_size)


class RawHDF5Dataset(Dataset):
    """An HDF5 file stored as it is: described and downloaded, read only once unfolded."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.logical = loc.logical

    def info(self) -> tuple[dict, str | None]:
        st = require_file(self.loc).stat()
        return {"mtime": st.st_mtime, "size": st.st_size}, None

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> bytes:
        require_file(self.loc)
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")
        raise UnsupportedMediaType(
            f"{self.logical} is a raw HDF5 file: unfold it to read its datasets"
        )

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        require_file(self.loc)
        raise UnsupportedMediaType(f"{self.logical} is a raw HDF5 file: it has no Blosc2 chunks")

    def download(self) -> Download:
        path = require_file(self.loc)
        filename, ctype = download_name(self.loc)
        return Download(filename, ctype, file_blocks(path), path.stat().st_size)


def download_name(loc: Location) -> tuple[str, str | None]:
    """The file name a download of `loc` is offered as, and its content type if known."""
    filename = loc.relpath.rsplit("/", 1)[-1]
    return filename, mimetypes.guess_type(filename)[0]
