"""Chunked ingestion: lay out, fill by chunks (many writers at once), publish; readers see nothing.

A real subscriber (logins on) served from a thread of this process over real
HTTP; writers are our `Client`s logged in as a user, the reader an anonymous
client of @public (it may not write there, so it must never see a staged array).
"""

from __future__ import annotations

import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.chunked_ingestion import STAGING_DIR

from .app_support import SUPERUSER, USER, in_process_subscriber, served

SHAPE, CHUNKS, BLOCKS = (40, 30), (10, 10), (5, 5)
SOURCE = np.arange(math.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
NCHUNKS = 12


def block_ordered(chunk: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """A chunk's values in the order Blosc2 stores them: block after block, each in C order."""
    grid = [c // b for c, b in zip(chunk.shape, blocks, strict=True)]
    split = chunk.reshape([n for pair in zip(grid, blocks, strict=True) for n in pair])
    ndim = chunk.ndim
    return split.transpose([2 * i for i in range(ndim)] + [2 * i + 1 for i in range(ndim)])


def chunk_of(values: np.ndarray, nchunk: int, **overrides) -> bytes:
    """Chunk `nchunk` of `values` (SHAPE), compressed with `blosc2.compress2` as the
    array's geometry asks: padded to CHUNKS, in block order, its typesize and blocksize."""
    grid = [math.ceil(s / c) for s, c in zip(SHAPE, CHUNKS, strict=True)]
    coords = np.unravel_index(nchunk, grid)
    box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, CHUNKS, strict=True))
    padded = np.zeros(CHUNKS, dtype=values.dtype)
    part = values[box]
    padded[tuple(slice(0, n) for n in part.shape)] = part
    itemsize = values.dtype.itemsize
    params = {"typesize": itemsize, "blocksize": math.prod(BLOCKS) * itemsize, **overrides}
    return blosc2.compress2(np.ascontiguousarray(block_ordered(padded, BLOCKS)), **params)


@pytest.fixture
def server(tmp_path):
    app = in_process_subscriber(tmp_path / "state")
    try:
        with served(app.subscriber.app, threads=8) as base:
            yield base, tmp_path / "state"
    finally:
        app.subscriber.close()


def writer(base: str) -> cat2.Client:
    return cat2.Client(base, USER)


def lay_out(client: cat2.Client, path: str = "@public/run.b2nd") -> cat2.Dataset:
    return client.lay_out(path, SHAPE, np.int32, chunks=CHUNKS, blocks=BLOCKS)


def invisible_to(reader: cat2.Client, base: str, path: str) -> bool:
    """Whether an anonymous reader sees nothing of `path`: not listed, no info, no values."""
    root, rel = path.split("/", 1)
    if rel in reader.get_list(root):
        return False
    for verb in ("info", "fetch", "download", "chunk"):
        got = httpx.get(f"{base}/api/{verb}/{path}", params={"nchunk": 0})
        if got.status_code != 404:
            return False
    return True


def test_an_array_laid_out_filled_and_published_equals_its_source(server):
    base, statedir = server
    with writer(base) as client, cat2.Client(base) as reader:
        array = lay_out(client)
        assert array.shape == SHAPE and array.chunks == CHUNKS and array.blocks == BLOCKS
        assert array.meta["state"] == "filling" and array.meta["written"] == 0
        assert not client.written_chunks("@public/run.b2nd").any()
        for n in range(NCHUNKS - 1):
            answer = array.fill_chunk(n, chunk_of(SOURCE, n))
            assert answer == {"nchunk": n, "written": n + 1, "nchunks": NCHUNKS, "state": "filling"}
        assert array.written_chunks().tolist() == [True] * (NCHUNKS - 1) + [False]
        assert invisible_to(reader, base, "@public/run.b2nd")
        last = array.fill_chunk(NCHUNKS - 1, chunk_of(SOURCE, NCHUNKS - 1))
        assert last["state"] == "complete"
        assert invisible_to(reader, base, "@public/run.b2nd")  # complete is not published
        assert array.publish() == "@public/run.b2nd"
        assert "run.b2nd" in reader.get_list("@public")
        np.testing.assert_array_equal(reader.fetch("@public/run.b2nd"), SOURCE)
        assert reader.get_info("@public/run.b2nd").get("state") is None
    assert not any((statedir / STAGING_DIR).rglob("*.b2nd"))  # nothing left staged


def test_eight_writers_fill_one_array_at_once_and_every_duplicate_gets_409(server):
    base, _statedir = server
    with writer(base) as client:
        lay_out(client)
    # Every chunk claimed by two or three writers: exactly one of them may win.
    claims = [(w, n) for n in range(NCHUNKS) for w in range(8) if (n + w) % 8 < 2 + n % 2]
    outcome: dict[int, list[str]] = {n: [] for n in range(NCHUNKS)}
    guard = threading.Lock()
    filling, polled = threading.Event(), threading.Event()
    seen: list[str] = []
    polls = []

    def fill(w: int) -> None:
        polled.wait(10)  # the reader is polling before anything is written
        with writer(base) as mine:
            for who, n in claims:
                if who != w:
                    continue
                try:
                    mine.fill_chunk("@public/run.b2nd", n, chunk_of(SOURCE, n))
                    result = "written"
                except cat2.ChunkAlreadyWritten as exc:
                    assert exc.status_code == 409 and f"Chunk {n}" in exc.detail
                    result = "409"
                with guard:
                    outcome[n].append(result)

    def read() -> None:  # polls for as long as the writers write
        with cat2.Client(base) as reader:
            while True:
                done = filling.is_set()  # one more poll after the last write
                if not invisible_to(reader, base, "@public/run.b2nd"):
                    seen.append("the unpublished array")
                polls.append(1)
                polled.set()
                if done:
                    return

    poller = threading.Thread(target=read)
    poller.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fill, range(8)))
    filling.set()
    poller.join()
    assert seen == [] and len(polls) >= 2
    for n, results in outcome.items():
        assert sorted(results) == ["409"] * (len(results) - 1) + ["written"], n
    assert sum(len(r) - 1 for r in outcome.values()) >= NCHUNKS  # duplicates there were
    with writer(base) as client, cat2.Client(base) as reader:
        assert client.written_chunks("@public/run.b2nd").all()
        assert invisible_to(reader, base, "@public/run.b2nd")
        client.publish("@public/run.b2nd")
        np.testing.assert_array_equal(reader.fetch("@public/run.b2nd"), SOURCE)


