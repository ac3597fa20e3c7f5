"""The `application/x-caterva2-blocks` answer of `/api/fetch`: a selection as stored blocks.

A big selection costs more as a new Blosc2 frame than as what is stored: the
server would decompress the blocks it touches and compress the result again,
and the client decompress it once more.  Instead, for clients that ask for this
type, the subscriber streams the stored chunks the selection touches, cut down
to the blocks it needs (`chunk_blocks.select_blocks`: nothing recompressed),
and the client decompresses each into the result as it arrives, while the rest
is still on the wire.  One request, one version of the dataset.

Layout (integers little-endian):

    uint32 n | n bytes of JSON: shape, chunks, blocks, dtype (NumPy's str), bounds, squeeze
    then, for each part of `chunk_plan.plan(...)` in order:
    uint32 nchunk | uint8 whole (1: every block of the chunk) | 3 zero bytes | uint32 m
    | m bytes: a Blosc2 chunk holding the part's blocks in C order (or all of them)

The stream ends after the last part; a server that fails half-way closes the
connection, which the reader reports as an error.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import blosc2
import numpy as np

from .b2meta import dtype_to_str, str_to_dtype
from .chunk_blocks import BlocksUnavailable, select_blocks
from .chunk_plan import Bounds, Plan, block_indices, place, plan
from .stored_chunks import Piece

MEDIA_TYPE = "application/x-caterva2-blocks"
_LENGTH = struct.Struct("<I")
_RECORD = struct.Struct("<IB3xI")
AHEAD = 8  # parts received ahead of the one being decompressed, at most


def header(
    shape: tuple, chunks: tuple, blocks: tuple, dtype: np.dtype, bounds: Bounds, squeeze: list
) -> bytes:
    """The stream's first bytes: what the reader needs to plan the same parts."""
    meta = {
        "shape": list(shape),
        "chunks": list(chunks),
        "blocks": list(blocks),
        "dtype": dtype_to_str(dtype),
        "bounds": [list(b) for b in bounds],
        "squeeze": list(squeeze),
    }
    text = json.dumps(meta).encode()
    return _LENGTH.pack(len(text)) + text


def records(the_plan: Plan, get_chunk: Callable[[int], bytes]) -> Iterator[bytes]:
    """The parts of a plan, each stored chunk `get_chunk(nchunk)` cut to the blocks needed."""
    for part in the_plan.parts:
        data = get_chunk(part.nchunk)
        indices = block_indices(part, the_plan.grid)
        whole = indices is None
        if not whole:
            try:
                data = select_blocks(data, indices)
            except BlocksUnavailable:
                whole = True  # sent as it is; the reader takes what it needs
        yield _RECORD.pack(part.nchunk, whole, len(data))
        yield data


def pieces_of(the_plan: Plan, get_piece: Callable[[int, list[int] | None], Piece]) -> list[Piece]:
    """What each part of a plan will send (`stored_chunks.stored_piece`), sizes known."""
    return [get_piece(p.nchunk, block_indices(p, the_plan.grid)) for p in the_plan.parts]


def length(head: bytes, pieces: list[Piece]) -> int:
    """The length of a stream of `pieces`: known before any is read."""
    return len(head) + sum(_RECORD.size + piece.size for piece in pieces)


def piece_records(the_plan: Plan, pieces: list[Piece]) -> Iterator[bytes]:
    """The parts of a plan from their pieces, read one at a time."""
    for part, piece in zip(the_plan.parts, pieces, strict=True):
        yield _RECORD.pack(part.nchunk, piece.whole, piece.size)
        yield from piece.read()


class Source(Protocol):
    """Where a stream is read from: an HTTP response (`http_transport.RawResponse`), a file."""

    def read_into(self, view: memoryview) -> None:
        """Fill `view` with the next bytes; raise if the stream ends first."""

    def abort(self) -> None:
        """Stop reading for good (a reader blocked in `read_into` returns or raises)."""


def read(source: Source) -> np.ndarray:
    """Decode a stream into the NumPy array it selects."""
    (length,) = _LENGTH.unpack(_read(source, _LENGTH.size))
    meta = json.loads(bytes(_read(source, length)))
    dtype = str_to_dtype(meta["dtype"])
    the_plan = plan(
        tuple(meta["shape"]),
        tuple(meta["chunks"]),
        tuple(meta["blocks"]),
        [tuple(b) for b in meta["bounds"]],
        meta["squeeze"],
    )
    out = np.empty(the_plan.shape, dtype=dtype)
    scratch = np.empty(0, dtype=np.uint8)
    # Receive buffers go round between the two threads: fresh memory for every chunk
    # would cost page faults, as would a fresh decompression buffer.
    free: queue.Queue = queue.Queue()
    for _ in range(AHEAD + 1):
        free.put(bytearray())
    arrived: queue.Queue = queue.Queue()
    stop = threading.Event()

    def receive() -> None:
        # This thread waits on the socket (which lets go of the GIL) while the caller's
        # decompresses what came before.
        try:
            for _ in the_plan.parts:
                nchunk, whole, size = _RECORD.unpack(_read(source, _RECORD.size))
                buffer = free.get()
                if stop.is_set():
                    return
                if len(buffer) < size:
                    buffer = bytearray(size)
                view = memoryview(buffer)[:size]
                source.read_into(view)
                arrived.put((nchunk, whole, buffer, view))
        except BaseException as exc:
            arrived.put(exc)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    try:
        for part in the_plan.parts:
            item = arrived.get()
            if isinstance(item, BaseException):
                raise item
            nchunk, whole, buffer, data = item
            if nchunk != part.nchunk:
                raise ValueError(f"Block stream out of order: chunk {nchunk}, not {part.nchunk}")
            nbytes = blosc2.get_cbuffer_sizes(data)[0]
            if nbytes > scratch.size:
                scratch = np.empty(nbytes, dtype=np.uint8)
            blosc2.decompress2(data, dst=scratch)
            data.release()
            free.put(buffer)
            place(the_plan, part, scratch[:nbytes].view(dtype), bool(whole), out)
    except BaseException:
        stop.set()
        source.abort()  # the receiver may be waiting on the socket
        free.put(bytearray())  # or for a buffer
        raise
    finally:
        receiver.join()
    return out.reshape(the_plan.result_shape)


def _read(source: Source, n: int) -> bytearray:
    buffer = bytearray(n)
    source.read_into(memoryview(buffer))
    return buffer
