"""Stored chunks read straight from the file of their frame.

`SChunk.get_chunk` copies a chunk twice (into a buffer Blosc2 allocates, then
into a new bytes object) and took 1.3 ms for a 1.5 MB chunk, more than serving
it.  The chunk's *lazy* form costs microseconds: its header, its block starts,
and a trailer that says where the chunk lies in the file and how long each of
its blocks is.  One `os.pread` of that range gives the same bytes in one copy
(0.07 ms), and a reader that needs only some blocks reads only those, knowing
the size of what it will send before reading it.  Anything unexpected (chunks
held in memory, special-value chunks, a file replaced since the container was
opened, a header that does not match) goes the slow way.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import blosc2

from .chunk_blocks import BlocksUnavailable, cut_header, is_memcpyed, select_blocks

HEADER = 32  # the extended Blosc2 chunk header
FLAGS = 31  # the header byte of the Blosc2 flags
FLAGS2 = 30  # nonzero for variable-length blocks, whose trailer differs
LAZY = 0x08  # set in FLAGS on the lazy form only

Identity = tuple[int, int, int, int, int]


class FileChanged(Exception):
    """The file is not the one the container was opened from any more."""


def file_identity(st: os.stat_result) -> Identity:
    """What tells one version of a file from another: replaced (inode) or written (size, times)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_version(st: os.stat_result) -> str:
    """The version of a file as both servers name it: `<mtime_ns>:<ctime_ns>:<inode>:<size>`.

    The one notion of a file's version (publisher etags, subscriber ETags of
    stored datasets and files). mtime and size alone miss a content change whose
    writer restored them (`cp -p`, `rsync -t`, `touch -r`); the inode change time
    cannot be set by users and moves with every write, and the inode with every
    replacement. (It also moves on chmod, chown and rename, which then count as
    new versions.)
    """
    return f"{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_size}"


