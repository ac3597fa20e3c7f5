"""Publishers and subscribers over a real RabbitMQ, as real processes on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import blosc2
import httpx
import msgpack
import numpy as np
import pika
import pytest

import caterva2 as cat2
from caterva2 import api_utils
from caterva2.broker import topology
from caterva2.broker.connection import parameters
from caterva2.broker.messages import decode
from caterva2.common import block_stream
from caterva2.common.falcon_app import ANNOUNCED_HEADER

from .broker_support import RUN, TcpProxy
from .http_helpers import login
from .services import PublisherProcess, SubscriberProcess, run_cli, wait_for


def write_array(path: Path, values, chunks=None, blocks=None) -> None:
    """Write a dataset the way another program would: aside, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    blosc2.asarray(np.asarray(values), urlpath=str(tmp), mode="w", chunks=chunks, blocks=blocks)
    tmp.rename(path)


def listing(sub: SubscriberProcess, root: str) -> list[str]:
    return httpx.get(f"{sub.urlbase}/api/list/{root}", timeout=10).json()


def remote_shape(sub: SubscriberProcess, path: str):
    resp = httpx.get(f"{sub.urlbase}/api/info/{path}", timeout=10)
    return tuple(resp.json()["shape"]) if resp.status_code == 200 else None


def fetch(sub: SubscriberProcess, path: str, slice_: str | None = None):
    params = {"slice_": slice_} if slice_ else {}
    resp = httpx.get(f"{sub.urlbase}/api/fetch/{path}", params=params, timeout=30)
    resp.raise_for_status()
    return blosc2.ndarray_from_cframe(resp.content)[()]


def announced_shape(pub: PublisherProcess, name: str) -> list | None:
    """The shape of `name` as its publisher describes it, once that version is announced."""
    resp = pub.get(f"/api/info/{name}")
    announced = resp.headers.get(ANNOUNCED_HEADER) != "false"
    return resp.json().get("shape") if resp.status_code == 200 and announced else None


def publisher_view(root: Path) -> dict[str, tuple]:
    """Every dataset of a root directory with its shape, as the publisher has it."""
    return {
        p.relative_to(root).as_posix(): tuple(blosc2.open(str(p)).shape)
        for p in root.rglob("*.b2nd")
        if not p.name.startswith(".")
    }


def subscriber_view(sub: SubscriberProcess, root: str) -> dict[str, tuple]:
    return {path: remote_shape(sub, f"{root}/{path}") for path in listing(sub, root)}


class ChangeSpy:
    """A private queue bound to `root`'s changes: what the broker has routed for that root.

    Once the spy holds a change, so does every queue bound to the root (the broker
    routes a message to all of them at once): a subscriber's queue holds it ahead of
    anything published later, and its single worker applies them in that order.
    """

    def __init__(self, broker_url: str, root: str) -> None:
        self.conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-spy"))
        self.channel = self.conn.channel()
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, topology.CHANGES_EXCHANGE, routing_key=root)
        self.paths: list[str] = []

    def routed(self) -> list[str]:
        """The paths of the changes routed so far (in order)."""
        while True:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.paths
            path = getattr(decode(body), "path", None)
            if path is not None:
                self.paths.append(path)

    def close(self) -> None:
        self.conn.close()


def delete_queue(broker_url: str, sub_id: str) -> None:
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-cleanup"))
    conn.channel().queue_delete(topology.subscriber_queue(sub_id))
    conn.close()


