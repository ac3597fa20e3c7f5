"""Uploads, downloads and whole reads of big and odd files, against real subscriber processes.

Bodies above waitress's 512 KiB arrive spooled to a file, whose `file` part the
subscriber copies without parsing it through Python (`subscriber/upload_stream.py`);
smaller ones go through falcon's multipart parser.  Both must store exactly what
was sent, refuse what is broken with a 4xx, and leave nothing behind.
"""

from __future__ import annotations

import http.client
import io
import threading
from pathlib import Path

import blosc2
import numpy as np
import pytest

import caterva2 as cat2
from caterva2.subscriber.file_ops import FileOps

from .app_support import USER, in_process_subscriber
from .services import WAIT, SubscriberProcess, wait_for

BOUNDARY = "testboundary7d2a"


def smooth_field(shape: tuple[int, ...]) -> np.ndarray:
    """Values that compress as measured data does (ratio ~2.6 with Blosc2's defaults)."""
    grid = np.indices(shape, dtype=np.float64)
    smooth = np.sin(grid.sum(axis=0) / 17.0)
    noise = np.random.default_rng(1).normal(0, 0.01, shape)
    return (smooth + noise).astype(np.float32).astype(np.float64)


def noisy_field(shape: tuple[int, ...]) -> np.ndarray:
    """Full-precision float64 noise: compresses poorly (ratio ~1.1-1.3)."""
    return np.random.default_rng(2).normal(0, 1, shape)


def write_b2nd(path: Path, values: np.ndarray, chunks: tuple, blocks: tuple | None = None) -> Path:
    blosc2.asarray(values, urlpath=str(path), mode="w", chunks=chunks, blocks=blocks)
    return path


def multipart(filename: str, data: bytes, tail: bool = True) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + (f"\r\n--{BOUNDARY}--\r\n".encode() if tail else b"")


