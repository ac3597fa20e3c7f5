"""Tests of `cat2pub`: real publisher processes, real RabbitMQ, real files.

The broker is $CATERVA2_BROKER_URL, else amqp://guest:guest@127.0.0.1:5672/.
Each test publishes a root with a unique name and listens to its messages on
exclusive queues of its own, so runs on a shared broker never see each other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pika
import pytest

from caterva2.broker import topology
from caterva2.broker.connection import parameters
from caterva2.broker.messages import (
    ChangeMessage,
    DiscoverRequest,
    RootAnnouncement,
    decode,
    encode,
)
from caterva2.common import b2files

from .broker_support import RUN, TcpProxy
from .services import PublisherProcess, free_port, wait_for, wait_http

QUIET = 0.7  # longer than the watcher takes to report a closed file: the wait for "no more"


def new_root(prefix: str) -> str:
    """A root name no other test or run uses."""
    return f"test-{prefix}-{RUN}-{uuid.uuid4().hex[:6]}"


class Tap:
    """Exclusive queues receiving a root's changes and announcements, read by polling."""

    def __init__(self, broker_url: str, root: str) -> None:
        self.root = root
        self.conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-tap"))
        self.channel = self.conn.channel()
        topology.declare_exchanges(self.channel)
        self.changes_q = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.changes_q, topology.CHANGES_EXCHANGE, routing_key=root)
        self.roots_q = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.roots_q, topology.ROOTS_EXCHANGE, routing_key="#")

    def close(self) -> None:
        self.conn.close()

    def _next(self, queue: str, timeout: float) -> tuple[object, float] | None:
        deadline = time.monotonic() + timeout
        while True:
            method, _props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                message = decode(body)
                if getattr(message, "root", None) == self.root:
                    return message, time.monotonic()
                continue  # another publisher's announcement on the shared fanout
            if time.monotonic() >= deadline:
                return None
            self.conn.sleep(0.02)

    def changes(self, count: int, timeout: float = 10, quiet: float = QUIET) -> list:
        """Exactly `count` change messages: waits for them, then checks none follows."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            item = self._next(self.changes_q, max(0, left))
            assert item is not None, f"only {len(got)} of {count} change(s): {got}"
            got.append(item[0])
        extra = self._next(self.changes_q, quiet)
        assert extra is None, f"unexpected extra change {extra[0]} after {got}"
        return got

    def announcement(self, timeout: float = 10) -> tuple[RootAnnouncement, float]:
        """The next announcement of our root, and when it arrived."""
        item = self._next(self.roots_q, timeout)
        assert item is not None, f"no announcement of {self.root} within {timeout} s"
        return item

    def discover(self) -> None:
        exchange, key = topology.route(DiscoverRequest(reply_to="tests"))
        self.channel.basic_publish(exchange, key, encode(DiscoverRequest(reply_to="tests")))


def by_path(messages: list) -> dict[str, ChangeMessage]:
    return {m.path: m for m in messages}


def make_array(path: Path, data: np.ndarray, chunks=(100,), blocks=(10,)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(data, urlpath=str(path), mode="w", chunks=chunks, blocks=blocks)


def make_frame(path: Path, data: bytes) -> None:
    schunk = blosc2.SChunk(
        chunksize=100, data=data, urlpath=str(path), mode="w", cparams={"typesize": 1}
    )
    del schunk


def stored_chunks(path: Path) -> list[bytes]:
    obj = blosc2.open(str(path))
    schunk = obj.schunk if isinstance(obj, blosc2.NDArray) else obj
    return [schunk.get_chunk(i) for i in range(schunk.nchunks)]


# -- the HTTP API on a root made of every kind of file -----------------------------

BIG = np.arange(2_600_000, dtype=np.int32).tobytes()  # 10.4 MB: two 8 MiB pieces in its .b2


@pytest.fixture(scope="module")
def served(tmp_path_factory, broker_url):
    """A running publisher of a root holding arrays, a frame and regular files."""
    base = tmp_path_factory.mktemp("served")
    root = base / "root"
    make_array(root / "ds-1d.b2nd", np.arange(1000, dtype=np.int64))
    make_array(root / "dir1" / "ds-2d.b2nd", np.arange(200).reshape(10, 20), (5, 10), (5, 5))
    make_frame(root / "ds-hello.b2frame", b"Hello world! " * 100)
    (root / "README.md").write_text("# Header example\n\nSome text.\n")
    (root / "dir1" / "big.bin").write_bytes(BIG)
    (root / "ex.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(500))
    (base / "packed.txt").write_text("already compressed, as subscribers store files\n")
    b2files.compress_file(base / "packed.txt", root / "packed.txt.b2")
    (root / ".hidden").write_text("not a dataset")
    (root / "draft.txt.part").write_text("not a dataset yet")
    pub = PublisherProcess(new_root("api"), root, base / "state", broker_url).start()
    yield pub
    pub.stop()


def test_list_names_every_dataset_by_its_relative_path(served):
    resp = served.get("/api/list")
    assert resp.status_code == 200
    assert resp.json() == [
        "README.md",
        "dir1/big.bin",
        "dir1/ds-2d.b2nd",
        "ds-1d.b2nd",
        "ds-hello.b2frame",
        "ex.h5",
        "packed.txt",
    ]
    assert served.get("/api/list/").json() == resp.json()


def test_info_describes_the_container_with_its_etag(served):
    resp = served.get("/api/info/ds-1d.b2nd")
    assert resp.status_code == 200
    meta = resp.json()
    assert meta["shape"] == [1000] and meta["chunks"] == [100] and meta["blocks"] == [10]
    assert meta["dtype"] == "int64"
    assert meta["schunk"]["nchunks"] == 10 and meta["schunk"]["vlmeta"] == {}
    st = (served.rootdir / "ds-1d.b2nd").stat()
    assert resp.headers["ETag"] == f'"{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_size}"'
    frame = served.get("/api/info/ds-hello.b2frame").json()
    assert frame["nbytes"] == 1300 and frame["chunksize"] == 100 and frame["mtime"]
    assert served.get("/api/info/dir1/ds-2d.b2nd").json()["shape"] == [10, 20]


def test_info_answers_304_when_if_none_match_names_the_current_etag(served):
    etag = served.get("/api/info/ds-1d.b2nd").headers["ETag"]
    for header in (etag, etag.strip('"'), f'"other", {etag}'):
        resp = served.get("/api/info/ds-1d.b2nd", headers={"If-None-Match": header})
        assert resp.status_code == 304 and resp.content == b""
        assert resp.headers["ETag"] == etag
    resp = served.get("/api/info/ds-1d.b2nd", headers={"If-None-Match": '"1:2"'})
    assert resp.status_code == 200


def test_info_refuses_unknown_and_unsafe_paths(served):
    for path in ("nope.b2nd", "dir1", ".hidden", "draft.txt.part", "README.md.b2"):
        resp = served.get(f"/api/info/{path}")
        assert resp.status_code == 404, path
        assert "detail" in resp.json()
    resp = served.get("/api/info/dir1/%2E%2E/%2E%2E/etc/passwd")
    assert resp.status_code == 400
    assert "'..'" in resp.json()["detail"]


def test_chunks_are_the_stored_bytes_never_recompressed(served):
    httpx.delete(f"{served.url}/api/stats")
    for name in ("ds-1d.b2nd", "dir1/ds-2d.b2nd", "ds-hello.b2frame"):
        expected = stored_chunks(served.rootdir / name)
        assert len(expected) > 1
        etag = served.get(f"/api/info/{name}").headers["ETag"]
        for n, chunk in enumerate(expected):
            resp = served.get(f"/api/chunk/{name}", params={"nchunk": n})
            assert resp.status_code == 200 and resp.content == chunk, (name, n)
            assert resp.headers["ETag"] == etag
        # The original publisher's spelling of the same request.
        resp = served.get(f"/api/download/{name}", params={"nchunk": 0})
        assert resp.content == expected[0]
    stats = served.get("/api/stats").json()
    assert stats["chunks"]["ds-1d.b2nd"] == {str(n): 1 for n in range(1, 10)} | {"0": 2}
    assert stats["chunks_total"] == 10 + 1 + 4 + 1 + 13 + 1


def test_chunk_requests_are_checked(served):
    assert served.get("/api/chunk/ds-1d.b2nd").status_code == 400
    assert served.get("/api/chunk/ds-1d.b2nd", params={"nchunk": -1}).status_code == 400
    assert served.get("/api/chunk/ds-1d.b2nd", params={"nchunk": "x"}).status_code == 400
    resp = served.get("/api/chunk/ds-1d.b2nd", params={"nchunk": 10})
    assert resp.status_code == 404 and "out of range" in resp.json()["detail"]
    assert served.get("/api/chunk/nope.b2nd", params={"nchunk": 0}).status_code == 404
    resp = served.get("/api/chunk/ds-1d.b2nd", params={"nchunk": 0}, headers={"If-Match": '"1:2"'})
    assert resp.status_code == 412


def test_whole_file_is_the_stored_file_with_ranges(served):
    stored = (served.rootdir / "ds-1d.b2nd").read_bytes()
    resp = served.get("/api/file/ds-1d.b2nd")
    assert resp.status_code == 200 and resp.content == stored
    assert resp.headers["Content-Length"] == str(len(stored))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert 'filename="ds-1d.b2nd"' in resp.headers["Content-Disposition"]
    etag = resp.headers["ETag"]
    for header, status, part, content_range in (
        ("bytes=0-99", 206, stored[:100], f"bytes 0-99/{len(stored)}"),
        ("bytes=100-", 206, stored[100:], f"bytes 100-{len(stored) - 1}/{len(stored)}"),
        ("bytes=-10", 206, stored[-10:], f"bytes {len(stored) - 10}-{len(stored) - 1}/"),
        ("bytes=0-99999999", 206, stored, f"bytes 0-{len(stored) - 1}/{len(stored)}"),
        ("bytes=0-1,5-6", 200, stored, None),  # several ranges: the whole file instead
    ):
        resp = served.get("/api/file/ds-1d.b2nd", headers={"Range": header})
        assert resp.status_code == status, header
        assert resp.content == part, header
        if content_range:
            assert resp.headers["Content-Range"].startswith(content_range)
    resp = served.get("/api/file/ds-1d.b2nd", headers={"Range": f"bytes={len(stored)}-"})
    assert resp.status_code == 416
    resp = served.get("/api/file/ds-1d.b2nd", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert served.get("/api/file/nope.b2nd").status_code == 404


def test_regular_file_is_served_from_a_b2_copy_in_the_cache(served):
    text = (served.rootdir / "README.md").read_bytes()
    meta = served.get("/api/info/README.md").json()
    assert meta["nbytes"] == len(text) and meta["cparams"]["typesize"] == 1
    assert meta["urlpath"] == "README.md.b2" and meta["vlmeta"] == {}
    chunk = served.get("/api/chunk/README.md", params={"nchunk": 0}).content
    assert blosc2.decompress2(chunk) == text
    cached = served.statedir / "cache" / "README.md.b2"
    assert chunk == stored_chunks(cached)[0]
    resp = served.get("/api/file/README.md")
    assert 'filename="README.md.b2"' in resp.headers["Content-Disposition"]
    assert resp.content == cached.read_bytes()
    assert blosc2.schunk_from_cframe(resp.content)[:] == text


def test_stored_b2_file_is_served_natively_under_its_logical_name(served):
    stored = served.rootdir / "packed.txt.b2"
    meta = served.get("/api/info/packed.txt").json()
    assert meta["urlpath"] == "packed.txt.b2" and meta["nbytes"] == 47
    assert (
        served.get("/api/chunk/packed.txt", params={"nchunk": 0}).content
        == (stored_chunks(stored)[0])
    )
    assert served.get("/api/file/packed.txt").content == stored.read_bytes()
    assert not (served.statedir / "cache" / "packed.txt.b2").exists()


def test_file_larger_than_a_chunk_is_compressed_piece_by_piece(served):
    meta = served.get("/api/info/dir1/big.bin").json()
    assert meta["nbytes"] == len(BIG) and meta["nchunks"] == 2
    pieces = [
        blosc2.decompress2(served.get("/api/chunk/dir1/big.bin", params={"nchunk": n}).content)
        for n in range(2)
    ]
    assert b"".join(pieces) == BIG
    assert served.get("/api/info/ex.h5").json()["nbytes"] == 508  # .h5: a regular file for now


# -- change messages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory, broker_url):
    """A running publisher of an initially empty root, with a tap on its messages."""
    base = tmp_path_factory.mktemp("live")
    (base / "root").mkdir()
    name = new_root("live")
    tap = Tap(broker_url, name)
    pub = PublisherProcess(name, base / "root", base / "state", broker_url).start()
    tap.announcement()
    yield pub, tap
    pub.stop()
    tap.close()


def test_created_modified_deleted_each_announce_exactly_one_change(live):
    pub, tap = live
    path = pub.rootdir / "cmd" / "a.b2nd"
    make_array(path, np.arange(1000))
    (created,) = tap.changes(1)
    assert (created.root, created.path, created.kind) == (pub.name, "cmd/a.b2nd", "created")
    info = pub.get("/api/info/cmd/a.b2nd")
    assert f'"{created.etag}"' == info.headers["ETag"]
    assert created.meta == info.json() and created.mtime == path.stat().st_mtime

    make_array(path, np.arange(2000))
    (modified,) = tap.changes(1)
    assert (modified.path, modified.kind) == ("cmd/a.b2nd", "modified")
    assert modified.meta["shape"] == [2000] and modified.etag != created.etag

    path.unlink()
    (deleted,) = tap.changes(1)
    assert (deleted.path, deleted.kind, deleted.etag, deleted.meta) == (
        "cmd/a.b2nd",
        "deleted",
        None,
        {},
    )
    assert pub.get("/api/info/cmd/a.b2nd").status_code == 404


def test_regular_file_change_carries_the_metadata_of_its_b2_copy(live):
    pub, tap = live
    (pub.rootdir / "notes.txt").write_text("first version")
    (created,) = tap.changes(1)
    assert created.meta["nbytes"] == 13 and created.meta["cparams"]["typesize"] == 1
    (pub.rootdir / "notes.txt").write_text("second, longer version")
    (modified,) = tap.changes(1)
    assert modified.kind == "modified" and modified.meta["nbytes"] == 22
    chunk = pub.get("/api/chunk/notes.txt", params={"nchunk": 0}).content
    assert blosc2.decompress2(chunk) == b"second, longer version"
    (pub.rootdir / "notes.txt").unlink()
    assert tap.changes(1)[0].kind == "deleted"
    assert not (pub.statedir / "cache" / "notes.txt.b2").exists()


def test_file_written_slowly_is_announced_once_when_complete(live):
    pub, tap = live
    pieces = [bytes([i]) * 1000 for i in range(5)]
    with open(pub.rootdir / "slow.bin", "wb") as f:
        for piece in pieces:
            f.write(piece)
            f.flush()
            time.sleep(0.3)  # longer than the quiet period: only the close says it is done
    (change,) = tap.changes(1)
    assert (change.path, change.kind) == ("slow.bin", "created")
    assert change.meta["nbytes"] == 5000 and change.etag.endswith(":5000")


def test_move_is_announced_as_a_deletion_and_a_creation(live):
    pub, tap = live
    make_array(pub.rootdir / "mv" / "old.b2nd", np.arange(300))
    tap.changes(1)
    os.rename(pub.rootdir / "mv" / "old.b2nd", pub.rootdir / "mv" / "new.b2nd")
    changes = by_path(tap.changes(2))
    assert changes["mv/old.b2nd"].kind == "deleted"
    assert changes["mv/new.b2nd"].kind == "created"


def test_atomic_rename_from_a_temp_name_is_one_creation(live):
    pub, tap = live
    tmp = pub.rootdir / ".incoming.b2nd.tmp"
    make_array(tmp, np.arange(500))
    os.rename(tmp, pub.rootdir / "atomic.b2nd")
    (change,) = tap.changes(1)
    assert (change.path, change.kind) == ("atomic.b2nd", "created")


def test_directory_moved_in_and_out_announces_each_dataset(live, tmp_path):
    pub, tap = live
    outside = tmp_path / "batch"
    for i in range(3):
        make_array(outside / "sub" / f"d{i}.b2nd", np.arange(100 * (i + 1)))
    os.rename(outside, pub.rootdir / "batch")
    created = by_path(tap.changes(3))
    assert {p: m.kind for p, m in created.items()} == {
        f"batch/sub/d{i}.b2nd": "created" for i in range(3)
    }
    # Moved out: one event for the directory, none for the files that went with it.
    os.rename(pub.rootdir / "batch", tmp_path / "gone")
    deleted = by_path(tap.changes(3))
    assert {p: m.kind for p, m in deleted.items()} == {
        f"batch/sub/d{i}.b2nd": "deleted" for i in range(3)
    }


# -- what happens while something is down ------------------------------------------


def test_changes_made_while_stopped_are_announced_at_next_start(tmp_path, broker_url):
    root = tmp_path / "root"
    make_array(root / "keep.b2nd", np.arange(100))
    make_array(root / "change.b2nd", np.arange(100))
    (root / "gone.txt").write_text("soon gone")
    name = new_root("restart")
    tap = Tap(broker_url, name)
    pub = PublisherProcess(name, root, tmp_path / "state", broker_url)
    try:
        pub.start()
        assert {m.kind for m in tap.changes(3)} == {"created"}
        assert pub.stop() == 0
        make_array(root / "change.b2nd", np.arange(200))
        (root / "gone.txt").unlink()
        (root / "new.txt").write_text("new")
        pub.start()
        changes = {p: m.kind for p, m in by_path(tap.changes(3)).items()}
        assert changes == {"change.b2nd": "modified", "gone.txt": "deleted", "new.txt": "created"}
    finally:
        pub.stop()
        tap.close()


def _via(proxy: TcpProxy, broker_url: str) -> str:
    parts = urllib.parse.urlsplit(broker_url)
    auth = parts.netloc.rpartition("@")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{proxy.port}"))


def _behind_proxy(tmp_path, broker_url: str, label: str):
    """(proxy, tap, publisher): a publisher reaching the broker through a proxy we can cut."""
    params = parameters(broker_url)
    proxy = TcpProxy(params.host, params.port)
    (tmp_path / "root").mkdir()
    name = new_root(label)
    tap = Tap(broker_url, name)
    pub = PublisherProcess(name, tmp_path / "root", tmp_path / "state", _via(proxy, broker_url))
    return proxy, tap, pub


def _change_while_cut(pub, proxy, tap, filename: str) -> None:
    """Start the publisher, cut its broker connection, create `filename`: it waits in the outbox."""
    pub.start()
    tap.announcement()
    proxy.cut()
    make_array(pub.rootdir / filename, np.arange(100))
    wait_for(lambda: pub.outbox_size() == 1, "the change to reach the outbox")


def test_changes_made_while_the_broker_is_unreachable_are_delivered_when_it_is_back(
    tmp_path, broker_url
):
    proxy, tap, pub = _behind_proxy(tmp_path, broker_url, "outage")
    try:
        _change_while_cut(pub, proxy, tap, "during.b2nd")
        assert tap.changes(0, quiet=0.5) == []
        proxy.restore()
        (change,) = tap.changes(1, timeout=15)
        assert (change.path, change.kind) == ("during.b2nd", "created")
        wait_for(lambda: pub.outbox_size() == 0, "the confirm to clear the outbox")
    finally:
        pub.stop()
        proxy.cut()
        tap.close()


def test_outbox_left_at_stop_is_sent_at_next_start(tmp_path, broker_url):
    proxy, tap, pub = _behind_proxy(tmp_path, broker_url, "outbox")
    try:
        _change_while_cut(pub, proxy, tap, "pending.b2nd")
        assert pub.stop() == 0  # gives up waiting for the broker, keeps the outbox
        assert pub.outbox_size() == 1
        proxy.restore()
        pub.start()
        (change,) = tap.changes(1, timeout=15)
        assert (change.path, change.kind) == ("pending.b2nd", "created")
        wait_for(lambda: pub.outbox_size() == 0, "the confirm to clear the outbox")
    finally:
        pub.stop()
        proxy.cut()
        tap.close()


# -- root announcements ----------------------------------------------------------------


def test_root_is_announced_at_start_with_heartbeats_on_discovery_and_offline_at_stop(
    tmp_path, broker_url
):
    (tmp_path / "root").mkdir()
    name = new_root("announce")
    port = free_port()
    conf = tmp_path / "caterva2.toml"
    # Settings from [publisher.ID] in the configuration file this time.
    conf.write_text(
        f'[publisher]\nheartbeat = 99\n\n[publisher.one]\nname = "{name}"\n'
        f'root = "{tmp_path / "root"}"\nhttp = "127.0.0.1:{port}"\n'
        f'url = "http://pub.example:{port}"\nheartbeat = 1.0\n'
        f'statedir = "{tmp_path / "state"}"\n\n[broker]\nurl = "{broker_url}"\n'
    )
    tap = Tap(broker_url, name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "caterva2.publisher.server", "--conf", str(conf), "--id", "one"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "CATERVA2_BROKER_URL"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/list", proc)
        first, t0 = tap.announcement()
        url = f"http://pub.example:{port}"
        # An empty root: no change recorded yet, its sequence is at 0.
        assert first == RootAnnouncement(name, url, first.etag, True, seq=0)
        # Other processes on a shared broker may ask for announcements too, so only
        # count what must be there: a heartbeat every second.
        beats = []
        while len(beats) < 2 or beats[-1][1] - t0 < 1.6:
            beats.append(tap.announcement(timeout=3))
        assert all(b.online and b.etag == first.etag for b, _ in beats)
        tap.discover()  # a heartbeat just went: the answer must come well before the next
        answer, t3 = tap.announcement(timeout=3)
        assert answer.online and t3 - beats[-1][1] < 0.6
        make_array(tmp_path / "root" / "x.b2nd", np.arange(10))
        tap.changes(1, quiet=0)
        wait_for(lambda: tap.announcement()[0].etag != first.etag, "a new root etag")
        assert tap.announcement()[0].seq == 1  # the heartbeats say how far the changes go
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 5
        while (last := tap.announcement(timeout=deadline - time.monotonic())[0]).online:
            pass
        assert last.root == name and not last.online
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tap.close()