class Lab:
    """Publishers and subscribers started for a test module, stopped at its end."""

    def __init__(self, base: Path, broker_url: str) -> None:
        self.base = base
        self.broker_url = broker_url
        self.processes: list = []
        self.sub_ids: list[str] = []

    def publisher(self, label: str, broker_url: str | None = None) -> PublisherProcess:
        name = f"{label}-{RUN}-{uuid.uuid4().hex[:4]}"
        rootdir = self.base / name
        rootdir.mkdir()
        url = broker_url or self.broker_url
        pub = PublisherProcess(name, rootdir, self.base / f"pub-{name}", url, heartbeat=1.0)
        self.processes.append(pub)
        return pub.start()

    def subscriber(self, broker_url: str | None = None, start: bool = True) -> SubscriberProcess:
        sub_id = f"test-{RUN}-{uuid.uuid4().hex[:6]}"
        self.sub_ids.append(sub_id)
        statedir = self.base / f"sub-{sub_id}"
        statedir.mkdir()
        sub = SubscriberProcess(
            statedir,
            conf={"login": False, "id": sub_id, "loglevel": "info"},
            broker_url=broker_url or self.broker_url,
        )
        self.processes.append(sub)
        return sub.start() if start else sub

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        for sub_id in self.sub_ids:
            delete_queue(self.broker_url, sub_id)


@pytest.fixture
def lab(tmp_path, broker_url):
    lab = Lab(tmp_path, broker_url)
    yield lab
    lab.close()


def follow(
    sub: SubscriberProcess, root: str, mirror: bool = False, user: tuple[str, str] | None = None
) -> None:
    """Follow `root` once announced (as `user` on a subscriber with logins)."""
    wait_for(lambda: root in httpx.get(f"{sub.urlbase}/api/roots").json(), f"{root} announced")
    client = login(sub.urlbase, *user) if user else httpx.Client(base_url=sub.urlbase)
    try:
        resp = client.post(f"/api/subscribe/{root}", params={"mirror": mirror})
    finally:
        client.close()
    assert resp.status_code == 200 and resp.json() == "Ok", resp.text


def followed_array(lab: Lab, label: str, name: str, values, **layout):
    """A publisher serving `values` as `name`, and a subscriber that follows it and lists it.

    Returns (publisher, subscriber, logical path).
    """
    pub = lab.publisher(label)
    write_array(pub.rootdir / name, values, **layout)
    sub = lab.subscriber()
    follow(sub, pub.name)
    path = f"{pub.name}/{name}"
    shape = np.shape(values)
    wait_for(lambda: remote_shape(sub, path) == shape, "the dataset")
    return pub, sub, path


def test_created_modified_deleted_files_reach_every_following_subscriber(lab):
    pub = lab.publisher("events")
    subs = [lab.subscriber(), lab.subscriber()]
    for sub in subs:
        follow(sub, pub.name)
    path = pub.rootdir / "ds.b2nd"
    write_array(path, np.arange(10))
    for sub in subs:
        wait_for(lambda s=sub: remote_shape(s, f"{pub.name}/ds.b2nd") == (10,), "the creation")
    write_array(path, np.arange(25) * 2)
    for sub in subs:
        wait_for(lambda s=sub: remote_shape(s, f"{pub.name}/ds.b2nd") == (25,), "the change")
        np.testing.assert_array_equal(
            fetch(sub, f"{pub.name}/ds.b2nd", "20:25"), [40, 42, 44, 46, 48]
        )
        client = cat2.Client(sub.urlbase)
        np.testing.assert_array_equal(client.get(f"{pub.name}/ds.b2nd")[3:5], [6, 8])
    path.unlink()
    for sub in subs:
        wait_for(lambda s=sub: listing(s, pub.name) == [], "the deletion")
        assert httpx.get(f"{sub.urlbase}/api/info/{pub.name}/ds.b2nd").status_code == 404


def test_subscriber_following_only_root_a_gets_nothing_of_root_b(lab, broker_url):
    pub_a, pub_b = lab.publisher("only-a"), lab.publisher("only-b")
    sub = lab.subscriber()
    follow(sub, pub_a.name)
    wait_for(lambda: pub_b.name in httpx.get(f"{sub.urlbase}/api/roots").json(), "root B seen")
    spy = ChangeSpy(broker_url, pub_b.name)
    try:
        write_array(pub_b.rootdir / "b.b2nd", np.arange(3))
        wait_for(lambda: "b.b2nd" in spy.routed(), "root B's change routed by the broker")
    finally:
        spy.close()
    # A marker after it: once A's change is applied, B's would have been applied before it.
    write_array(pub_a.rootdir / "a.b2nd", np.arange(4))
    wait_for(lambda: listing(sub, pub_a.name) == ["a.b2nd"], "root A's change")
    roots = httpx.get(f"{sub.urlbase}/api/roots").json()
    assert roots[pub_a.name]["subscribed"] is True and roots[pub_b.name]["subscribed"] is False
    with sqlite3.connect(sub.statedir / "db.sqlite") as db:
        assert db.execute(
            "SELECT count(*) FROM datasets WHERE root = ?", [pub_b.name]
        ).fetchone() == (0,)
    assert not (sub.statedir / "cache" / pub_b.name).exists()


