"""HDF5 ⇄ Blosc2: types, attributes, the Blosc2 layout of an HDF5 dataset and chunk-wise copies.

Used by the publisher (HDF5 files as roots), the subscriber (unfolded HDF5
files) and the `cat2import`/`cat2export` tools.  h5py and hdf5plugin are
imported on first use only: a client that never converts does not need them.

A dataset's *layout* is a plain dict (it crosses process boundaries):
`shape`, `chunks`, `blocks` (of the Blosc2 array), `dtype` (NumPy's str),
`cparams` (as in the info JSON), `h5ndim` (axes of the HDF5 dataset; a
sub-array dtype `('<f8', (4,))` adds its axes to the Blosc2 shape), `null`
(null dataspace), `direct` (Blosc2 is the only HDF5 filter: chunks may be
served as stored) and `nchunks`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import blosc2
import numpy as np

from .b2meta import cparams_dict, cparams_from_dict, dtype_to_str, str_to_dtype
from .chunk_plan import chunk_coords, chunk_region
from .hdf5_attrs import Attrs
from .hdf5_base import (
    BLOSC2_FILTER_ID,
    HEADER_SPECIAL_UNINIT,
    MAX_DIMS,
    HDF5Error,
    Unsupported,
    check_dtype,
    h5py_module,
    split_dtype,
)

# -- layout -----------------------------------------------------------------------


def nchunks_of(shape: tuple[int, ...] | list[int], chunks: tuple[int, ...] | list[int]) -> int:
    """How many chunks a Blosc2 array of this shape and chunk shape has."""
    return math.prod(-(-s // c) if c else 0 for s, c in zip(shape, chunks, strict=True))


def _check_nchunk(layout: dict[str, Any], nchunk: int) -> None:
    if not 0 <= nchunk < layout["nchunks"]:
        raise IndexError(f"chunk {nchunk} out of range (0..{layout['nchunks'] - 1})")


def chunk_slices(layout: dict[str, Any], nchunk: int) -> tuple[slice, ...]:
    """The region of the Blosc2 array that chunk `nchunk` covers (clipped to the shape)."""
    _check_nchunk(layout, nchunk)
    return chunk_region(layout["shape"], layout["chunks"], nchunk)


def _filters(dset: Any) -> list[int]:
    dcpl = dset.id.get_create_plist()
    return [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]


def _first_stored_chunk(dset: Any) -> Any | None:
    """The storage info of the first allocated chunk, or None."""
    try:
        if dset.id.get_num_chunks() == 0:
            return None
        return dset.id.get_chunk_info(0)
    except (OSError, RuntimeError, ValueError):
        return None


def _frame_params(raw: bytes, chunks: tuple[int, ...], itemsize: int) -> tuple | None:
    """(blocks, cparams) of the Blosc2 frame the HDF5 Blosc2 filter stored, when it fits."""
    try:
        schunk = blosc2.schunk_from_cframe(raw, copy=True)
    except Exception:
        return None
    if schunk.nchunks != 1 or schunk.typesize != min(itemsize, 255):
        return None
    blocksize = schunk.cparams.blocksize
    if "b2nd" in schunk.meta:
        try:
            inner = blosc2.ndarray_from_cframe(raw, copy=True)
        except Exception:
            return None
        if tuple(inner.chunks) != chunks:
            return None
        blocks = tuple(inner.blocks)
    else:
        # A plain frame: its blocks are byte runs, which match N-d blocks spanning
        # the trailing axes in full, when they divide the chunk exactly.
        row = math.prod(chunks[1:]) * itemsize
        if blocksize == math.prod(chunks) * itemsize:
            blocks = chunks
        elif row and blocksize % row == 0 and chunks[0] % (blocksize // row) == 0:
            blocks = (blocksize // row, *chunks[1:])
        else:
            return None
    return blocks, cparams_dict(schunk.cparams)


def dataset_layout(dset: Any) -> dict[str, Any]:
    """The Blosc2 layout (see the module doc) of an HDF5 dataset; `Unsupported` if none."""
    h5py = h5py_module()
    dcpl = dset.id.get_create_plist()
    if dset.is_virtual:
        raise Unsupported("virtual datasets (data mapped from other files) are not supported")
    if dcpl.get_external_count():
        raise Unsupported("datasets stored in external raw files are not supported")
    check_dtype(dset.dtype, h5py)
    base, subshape = split_dtype(dset.dtype)
    null = dset.shape is None
    h5shape = () if null else tuple(dset.shape)
    shape = h5shape + subshape
    if len(shape) > MAX_DIMS:
        raise Unsupported(f"{len(shape)} dimensions (Blosc2 supports at most {MAX_DIMS})")
    itemsize = base.itemsize
    h5chunks = tuple(dset.chunks) if dset.chunks else None
    chunks = h5chunks + subshape if h5chunks else None
    blocks = cparams = None
    direct = False
    if chunks and _filters(dset) == [BLOSC2_FILTER_ID]:
        info = _first_stored_chunk(dset)
        if info is not None and info.filter_mask == 0:
            found = _frame_params(dset.id.read_direct_chunk(info.chunk_offset)[1], chunks, itemsize)
            if found is not None:
                blocks, cparams = found
                direct = True
    if not direct:
        params = blosc2.CParams(typesize=itemsize, nthreads=1)
        if chunks is not None and 0 in shape:
            chunks = None  # let Blosc2 pick for a zero-size array
        probe = blosc2.uninit(shape, dtype=base, chunks=chunks, cparams=params)
        chunks, blocks = tuple(probe.chunks), tuple(probe.blocks)
        cparams = cparams_dict(probe.schunk.cparams)
        del probe
    cparams["nthreads"] = 1
    return {
        "shape": list(shape),
        "chunks": list(chunks),
        "blocks": list(blocks),
        "dtype": dtype_to_str(base),
        "cparams": cparams,
        "h5ndim": len(h5shape),
        "null": null,
        "direct": direct,
        "nchunks": nchunks_of(shape, chunks),
    }


def layout_for(dset: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The layout of `dset` with the shape, chunks, blocks, dtype and cparams given in `params`.

    For arrays made earlier from the dataset (unfolded shells): an `HDF5Error`
    tells that the dataset no longer has that shape or dtype.
    """
    base, subshape = split_dtype(dset.dtype)
    null = dset.shape is None
    h5shape = () if null else tuple(dset.shape)
    if list(h5shape + subshape) != list(params["shape"]) or dtype_to_str(base) != params["dtype"]:
        raise HDF5Error(f"{dset.name} no longer has the shape and type it had when it was unfolded")
    h5chunks = tuple(dset.chunks) + subshape if dset.chunks else None
    direct = h5chunks == tuple(params["chunks"]) and _filters(dset) == [BLOSC2_FILTER_ID]
    return {
        **params,
        "h5ndim": len(h5shape),
        "null": null,
        "direct": direct,
        "nchunks": nchunks_of(params["shape"], params["chunks"]),
    }


