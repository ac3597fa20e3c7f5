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
from typing import Any

import blosc2
import numpy as np

from .b2meta import dtype_to_str, str_to_dtype
from .chunk_blocks import BlocksUnavailable, select_blocks
from .chunk_plan import Bounds, Plan, block_indices, place, plan

MEDIA_TYPE = "application/x-caterva2-blocks"
_LENGTH = struct.Struct("<I")
_RECORD = struct.Struct("<IB3xI")
AHEAD = 8  # parts received ahead of the one being decompressed


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


ChunkGetter = Callable[[int, "list[int] | None"], "bytes | memoryview"]
"""`get(nchunk, blocks)`: a stored chunk; of `blocks` (None: all) the bytes must be there."""


def records(the_plan: Plan, get_chunk: ChunkGetter) -> Iterator[bytes | memoryview]:
    """The parts of a plan, each chunk from `get_chunk` cut to the blocks needed."""
    for part in the_plan.parts:
        indices = block_indices(part, the_plan.grid)
        data = get_chunk(part.nchunk, indices)
        whole = indices is None
        if not whole:
            try:
                data = select_blocks(data, indices)
            except BlocksUnavailable:
                # Sent whole, and read whole: only the blocks asked for had to be there.
                data, whole = get_chunk(part.nchunk, None), True
        yield _RECORD.pack(part.nchunk, whole, len(data))
        yield data


def read(read_exact: Callable[[int], Any]) -> np.ndarray:
    """Decode a stream into the NumPy array it selects.

    `read_exact(n)`: the next `n` bytes of the stream (raising if it ends first).
    """
    (length,) = _LENGTH.unpack(read_exact(_LENGTH.size))
    meta = json.loads(bytes(read_exact(length)))
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
    arrived: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()

    def receive() -> None:
        # Another thread waits on the socket (which lets go of the GIL) while this one
        # decompresses what came before.
        try:
            for _ in the_plan.parts:
                nchunk, whole, size = _RECORD.unpack(read_exact(_RECORD.size))
                item = (nchunk, whole, read_exact(size))
                while not stop.is_set():
                    try:
                        arrived.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:
            arrived.put(exc)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    try:
        for part in the_plan.parts:
            item = arrived.get()
            if isinstance(item, BaseException):
                raise item
            nchunk, whole, data = item
            if nchunk != part.nchunk:
                raise ValueError(f"Block stream out of order: chunk {nchunk}, not {part.nchunk}")
            nbytes = blosc2.get_cbuffer_sizes(data)[0]
            if nbytes > scratch.size:
                scratch = np.empty(nbytes, dtype=np.uint8)
            # One reused buffer: fresh memory for each chunk would cost page faults.
            blosc2.decompress2(data, dst=scratch)
            del data, item
            place(the_plan, part, scratch[:nbytes].view(dtype), bool(whole), out)
    finally:
        stop.set()
        receiver.join()
    return out.reshape(the_plan.result_shape)
