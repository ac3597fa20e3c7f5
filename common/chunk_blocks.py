"""Cut a stored Blosc2 chunk down to some of its blocks, without recompressing anything.

A chunk as stored (what `SChunk.get_chunk(n)` returns) is, for the regular Blosc2 format:

    header (32 bytes) | bstarts (int32 per block) | streams of every block

The header holds `nbytes` (uncompressed size, offset 4), `blocksize` (offset 8) and `cbytes`
(whole chunk length, offset 12); the number of blocks is derived as nbytes / blocksize, nothing
else records it.  Each bstart is the offset of that block's compressed streams.  Blocks are
decoded independently (except for the DELTA filter, see below), so a chunk made of the same
header with `nbytes = k * blocksize` and `cbytes` = its new length, new bstarts, and the chosen
blocks' streams copied verbatim is a valid chunk that decompresses to exactly those blocks.
Memcpyed chunks (clevel 0, or incompressible data) have no bstarts: block `i` is the raw bytes at
`32 + i * blocksize`, and the same cut works by copying those bytes.

Anything that would make the cut not provably right raises `BlocksUnavailable`, and the caller
sends the chunk whole.  The facts relied on come from c-blosc2's `blosc/blosc2.c`
(`read_chunk_header`, `blosc2_initialize_context_from_header`, `blosc_d`, `serial_blosc`,
`t_blosc_do_job`, `pipeline_backward`) and `blosc/delta.c`.

To decompress into a preallocated buffer, `blosc2.decompress2(sel, dst=buf)` works, but `buf`
must hold at least `len(indices) * blocksize` bytes: python-blosc2 hands blosc the chunk's nbytes
as the destination size without checking the buffer's real length.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence

_MIN_HEADER = 16  # the Blosc1 header: nbytes, blocksize and cbytes are already there
_HEADER = 32  # the Blosc2 extended header, the only one we cut
_STABLE_VERSION = 5  # BLOSC2_VERSION_FORMAT_STABLE: the layout verified in the sources

# `flags` (byte 2).  Both shuffle bits together mean "extended header": the real filters
# are then listed in bytes 16..21.
_DOSHUFFLE, _MEMCPYED, _DOBITSHUFFLE, _DODELTA, _DONT_SPLIT = 0x01, 0x02, 0x04, 0x08, 0x10
# The codec format lives in the top 3 bits; these are the ones blosc decodes by itself:
# blosclz, lz4 (and lz4hc), zlib, zstd.  6 (user codec) and 7 may need chunk-wide state.
_BUILTIN_CODECS = frozenset({0, 1, 3, 4})
# Filter ids blosc undoes per block on its own: none, shuffle, bitshuffle, delta, trunc_prec.
_DELTA = 3
_BUILTIN_FILTERS = frozenset({0, 1, 2, 3, 4})
# `blosc2_flags` (byte 31).  BIGENDIAN only records the writer's byte order and no decoder
# reads it, so it is the one bit allowed; dicts (a section after bstarts), lazy chunks (no
# streams), special values (bits 4-6: no blocks at all) and instrumented codecs (0x80: nbytes
# and blocksize mean something else) change the layout or meaning.
_USEDICT, _BIGENDIAN, _LAZY = 0x01, 0x02, 0x08
# `blosc2_flags2` (byte 30): only VL_BLOCKS (0x01) is defined, and it changes the layout.


class BlocksUnavailable(ValueError):
    """This chunk cannot be split into blocks (the caller sends it whole)."""


def _view(chunk: bytes | bytearray | memoryview) -> memoryview:
    return memoryview(chunk).cast("B")


def chunk_blocks(chunk: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(number of blocks, blocksize in bytes) of a stored chunk, from its header."""
    buf = _view(chunk)
    if len(buf) < _MIN_HEADER:
        raise BlocksUnavailable(f"chunk of {len(buf)} bytes is shorter than a Blosc header")
    extended = buf[2] & _DOSHUFFLE and buf[2] & _DOBITSHUFFLE
    if extended and len(buf) >= _HEADER and buf[30] & 0x01:
        # With variable-length blocks the blocksize field holds the block count instead.
        raise BlocksUnavailable("chunk has variable-length blocks")
    nbytes, blocksize = struct.unpack_from("<ii", buf, 4)
    if nbytes < 0 or blocksize <= 0:
        raise BlocksUnavailable(f"bad header: nbytes={nbytes}, blocksize={blocksize}")
    if 0 < nbytes < blocksize:
        blocksize = nbytes  # blosc reads such a chunk as one block of nbytes
    return -(-nbytes // blocksize), blocksize


def _check_header(buf: memoryview) -> None:
    """Raise BlocksUnavailable unless every header field is one whose meaning we know."""
    flags = buf[2]
    if not (flags & _DOSHUFFLE and flags & _DOBITSHUFFLE) or len(buf) < _HEADER:
        raise BlocksUnavailable("not a Blosc2 chunk with an extended header")
    if buf[0] != _STABLE_VERSION:
        raise BlocksUnavailable(f"unknown chunk format version {buf[0]}")
    if buf[3] == 0:
        raise BlocksUnavailable("bad header: typesize is 0")
    if buf[30] != 0:
        raise BlocksUnavailable(f"unknown or variable-length-block flags2 0x{buf[30]:02x}")
    flags1 = buf[31]
    if (flags1 >> 4) & 0x07:
        raise BlocksUnavailable("chunk holds a special value (zeros, NaNs, uninit or a run)")
    if flags1 & _USEDICT:
        raise BlocksUnavailable("chunk is compressed with a dictionary")
    if flags1 & _LAZY:
        raise BlocksUnavailable("lazy chunk: its blocks are not in memory")
    if flags1 & ~_BIGENDIAN:
        raise BlocksUnavailable(f"chunk uses unknown Blosc2 flags 0x{flags1:02x}")
    if flags >> 5 not in _BUILTIN_CODECS:
        raise BlocksUnavailable(f"chunk uses codec format {flags >> 5}, not a built-in one")
    unknown = set(buf[16:22]) - _BUILTIN_FILTERS
    if unknown:
        raise BlocksUnavailable(f"chunk uses filters {sorted(unknown)} blosc does not own")


def _check_indices(indices: Sequence[int], nblocks: int) -> list[int]:
    if len(indices) == 0:
        raise IndexError("no blocks selected")
    picked = [operator.index(i) for i in indices]
    for before, after in zip(picked, picked[1:], strict=False):
        if after <= before:
            raise IndexError(f"block indices must ascend, without repeats: {after} after {before}")
    if picked[0] < 0 or picked[-1] >= nblocks:
        bad = picked[0] if picked[0] < 0 else picked[-1]
        raise IndexError(f"block index {bad} out of range for a chunk of {nblocks} blocks")
    return picked


def _block_ends(buf: memoryview, nblocks: int, cbytes: int) -> tuple[list[int], dict[int, int]]:
    """The bstarts, and where the block starting at each of them ends."""
    streams_at = _HEADER + 4 * nblocks
    if streams_at > cbytes:
        raise BlocksUnavailable("chunk too short for its bstarts")
    starts = list(struct.unpack_from(f"<{nblocks}i", buf, _HEADER))
    ordered = sorted(starts)
    # Threads write each finished block at the current end, so bstarts need not grow with the
    # block index; blocks are packed back to back, though, so a block runs up to the next
    # larger start.  Nothing (no dict: that flag was refused) sits before the first stream.
    if ordered[0] != streams_at or ordered[-1] >= cbytes or len(set(ordered)) != nblocks:
        raise BlocksUnavailable("bstarts out of range, repeated or not packed after the header")
    return starts, dict(zip(ordered, ordered[1:] + [cbytes], strict=True))


def _check_streams(buf: memoryview, start: int, end: int, nstreams: int) -> None:
    """Make sure the block's streams exactly fill [start, end): then the cut is exact."""
    pos = start
    for _ in range(nstreams):
        if pos + 4 > end:
            raise BlocksUnavailable(f"block at offset {start} is cut short")
        (csize,) = struct.unpack_from("<i", buf, pos)
        # csize > 0: that many bytes follow; 0: a run of zeros, nothing follows;
        # < 0: a run of one byte value, with one token byte after the size.
        pos += 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
    if pos != end:
        raise BlocksUnavailable(f"block at offset {start} does not parse as {nstreams} streams")


def _check_cut(buf: memoryview, indices: Sequence[int]) -> tuple[list[int], int, int]:
    """(blocks picked, number of blocks, blocksize) if a chunk with this header can be cut."""
    nblocks, blocksize = chunk_blocks(buf)
    _check_header(buf)
    nbytes = struct.unpack_from("<i", buf, 4)[0]
    if nbytes == 0:
        raise BlocksUnavailable("chunk holds no data")
    if nbytes % blocksize:
        # A short last block is split into fewer streams; keep the cut to equal blocks.
        raise BlocksUnavailable("chunk nbytes is not a whole number of blocks")
    picked = _check_indices(indices, nblocks)
    # DELTA decodes every block against block 0 of the output (delta_decoder in delta.c), so
    # the first block of the new chunk must be the original block 0.
    if (_DELTA in bytes(buf[16:22]) or buf[2] & _DODELTA) and picked[0] != 0:
        if not buf[2] & _MEMCPYED:  # blosc ignores the filters of a memcpyed chunk
            raise BlocksUnavailable("chunk uses the DELTA filter: include block 0 to split it")
    return picked, nblocks, blocksize


def cut_header(
    header: bytes | bytearray | memoryview, indices: Sequence[int], cbytes: int
) -> bytes:
    """The header `select_blocks` would give a cut of `cbytes` bytes (from the original's 32).

    For readers that fetch the blocks themselves, then lay them out as `select_blocks`
    does: this header, the new block starts (int32, none if `is_memcpyed`), the
    blocks' bytes in order.  BlocksUnavailable and IndexError as `select_blocks`.
    """
    buf = _view(header)
    picked, _, blocksize = _check_cut(buf, indices)
    return _header(buf, len(picked) * blocksize, cbytes)


def is_memcpyed(header: bytes | bytearray | memoryview) -> bool:
    """Whether a chunk's blocks are stored raw, one after the other, with no block starts."""
    return bool(_view(header)[2] & _MEMCPYED)


def select_blocks(chunk: bytes | bytearray | memoryview, indices: Sequence[int]) -> bytes:
    """A chunk holding only the blocks `indices` (ascending, distinct) of `chunk`, as stored."""
    buf = _view(chunk)
    picked, nblocks, blocksize = _check_cut(buf, indices)
    nbytes, _, cbytes = struct.unpack_from("<iii", buf, 4)
    if cbytes != len(buf):
        raise BlocksUnavailable(f"header says {cbytes} bytes but the chunk has {len(buf)}")
    memcpyed = bool(buf[2] & _MEMCPYED)

    if memcpyed:
        # No bstarts: blosc copies block i from 32 + i * blocksize and ignores the filters.
        if cbytes != _HEADER + nbytes:
            raise BlocksUnavailable("memcpyed chunk whose cbytes is not header + nbytes")
        if len(picked) == nblocks:
            return bytes(buf)
        parts = [buf[_HEADER + i * blocksize : _HEADER + (i + 1) * blocksize] for i in picked]
        body = b"".join(parts)
        return _header(buf, len(picked) * blocksize, _HEADER + len(body)) + body

    starts, ends = _block_ends(buf, nblocks, cbytes)
    nstreams = 1 if buf[2] & _DONT_SPLIT else buf[3]  # split blocks have one stream per byte
    for i in picked:
        _check_streams(buf, starts[i], ends[starts[i]], nstreams)
    if len(picked) == nblocks:
        return bytes(buf)

    streams = [buf[starts[i] : ends[starts[i]]] for i in picked]
    pos = _HEADER + 4 * len(picked)
    new_starts = []
    for stream in streams:
        new_starts.append(pos)
        pos += len(stream)
    head = _header(buf, len(picked) * blocksize, pos)
    return head + struct.pack(f"<{len(new_starts)}i", *new_starts) + b"".join(streams)


def _header(buf: memoryview, nbytes: int, cbytes: int) -> bytes:
    """The chunk's own header with new nbytes (hence block count) and cbytes."""
    head = bytearray(buf[:_HEADER])
    struct.pack_into("<i", head, 4, nbytes)
    struct.pack_into("<i", head, 12, cbytes)
    return bytes(head)