def test_slice_of_uncached_chunks_fetches_only_those_chunks(lab):
    values = np.arange(1000, dtype=np.int32)
    pub, sub, path = followed_array(lab, "chunks", "hundred.b2nd", values, chunks=(10,))
    np.testing.assert_array_equal(fetch(sub, path, "95:205"), values[95:205])
    assert pub.chunk_transfers("hundred.b2nd") == {n: 1 for n in range(9, 21)}
    np.testing.assert_array_equal(fetch(sub, path, "100:200"), values[100:200])
    assert pub.chunk_transfers("hundred.b2nd") == {n: 1 for n in range(9, 21)}


def test_big_client_slice_of_a_remote_dataset_streams_only_the_chunks_it_touches(lab):
    values = np.random.default_rng(3).normal(size=(1500, 1000))  # 12 MB: big enough to stream
    pub, sub, path = followed_array(
        lab, "blocks", "big.b2nd", values, chunks=(300, 1000), blocks=(50, 1000)
    )
    resp = httpx.get(
        f"{sub.urlbase}/api/fetch/{path}",
        params={"slice_": "350:1450"},
        headers={"Accept": api_utils.ACCEPT_BLOCKS},
        timeout=30,
    )
    assert resp.headers["content-type"] == block_stream.MEDIA_TYPE
    assert pub.chunk_transfers("big.b2nd") == {1: 1, 2: 1, 3: 1, 4: 1}
    with cat2.Client(sub.urlbase) as client:
        np.testing.assert_array_equal(client.get(path)[350:1450], values[350:1450])
        np.testing.assert_array_equal(client.get(path)[:], values)
    assert pub.chunk_transfers("big.b2nd") == {n: 1 for n in range(5)}


def test_eight_concurrent_readers_of_one_uncached_chunk_cause_one_transfer(lab):
    pub, sub, path = followed_array(lab, "concurrent", "c.b2nd", np.arange(10_000), chunks=(1000,))
    results, barrier = [], threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        results.append(fetch(sub, path, "5500:5510"))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all((r == np.arange(5500, 5510)).all() for r in results)
    assert pub.chunk_transfers("c.b2nd") == {5: 1}


def test_cached_chunks_survive_a_restart_and_a_new_version_replaces_them(lab):
    pub, sub, path = followed_array(lab, "restart", "r.b2nd", np.arange(1000), chunks=(100,))
    np.testing.assert_array_equal(fetch(sub, path, "150:250"), np.arange(150, 250))
    sub.stop()
    sub.start()
    np.testing.assert_array_equal(fetch(sub, path, "150:250"), np.arange(150, 250))
    np.testing.assert_array_equal(fetch(sub, path, "350:360"), np.arange(350, 360))
    assert pub.chunk_transfers("r.b2nd") == {1: 1, 2: 1, 3: 1}
    # A new version: the kept cache of the old one must not answer for it.
    write_array(pub.rootdir / "r.b2nd", np.arange(1000) * 2, chunks=(100,))
    wait_for(lambda: fetch(sub, path, "150:160")[0] == 300, "the new version")
    np.testing.assert_array_equal(fetch(sub, path, "150:250"), np.arange(150, 250) * 2)
    np.testing.assert_array_equal(fetch(sub, path, "355:356"), [710])