def post_raw(server: SubscriberProcess, cookie: str, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.request(
            "POST",
            f"/api/upload/{path}",
            body,
            {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Cookie": cookie},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tmp_is_empty(server: SubscriberProcess) -> bool:
    return not any((server.statedir / "tmp").iterdir())


@pytest.fixture(scope="module")
def quota_sub(tmp_path_factory):
    """A subscriber with logins and a 12 MiB quota (12,582,912 bytes)."""
    statedir = tmp_path_factory.mktemp("upload-bulk") / "state"
    statedir.mkdir()
    server = SubscriberProcess(statedir, conf={"login": True, "quota": "12M"})
    server.add_user(*server.user)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(quota_sub):
    c = cat2.Client(quota_sub.urlbase, quota_sub.user)
    yield c
    for name in c.get_list("@public"):
        c.remove(f"@public/{name}")
    c.close()


@pytest.mark.parametrize("make", [smooth_field, noisy_field], ids=["ratio2.6", "noisy"])
@pytest.mark.parametrize(
    "shape,chunks,blocks",
    [((60, 70, 90), (16, 33, 50), None), ((20, 100, 100), (20, 100, 100), (5, 50, 50))],
    ids=["odd-chunks", "one-chunk"],
)
def test_big_array_round_trips(client, quota_sub, tmp_path, make, shape, chunks, blocks):
    values = make(shape)
    src = write_b2nd(tmp_path / "src.b2nd", values, chunks, blocks)
    assert src.stat().st_size > 512 * 1024  # spooled by waitress: the kernel-copy path
    assert str(client.upload(src, "@public/dir/a.b2nd")) == "@public/dir/a.b2nd"
    stored = quota_sub.statedir / "public" / "dir" / "a.b2nd"
    assert stored.read_bytes() == src.read_bytes()
    np.testing.assert_array_equal(client.fetch("@public/dir/a.b2nd"), values)
    np.testing.assert_array_equal(client.get("@public/dir/a.b2nd")[5:17], values[5:17])
    got = client.download("@public/dir/a.b2nd", tmp_path / "down.b2nd")
    assert got.read_bytes() == src.read_bytes()
    wait_for(lambda: tmp_is_empty(quota_sub), "the tmp folder emptied")


@pytest.mark.parametrize("size", [0, 1, 300_000, 3 * 1024 * 1024 + 7], ids=str)
def test_odd_regular_files_come_back_byte_for_byte(client, tmp_path, size):
    # Bytes that look like multipart delimiters (of another boundary and of none) inside.
    rng = np.random.default_rng(size)
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    fake = b"\r\n--otherboundary--\r\n\r\n--"
    for at in range(0, max(size - len(fake), 0), 100_003):
        data[at : at + len(fake)] = fake
    src = tmp_path / 'odd "name".bin'
    src.write_bytes(bytes(data))
    client.upload(src, "@public/odd.bin")
    got = client.download("@public/odd.bin", tmp_path / "back.bin")
    assert got.read_bytes() == bytes(data)


def test_an_upload_replacing_a_file_gives_the_new_content(client, tmp_path):
    first = write_b2nd(tmp_path / "1.b2nd", noisy_field((30, 100, 100)), (10, 50, 50))
    second = write_b2nd(tmp_path / "2.b2nd", smooth_field((40, 100, 100)), (10, 50, 50))
    client.upload(first, "@public/r.b2nd")
    client.upload(second, "@public/r.b2nd")
    np.testing.assert_array_equal(client.fetch("@public/r.b2nd"), blosc2.open(str(second))[()])


@pytest.mark.parametrize("spooled", [True, False], ids=["spooled", "in-memory"])
def test_a_body_without_its_closing_delimiter_is_refused_and_the_old_file_stays(
    client, quota_sub, tmp_path, spooled
):
    old = write_b2nd(tmp_path / "old.b2nd", smooth_field((10, 50, 50)), (5, 50, 50))
    client.upload(old, "@public/keep.b2nd")
    size = 2_000_000 if spooled else 100_000
    body = multipart("keep.b2nd", noisy_field((size // 8,)).tobytes(), tail=False)
    status, text = post_raw(quota_sub, client.cookie, "@public/keep.b2nd", body)
    assert 400 <= status < 500, text
    assert (quota_sub.statedir / "public" / "keep.b2nd").read_bytes() == old.read_bytes()
    wait_for(lambda: tmp_is_empty(quota_sub), "the tmp folder emptied")


@pytest.mark.parametrize("cut", [0.5, 0.999], ids=["half", "last-bytes"])
def test_a_truncated_blosc2_file_is_refused_and_the_old_file_stays(
    client, quota_sub, tmp_path, cut
):
    old = write_b2nd(tmp_path / "old.b2nd", smooth_field((10, 50, 50)), (5, 50, 50))
    client.upload(old, "@public/keep.b2nd")
    new = write_b2nd(tmp_path / "new.b2nd", noisy_field((40, 100, 100)), (10, 50, 50))
    data = new.read_bytes()
    status, text = post_raw(
        quota_sub,
        client.cookie,
        "@public/keep.b2nd",
        multipart("keep.b2nd", data[: int(len(data) * cut)]),
    )
    assert status == 400, text
    assert b"not a valid Blosc2" in text
    assert (quota_sub.statedir / "public" / "keep.b2nd").read_bytes() == old.read_bytes()
    wait_for(lambda: tmp_is_empty(quota_sub), "the tmp folder emptied")
    assert client.get_list("@public") == ["keep.b2nd"]


def test_a_connection_dropped_mid_body_leaves_nothing_behind(client, quota_sub, tmp_path):
    old = write_b2nd(tmp_path / "old.b2nd", smooth_field((10, 50, 50)), (5, 50, 50))
    client.upload(old, "@public/keep.b2nd")
    body = multipart("keep.b2nd", b"x" * 3_000_000)
    conn = http.client.HTTPConnection("127.0.0.1", quota_sub.port, timeout=WAIT)
    conn.putrequest("POST", "/api/upload/@public/keep.b2nd")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Cookie", client.cookie)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])
    conn.close()
    # The server is still fine, and stored nothing.
    assert client.get_list("@public") == ["keep.b2nd"]
    assert (quota_sub.statedir / "public" / "keep.b2nd").read_bytes() == old.read_bytes()
    wait_for(lambda: tmp_is_empty(quota_sub), "the tmp folder emptied")


@pytest.mark.parametrize("size", [400_000, 3_000_000], ids=["in-memory", "spooled"])
def test_an_upload_past_the_quota_is_refused_and_cleaned_up(client, quota_sub, tmp_path, size):
    filler = tmp_path / "filler.bin"
    filler.write_bytes(np.random.default_rng(5).bytes(12_300_000))
    client.upload(filler, "@public/filler.bin")  # random: stored compressed, still 12.3 MB
    src = tmp_path / "more.bin"
    src.write_bytes(np.random.default_rng(6).bytes(size))
    with pytest.raises(Exception) as info:
        client.upload(src, "@public/more.bin")
    assert info.value.response.status_code == 400
    assert "quota" in info.value.response.text
    assert client.get_list("@public") == ["filler.bin"]
    wait_for(lambda: tmp_is_empty(quota_sub), "the tmp folder emptied")
    client.remove("@public/filler.bin")
    client.upload(src, "@public/more.bin")  # room again once the filler is gone
    assert client.get_list("@public") == ["more.bin"]


def test_an_upload_still_arriving_blocks_no_other_write_nor_read(tmp_path):
    app = in_process_subscriber(tmp_path / "state")
    user = app.store.get_user_by_email(USER[0])
    ops = FileOps(app.subscriber.roots, None)
    half_sent, go_on = threading.Event(), threading.Event()

    class SlowBody(io.RawIOBase):
        """A body whose second half arrives only when the test says."""

        def __init__(self) -> None:
            self.parts = [b"first half ", b"second half"]

        def read(self, n: int = -1) -> bytes:
            if len(self.parts) == 1:
                half_sent.set()
                assert go_on.wait(WAIT)
            return self.parts.pop(0) if self.parts else b""

    results: list = []
    slow = threading.Thread(
        target=lambda: results.append(ops.upload("@public/slow.txt", "", SlowBody(), user))
    )
    slow.start()
    try:
        assert half_sent.wait(WAIT)
        others: list = []

        def other_writes() -> None:
            others.append(ops.upload("@public/other.txt", "", io.BytesIO(b"other"), user))
            others.append(ops.copy("@public/other.txt", "@public/copy.txt", user))

        writer = threading.Thread(target=other_writes)
        writer.start()
        writer.join(WAIT)
        assert others == ["@public/other.txt", "@public/copy.txt"]
        cookie = app.cookie(USER)
        resp = app.client.simulate_get("/api/download/@public/copy.txt", headers=cookie)
        assert resp.status_code == 200 and resp.content == b"other"
        assert results == []  # the slow one is still arriving
    finally:
        go_on.set()
        slow.join(WAIT)
    assert results == ["@public/slow.txt"]
    resp = app.client.simulate_get("/api/download/@public/slow.txt", headers=app.cookie(USER))
    assert resp.content == b"first half second half"
    app.subscriber.close()
