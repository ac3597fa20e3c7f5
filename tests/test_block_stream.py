"""Big selections sent as stored blocks (`common.block_stream`), end to end and piece by piece.

The plan and the stream are checked in-process against NumPy over many layouts
and keys; the subscriber and the client over real HTTP with real files.
"""

from __future__ import annotations

import io
import itertools
import os
import uuid

import blosc2
import httpx
import numpy as np
import pytest

from caterva2 import api_utils
from caterva2.common import block_stream, chunk_plan
from caterva2.common.chunk_blocks import select_blocks
from caterva2.common.slices import normalise_key
from caterva2.common.stored_chunks import FileChanged, file_identity, read_chunk, stored_piece

from .services import SubscriberProcess

RNG = np.random.default_rng(11)

LAYOUTS = [
    # shape, chunks, blocks: blocks that do not divide chunks, chunks that do not divide shapes
    ((37, 53), (20, 30), (7, 9)),
    ((40, 30, 20), (16, 16, 8), (4, 16, 8)),
    ((1000,), (128,), (32,)),
    ((6, 7, 8, 9), (3, 4, 5, 6), (2, 2, 3, 4)),
    ((50, 40), (50, 40), (10, 40)),  # one chunk
]
KEYS = [
    (),
    (slice(3, 17),),
    (5,),
    (-1,),
    (slice(-9, None),),
    (slice(2, 2),),
    (slice(30, 10),),
    (slice(None), 1),
    (slice(1, 5), slice(2, None)),
    (0, 0),
]


def stream_of(array: blosc2.NDArray, key) -> bytes:
    """What the subscriber sends for `key`: built from the file with the same functions."""
    items = normalise_key(key, array.shape)
    bounds, squeeze = chunk_plan.selection_bounds(items, array.shape)
    plan = chunk_plan.plan(array.shape, array.chunks, array.blocks, bounds, squeeze)
    ident = file_identity(os.stat(array.schunk.urlpath))
    pieces = block_stream.pieces_of(
        plan, lambda nchunk, blocks: stored_piece(array.schunk, nchunk, ident, blocks)
    )
    head = block_stream.header(
        array.shape, array.chunks, array.blocks, array.dtype, bounds, squeeze
    )
    stream = head + b"".join(block_stream.piece_records(plan, pieces))
    assert len(stream) == block_stream.length(head, pieces)
    # The other way, from whole stored chunks (as remote roots do), gives the same bytes.
    others = block_stream.records(plan, array.schunk.get_chunk)
    assert head + b"".join(others) == stream
    return stream


class BytesSource:
    """A stream held in memory, read as the client reads a response."""

    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)
        self.aborted = False

    def read_into(self, view: memoryview) -> None:
        if self.file.readinto(view) != len(view):
            raise EOFError

    def abort(self) -> None:
        self.aborted = True


def decode(stream: bytes) -> np.ndarray:
    source = BytesSource(stream)
    result = block_stream.read(source)
    assert source.file.read() == b"" and not source.aborted  # every byte used
    return result