def test_a_duplicate_chunk_is_refused_with_409_and_the_array_is_untouched(server):
    base, _statedir = server
    with writer(base) as client:
        array = lay_out(client)
        array.fill_chunk(0, chunk_of(SOURCE, 0))
        with pytest.raises(cat2.ChunkAlreadyWritten) as refused:
            array.fill_chunk(0, chunk_of(-SOURCE, 0))
        assert isinstance(refused.value, blosc2.ChunkAlreadyWritten)  # as upstream raises
        for n in range(1, NCHUNKS):
            array.fill_chunk(n, chunk_of(SOURCE, n))
        array.publish()
        np.testing.assert_array_equal(client.fetch("@public/run.b2nd"), SOURCE)


def test_a_chunk_of_zeros_counts_as_written(server):
    base, _statedir = server
    zeros = np.zeros(SHAPE, dtype=np.int32)
    with writer(base) as client:
        array = lay_out(client)
        array.fill_chunk(3, chunk_of(zeros, 3))
        assert array.written_chunks()[3]
        with pytest.raises(cat2.ChunkAlreadyWritten):
            array.fill_chunk(3, chunk_of(SOURCE, 3))


def test_a_fill_goes_on_after_a_restart(tmp_path):
    first = in_process_subscriber(tmp_path / "state")
    try:
        with served(first.subscriber.app) as base, writer(base) as client:
            lay_out(client).fill_chunk(0, chunk_of(SOURCE, 0))
    finally:
        first.subscriber.close()
    again = create_subscriber(first.subscriber_settings)  # same state, users kept
    try:
        with served(again.app) as base, writer(base) as client:
            assert client.written_chunks("@public/run.b2nd").tolist()[:2] == [True, False]
            with pytest.raises(cat2.ChunkAlreadyWritten):
                client.fill_chunk("@public/run.b2nd", 0, chunk_of(SOURCE, 0))
            for n in range(1, NCHUNKS):
                client.fill_chunk("@public/run.b2nd", n, chunk_of(SOURCE, n))
            client.publish("@public/run.b2nd")
            np.testing.assert_array_equal(client.fetch("@public/run.b2nd"), SOURCE)
    finally:
        again.close()