def new_array(
    layout: dict[str, Any],
    urlpath: str | os.PathLike | None = None,
    vlmeta: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> blosc2.NDArray:
    """An uninitialised Blosc2 array with this layout (chunks to be filled one by one)."""
    kwargs: dict[str, Any] = {"meta": meta} if meta else {}
    if urlpath is not None:
        blosc2.remove_urlpath(os.fspath(urlpath))
        kwargs.update(urlpath=os.fspath(urlpath), mode="w", contiguous=True)
    array = blosc2.uninit(
        tuple(layout["shape"]),
        dtype=str_to_dtype(layout["dtype"]),
        chunks=tuple(layout["chunks"]),
        blocks=tuple(layout["blocks"]),
        cparams=cparams_from_dict(layout["cparams"], nthreads=1),
        **kwargs,
    )
    for key, value in (vlmeta or {}).items():
        array.vlmeta[key] = value
    return array


def is_uninit_chunk(lazychunk: bytes) -> bool:
    """Whether a (lazy) chunk is a placeholder no data was written into yet."""
    return len(lazychunk) >= 32 and (lazychunk[31] >> 4) & 7 == HEADER_SPECIAL_UNINIT


# -- chunks -------------------------------------------------------------------------


def read_region(dset: Any, layout: dict[str, Any], region: tuple[slice | int, ...]) -> np.ndarray:
    """Values of a region of the Blosc2 view of `dset` (sub-array axes included)."""
    if layout["null"]:
        return np.zeros((), dtype=str_to_dtype(layout["dtype"]))
    h5ndim = layout["h5ndim"]
    outer, inner = region[:h5ndim], region[h5ndim:]
    values = np.asarray(dset[outer] if h5ndim else dset[()])
    return values[(Ellipsis, *inner)] if inner else values


def write_region(dset: Any, region: tuple[slice, ...], values: np.ndarray) -> None:
    """`dset[region] = values`, also for sub-array dtypes (which NumPy cannot hold whole)."""
    if dset.dtype.subdtype is None:
        dset[region] = values
        return
    h5py = h5py_module()
    start = tuple(s.start for s in region)
    count = tuple(s.stop - s.start for s in region)
    if not count:  # a scalar dataspace
        dset[()] = values
        return
    fspace = dset.id.get_space()
    fspace.select_hyperslab(start, count)
    mspace = h5py.h5s.create_simple(count)
    data = np.ascontiguousarray(values, dtype=dset.dtype.subdtype[0])
    dset.id.write(mspace, fspace, data, mtype=h5py.h5t.py_create(dset.dtype))


def compress_chunk(values: np.ndarray, layout: dict[str, Any]) -> bytes:
    """Compress the values of one chunk (placed at its origin, padded) as a Blosc2 chunk."""
    chunks = tuple(layout["chunks"])
    dtype = str_to_dtype(layout["dtype"])
    if values.shape != chunks:
        padded = np.zeros(chunks, dtype=dtype)
        padded[tuple(slice(0, n) for n in values.shape)] = values
        values = padded
    array = blosc2.asarray(
        np.ascontiguousarray(values, dtype=dtype),
        chunks=chunks or None,  # Blosc2 wants None, not (), for a 0-d array
        blocks=tuple(layout["blocks"]) or None,
        cparams=cparams_from_dict(layout["cparams"], nthreads=1),
    )
    return array.schunk.get_chunk(0)  # `array` stays alive while its SChunk is used


def _header_fits(chunk: bytes, layout: dict[str, Any]) -> bool:
    """Whether a Blosc2 chunk has the size and block size this layout expects."""
    if len(chunk) < 32:
        return False
    itemsize = str_to_dtype(layout["dtype"]).itemsize
    ext = math.prod(-(-c // b) * b for c, b in zip(layout["chunks"], layout["blocks"], strict=True))
    nbytes = int.from_bytes(chunk[4:8], "little")
    blocksize = int.from_bytes(chunk[8:12], "little")
    return nbytes == ext * itemsize and blocksize == math.prod(layout["blocks"]) * itemsize


def direct_chunk(dset: Any, layout: dict[str, Any], nchunk: int) -> bytes | None:
    """The Blosc2 chunk stored in HDF5 chunk `nchunk`, untouched; None if it cannot be used."""
    _check_nchunk(layout, nchunk)
    coords = chunk_coords(layout["shape"], layout["chunks"], nchunk)[: layout["h5ndim"]]
    offset = tuple(i * c for i, c in zip(coords, layout["chunks"], strict=False))
    info = dset.id.get_chunk_info_by_coord(offset)
    if info.byte_offset is None or info.filter_mask != 0:
        return None  # unallocated (fill value) or stored unfiltered
    raw = dset.id.read_direct_chunk(offset)[1]
    try:
        schunk = blosc2.schunk_from_cframe(raw, copy=True)
    except Exception:
        return None
    if schunk.nchunks != 1:
        return None
    chunk = schunk.get_chunk(0)
    return chunk if _header_fits(chunk, layout) else None


def read_chunk(dset: Any, layout: dict[str, Any], nchunk: int) -> bytes:
    """Chunk `nchunk` of the Blosc2 view of `dset`: as stored when possible, else compressed."""
    if layout["direct"]:
        chunk = direct_chunk(dset, layout, nchunk)
        if chunk is not None:
            return chunk
    return compress_chunk(read_region(dset, layout, chunk_slices(layout, nchunk)), layout)


def fill_array(
    dset: Any,
    layout: dict[str, Any],
    array: blosc2.NDArray,
    progress: Callable[[int], object] | None = None,
    only_missing: bool = False,
) -> None:
    """Write every chunk of `dset` into `array` (one chunk in memory at a time)."""
    schunk = array.schunk
    itemsize = str_to_dtype(layout["dtype"]).itemsize
    for nchunk in range(layout["nchunks"]):
        if only_missing and not is_uninit_chunk(schunk.get_lazychunk(nchunk)):
            continue
        schunk.update_chunk(nchunk, read_chunk(dset, layout, nchunk))
        if progress is not None:
            region = chunk_slices(layout, nchunk)
            progress(math.prod(s.stop - s.start for s in region) * itemsize)


def selection_shape(items: tuple[int | slice, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of `array[items]` (integer items drop their axis)."""
    out = []
    for axis, size in enumerate(shape):
        item = items[axis] if axis < len(items) else slice(None)
        if isinstance(item, slice):
            out.append(len(range(*item.indices(size))))
    return tuple(out)


def write_selection(
    dset: Any,
    layout: dict[str, Any],
    items: tuple[int | slice, ...],
    array: blosc2.NDArray,
    progress: Callable[[int], object] | None = None,
) -> None:
    """Write `dset[items]` into `array` (shaped like the selection), one chunk at a time."""
    shape = tuple(layout["shape"])
    full = tuple(items[a] if a < len(items) else slice(None) for a in range(len(shape)))
    steps = [
        i.indices(n) if isinstance(i, slice) else None for i, n in zip(full, shape, strict=True)
    ]
    out_layout = {
        "shape": list(array.shape),
        "chunks": list(array.chunks),
        "nchunks": nchunks_of(array.shape, array.chunks),
    }
    for nchunk in range(out_layout["nchunks"]):
        region = chunk_slices(out_layout, nchunk)
        source: list[int | slice] = []
        out_axis = 0
        for item, step in zip(full, steps, strict=True):
            if step is None:
                source.append(item)
                continue
            start, _stop, stride = step
            r = region[out_axis]
            source.append(slice(start + r.start * stride, start + r.stop * stride, stride))
            out_axis += 1
        values = read_region(dset, layout, tuple(source))
        array[region] = values
        if progress is not None:
            progress(values.nbytes)


# -- walking a file --------------------------------------------------------------


@dataclass
class Node:
    """One thing found walking an HDF5 file; `path` has no leading slash ('' = root group).

    `kind` is `group` or `dataset` (soft links to datasets included, `target`
    set); or, for what holds no servable data, `softlink` (to a group: not
    followed, so no cycles), `dangling` (soft link to nothing), `external`
    (points into another file), `error` (an object that cannot be read),
    `badgroup` (a group that cannot be listed) or `cycle` (a group linked
    into itself); `reason` says which.
    """

    path: str
    kind: str
    obj: Any = None
    target: str | None = None
    reason: str | None = None

    @property
    def has_data(self) -> bool:
        """Whether this names a dataset, servable or not."""
        return self.kind in ("dataset", "dangling", "external", "error")


def walk(f: Any) -> Iterator[Node]:
    """Groups and datasets reachable through group membership, soft links to datasets included."""
    h5py = h5py_module()
    seen: set[int] = set()

    def visit(group: Any, prefix: str) -> Iterator[Node]:
        seen.add(hash(group.id))
        yield Node(prefix, "group", group)
        try:
            names = list(group.keys())
        except Exception as exc:
            yield Node(prefix, "badgroup", reason=f"the group cannot be listed: {exc}")
            return
        for name in names:
            path = f"{prefix}/{name}" if prefix else name
            try:
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    where = f"{link.filename}:{link.path}"
                    reason = f"external link to {where} points outside the file"
                    yield Node(path, "external", target=where, reason=reason)
                    continue
                soft = link.path if isinstance(link, h5py.SoftLink) else None
                obj = group.get(name)
            except Exception as exc:
                yield Node(path, "error", reason=f"cannot be read: {exc}")
                continue
            if obj is None:
                reason = f"dangling soft link to {soft}"
                yield Node(path, "dangling", target=soft, reason=reason)
            elif isinstance(obj, h5py.Dataset):
                yield Node(path, "dataset", obj, target=soft)
            elif isinstance(obj, h5py.Group):
                if soft is not None:
                    reason = f"soft link to group {soft} (not followed)"
                    yield Node(path, "softlink", target=soft, reason=reason)
                elif hash(obj.id) in seen:
                    yield Node(path, "cycle", reason="a group linked into itself (not followed)")
                else:
                    yield from visit(obj, path)
            # Committed datatypes hold no data: nothing to convert.

    yield from visit(f, "")


# -- fingerprints ------------------------------------------------------------------


def _hash_file_range(digest: Any, fd: int, offset: int, size: int) -> None:
    block = 8 * 1024 * 1024
    end = offset + size
    while offset < end:
        data = os.pread(fd, min(block, end - offset), offset)
        if not data:
            raise HDF5Error("its data lies past the end of the file (is the file truncated?)")
        digest.update(data)
        offset += len(data)


def fingerprint(dset: Any, layout: dict[str, Any], attrs: Attrs, fd: int) -> tuple[str, int]:
    """(digest, stored bytes) of a dataset: its metadata, attributes and every stored byte.

    Stored bytes are read raw from the file (no decompression), chunk by chunk,
    so the cost is one read of the dataset's storage.  Offsets alone would not
    do: HDF5 rewrites chunks of the same size in place.
    """
    h5py = h5py_module()
    digest = hashlib.sha1(usedforsecurity=False)
    dcpl = dset.id.get_create_plist()
    filters = [dcpl.get_filter(i)[:3] for i in range(dcpl.get_nfilters())]
    fill = np.asarray(dset.fillvalue).tobytes() if dset.fillvalue is not None else b""
    described = (layout, str(dset.dtype), dset.maxshape, filters, fill, attrs.plain)
    digest.update(repr(described).encode())
    digest.update(repr(sorted(attrs.typed.items())).encode())
    size = dset.id.get_storage_size()
    layout_kind = dcpl.get_layout()
    if layout_kind == h5py.h5d.CHUNKED:
        stored: list[Any] = []
        dset.id.chunk_iter(stored.append)
        for info in sorted(stored, key=lambda i: i.chunk_offset):
            digest.update(repr((info.chunk_offset, info.filter_mask, info.size)).encode())
            _hash_file_range(digest, fd, info.byte_offset, info.size)
    elif layout_kind == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        if offset is not None:
            _hash_file_range(digest, fd, offset, size)
    elif not layout["null"]:  # compact: the data lives in the object header
        digest.update(np.ascontiguousarray(dset[()]).tobytes())
    return digest.hexdigest(), int(size)
