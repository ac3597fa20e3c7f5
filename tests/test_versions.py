"""One version per answer: versions that see every change, missed events, whole reads, queues."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pika
import pika.exceptions
import pytest
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

from caterva2.broker import topology
from caterva2.broker.connection import parameters
from caterva2.broker.consumer import Consumer
from caterva2.broker.messages import ChangeMessage
from caterva2.broker.publisher import ConfirmedPublisher
from caterva2.publisher.announcer import Announcer
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.publisher.state import State
from caterva2.publisher.watcher import Watcher

from .test_pubsub import fetch, follow, lab, wait_for, write_array  # noqa: F401 - fixture

# -- versions: what users cannot restore ------------------------------------------


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `cp -p` / `rsync -t` do


def test_content_change_with_size_and_mtime_restored_is_a_new_version(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_bytes(b"a" * 1000)
    adapter = DirectoryRoot(root, tmp_path / "cache")
    before, _meta = adapter.info("notes.txt")
    first = adapter.chunk("notes.txt", 0)[1]
    _rewrite_keeping_size_and_mtime(root / "notes.txt", b"b" * 1000)
    after = adapter.stat("notes.txt")
    assert after.etag != before.etag and after.mtime == before.mtime and after.size == 1000
    # The compressed copy served for a regular file is rebuilt too, not kept as current.
    stat, chunk = adapter.chunk("notes.txt", 0)
    assert stat.etag == after.etag and chunk != first
    assert blosc2.decompress2(chunk) == b"b" * 1000


# -- missed events: overflow and periodic rescans --------------------------------------


class _Changes:
    """A queue bound to one root's changes, read by polling."""

    def __init__(self, broker_url: str, root: str) -> None:
        self.conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-versions"))
        self.channel = self.conn.channel()
        topology.declare_exchanges(self.channel)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, topology.CHANGES_EXCHANGE, routing_key=root)
        self.paths: set[str] = set()

    def wait_paths(self, expected: set[str], timeout: float = 20) -> None:
        from caterva2.broker.messages import decode

        deadline = time.monotonic() + timeout
        while not expected <= self.paths and time.monotonic() < deadline:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.conn.sleep(0.05)
                continue
            self.paths.add(decode(body).path)
        assert expected <= self.paths, f"never announced: {sorted(expected - self.paths)}"

    def close(self) -> None:
        self.conn.close()


def _announcer(tmp_path: Path, broker_url: str, name: str, **kw) -> tuple[Announcer, Path]:
    root = tmp_path / "root"
    root.mkdir()
    adapter = DirectoryRoot(root, tmp_path / "cache")
    state = State(tmp_path / "state")
    return Announcer(name, "http://127.0.0.1:1", adapter, state, broker_url, **kw), root


def _overflow(watcher: Watcher) -> None:
    """Make watchdog's inotify reader handle the kernel's 'queue overflowed' event."""
    event = InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b"")
    watcher._observer._inotify_fd.handle_event(event)


def test_watcher_overflow_makes_the_publisher_announce_every_missed_change(
    tmp_path, broker_url, new_id
):
    name = new_id("overflow")
    announcer, root = _announcer(tmp_path, broker_url, name, rescan_every=0, settle=0.2)
    changes = _Changes(broker_url, name)
    announcer.start()
    watcher = Watcher(root, announcer.notify, on_overflow=announcer.rescan)
    try:
        assert announcer.wait_scanned(10)
        # Written while nothing watched: as if the kernel had dropped their events.
        for i in range(30):
            write_array(root / f"a{i}.b2nd", np.arange(i + 1))
        watcher.start()
        _overflow(watcher)
        changes.wait_paths({f"a{i}.b2nd" for i in range(30)})
    finally:
        watcher.stop()
        announcer.stop()
        changes.close()


def test_periodic_rescan_announces_changes_no_event_reported(tmp_path, broker_url, new_id):
    name = new_id("rescan")
    announcer, root = _announcer(tmp_path, broker_url, name, rescan_every=0.3, settle=0.2)
    changes = _Changes(broker_url, name)
    announcer.start()  # and no watcher at all
    try:
        assert announcer.wait_scanned(10)
        write_array(root / "late.b2nd", np.arange(5))
        (root / "late.txt").write_text("hello")
        changes.wait_paths({"late.b2nd", "late.txt"})
    finally:
        announcer.stop()
        changes.close()


# -- queue hygiene ----------------------------------------------------------------


def _queue_exists(broker_url: str, sub_id: str) -> bool:
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-versions"))
    try:
        return topology.subscriber_queue_exists(conn, sub_id)
    finally:
        conn.close()


def test_subscriber_queue_unused_past_its_expiry_disappears_and_its_return_resyncs(
    broker_url, new_id
):
    sub = new_id("expiry")
    renewed = threading.Event()
    with Consumer(broker_url, sub, lambda m: None, queue_expiry=1.0, on_new_queue=renewed.set):
        assert renewed.wait(10)  # a first run's queue is new too
    wait_for(lambda: not _queue_exists(broker_url, sub), "the unused queue to expire")
    renewed.clear()
    with Consumer(broker_url, sub, lambda m: None, queue_expiry=1.0, on_new_queue=renewed.set):
        assert renewed.wait(10)
    assert _queue_exists(broker_url, sub)