def test_written_chunks_are_charged_to_the_quota(tmp_path):
    app = in_process_subscriber(tmp_path / "state", quota=5_000)
    try:
        with served(app.subscriber.app) as base, writer(base) as client:
            array = lay_out(client)
            noise = np.random.default_rng(1).integers(0, 2**31, SHAPE, dtype=np.int32)
            written = 0
            with pytest.raises(cat2.APIError) as refused:
                for n in range(NCHUNKS):  # 400 bytes a chunk, stored as they are
                    array.fill_chunk(n, chunk_of(noise, n, clevel=0))
                    written += 1
            assert refused.value.status_code == 400 and written < NCHUNKS
            assert "quota limit has been exceeded" in refused.value.detail
    finally:
        app.subscriber.close()


def post_chunk(base: str, cookie: dict, path: str, nchunk, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{base}/api/chunk/{path}", params={"nchunk": nchunk}, content=body, headers=cookie
    )


@pytest.fixture
def laid_out(server):
    """A served subscriber with @public/run.b2nd laid out; (base, the writer's cookie)."""
    base, _statedir = server
    with writer(base) as client:
        lay_out(client)
        yield base, {"Cookie": client.cookie}


GOOD = chunk_of(SOURCE, 0)
BAD_CHUNKS = {
    "wrong typesize": (chunk_of(SOURCE, 0, typesize=2), "typesize of 2"),
    "wrong blocksize": (chunk_of(SOURCE, 0, blocksize=200), "blocks are 200 bytes"),
    "wrong size": (blosc2.compress2(np.zeros(50, np.int32), typesize=4), "holds 200 bytes"),
    "not a chunk": (b"definitely not blosc2 data, not at all", "not a whole Blosc2 chunk"),
    "truncated": (GOOD[: len(GOOD) // 2], "header says"),
    "damaged": (GOOD[:32] + bytes(len(GOOD) - 32), "does not decompress"),
}


@pytest.mark.parametrize("body,said", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_a_chunk_that_does_not_fit_is_a_400_and_the_array_is_untouched(laid_out, body, said):
    base, cookie = laid_out
    got = post_chunk(base, cookie, "@public/run.b2nd", 0, body)
    assert got.status_code == 400 and said in got.json()["detail"], got.text
    with writer(base) as client:
        assert not client.written_chunks("@public/run.b2nd").any()
        for n in range(NCHUNKS):
            client.fill_chunk("@public/run.b2nd", n, chunk_of(SOURCE, n))
        client.publish("@public/run.b2nd")
        np.testing.assert_array_equal(client.fetch("@public/run.b2nd"), SOURCE)


BAD_REQUESTS = {
    "nchunk out of range": ("@public/run.b2nd", NCHUNKS, 404, f"has no chunk {NCHUNKS}"),
    "negative nchunk": ("@public/run.b2nd", -1, 404, "has no chunk -1"),
    "nchunk not a number": ("@public/run.b2nd", "two", 422, "valid integer"),
    "not an array": ("@public/notes.txt", 0, 400, "not a .b2nd array"),
    "not laid out": ("@public/other.b2nd", 0, 404, "not laid out"),
    "no such root": ("@nowhere/run.b2nd", 0, 404, "does not exist"),
}


@pytest.mark.parametrize("path,nchunk,status,said", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_chunk_write_is_a_4xx_saying_why(laid_out, path, nchunk, status, said):
    base, cookie = laid_out
    got = post_chunk(base, cookie, path, nchunk, GOOD)
    assert got.status_code == status and said in str(got.json()["detail"]), got.text


def test_writing_and_publishing_need_the_right_to_write_the_root(laid_out):
    base, _cookie = laid_out
    anonymous = post_chunk(base, {}, "@public/run.b2nd", 0, GOOD)
    assert anonymous.status_code == 401 and anonymous.json()["detail"]
    assert httpx.post(f"{base}/api/publish/@public/run.b2nd").status_code == 401
    assert httpx.get(f"{base}/api/written_chunks/@public/run.b2nd").status_code == 401
    with cat2.Client(base) as reader, pytest.raises(cat2.APIError) as refused:
        reader.lay_out("@public/mine.b2nd", SHAPE, np.int32, chunks=CHUNKS)
    assert refused.value.status_code == 401
    with cat2.Client(base, SUPERUSER) as other:  # another user's @personal is their own
        lay_out(writer_of_personal := cat2.Client(base, USER), "@personal/own.b2nd")
        writer_of_personal.close()
        with pytest.raises(cat2.APIError) as missing:
            other.fill_chunk("@personal/own.b2nd", 0, GOOD)
        assert missing.value.status_code == 404


def test_publishing_before_every_chunk_is_written_is_refused(laid_out):
    base, cookie = laid_out
    post_chunk(base, cookie, "@public/run.b2nd", 0, GOOD)
    got = httpx.post(f"{base}/api/publish/@public/run.b2nd", headers=cookie)
    assert got.status_code == 400
    assert f"{NCHUNKS - 1} of its {NCHUNKS} chunks still unwritten" in got.json()["detail"]


def test_a_published_array_is_neither_laid_out_again_nor_written_to(laid_out):
    base, cookie = laid_out
    with writer(base) as client:
        for n in range(NCHUNKS):
            client.fill_chunk("@public/run.b2nd", n, chunk_of(SOURCE, n))
        client.publish("@public/run.b2nd")
        with pytest.raises(cat2.APIError) as again:
            client.publish("@public/run.b2nd")
        assert again.value.status_code == 409 and "already published" in again.value.detail
        with pytest.raises(cat2.APIError) as over:
            lay_out(client)
        assert over.value.status_code == 409 and "remove it before" in over.value.detail
        with pytest.raises(cat2.ChunkAlreadyWritten):
            client.fill_chunk("@public/run.b2nd", 0, GOOD)
        np.testing.assert_array_equal(client.fetch("@public/run.b2nd"), SOURCE)


def test_writers_see_the_geometry_and_state_and_readers_nothing(laid_out):
    base, cookie = laid_out
    post_chunk(base, cookie, "@public/run.b2nd", 2, chunk_of(SOURCE, 2))
    info = httpx.get(f"{base}/api/info/@public/run.b2nd", headers=cookie).json()
    assert info["shape"] == list(SHAPE) and info["chunks"] == list(CHUNKS)
    assert (info["state"], info["written"], info["nchunks"]) == ("filling", 1, NCHUNKS)
    values = httpx.get(f"{base}/api/fetch/@public/run.b2nd", headers=cookie)
    assert values.status_code == 404 and "not published" in values.json()["detail"]
    frame = httpx.get(
        f"{base}/api/fetch/@public/run.b2nd", headers={**cookie, "Range": "bytes=0-15"}
    )
    assert frame.status_code == 206 and len(frame.content) == 16
    assert (
        httpx.get(f"{base}/api/fetch/@public/run.b2nd", headers={"Range": "bytes=0-15"}).status_code
        == 404
    )
    listing = httpx.get(f"{base}/api/list/@public", headers=cookie).json()
    assert "run.b2nd" not in listing


def test_the_readme_example_runs_as_written(server):
    base, _statedir = server
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Chunked ingestion", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("http://localhost:8000", base).replace('"foobar11"', repr(USER[1]))
    code = code.replace('"user@example.com"', repr(USER[0]))
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    assert names["array"].written_chunks().all()
    names["client"].close()
    with cat2.Client(base) as reader:
        np.testing.assert_array_equal(reader.fetch("@public/run.b2nd"), names["source"])


def test_removing_a_laid_out_array_gives_the_fill_up(laid_out):
    base, cookie = laid_out
    post_chunk(base, cookie, "@public/run.b2nd", 0, GOOD)
    with writer(base) as client:
        assert str(client.remove("@public/run.b2nd")) == "@public/run.b2nd"
        with pytest.raises(cat2.APIError) as gone:
            client.written_chunks("@public/run.b2nd")
        assert gone.value.status_code == 404 and "not laid out" in gone.value.detail
        with pytest.raises(cat2.APIError) as again:
            client.remove("@public/run.b2nd")
        assert again.value.status_code == 404
        assert not lay_out(client).written_chunks().any()  # laid out anew, empty