def _nblocks(lazy: bytes) -> int:
    nbytes, _, blocksize = blosc2.get_cbuffer_sizes(lazy)
    return -(-nbytes // blocksize)


def _where(lazy: bytes) -> tuple[int, int] | None:
    """(offset in the file, length) of the chunk a lazy chunk stands for; None if not lazy."""
    if len(lazy) < HEADER or not lazy[FLAGS] & LAZY or lazy[FLAGS2]:
        return None
    _, cbytes, blocksize = blosc2.get_cbuffer_sizes(lazy)
    if blocksize <= 0 or cbytes < HEADER:
        return None
    nblocks = _nblocks(lazy)
    # After the block starts: nchunk (int32), offset (int64), then each block's length.
    trailer = HEADER + 4 * nblocks
    if len(lazy) != trailer + 12 + 4 * nblocks:
        return None
    (offset,) = struct.unpack_from("<q", lazy, trailer + 4)
    return offset, cbytes


def _lazy(schunk: Any, nchunk: int, identity: Identity | None) -> bytes:
    """The lazy chunk, when the chunk may be read from the file by it (else b"")."""
    path = getattr(schunk, "urlpath", None)
    fast = identity is not None and path and getattr(schunk, "contiguous", False)
    return schunk.get_lazychunk(nchunk) if fast else b""


def _open_same(path: str, identity: Identity | None) -> int | None:
    """A descriptor of `path` if it is still the file `identity` names, else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    if file_identity(os.fstat(fd)) != identity:
        os.close(fd)
        return None
    return fd


def read_chunk(schunk: Any, nchunk: int, identity: Identity | None) -> bytes:
    """Chunk `nchunk` of a file-backed SChunk, as stored (`SChunk.get_chunk`, faster).

    `identity`: of the file the container was opened from (`file_identity`); a
    file found different, or no identity, is read the slow way.
    """
    lazy = _lazy(schunk, nchunk, identity)
    where = _where(lazy)
    fd = _open_same(schunk.urlpath, identity) if where is not None else None
    if fd is None:
        return schunk.get_chunk(nchunk)
    offset, cbytes = where
    try:
        data = os.pread(fd, cbytes, offset)
    finally:
        os.close(fd)
    # The same header as the lazy one, but for its lazy flag: the right bytes.
    same = (
        len(data) == cbytes
        and data[:FLAGS] == lazy[:FLAGS]
        and data[FLAGS] | LAZY == lazy[FLAGS]
        and data[HEADER : HEADER + 4] == lazy[HEADER : HEADER + 4]
    )
    return data if same else schunk.get_chunk(nchunk)


@dataclass(frozen=True)
class Piece:
    """A stored chunk, or a cut of it to some blocks, whose size is known before it is read.

    `read()` gives its bytes in pieces (joining them would copy them), or raises
    `FileChanged` if the file is no longer the one the container was opened from.
    """

    whole: bool
    size: int
    read: Callable[[], list[bytes]]


def stored_piece(
    schunk: Any, nchunk: int, identity: Identity | None, blocks: Sequence[int] | None
) -> Piece:
    """Chunk `nchunk` cut to `blocks` (None: all), as `chunk_blocks.select_blocks` would.

    From the file only the blocks wanted are read, found by the lazy chunk; a
    chunk that cannot be cut is whole.  Chunks not read from the file (special
    values, chunks in memory) are read now.
    """
    lazy = _lazy(schunk, nchunk, identity)
    where = _where(lazy)
    if where is None:
        data = schunk.get_chunk(nchunk)
        if blocks is not None:
            try:
                cut = select_blocks(data, blocks)
                return Piece(False, len(cut), lambda: [cut])
            except BlocksUnavailable:
                pass
        return Piece(True, len(data), lambda: [data])
    offset, cbytes = where
    path = schunk.urlpath
    if blocks is not None:
        try:
            return _cut_piece(lazy, path, offset, identity, blocks)
        except BlocksUnavailable:
            pass
    return Piece(True, cbytes, lambda: _pread(path, identity, [(offset, cbytes)]))


def _cut_piece(
    lazy: bytes, path: str, offset: int, identity: Identity | None, blocks: Sequence[int]
) -> Piece:
    """The cut of a chunk to `blocks`, laid out as `select_blocks` does, read block by block."""
    nblocks = _nblocks(lazy)
    picked = list(blocks)
    if not picked or min(picked) < 0 or max(picked) >= nblocks:
        raise IndexError(f"blocks {picked} out of range for a chunk of {nblocks} blocks")
    header = bytearray(lazy[:HEADER])
    header[FLAGS] &= ~LAZY
    sizes = struct.unpack_from(f"<{nblocks}i", lazy, HEADER + 4 * nblocks + 12)
    if is_memcpyed(header):
        # Raw blocks, one after the other from the header on; no block starts.
        blocksize = blosc2.get_cbuffer_sizes(lazy)[2]
        starts = tuple(HEADER + i * blocksize for i in range(nblocks))
        cbytes = HEADER + sum(sizes[i] for i in picked)
        head = cut_header(header, picked, cbytes)
    else:
        starts = struct.unpack_from(f"<{nblocks}i", lazy, HEADER)
        cbytes = HEADER + 4 * len(picked) + sum(sizes[i] for i in picked)
        head = cut_header(header, picked, cbytes)  # refuses what `select_blocks` refuses
        new_starts, pos = [], HEADER + 4 * len(picked)
        for i in picked:
            new_starts.append(pos)
            pos += sizes[i]
        head += struct.pack(f"<{len(picked)}i", *new_starts)
    # Blocks stored one after the other are read in one go.
    runs: list[tuple[int, int]] = []
    for i in picked:
        if runs and sum(runs[-1]) == offset + starts[i]:
            runs[-1] = (runs[-1][0], runs[-1][1] + sizes[i])
        else:
            runs.append((offset + starts[i], sizes[i]))
    return Piece(False, cbytes, lambda: [head, *_pread(path, identity, runs)])


def _pread(path: str, identity: Identity | None, runs: list[tuple[int, int]]) -> list[bytes]:
    """The byte ranges (offset, length) of the file, if it is still the one `identity` names."""
    fd = _open_same(path, identity)
    if fd is None:
        raise FileChanged(path)
    try:
        pieces = [os.pread(fd, length, start) for start, length in runs]
    finally:
        os.close(fd)
    if any(len(p) != length for p, (_, length) in zip(pieces, runs, strict=True)):
        raise FileChanged(f"{path} is shorter than its chunks say")
    return pieces