def test_queue_declared_without_expiry_is_redeclared_with_it_and_counted_as_new(
    broker_url, new_id, channel
):
    sub, root = new_id("migrate"), new_id("root")
    topology.declare_subscriber_queue(channel, sub, expiry=None)  # as an older Caterva2 did
    renewed = threading.Event()
    got: list = []
    with Consumer(
        broker_url, sub, got.append, roots=[root], queue_expiry=3600, on_new_queue=renewed.set
    ) as consumer:
        assert renewed.wait(10) and consumer.wait_connected(10)
        with ConfirmedPublisher(broker_url) as pub:
            pub.publish(ChangeMessage(root, "x.b2nd", "created")).result(timeout=10)
        wait_for(lambda: [m.path for m in got if isinstance(m, ChangeMessage)], "the change")
    # Declaring with today's arguments is now accepted as it is (no 406).
    topology.declare_subscriber_queue(channel, sub, expiry=3600)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        topology.declare_subscriber_queue(channel, sub, expiry=None)
    assert refused.value.reply_code == 406


# -- whole reads through the cache, with real processes -------------------------------


def test_mirrored_dataset_answers_whole_reads_and_downloads_with_its_publisher_stopped(lab):  # noqa: F811
    pub = lab.publisher("whole")
    values = np.arange(300, dtype=np.int32).reshape(30, 10)
    write_array(pub.rootdir / "w.b2nd", values, chunks=(10, 10), blocks=(5, 5))
    (pub.rootdir / "w.txt").write_bytes(b"caterva2 " * 300)
    sub = lab.subscriber()
    follow(sub, pub.name, mirror=True)
    wait_for(lambda: len(pub.chunk_transfers("w.b2nd")) == 3, "every chunk mirrored", 30)
    wait_for(lambda: pub.chunk_transfers("w.txt"), "the text file mirrored", 30)
    pub.stop()
    whole = httpx.get(f"{sub.urlbase}/api/fetch/{pub.name}/w.b2nd", timeout=10)
    assert whole.status_code == 200, whole.text
    array = blosc2.ndarray_from_cframe(whole.content)
    np.testing.assert_array_equal(array[()], values)
    assert "proxy-source" not in array.schunk.meta  # a plain container, not our cache's proxy
    down = httpx.get(f"{sub.urlbase}/api/download/{pub.name}/w.b2nd", timeout=10)
    assert down.status_code == 200
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(down.content)[()], values)
    text = httpx.get(f"{sub.urlbase}/api/download/{pub.name}/w.txt", timeout=10)
    assert text.status_code == 200 and text.content == b"caterva2 " * 300


def test_content_change_with_size_and_mtime_restored_reaches_the_subscriber(lab):  # noqa: F811
    pub = lab.publisher("restored")
    (pub.rootdir / "r.txt").write_bytes(b"1" * 500)
    sub = lab.subscriber()
    follow(sub, pub.name)
    url = f"{sub.urlbase}/api/download/{pub.name}/r.txt"
    wait_for(lambda: httpx.get(url, timeout=10).content == b"1" * 500, "the first version")
    _rewrite_keeping_size_and_mtime(pub.rootdir / "r.txt", b"2" * 500)
    wait_for(lambda: httpx.get(url, timeout=10).content == b"2" * 500, "the new content")


def test_subscriber_whose_queue_expired_while_it_was_gone_comes_back_and_converges(lab):  # noqa: F811
    pub = lab.publisher("expired")
    write_array(pub.rootdir / "a.b2nd", np.arange(5))
    sub = lab.subscriber(start=False)
    sub.conf["queue_expiry"] = 1  # second
    sub.start()
    follow(sub, pub.name)
    wait_for(lambda: httpx.get(f"{sub.urlbase}/api/list/{pub.name}").json() == ["a.b2nd"], "a")
    sub.stop()
    sub_id = sub.conf["id"]
    wait_for(lambda: not _queue_exists(lab.broker_url, sub_id), "its queue to expire")
    # Changes it would have found in its queue, had the queue been kept.
    write_array(pub.rootdir / "b.b2nd", np.arange(7))
    (pub.rootdir / "a.b2nd").unlink()
    wait_for(lambda: pub.get("/api/list").json() == ["b.b2nd"], "the publisher to see them")
    sub.start()
    wait_for(
        lambda: httpx.get(f"{sub.urlbase}/api/list/{pub.name}").json() == ["b.b2nd"],
        "the returning subscriber to converge",
    )
    assert fetch(sub, f"{pub.name}/b.b2nd").tolist() == list(range(7))
    assert _queue_exists(lab.broker_url, sub_id)  # a new queue, with the root bound again