@pytest.mark.parametrize("shape, chunks, blocks", LAYOUTS)
def test_stream_decodes_to_the_selection_for_every_key(tmp_path, shape, chunks, blocks):
    values = RNG.normal(size=shape)
    path = str(tmp_path / "a.b2nd")
    array = blosc2.asarray(values, urlpath=path, mode="w", chunks=chunks, blocks=blocks)
    keys = [k for k in KEYS if len(k) <= len(shape)]
    keys.append(tuple(slice(n // 4, n - n // 5) for n in shape))
    for key in keys:
        np.testing.assert_array_equal(decode(stream_of(array, key)), values[key], err_msg=key)


def test_structured_and_integer_arrays_stream_as_they_are(tmp_path):
    dtype = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S3")])
    values = np.zeros(500, dtype=dtype)
    values["a"] = np.arange(500)
    values["b"] = RNG.normal(size=500)
    values["c"] = [b"x%d" % (i % 10) for i in range(500)]
    path = str(tmp_path / "s.b2nd")
    array = blosc2.asarray(values, urlpath=path, mode="w", chunks=(64,), blocks=(16,))
    np.testing.assert_array_equal(decode(stream_of(array, (slice(10, 470),))), values[10:470])
    ints = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    path = str(tmp_path / "i.b2nd")
    array = blosc2.asarray(ints, urlpath=path, mode="w", chunks=(30, 30), blocks=(10, 10))
    np.testing.assert_array_equal(decode(stream_of(array, (slice(5, 95), 7))), ints[5:95, 7])


def test_stream_carries_only_the_blocks_a_slab_touches(tmp_path):
    values = np.arange(100 * 40, dtype="f8").reshape(100, 40)
    path = str(tmp_path / "slab.b2nd")
    array = blosc2.asarray(values, urlpath=path, mode="w", chunks=(50, 40), blocks=(5, 40))
    whole = stream_of(array, ())
    slab = stream_of(array, (slice(12, 18),))
    # rows 12..17 lie in blocks 2 and 3 of chunk 0: 2 of the 20 blocks
    assert len(slab) < len(whole) / 5
    np.testing.assert_array_equal(decode(slab), values[12:18])


def test_chunks_whose_blocks_cannot_be_cut_are_sent_whole(tmp_path):
    path = str(tmp_path / "z.b2nd")
    array = blosc2.zeros((100, 100), urlpath=path, mode="w", chunks=(50, 100), blocks=(10, 100))
    np.testing.assert_array_equal(decode(stream_of(array, (slice(12, 80),))), np.zeros((68, 100)))
    delta = blosc2.CParams(filters=[blosc2.Filter.DELTA], filters_meta=[0])
    path = str(tmp_path / "d.b2nd")
    values = np.cumsum(RNG.integers(0, 5, size=(100, 100)), axis=1)
    array = blosc2.asarray(
        values, urlpath=path, mode="w", chunks=(50, 100), blocks=(10, 100), cparams=delta
    )
    np.testing.assert_array_equal(decode(stream_of(array, (slice(23, 77),))), values[23:77])


def test_truncated_stream_is_an_error_not_a_result(tmp_path):
    path = str(tmp_path / "t.b2nd")
    array = blosc2.asarray(RNG.normal(size=(60, 60)), urlpath=path, mode="w", chunks=(20, 20))
    stream = stream_of(array, ())
    source = BytesSource(stream[:-100])
    with pytest.raises(EOFError):
        block_stream.read(source)


def test_corrupt_stream_stops_the_reader_and_drops_the_source(tmp_path):
    path = str(tmp_path / "c.b2nd")
    array = blosc2.asarray(RNG.normal(size=(60, 60)), urlpath=path, mode="w", chunks=(20, 20))
    stream = bytearray(stream_of(array, ()))
    head = 4 + int.from_bytes(stream[:4], "little")
    stream[head] = 7  # the first record names chunk 7, not chunk 0
    source = BytesSource(bytes(stream))
    with pytest.raises(ValueError, match="out of order"):
        block_stream.read(source)
    assert source.aborted


# --- reading stored chunks from the file --------------------------------------------------------


@pytest.mark.parametrize(
    "cparams",
    [
        blosc2.CParams(),
        blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=1, nthreads=4),
        blosc2.CParams(clevel=0),
        blosc2.CParams(codec=blosc2.Codec.ZLIB, filters=[blosc2.Filter.BITSHUFFLE]),
    ],
)
def test_chunks_read_from_the_file_equal_blosc2s_own(tmp_path, cparams):
    values = RNG.normal(size=(90, 70))
    values[:30] = 0  # a chunk of zeros: a special chunk, read the slow way
    path = str(tmp_path / "c.b2nd")
    array = blosc2.asarray(
        values, urlpath=path, mode="w", chunks=(30, 70), blocks=(5, 70), cparams=cparams
    )
    ident = file_identity(os.stat(path))
    for n in range(array.schunk.nchunks):
        full = array.schunk.get_chunk(n)
        assert read_chunk(array.schunk, n, ident) == full
        for blocks in ([1, 2, 4], [0, 5], None):
            piece = stored_piece(array.schunk, n, ident, blocks)
            data = b"".join(piece.read())
            assert len(data) == piece.size
            try:
                expected = select_blocks(full, blocks) if blocks else full
            except ValueError:
                expected = full  # not cut: sent whole
            assert data == expected and piece.whole == (expected == full), (n, blocks)


def test_chunks_of_arrays_in_memory_come_from_blosc2():
    array = blosc2.asarray(np.arange(1000.0), chunks=(100,))
    assert read_chunk(array.schunk, 3, None) == array.schunk.get_chunk(3)


def test_replaced_file_is_never_read_with_the_old_offsets(tmp_path):
    path = str(tmp_path / "r.b2nd")
    array = blosc2.asarray(
        np.arange(10_000.0), urlpath=path, mode="w", chunks=(1000,), blocks=(100,)
    )
    ident = file_identity(os.stat(path))
    replacement = str(tmp_path / "new.b2nd")
    blosc2.asarray(np.arange(10_000.0) * 3, urlpath=replacement, mode="w", chunks=(1000,))
    piece = stored_piece(array.schunk, 2, ident, [1, 2])
    assert read_chunk(array.schunk, 2, file_identity(os.stat(path))) == array.schunk.get_chunk(2)
    os.replace(replacement, path)
    with pytest.raises(FileChanged):
        piece.read()
    with pytest.raises(FileChanged):
        stored_piece(array.schunk, 2, ident, None).read()


# --- through a subscriber -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sub(tmp_path_factory):
    """A subscriber of our own: the datasets written here would upset others' listings."""
    statedir = tmp_path_factory.mktemp("blocks") / "state"
    (statedir / "public").mkdir(parents=True)
    server = SubscriberProcess(statedir, conf={"login": False}).start()
    yield server
    server.stop()


def put(sub, values: np.ndarray, **kwargs) -> str:
    """Store `values` in @public under a new name; return the name."""
    name = f"blocks-{uuid.uuid4().hex[:8]}.b2nd"
    blosc2.asarray(values, urlpath=str(sub.statedir / "public" / name), mode="w", **kwargs)
    return name


BIG = (1200, 1000)  # 9.6 MB of float64: over the size the subscriber streams from


def test_big_client_reads_come_as_blocks_and_equal_the_stored_values(sub, anon):
    values = RNG.normal(size=BIG)
    name = put(sub, values, chunks=(250, 400), blocks=(50, 100))
    url = f"{sub.urlbase}/api/fetch/@public/{name}"
    resp = httpx.get(url, headers={"Accept": api_utils.ACCEPT_BLOCKS}, timeout=30)
    assert resp.headers["content-type"] == block_stream.MEDIA_TYPE
    ds = anon.get(f"@public/{name}")
    for key in [slice(None), (slice(3, 1190), slice(1, 999)), (slice(None), 500), Ellipsis]:
        np.testing.assert_array_equal(ds[key], values[key], err_msg=str(key))
    np.testing.assert_array_equal(
        anon.fetch(f"@public/{name}", "10:1111, 20:980"), values[10:1111, 20:980]
    )


def test_clients_that_do_not_ask_get_frames_as_before(sub):
    values = RNG.normal(size=BIG)
    name = put(sub, values, chunks=(250, 400), blocks=(50, 100))
    url = f"{sub.urlbase}/api/fetch/@public/{name}"
    for accept in (None, "*/*", api_utils.ACCEPT_NPY, f"{block_stream.MEDIA_TYPE};q=0"):
        headers = {"Accept": accept} if accept else {}
        resp = httpx.get(url, params={"slice_": "5:1000"}, headers=headers, timeout=30)
        assert resp.headers["content-type"] == "application/octet-stream", accept
        got = blosc2.ndarray_from_cframe(resp.content)[()]
        np.testing.assert_array_equal(got, values[5:1000])


def test_small_selections_are_not_streamed(sub):
    name = put(sub, RNG.normal(size=BIG), chunks=(250, 400), blocks=(50, 100))
    resp = httpx.get(
        f"{sub.urlbase}/api/fetch/@public/{name}",
        params={"slice_": "0:10"},
        headers={"Accept": api_utils.ACCEPT_BLOCKS},
    )
    assert resp.headers["content-type"] == api_utils.NPY_TYPE


def test_fields_and_filters_are_never_streamed(sub):
    dtype = np.dtype([("a", "<i8"), ("b", "<f8")])
    values = np.zeros(700_000, dtype=dtype)
    values["a"] = np.arange(700_000)
    name = put(sub, values, chunks=(100_000,), blocks=(10_000,))
    url = f"{sub.urlbase}/api/fetch/@public/{name}"
    headers = {"Accept": api_utils.ACCEPT_BLOCKS}
    for params in ({"field": "a"}, {"filter": "a >= 0"}):
        resp = httpx.get(url, params=params, headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] != block_stream.MEDIA_TYPE, params


def test_info_names_a_version_and_chunk_refuses_another_with_412(sub):
    name = put(sub, np.arange(100), chunks=(50,), blocks=(10,))
    url = f"{sub.urlbase}/api/{{}}/@public/{name}"
    etag = httpx.get(url.format("info")).headers["ETag"]
    ok = httpx.get(url.format("chunk"), params={"nchunk": 0}, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["ETag"] == etag
    path = sub.statedir / "public" / name
    blosc2.asarray(np.arange(100) * 2, urlpath=str(path), mode="w", chunks=(50,), blocks=(10,))
    os.utime(path, ns=(1, 1))  # a new version even within the clock's resolution
    stale = httpx.get(url.format("chunk"), params={"nchunk": 0}, headers={"If-Match": etag})
    assert stale.status_code == 412, stale.text
    assert "changed" in stale.json()["detail"]
    assert httpx.get(url.format("info")).headers["ETag"] != etag


# --- the body waitress sends without copying ---------------------------------------------------


def test_pieces_file_is_sent_whole_by_waitress_file_buffer():
    from waitress.buffers import ReadOnlyFileBasedBuffer

    from caterva2.common.falcon_app import PiecesFile

    pieces = [b"head", b"", RNG.bytes(3000), b"x", RNG.bytes(5000)]
    body = b"".join(pieces)
    buffer = ReadOnlyFileBasedBuffer(PiecesFile(iter(pieces), len(body)))
    assert buffer.prepare() == len(body)
    sent = bytearray()
    for size in itertools.cycle([700, 4096, 1, 2500]):  # partial sends, as a socket makes
        chunk = buffer.get(size)
        if not chunk:
            break
        taken = bytes(chunk[: max(1, len(chunk) // 2)])
        sent += taken
        buffer.skip(len(taken), True)
    assert bytes(sent) == body


def test_pieces_file_that_runs_short_is_an_error():
    from caterva2.common.falcon_app import PiecesFile

    body = PiecesFile(iter([b"abc"]), 10)
    assert body.read(3) == b"abc"
    with pytest.raises(OSError, match="ended at 3 bytes of 10"):
        body.read(3)
