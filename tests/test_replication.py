"""Replication by change sequence: deltas, snapshots, duplicates, bad answers, progress.

In-process tests run a real publisher app (with its real SQLite state) on 127.0.0.1
and `RemoteRoots` over a real store; the others run `cat2pub` and `cat2sub`
processes over the real RabbitMQ.  The publisher counts its requests per route
(`/api/stats` → `requests`), which is how these tests tell a delta from a snapshot.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import falcon
import falcon.testing
import httpx
import msgpack
import numpy as np
import pytest

from caterva2.broker.messages import decode
from caterva2.publisher import change_api
from caterva2.publisher.api import Stats, create_app
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.publisher.state import Change, State
from caterva2.subscriber import api_data, follower, replication
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings
from caterva2.subscriber.store import Store

from .app_support import served
from .services import wait_for
from .test_pubsub import delete_queue, lab, listing, publisher_view, remote_shape, write_array

__all__ = ["lab"]  # the fixture, used by the tests below

ROOT = "repl"
CHANGES, SNAPSHOT = "/api/changes", "/api/snapshot"


@dataclass
class Publisher:
    """A publisher app over a real state; changes are recorded as its announcer would."""

    url: str
    rootdir: Path
    adapter: DirectoryRoot
    state: State
    stats: Stats

    def write(self, name: str, values) -> tuple[int, str, dict]:
        """Write a dataset and record its change: (seq, etag, meta)."""
        kind = "modified" if self.state.etag(name) else "created"
        write_array(self.rootdir / name, values)
        stat, meta = self.adapter.info(name)
        [(_row, seq)] = self.state.record(
            [Change(name, kind, stat.etag, stat.mtime, meta)], lambda c, s: b"m"
        )
        return seq, stat.etag, meta

    def delete(self, name: str) -> int:
        (self.rootdir / name).unlink()
        [(_row, seq)] = self.state.record([Change(name, "deleted")], lambda c, s: b"m")
        return seq

    def requests(self, route: str) -> int:
        return self.stats.requests[route]


@contextmanager
def state_publisher(tmp_path: Path, gate: threading.Event | None = None) -> Iterator[Publisher]:
    """A publisher app with its state; with `gate`, snapshots wait until it is set."""
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    adapter = DirectoryRoot(rootdir, tmp_path / "pubcache")
    state = State(tmp_path / "pubstate")
    stats = Stats()
    app = create_app(adapter, stats, state=state)

    def gated(environ, start_response):
        if gate is not None and environ.get("PATH_INFO") == SNAPSHOT:
            gate.wait(30)
        return app(environ, start_response)

    try:
        with served(gated) as url:
            try:
                yield Publisher(url, rootdir, adapter, state, stats)
            finally:
                if gate is not None:
                    gate.set()  # before the server closes: its threads may wait on it
    finally:
        adapter.close()
        state.close()


def remote_roots(statedir: Path, url: str) -> RemoteRoots:
    store = Store(statedir)
    store.upsert_root(ROOT, url, None, True, owner="pub")
    return RemoteRoots(store, statedir)


def subscriber_app(statedir: Path, remote: RemoteRoots):
    """A subscriber app (no logins) over `remote`, and a test client of it."""
    sub = create_subscriber(
        SubscriberSettings(statedir=statedir, login=False), lambda _store: remote
    )
    return sub, falcon.testing.TestClient(sub.app)


def stored(remote: RemoteRoots) -> dict[str, str]:
    return remote.store.dataset_etags(ROOT)


def test_in_order_changes_cost_no_request_duplicates_are_ignored_gaps_take_a_delta(tmp_path):
    with state_publisher(tmp_path) as pub:
        pub.write("a.b2nd", np.arange(10))
        pub.write("b.b2nd", np.arange(20))
        remote = remote_roots(tmp_path / "sub", pub.url)
        try:
            remote.follow(ROOT, wait=True)
            assert sorted(stored(remote)) == ["a.b2nd", "b.b2nd"]
            assert remote.store.root_seq(ROOT) == 2
            assert pub.requests(SNAPSHOT) == 1
            before = dict(pub.stats.requests)

            # The next change, from its message alone: no request to the publisher.
            seq, etag, meta = pub.write("a.b2nd", np.arange(30))
            remote.apply_change(ROOT, "a.b2nd", "modified", etag, meta, "pub", seq)
            assert stored(remote)["a.b2nd"] == etag and remote.store.root_seq(ROOT) == 3
            assert dict(pub.stats.requests) == before

            # Duplicates and older changes are ignored, whatever they say.
            remote.apply_change(ROOT, "a.b2nd", "modified", "bogus", meta, "pub", seq)
            remote.apply_change(ROOT, "b.b2nd", "deleted", None, {}, "pub", 1)
            assert stored(remote) == {"a.b2nd": etag, "b.b2nd": stored(remote)["b.b2nd"]}
            assert remote.store.root_seq(ROOT) == 3
            assert dict(pub.stats.requests) == before

            # A gap (changes 4 and 5 were lost): the delta brings them, no snapshot.
            pub.write("b.b2nd", np.arange(5))
            pub.delete("a.b2nd")
            seq, etag_c, meta_c = pub.write("c.b2nd", np.arange(7))
            remote.apply_change(ROOT, "c.b2nd", "created", etag_c, meta_c, "pub", seq)
            wait_for(lambda: remote.store.root_seq(ROOT) == seq, "the catch-up")
            assert stored(remote) == pub.state.etags()
            assert pub.requests(CHANGES) == before[CHANGES] + 1
            assert pub.requests(SNAPSHOT) == 1
            assert remote.names()[ROOT]["sync"] == {"state": "ready", "seq": 6, "datasets": 2}
            # Read through the cache: the container is built at this first read.
            assert not remote.cache.path(ROOT, "c.b2nd").exists()
            got = remote.fetch(ROOT, "c.b2nd", (slice(2, 5),), None, None)
            np.testing.assert_array_equal(got.values, [2, 3, 4])
        finally:
            remote.close()


def test_a_publisher_whose_log_lost_the_changes_answers_gone_and_a_snapshot_follows(tmp_path):
    with state_publisher(tmp_path) as pub:
        pub.state.log_size = 2
        pub.write("a.b2nd", np.arange(10))
        remote = remote_roots(tmp_path / "sub", pub.url)
        try:
            remote.follow(ROOT, wait=True)
            assert remote.store.root_seq(ROOT) == 1 and pub.requests(SNAPSHOT) == 1
            for n in range(4):  # more than the log keeps
                pub.write(f"d{n}.b2nd", np.arange(n + 1))
            last = pub.delete("a.b2nd")
            assert httpx.get(f"{pub.url}{CHANGES}", params={"since": 1}).status_code == 410
            remote.announce(ROOT, pub.url, None, True, "pub", seq=last)
            wait_for(lambda: remote.store.root_seq(ROOT) == last, "the catch-up")
            assert stored(remote) == pub.state.etags()
            assert pub.requests(SNAPSHOT) == 2
        finally:
            remote.close()


def test_follow_answers_at_once_and_roots_show_its_progress_until_ready(tmp_path, monkeypatch):
    monkeypatch.setattr(change_api, "MAX_SNAPSHOT", 7)  # 30 datasets: a snapshot of 5 pages
    gate = threading.Event()
    with state_publisher(tmp_path, gate) as pub:
        for n in range(30):
            pub.write(f"ds{n:02}.b2nd", np.arange(n + 1))
        remote = remote_roots(tmp_path / "sub", pub.url)
        sub, client = subscriber_app(tmp_path / "sub", remote)
        try:
            resp = client.simulate_post(f"/api/subscribe/{ROOT}")
            # The snapshot is held at the publisher: following did not wait for it.
            assert resp.status_code == 200 and resp.json == "Ok"
            sync = client.simulate_get("/api/roots").json[ROOT]["sync"]
            assert sync["state"] == "syncing" and sync["datasets"] == 0
            gate.set()
            wait_for(
                lambda: client.simulate_get("/api/roots").json[ROOT]["sync"]["state"] == "ready",
                "the follow to end",
            )
            sync = client.simulate_get("/api/roots").json[ROOT]["sync"]
            assert sync == {"state": "ready", "seq": 30, "datasets": 30}
            assert client.simulate_get(f"/api/list/{ROOT}").json == sorted(pub.state.etags())
            assert pub.requests(SNAPSHOT) == 5
            assert not (tmp_path / "sub" / "cache" / ROOT).exists()  # nothing read, nothing cached
        finally:
            sub.close()


def test_messages_and_publishers_without_sequences_are_followed_the_old_way(tmp_path):
    old = msgpack.packb(
        {"type": "change", "v": 1, "root": ROOT, "path": "a.b2nd", "kind": "deleted"}
    )
    assert decode(old).seq is None
    old = msgpack.packb({"type": "root", "v": 1, "root": ROOT, "url": "http://x:1"})
    assert decode(old).seq is None
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    write_array(rootdir / "a.b2nd", np.arange(10))
    write_array(rootdir / "b.b2nd", np.arange(3))
    adapter = DirectoryRoot(rootdir, tmp_path / "pubcache")
    stats = Stats()
    # A publisher without state: no change log, no snapshots (as before sequences).
    with served(create_app(adapter, stats), threads=2) as url:
        remote = remote_roots(tmp_path / "sub", url)
        try:
            remote.follow(ROOT, wait=True)
            assert sorted(stored(remote)) == ["a.b2nd", "b.b2nd"]
            assert remote.names()[ROOT]["sync"]["state"] == "ready"
            assert stats.requests["/api/list"] == 1 and stats.requests["/api/info/{path:path}"] == 2
            # A change message without seq is applied as it always was.
            write_array(rootdir / "c.b2nd", np.arange(4))
            stat, meta = adapter.info("c.b2nd")
            remote.apply_change(ROOT, "c.b2nd", "created", stat.etag, meta, "pub")
            assert stored(remote)["c.b2nd"] == stat.etag
        finally:
            remote.close()
            adapter.close()


class BadPublisher:
    """A publisher whose replication answers are whatever the test sets (a hostile one)."""

    def __init__(self) -> None:
        self.answers: dict[str, dict] = {}

    def on_get_snapshot(self, req, resp) -> None:
        resp.data = msgpack.packb(self.answers["snapshot"])

    def on_get_changes(self, req, resp) -> None:
        resp.data = msgpack.packb(self.answers["changes"])


@pytest.mark.parametrize(
    "bad",
    [
        {"datasets": [["../../etc/passwd", "e1", 0.0, "{}"]]},
        {"datasets": [["ok.b2nd", 12, 0.0, "{}"]]},
        {"datasets": [["ok.b2nd", "e1", 0.0, '{"shape": [3], "chunks": "x"}']]},
        {"datasets": [["ok.b2nd", "e1", 0.0, {"a map": "not JSON text"}]]},
        {"datasets": [["ok.b2nd", "e1", 0.0, "{not json"]]},
        {"datasets": "not a list"},
    ],
)
def test_a_bad_snapshot_is_refused_and_nothing_of_it_is_stored(tmp_path, caplog, bad):
    with state_publisher(tmp_path) as pub:
        _seq, etag, meta = pub.write("a.b2nd", np.arange(10))
        hostile = BadPublisher()
        app = falcon.App()
        app.add_route("/api/snapshot", hostile, suffix="snapshot")
        app.add_route("/api/changes", hostile, suffix="changes")
        with served(app, threads=2) as hostile_url:
            remote = remote_roots(tmp_path / "sub", hostile_url)
            try:
                good = [["a.b2nd", etag, 0.0, json.dumps(meta)]]
                hostile.answers["snapshot"] = {"seq": 1, "datasets": good}
                hostile.answers["changes"] = {"seq": 1, "changes": [], "more": False}
                remote.follow(ROOT, wait=True)
                assert stored(remote) == {"a.b2nd": etag}

                # A snapshot (the publisher says our seq is gone) that is not valid.
                hostile.answers["snapshot"] = {"seq": 5, **bad}
                hostile.answers["changes"] = {"seq": 5, "changes": [[2, 3, 4]], "more": False}
                with caplog.at_level(logging.WARNING, "caterva2.subscriber.replication"):
                    remote.announce(ROOT, hostile_url, None, True, "pub", seq=5)
                    remote.replication.wait(ROOT, 10)
                assert "refused the /api/changes answer" in caplog.text
                assert stored(remote) == {"a.b2nd": etag} and remote.store.root_seq(ROOT) == 1
                assert remote.names()[ROOT]["sync"]["state"] == "error"

                hostile.answers["changes"] = {"seq": 5, "changes": [], "more": False}
                remote.store.set_root_seq(ROOT, None)  # as after a lost history: a snapshot
                caplog.clear()
                with caplog.at_level(logging.WARNING, "caterva2.subscriber.replication"):
                    remote.replication.start(ROOT).wait(10)
                assert "refused the /api/snapshot answer" in caplog.text
                assert stored(remote) == {"a.b2nd": etag}
                assert not (tmp_path / "sub" / "cache" / "etc").exists()
                row = remote.store.remote_root(ROOT)
                assert row["refused"] >= 2 and "refused the /api/snapshot" in row["refusal"]
            finally:
                remote.close()


# --- real processes over RabbitMQ -----------------------------------------------------


def requests(pub) -> dict[str, int]:
    return httpx.get(f"{pub.url}/api/stats", timeout=10).json()["requests"]


def sync_state(sub, root: str) -> dict:
    return httpx.get(f"{sub.urlbase}/api/roots", timeout=10).json()[root].get("sync", {})


def follow_until_ready(sub, root: str, count: int) -> None:
    wait_for(lambda: root in httpx.get(f"{sub.urlbase}/api/roots").json(), f"{root} announced")
    resp = httpx.post(f"{sub.urlbase}/api/subscribe/{root}", timeout=10)
    assert resp.status_code == 200, resp.text
    wait_for(
        lambda: (
            sync_state(sub, root).get("state") == "ready"
            and sync_state(sub, root).get("datasets") == count
        ),
        "the follow to be ready",
        timeout=60,
    )


def publisher_seq(pub) -> int:
    with sqlite3.connect(pub.statedir / "state.sqlite") as db:
        return int(db.execute("SELECT value FROM settings WHERE key = 'seq'").fetchone()[0])


def shapes(sub, root: str) -> dict[str, tuple]:
    return {p: remote_shape(sub, f"{root}/{p}") for p in listing(sub, root)}


def test_a_subscriber_that_missed_changes_catches_up_through_the_delta(lab):
    pub = lab.publisher("delta")
    for n in range(3):
        write_array(pub.rootdir / f"d{n}.b2nd", np.arange(n + 1))
    sub = lab.subscriber()
    wait_for(lambda: publisher_seq(pub) == 3, "the datasets announced")
    follow_until_ready(sub, pub.name, 3)
    sub.stop()
    delete_queue(lab.broker_url, lab.sub_ids[-1])  # the messages meanwhile are lost too
    write_array(pub.rootdir / "d0.b2nd", np.arange(40))
    write_array(pub.rootdir / "new.b2nd", np.arange(8))
    (pub.rootdir / "d2.b2nd").unlink()
    wait_for(lambda: publisher_seq(pub) == 6, "the changes announced")
    snapshots = requests(pub).get(SNAPSHOT, 0)
    sub.start()
    wait_for(lambda: shapes(sub, pub.name) == publisher_view(pub.rootdir), "the catch-up")
    counted = requests(pub)
    assert counted[SNAPSHOT] == snapshots and counted[CHANGES] >= 2
    wait_for(lambda: sync_state(sub, pub.name).get("seq") == 6, "the seq recorded")


def test_a_publisher_that_lost_its_change_log_serves_a_snapshot_and_subscribers_converge(lab):
    pub = lab.publisher("lost")
    write_array(pub.rootdir / "a.b2nd", np.arange(5))
    subs = [lab.subscriber(), lab.subscriber()]
    wait_for(lambda: publisher_seq(pub) == 1, "the dataset announced")
    for sub in subs:
        follow_until_ready(sub, pub.name, 1)
    for sub in subs:
        sub.stop()
    for sub_id in lab.sub_ids:
        delete_queue(lab.broker_url, sub_id)
    write_array(pub.rootdir / "b.b2nd", np.arange(6))
    write_array(pub.rootdir / "a.b2nd", np.arange(9))
    wait_for(lambda: publisher_seq(pub) == 3, "the changes announced")
    with sqlite3.connect(pub.statedir / "state.sqlite") as db:
        db.execute("DELETE FROM changes")  # the log is lost
    assert httpx.get(f"{pub.url}{CHANGES}", params={"since": 1}).status_code == 410
    snapshots = requests(pub)[SNAPSHOT]
    for sub in subs:
        sub.start()
    for sub in subs:
        wait_for(lambda s=sub: shapes(s, pub.name) == publisher_view(pub.rootdir), "converging")
    assert requests(pub)[SNAPSHOT] == snapshots + 2


def test_one_change_in_a_root_of_1000_datasets_costs_each_subscriber_at_most_2_requests(lab):
    pub = lab.publisher("thousand")
    for n in range(1000):
        write_array(pub.rootdir / f"ds{n:04}.b2nd", np.arange(4))
    subs = [lab.subscriber(), lab.subscriber()]
    wait_for(lambda: publisher_seq(pub) == 1000, "the root announced", timeout=120)
    for sub in subs:
        follow_until_ready(sub, pub.name, 1000)
    httpx.delete(f"{pub.url}/api/stats").raise_for_status()
    write_array(pub.rootdir / "ds0500.b2nd", np.arange(12))
    for sub in subs:
        wait_for(lambda s=sub: remote_shape(s, f"{pub.name}/ds0500.b2nd") == (12,), "the change")
        wait_for(lambda s=sub: sync_state(s, pub.name).get("seq") == 1001, "the seq")
    # Heartbeats go every second: let a few pass, none of them may start a resync.
    time.sleep(3)
    counted = {route: n for route, n in requests(pub).items() if route != "/api/stats"}
    assert sum(counted.values()) <= 2 * len(subs), counted
    assert "/api/list" not in counted and SNAPSHOT not in counted


def test_a_big_listing_is_encoded_once_per_version_and_shows_every_change(tmp_path, monkeypatch):
    monkeypatch.setattr(api_data.ListResource, "BIG", 5)  # 8 datasets count as a big listing
    encodes = []

    def counting_dumps(value, **kwargs):
        encodes.append(len(value))
        return json.dumps(value, **kwargs)

    monkeypatch.setattr(api_data, "json", SimpleNamespace(dumps=counting_dumps))
    with state_publisher(tmp_path) as pub:
        for n in range(8):
            pub.write(f"ds{n}.b2nd", np.arange(n + 1))
        remote = remote_roots(tmp_path / "sub", pub.url)
        sub, client = subscriber_app(tmp_path / "sub", remote)
        try:
            remote.follow(ROOT, wait=True)
            first = client.simulate_get(f"/api/list/{ROOT}")
            assert first.headers["content-type"].startswith("application/json")
            assert first.json == [f"ds{n}.b2nd" for n in range(8)]
            assert client.simulate_get(f"/api/list/{ROOT}").json == first.json
            assert encodes == [8]  # the second answer reused the first one's bytes

            seq, etag, meta = pub.write("new.b2nd", np.arange(3))
            remote.apply_change(ROOT, "new.b2nd", "created", etag, meta, "pub", seq)
            assert client.simulate_get(f"/api/list/{ROOT}").json == sorted(
                [*first.json, "new.b2nd"]
            )
            seq = pub.delete("ds0.b2nd")
            remote.apply_change(ROOT, "ds0.b2nd", "deleted", None, {}, "pub", seq)
            assert "ds0.b2nd" not in client.simulate_get(f"/api/list/{ROOT}").json
            assert encodes == [8, 9, 8]
            # A small listing (one dataset) is encoded as any other answer.
            assert client.simulate_get(f"/api/list/{ROOT}/ds3.b2nd").json == ["ds3.b2nd"]
            assert encodes == [8, 9, 8]
        finally:
            sub.close()


def test_a_followed_root_whose_heartbeats_stopped_is_caught_up_over_http(tmp_path):
    with state_publisher(tmp_path) as pub:
        pub.write("a.b2nd", np.arange(10))
        remote = remote_roots(tmp_path / "sub", pub.url)
        try:
            remote.follow(ROOT, wait=True)
            replication = remote.replication
            # Changes whose messages never arrive (the broker is wedged, say).
            pub.write("b.b2nd", np.arange(4))
            last = pub.delete("a.b2nd")
            heard = remote.store.remote_root(ROOT)["seen"]

            # Heard from recently: not polled.
            assert replication.poll_silent(heard + 5, silent_after=30) == []
            # Silent for longer: one catch-up over HTTP, which converges.
            assert replication.poll_silent(heard + 31, silent_after=30) == [ROOT]
            wait_for(lambda: remote.store.root_seq(ROOT) == last, "the catch-up")
            assert stored(remote) == pub.state.etags()
            # At most one poll per silence period, however often it is asked.
            assert replication.poll_silent(heard + 40, silent_after=30) == []
            assert replication.poll_silent(heard + 62, silent_after=30) == [ROOT]
            # A root whose publisher said it went offline is not polled.
            remote.store.upsert_root(ROOT, pub.url, None, False)
            heard = remote.store.remote_root(ROOT)["seen"]
            assert replication.poll_silent(heard + 100, silent_after=30) == []
        finally:
            remote.close()


def test_the_follower_polls_a_silent_root_while_no_message_comes(
    tmp_path, monkeypatch, broker_url, new_id
):
    monkeypatch.setattr(replication, "SILENT_AFTER", 1.0)
    monkeypatch.setattr(follower, "SILENCE_CHECK", 0.2)
    with state_publisher(tmp_path) as pub:
        pub.write("a.b2nd", np.arange(10))
        remote = remote_roots(tmp_path / "sub", pub.url)
        watcher = follower.Follower(remote, broker_url, new_id("silence"))
        try:
            remote.follow(ROOT, wait=True)
            # This publisher announces nothing over the broker: only polling brings these.
            pub.write("b.b2nd", np.arange(4))
            last = pub.delete("a.b2nd")
            wait_for(lambda: remote.store.root_seq(ROOT) == last, "the poll of the silent root")
            assert stored(remote) == pub.state.etags()
        finally:
            watcher.close()
            remote.close()