def test_stopped_subscriber_catches_up_from_its_durable_queue(lab, broker_url):
    pub = lab.publisher("catchup")
    write_array(pub.rootdir / "keep.b2nd", np.arange(5))
    write_array(pub.rootdir / "gone.b2nd", np.arange(6))
    sub = lab.subscriber()
    follow(sub, pub.name)
    wait_for(lambda: listing(sub, pub.name) == ["gone.b2nd", "keep.b2nd"], "the first listing")
    sub.stop()
    spy = ChangeSpy(broker_url, pub.name)
    try:
        write_array(pub.rootdir / "keep.b2nd", np.arange(50))
        (pub.rootdir / "gone.b2nd").unlink()
        write_array(pub.rootdir / "new.b2nd", np.arange(7))
        # All three are in the stopped subscriber's durable queue before it starts again.
        wait_for(
            lambda: {"keep.b2nd", "gone.b2nd", "new.b2nd"} <= set(spy.routed()),
            "the three changes routed while the subscriber is down",
        )
    finally:
        spy.close()
    sub.start()
    wait_for(
        lambda: subscriber_view(sub, pub.name) == {"keep.b2nd": (50,), "new.b2nd": (7,)},
        "the catch-up",
    )


def test_connection_cut_during_200_changes_loses_nothing(lab, broker_url):
    host, port = "127.0.0.1", pika.URLParameters(broker_url).port
    proxy = TcpProxy(host, port)
    proxied = broker_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    try:
        # Both ends reach the broker through the proxy: each cut breaks both connections.
        pub = lab.publisher("storm", broker_url=proxied)
        sub = lab.subscriber(broker_url=proxied)
        follow(sub, pub.name)
        for i in range(200):
            name = pub.rootdir / f"f{i % 80:03d}.b2nd"
            if i % 7 == 6 and name.exists():
                name.unlink()
            else:
                write_array(name, np.arange(i + 1))
            if i in (60, 140):
                proxy.cut(refuse_for=1.0)
            time.sleep(0.01)
        expected = publisher_view(pub.rootdir)
        wait_for(lambda: subscriber_view(sub, pub.name) == expected, "the same view", timeout=60)
    finally:
        proxy.close()


def test_publisher_stopped_cached_data_served_uncached_read_is_503(lab):
    pub, sub, path = followed_array(lab, "offline", "d.b2nd", np.arange(100), chunks=(10,))
    np.testing.assert_array_equal(fetch(sub, path, "0:10"), np.arange(10))
    pub.stop()
    np.testing.assert_array_equal(fetch(sub, path, "2:8"), np.arange(2, 8))
    assert remote_shape(sub, path) == (100,)
    resp = httpx.get(f"{sub.urlbase}/api/fetch/{path}", params={"slice_": "50:60"})
    assert resp.status_code == 503 and resp.reason_phrase == "Service Unavailable"
    assert pub.name in resp.json()["detail"] and "unreachable" in resp.json()["detail"]


def test_malformed_or_unknown_version_message_is_dead_lettered_and_queue_keeps_flowing(
    lab, broker_url
):
    pub = lab.publisher("poison")
    sub = lab.subscriber()
    follow(sub, pub.name)
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-poison"))
    channel = conn.channel()
    spy = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(spy, topology.DEAD_EXCHANGE)
    bad_version = msgpack.packb({"type": "change", "v": 99, "root": pub.name, "path": "x"})
    for body in (b"\x00 not msgpack at all", bad_version):
        channel.basic_publish(topology.CHANGES_EXCHANGE, pub.name, body)
    write_array(pub.rootdir / "after.b2nd", np.arange(3))
    wait_for(lambda: listing(sub, pub.name) == ["after.b2nd"], "a change after the poison")
    dead = []

    def both_dead() -> bool:
        while (got := channel.basic_get(spy, auto_ack=True))[0] is not None:
            dead.append(got[2])
        return len(dead) >= 2

    try:
        wait_for(both_dead, "the two poison messages dead-lettered")
    finally:
        conn.close()
    assert set(dead) == {b"\x00 not msgpack at all", bad_version}
    assert sub.proc.poll() is None


def test_mirror_subscription_replicates_every_chunk(lab):
    pub = lab.publisher("mirror")
    write_array(pub.rootdir / "m.b2nd", np.arange(200), chunks=(20,))
    sub = lab.subscriber()
    follow(sub, pub.name, mirror=True)
    wait_for(lambda: len(pub.chunk_transfers("m.b2nd")) == 10, "every chunk mirrored", timeout=30)
    pub.stop()
    np.testing.assert_array_equal(fetch(sub, f"{pub.name}/m.b2nd", "0:200"), np.arange(200))


