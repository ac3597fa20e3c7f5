"""Cutting stored Blosc2 chunks down to some blocks: checked against real blosc2 chunks."""

from __future__ import annotations

import struct

import blosc2
import numpy as np
import pytest
from blosc2 import blosc2_ext

from caterva2.common.chunk_blocks import (
    BlocksUnavailable,
    chunk_blocks,
    select_blocks,
)

BLOCK = 4096  # bytes per block in the SChunk-made chunks
NBLOCKS = 16
CODECS = [
    blosc2.Codec.BLOSCLZ,
    blosc2.Codec.LZ4,
    blosc2.Codec.LZ4HC,
    blosc2.Codec.ZSTD,
    blosc2.Codec.ZLIB,
]
F = blosc2.Filter


def smooth(n: int, dtype="f8", seed: int = 0) -> np.ndarray:
    """Compressible but not constant data."""
    rng = np.random.default_rng(seed)
    x = np.sin(np.linspace(0, 20, n)) * 1000 + rng.normal(0, 1, n)
    return (np.round(x * 16) / 16).astype(dtype)  # few mantissa bits: compresses unshuffled


def schunk_chunks(data: np.ndarray, nchunks: int = 2, **cparams) -> list[bytes]:
    """The stored chunks of an SChunk holding `data`, NBLOCKS blocks of BLOCK bytes each."""
    cparams.setdefault("typesize", data.itemsize)
    cparams.setdefault("nthreads", 1)  # blocks in index order unless a test asks for threads
    cp = blosc2.CParams(blocksize=BLOCK, **cparams)
    data = data.reshape(-1)[: nchunks * NBLOCKS * BLOCK // data.itemsize]
    sch = blosc2.SChunk(chunksize=NBLOCKS * BLOCK, data=data, cparams=cp)
    return [sch.get_chunk(i) for i in range(sch.nchunks)]


def selections(n: int) -> list[list[int]]:
    """First, last, middle, a few scattered, every other, all."""
    sels = [[0], [n - 1], [n // 2], list(range(n)), list(range(0, n, 2))]
    if n > 2:
        sels += [[1, n - 1], [0, n // 2, n - 1], list(range(1, n - 1))]
    return sels


def expected_blocks(chunk: bytes, indices: list[int]) -> bytes:
    full = blosc2.decompress2(chunk)
    _, bs = chunk_blocks(chunk)
    return b"".join(full[i * bs : (i + 1) * bs] for i in indices)


def assert_selections_match(chunk: bytes, delta: bool = False) -> None:
    n, bs = chunk_blocks(chunk)
    for sel in selections(n):
        if delta and sel[0] != 0:
            with pytest.raises(BlocksUnavailable, match="DELTA"):
                select_blocks(chunk, sel)
            continue
        part = select_blocks(chunk, sel)
        out = blosc2.decompress2(part)
        assert len(out) == len(sel) * bs
        assert out == expected_blocks(chunk, sel), sel
        assert chunk_blocks(part) == (len(sel), bs)


def is_memcpyed(chunk: bytes) -> bool:
    return bool(chunk[2] & 0x02)


def bstarts(chunk: bytes) -> list[int]:
    n, _ = chunk_blocks(chunk)
    return list(struct.unpack_from(f"<{n}i", chunk, 32))


def patched(chunk: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(chunk)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# --- Selections decompress to exactly the selected blocks -------------------------------------


@pytest.mark.parametrize("nthreads", [1, 4])
@pytest.mark.parametrize(
    ("filters", "meta"),
    [([F.NOFILTER], [0]), ([F.SHUFFLE], [0]), ([F.BITSHUFFLE], [0]), ([F.TRUNC_PREC], [20])]
    + [([F.DELTA], [0]), ([F.DELTA, F.SHUFFLE], [0, 0])],
    ids=["none", "shuffle", "bitshuffle", "trunc_prec", "delta", "delta+shuffle"],
)
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_selected_blocks_decompress_to_those_blocks_of_the_full_chunk(
    codec, filters, meta, nthreads
):
    data = smooth(2 * NBLOCKS * BLOCK // 8)
    chunks = schunk_chunks(data, codec=codec, filters=filters, filters_meta=meta, nthreads=nthreads)
    for chunk in chunks:
        assert not is_memcpyed(chunk)  # the streams path, not the raw copy
        assert_selections_match(chunk, delta=F.DELTA in filters)


@pytest.mark.parametrize("splitmode", list(blosc2.SplitMode), ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", ["u1", "i2", "f4", "f8"])
def test_split_and_unsplit_blocks_of_every_typesize_cut_cleanly(splitmode, dtype):
    data = smooth(NBLOCKS * BLOCK, dtype=dtype)
    (chunk,) = schunk_chunks(data, nchunks=1, splitmode=splitmode, codec=blosc2.Codec.LZ4)
    if splitmode == blosc2.SplitMode.NEVER_SPLIT:
        assert chunk[2] & 0x10  # one stream per block
    if splitmode == blosc2.SplitMode.ALWAYS_SPLIT:
        assert not chunk[2] & 0x10  # one stream per byte of the type
    assert_selections_match(chunk)


def test_out_of_order_blocks_from_threaded_compression_are_cut_by_their_extents():
    # Threads write blocks as they finish; retry a few chunks until bstarts really are shuffled,
    # but check every chunk either way.
    seen_out_of_order = False
    for seed in range(20):
        data = np.random.default_rng(seed).integers(0, 50, NBLOCKS * BLOCK // 4, dtype="i4")
        (chunk,) = schunk_chunks(data, nchunks=1, codec=blosc2.Codec.ZSTD, nthreads=4)
        assert_selections_match(chunk)
        seen_out_of_order |= bstarts(chunk) != sorted(bstarts(chunk))
        if seen_out_of_order:
            break
    if not seen_out_of_order:
        pytest.skip("threads happened to finish in order every time")


def test_blocks_stored_in_reverse_order_are_cut_by_their_extents():
    # A deterministic out-of-order layout: the same streams, written last block first.
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1, codec=blosc2.Codec.ZSTD)
    starts = bstarts(chunk)
    ends = starts[1:] + [len(chunk)]
    assert starts == sorted(starts)
    streams = [chunk[s:e] for s, e in zip(starts, ends, strict=True)]
    pos, new_starts = 32 + 4 * NBLOCKS, [0] * NBLOCKS
    for i in reversed(range(NBLOCKS)):
        new_starts[i] = pos
        pos += len(streams[i])
    body = b"".join(reversed(streams))
    reordered = chunk[:32] + struct.pack(f"<{NBLOCKS}i", *new_starts) + body
    assert blosc2.decompress2(reordered) == blosc2.decompress2(chunk)  # still a valid chunk
    assert_selections_match(reordered)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_incompressible_random_bytes_are_cut_exactly(codec):
    data = np.random.default_rng(1).integers(0, 256, NBLOCKS * BLOCK, dtype="u1")
    (chunk,) = schunk_chunks(data, nchunks=1, codec=codec, typesize=8)
    assert_selections_match(chunk)


def test_clevel_zero_chunks_are_memcpyed_and_cut_by_plain_copy():
    for data in (smooth(NBLOCKS * BLOCK // 8), np.arange(NBLOCKS * BLOCK // 2, dtype="u2")):
        (chunk,) = schunk_chunks(data, nchunks=1, clevel=0)
        assert is_memcpyed(chunk)
        assert_selections_match(chunk)


def test_memcpyed_chunk_with_delta_in_its_header_is_cut_anywhere():
    # Random data does not compress, so blosc falls back to a raw copy and ignores the filters.
    data = np.random.default_rng(2).integers(0, 2**31, NBLOCKS * BLOCK // 4, dtype="i4")
    (chunk,) = schunk_chunks(data, nchunks=1, codec=blosc2.Codec.BLOSCLZ, filters=[F.DELTA])
    assert is_memcpyed(chunk) and chunk[2] & 0x08
    assert_selections_match(chunk)


def test_constant_and_zero_blocks_inside_a_chunk_are_cut_exactly():
    # Zero runs (csize 0) and repeated-byte runs (negative csize) mixed with real streams.
    data = smooth(NBLOCKS * BLOCK // 8)
    data[: BLOCK // 8 * 3] = 0
    data[BLOCK // 8 * 5 : BLOCK // 8 * 9] = 7.25
    for splitmode in (blosc2.SplitMode.ALWAYS_SPLIT, blosc2.SplitMode.NEVER_SPLIT):
        (chunk,) = schunk_chunks(data, nchunks=1, splitmode=splitmode, codec=blosc2.Codec.ZSTD)
        assert_selections_match(chunk)


def test_ndarray_of_one_constant_is_cut_exactly():
    arr = blosc2.asarray(np.full((100, 100), 7, "i8"), chunks=(50, 50), blocks=(10, 10))
    chunk = arr.schunk.get_chunk(0)
    assert chunk_blocks(chunk) == (25, 10 * 10 * 8)
    assert_selections_match(chunk)


def test_structured_dtype_ndarray_chunks_are_cut_exactly():
    dtype = np.dtype([("a", "i4"), ("b", "f8"), ("c", "u1")])
    values = np.zeros((30, 40), dtype)
    values["a"] = np.arange(1200).reshape(30, 40)
    values["b"] = smooth(1200).reshape(30, 40)
    values["c"] = np.arange(1200).reshape(30, 40) % 7
    arr = blosc2.asarray(values, chunks=(15, 20), blocks=(5, 7))
    for n in range(arr.schunk.nchunks):
        assert_selections_match(arr.schunk.get_chunk(n))


def test_ndarray_blocks_that_do_not_divide_chunks_give_the_array_values():
    values = smooth(37 * 53, seed=3).reshape(37, 53)
    chunks, blocks = (20, 30), (7, 9)
    arr = blosc2.asarray(values, chunks=chunks, blocks=blocks)
    grid = (3, 4)  # blocks per chunk: ceil(20 / 7) x ceil(30 / 9); padded to (21, 36)
    assert arr.schunk.nchunks == 4  # two of them edge chunks
    for n in range(arr.schunk.nchunks):
        chunk = arr.schunk.get_chunk(n)
        assert chunk_blocks(chunk) == (12, 7 * 9 * 8)
        assert_selections_match(chunk)
        # Each selected block holds the array values it covers (padding aside).
        cr, cc = divmod(n, 2)
        sel = [0, 5, 11]
        got = np.frombuffer(blosc2.decompress2(select_blocks(chunk, sel)), "f8").reshape(3, 7, 9)
        for k, b in enumerate(sel):
            br, bc = divmod(b, grid[1])
            r0, c0 = cr * chunks[0] + br * blocks[0], cc * chunks[1] + bc * blocks[1]
            r1 = min(r0 + blocks[0], (cr + 1) * chunks[0], 37)
            c1 = min(c0 + blocks[1], (cc + 1) * chunks[1], 53)
            want = values[r0:r1, c0:c1]
            np.testing.assert_array_equal(got[k, : want.shape[0], : want.shape[1]], want)


def test_a_single_block_chunk_selects_its_only_block():
    arr = blosc2.asarray(smooth(64).reshape(8, 8), chunks=(8, 8), blocks=(8, 8))
    chunk = arr.schunk.get_chunk(0)
    assert chunk_blocks(chunk) == (1, 512)
    assert select_blocks(chunk, [0]) == chunk


def test_selecting_every_block_returns_the_chunk_unchanged():
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1)
    assert select_blocks(chunk, range(NBLOCKS)) == chunk


def test_bytearray_memoryview_and_numpy_indices_are_accepted():
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1)
    want = select_blocks(chunk, [2, 3])
    assert select_blocks(bytearray(chunk), [2, 3]) == want
    assert select_blocks(memoryview(chunk), np.array([2, 3])) == want
    assert chunk_blocks(memoryview(bytearray(chunk))) == (NBLOCKS, BLOCK)


def test_selection_decompresses_into_a_preallocated_numpy_buffer():
    data = smooth(NBLOCKS * BLOCK // 8)
    (chunk,) = schunk_chunks(data, nchunks=1, nthreads=4)
    sel = [1, 4, 5, 15]
    part = select_blocks(chunk, sel)
    exact = np.empty(len(sel) * BLOCK // 8, "f8")
    assert blosc2.decompress2(part, dst=exact) is None
    np.testing.assert_array_equal(exact.reshape(len(sel), -1), data.reshape(NBLOCKS, -1)[sel])
    roomy = np.full(len(sel) * BLOCK + 100, 0xAB, "u1")  # a larger buffer: the tail is untouched
    blosc2.decompress2(part, dst=roomy)
    assert roomy[: len(sel) * BLOCK].tobytes() == exact.tobytes()
    assert (roomy[len(sel) * BLOCK :] == 0xAB).all()


# --- Chunks that cannot be cut go whole ---------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda shape, **kw: blosc2.zeros(shape, **kw),
        lambda shape, **kw: blosc2.full(shape, 3.5, **kw),
        lambda shape, **kw: blosc2.uninit(shape, **kw),
    ],
    ids=["zeros", "repeated-value", "uninit"],
)
def test_special_value_chunks_are_unavailable(make):
    arr = make((100, 100), chunks=(50, 50), blocks=(10, 10))
    chunk = arr.schunk.get_chunk(0)
    assert chunk_blocks(chunk) == (25, 800)
    with pytest.raises(BlocksUnavailable, match="special value"):
        select_blocks(chunk, [1])


def test_nan_special_chunk_is_unavailable():
    sch = blosc2.SChunk(chunksize=NBLOCKS * BLOCK, cparams=blosc2.CParams(typesize=8))
    sch.fill_special(NBLOCKS * BLOCK // 8, blosc2.SpecialValue.NAN)
    with pytest.raises(BlocksUnavailable, match="special value"):
        select_blocks(sch.get_chunk(0), [0])


@pytest.mark.parametrize("codec", [blosc2.Codec.ZSTD, blosc2.Codec.LZ4])
def test_dictionary_chunks_are_unavailable(codec):
    text = b"The quick brown fox jumps over the lazy dog, again and again. "
    data = np.frombuffer(text * 4000, "u1")
    sch = blosc2.SChunk(
        chunksize=len(data) // 2,
        data=data,
        cparams=blosc2.CParams(codec=codec, use_dict=True, typesize=1, blocksize=8192),
    )
    chunk = sch.get_chunk(0)
    assert chunk[31] & 0x01
    with pytest.raises(BlocksUnavailable, match="dictionary"):
        select_blocks(chunk, [0])


def test_lazy_chunks_are_unavailable(tmp_path):
    data = smooth(2 * NBLOCKS * BLOCK // 8)
    sch = blosc2.SChunk(
        chunksize=NBLOCKS * BLOCK,
        data=data,
        cparams=blosc2.CParams(typesize=8, blocksize=BLOCK),
        urlpath=str(tmp_path / "lazy.b2frame"),
        contiguous=True,
    )
    with pytest.raises(BlocksUnavailable, match="lazy"):
        select_blocks(sch.get_lazychunk(1), [0])


def test_variable_length_block_chunks_are_unavailable():
    chunk = blosc2_ext.vlcompress([b"abc" * 100, b"defg" * 300], typesize=1)
    with pytest.raises(BlocksUnavailable, match="variable-length"):
        chunk_blocks(chunk)
    with pytest.raises(BlocksUnavailable, match="variable-length"):
        select_blocks(chunk, [0])


def test_chunk_with_a_short_last_block_is_unavailable():
    data = smooth(NBLOCKS * BLOCK // 8 - 100)
    sch = blosc2.SChunk(chunksize=data.nbytes, data=data, cparams=blosc2.CParams(blocksize=BLOCK))
    chunk = sch.get_chunk(0)
    assert chunk_blocks(chunk) == (NBLOCKS, BLOCK)
    with pytest.raises(BlocksUnavailable, match="whole number of blocks"):
        select_blocks(chunk, [0])


def test_delta_chunks_need_block_zero_to_be_cut():
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1, filters=[F.DELTA])
    with pytest.raises(BlocksUnavailable, match="DELTA"):
        select_blocks(chunk, [3, 4])
    part = select_blocks(chunk, [0, 3, 4])
    assert blosc2.decompress2(part) == expected_blocks(chunk, [0, 3, 4])


@pytest.fixture(scope="module")
def plain_chunk() -> bytes:
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1, codec=blosc2.Codec.ZSTD)
    return chunk


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (0, "<B", 7, "version"),  # a future header version
        (0, "<B", 4, "version"),  # a beta-era one
        (2, "<B", 0x81, "extended header"),  # bitshuffle bit cleared: a Blosc1 header
        (2, "<B", 0xC5, "codec format 6"),  # a user-defined codec
        (16, "<B", 200, "filters \\[200\\]"),  # a user filter
        (30, "<B", 0x02, "flags2"),  # an unknown secondary flag
        (31, "<B", 0x80, "unknown Blosc2 flags"),  # instrumented codec
        (31, "<B", 0x04, "unknown Blosc2 flags"),
        (3, "<B", 0, "typesize"),
        (32, "<i", 10, "bstarts"),  # a bstart inside the header
        (36, "<i", 10**8, "bstarts"),  # a bstart past the end
        (40, "<i", 0, "bstarts"),
    ],
)
def test_unknown_or_malformed_headers_are_unavailable(plain_chunk, offset, fmt, value, match):
    with pytest.raises(BlocksUnavailable, match=match):
        select_blocks(patched(plain_chunk, offset, fmt, value), [1])


def test_bigendian_writer_flag_is_harmless():
    # BLOSC2_BIGENDIAN records the writer's byte order; decoders never read it.
    (chunk,) = schunk_chunks(smooth(NBLOCKS * BLOCK // 8), nchunks=1)
    flagged = patched(chunk, 31, "<B", 0x02)
    assert blosc2.decompress2(flagged) == blosc2.decompress2(chunk)
    assert_selections_match(flagged)


def test_truncated_padded_or_tiny_chunks_are_unavailable(plain_chunk):
    with pytest.raises(BlocksUnavailable, match="header says"):
        select_blocks(plain_chunk[:-10], [0])
    with pytest.raises(BlocksUnavailable, match="header says"):
        select_blocks(plain_chunk + b"\0" * 8, [0])
    with pytest.raises(BlocksUnavailable, match="shorter than a Blosc header"):
        select_blocks(plain_chunk[:10], [0])
    # A bstart moved into the middle of its neighbour's streams: both blocks stop parsing.
    moved = patched(plain_chunk, 36, "<i", bstarts(plain_chunk)[1] + 4)
    for block in (0, 1):
        with pytest.raises(BlocksUnavailable, match="cut short|streams"):
            select_blocks(moved, [block])


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        ([], "no blocks"),
        ([NBLOCKS], "out of range"),
        ([-1, 2], "out of range"),
        ([3, 2], "ascend"),
        ([2, 2], "ascend"),
    ],
)
def test_bad_indices_raise_index_error(plain_chunk, indices, match):
    with pytest.raises(IndexError, match=match):
        select_blocks(plain_chunk, indices)
