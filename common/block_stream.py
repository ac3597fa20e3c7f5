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
DECODERS = 2  # threads decompressing parts and copying them into place


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
    parts = the_plan.parts
    # Receive buffers go round between the threads: fresh memory for every chunk
    # would cost page faults, as would a fresh decompression buffer.
    free: queue.Queue = queue.Queue()
    for _ in range(AHEAD + 1):
        free.put(bytearray())
    arrived: queue.Queue = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []

    def receive() -> None:
        # This thread waits on the socket (which lets go of the GIL) while the
        # decoders decompress and place what came before.
        try:
            for index, part in enumerate(parts):
                nchunk, whole, size = _RECORD.unpack(_read(source, _RECORD.size))
                if nchunk != part.nchunk:
                    raise ValueError(
                        f"Block stream out of order: chunk {nchunk}, not {part.nchunk}"
                    )
                buffer = free.get()
                if stop.is_set():
                    return
                if len(buffer) < size:
                    buffer = bytearray(size)
                view = memoryview(buffer)[:size]
                source.read_into(view)
                arrived.put((index, whole, buffer, view))
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            for _ in range(DECODERS):
                arrived.put(None)

    def decode() -> None:
        # Decompressing and placing both let go of the GIL (Blosc2, and NumPy's copy):
        # two decoders keep both cores on it, where one left a core idle while it
        # copied a chunk into place.
        scratch = np.empty(0, dtype=np.uint8)
        try:
            while (item := arrived.get()) is not None:
                if stop.is_set():
                    continue
                index, whole, buffer, data = item
                nbytes = blosc2.get_cbuffer_sizes(data)[0]
                if nbytes > scratch.size:
                    scratch = np.empty(nbytes, dtype=np.uint8)
                blosc2.decompress2(data, dst=scratch)
                data.release()
                free.put(buffer)
                place(the_plan, parts[index], scratch[:nbytes].view(dtype), bool(whole), out)
        except BaseException as exc:
            errors.append(exc)
            stop.set()
            source.abort()  # the receiver may be waiting on the socket
            free.put(bytearray())  # or for a buffer

    receiver = threading.Thread(target=receive, daemon=True)
    decoders = [threading.Thread(target=decode, daemon=True) for _ in range(DECODERS)]
    receiver.start()
    for thread in decoders:
        thread.start()
    try:
        for thread in decoders:
            thread.join()
    except BaseException:  # interrupted: the threads stop at their next step
        stop.set()
        source.abort()
        free.put(bytearray())
        raise
    finally:
        receiver.join()
    if errors:
        source.abort()  # what is left of the stream is not to be trusted (nor read)
        raise errors[0]
    return out.reshape(the_plan.result_shape)


def _read(source: Source, n: int) -> bytearray:
    buffer = bytearray(n)
    source.read_into(memoryview(buffer))
    return buffer