def test_client_and_cli_work_on_remote_roots(lab, tmp_path):
    pub = lab.publisher("tools")
    write_array(pub.rootdir / "t.b2nd", np.arange(12))
    (pub.rootdir / "notes.txt").write_text("remote notes\n")
    sub = lab.subscriber()
    wait_for(lambda: pub.name in httpx.get(f"{sub.urlbase}/api/roots").json(), "root announced")
    client = cat2.Client(sub.urlbase)
    assert client.subscribe(pub.name) == "Ok"
    wait_for(lambda: client.get_list(pub.name) == ["notes.txt", "t.b2nd"], "the listing")
    ds = client.get(f"{pub.name}/t.b2nd")
    assert ds.shape == (12,)
    np.testing.assert_array_equal(ds[2:5], [2, 3, 4])
    local = client.download(f"{pub.name}/notes.txt", tmp_path / "notes.txt")
    assert Path(local).read_text() == "remote notes\n"
    cli = ["caterva2.cli", "--subscriber", sub.urlbase]
    assert pub.name in run_cli(*cli, "roots").stdout
    assert run_cli(*cli, "list", pub.name).stdout.split() == ["notes.txt", "t.b2nd"]
    assert "shape" in run_cli(*cli, "info", f"{pub.name}/t.b2nd").stdout
    assert "[0 1 2]" in run_cli(*cli, "show", f"{pub.name}/t.b2nd[0:3]").stdout
    assert (
        run_cli(*cli, "url", f"{pub.name}/t.b2nd")
        .stdout.strip()
        .endswith(f"/api/fetch/{pub.name}/t.b2nd")
    )


def test_read_of_a_dataset_changed_before_its_message_arrives_gets_the_new_version(lab, broker_url):
    host, port = "127.0.0.1", pika.URLParameters(broker_url).port
    proxy = TcpProxy(host, port)
    try:
        pub = lab.publisher("stale")
        write_array(pub.rootdir / "s.b2nd", np.arange(100), chunks=(10,))
        sub = lab.subscriber(
            broker_url=broker_url.replace(f"{host}:{port}", f"{host}:{proxy.port}")
        )
        follow(sub, pub.name)
        path = f"{pub.name}/s.b2nd"
        wait_for(lambda: remote_shape(sub, path) == (100,), "the dataset")
        proxy.cut()  # the subscriber hears nothing more from the broker
        # A new chunk grid: a chunk of this version would not fit the cached container.
        write_array(pub.rootdir / "s.b2nd", np.arange(200) * 10, chunks=(20,))
        # The publisher has announced the new version; the subscriber cannot have heard it.
        wait_for(lambda: announced_shape(pub, "s.b2nd") == [200], "the new version announced")
        np.testing.assert_array_equal(fetch(sub, path, "20:25"), np.arange(20, 25) * 10)
        assert remote_shape(sub, path) == (200,)
    finally:
        proxy.close()


def test_files_of_a_published_directory_download_as_their_own_bytes(lab):
    """Publishers serve any file but Blosc2 containers as a frame: .h5 files too."""
    pub = lab.publisher("bytes")
    contents = {
        "f.h5": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40,
        "notes.txt": b"some text\n" * 300,
    }
    for name, data in contents.items():
        (pub.rootdir / name).write_bytes(data)
    sub = lab.subscriber()
    follow(sub, pub.name)
    wait_for(lambda: listing(sub, pub.name) == sorted(contents), "both files listed")
    client = cat2.Client(sub.urlbase)
    for name, data in contents.items():
        resp = httpx.get(f"{sub.urlbase}/api/download/{pub.name}/{name}", timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.content == data, name
        # The client takes whole files from /api/fetch, and decompresses what comes as .b2.
        assert client.download(f"{pub.name}/{name}", lab.base / name).read_bytes() == data
    client.close()
