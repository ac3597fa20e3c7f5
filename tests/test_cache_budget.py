"""The chunk cache's byte budget: LRU eviction per chunk, right answers throughout, counters.

In-process, against a real publisher app on 127.0.0.1 (`inprocess_publisher`).
"""

from __future__ import annotations

import json
import os
import threading

import blosc2
import numpy as np
import pytest

import caterva2 as cat2
from caterva2 import cli
from caterva2.common.daemon import http_server
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.cache_budget import CacheBudget
from caterva2.subscriber.chunk_cache import stored_sizes
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings
from caterva2.subscriber.store import Store

from .inprocess_publisher import ROOT, ROW, ROWS, read_row, running_publisher, subscriber
from .services import free_port

BUDGET = 4 * 1024 * 1024
# A container's own bookkeeping on disk, beyond the chunks it holds (header, index, vlmeta).
CONTAINER_OVERHEAD = 64 * 1024


@pytest.fixture
def publisher(tmp_path):
    with running_publisher(tmp_path) as running:
        yield running


def test_reading_three_times_the_budget_stays_within_it_and_answers_right(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, BUDGET)
    cached_file = remote.cache.path(ROOT, "a.b2nd")
    for row in range(ROWS):
        np.testing.assert_array_equal(read_row(remote, row), publisher.data[row])
        held = remote.cache.budget.evictable_bytes
        assert held <= BUDGET, f"after row {row}: {held} bytes held"
        # The evicted chunks' space is really freed on disk.
        assert os.path.getsize(cached_file) <= BUDGET + ROW * 8 + CONTAINER_OVERHEAD
    usage = remote.cache.budget.usage(ROOT)
    assert usage["evictions"] >= ROWS - BUDGET // (ROW * 8)
    assert usage["misses"] == ROWS and usage["hits"] == 0
    # The first rows were evicted: read again, they are refetched, never zeros.
    np.testing.assert_array_equal(read_row(remote, 0), publisher.data[0])
    assert publisher.transfers(0) == 2
    # The last row is still held: a hit, no transfer.
    np.testing.assert_array_equal(read_row(remote, ROWS - 1), publisher.data[ROWS - 1])
    assert publisher.transfers(ROWS - 1) == 1
    assert remote.cache.budget.usage(ROOT)["hits"] == 1
    remote.close()


def test_chunks_read_recently_are_the_ones_kept(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, BUDGET)
    per_budget = BUDGET // (ROW * 8 + 1024)  # chunks that surely fit
    for row in range(per_budget):
        read_row(remote, row)
    read_row(remote, 0)  # row 0 becomes the most recently used
    for row in range(per_budget, per_budget + 4):
        read_row(remote, row)
    read_row(remote, 0)
    assert publisher.transfers(0) == 1  # kept: it was used recently
    read_row(remote, 1)
    assert publisher.transfers(1) == 2  # evicted first: least recently used
    remote.close()


def test_readers_running_during_eviction_never_see_wrong_data(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, BUDGET)
    wrong: list[str] = []
    rounds = 40

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(rounds):
            row = int(rng.integers(ROWS))
            if rng.random() < 0.5:
                got = read_row(remote, row)
            else:
                chunk, _etag = remote.chunk(ROOT, "a.b2nd", row)
                got = np.frombuffer(blosc2.decompress2(chunk), dtype=np.uint64)
            if not np.array_equal(got, publisher.data[row]):
                wrong.append(f"row {row}")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert remote.cache.budget.usage(ROOT)["evictions"] > 0
    assert remote.cache.budget.evictable_bytes <= BUDGET
    remote.close()


def test_a_restart_counts_what_is_cached_and_fits_it_in_a_smaller_budget(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, None)
    for row in range(16):
        read_row(remote, row)
    held = remote.cache.budget.evictable_bytes
    remote.close()
    assert held > BUDGET // 2  # more than the new budget

    again = RemoteRoots(Store(tmp_path / "sub"), tmp_path / "sub", cache_size=BUDGET // 2)
    assert again.cache.budget.evictable_bytes <= BUDGET // 2
    assert again.cache.budget.usage(ROOT)["evictions"] > 0
    for row in range(16):
        np.testing.assert_array_equal(read_row(again, row), publisher.data[row])
    again.close()


def test_reads_of_any_key_count_every_chunk_they_brought_in(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, None)
    keys = [
        (-1,),
        (slice(0, ROWS, 5),),
        (slice(10, 12), slice(100, 200)),
        (7, 3),
        (slice(-3, None),),
    ]
    for key in keys:
        expected = publisher.data[key]
        np.testing.assert_array_equal(
            remote.fetch(ROOT, "a.b2nd", key, None, None).values, expected
        )
    with remote.cache.lock(ROOT, "a.b2nd"):
        meta = remote.store.dataset(ROOT, "a.b2nd")[1]
        schunk = remote.cache.proxy(ROOT, "a.b2nd", meta, None, None).schunk
        held = stored_sizes(schunk, list(range(schunk.nchunks)))
    assert len(held) == len({*range(0, ROWS, 5), 47, 10, 11, 7, 45, 46})
    assert remote.cache.budget.usage(ROOT)["bytes"] == sum(held.values())
    remote.close()


def test_api_roots_entry_of_a_remote_root_shows_its_cache_use(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, BUDGET)
    read_row(remote, 3)
    read_row(remote, 3)
    cache = remote.names()[ROOT]["cache"]
    assert cache["bytes"] == publisher.chunk_size(3)
    assert (cache["hits"], cache["misses"], cache["hit_ratio"]) == (1, 1, 0.5)
    assert cache["evictions"] == 0 and cache["pinned"] is False
    remote.close()


def test_pinned_roots_are_never_chosen_for_eviction():
    budget = CacheBudget(100)
    budget.pin("mirrored", True)
    budget.record_read("mirrored", "m", {0: 80, 1: 80})
    budget.record_read("other", "o", {0: 60, 1: 60})
    assert budget.evictable_bytes == 120
    assert budget.victim() == ("other", "o", 0)
    budget.record_eviction("other", "o", 0)
    assert budget.victim() is None
    assert budget.usage("mirrored")["bytes"] == 160


def test_cat2cli_cache_prints_bytes_hit_ratio_and_evictions_of_remote_roots(
    tmp_path, publisher, capsys, monkeypatch
):
    statedir = tmp_path / "sub"
    remote = subscriber(statedir, publisher, BUDGET)
    read_row(remote, 5)
    read_row(remote, 5)
    settings = SubscriberSettings(statedir=statedir, login=False)
    app = create_subscriber(settings, lambda _store: remote)
    port = free_port()
    server = http_server(app.app, f"127.0.0.1:{port}", 2, "test-subscriber")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)  # no caterva2.toml around
    try:
        cli.main(["--subscriber", f"http://127.0.0.1:{port}", "cache"])
        size = publisher.chunk_size(5)
        assert capsys.readouterr().out == f"{ROOT}: {size} bytes, hit ratio 50.0%, 0 evictions\n"
        cli.main(["--subscriber", f"http://127.0.0.1:{port}", "cache", "--json"])
        shown = json.loads(capsys.readouterr().out)
        assert shown[ROOT]["bytes"] == size and shown[ROOT]["hits"] == 1
    finally:
        server.close()
        thread.join(timeout=10)
        app.close()


def test_computations_over_remote_arrays_are_counted_and_kept_within_budget(tmp_path, publisher):
    statedir = tmp_path / "sub"
    remote = subscriber(statedir, publisher, BUDGET)
    settings = SubscriberSettings(statedir=statedir, secret="s3cret")
    app = create_subscriber(settings, lambda _store: remote)
    app.store.add_user("user@example.com", "userpass123")
    port = free_port()
    server = http_server(app.app, f"127.0.0.1:{port}", 2, "test-subscriber")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        client = cat2.Client(f"http://127.0.0.1:{port}", ("user@example.com", "userpass123"))
        path = client.lazyexpr("twice", "a * 2", {"a": f"{ROOT}/a.b2nd"})
        got = client.fetch(path, slice(None))
        np.testing.assert_array_equal(got, publisher.data * 2)
        usage = remote.cache.budget.usage(ROOT)
        assert usage["misses"] == ROWS  # every chunk the evaluation fetched is counted
        assert remote.cache.budget.evictable_bytes <= BUDGET
        assert usage["evictions"] > 0
    finally:
        server.close()
        thread.join(timeout=10)
        app.close()


def test_a_root_over_its_quota_loses_its_own_chunks_first():
    budget = CacheBudget(None, quotas={"small": 100, "mirrored": 150})
    budget.pin("mirrored", True)  # a quota of its own: not pinned
    budget.record_read("small", "s", {0: 60, 1: 60})
    budget.record_read("mirrored", "m", {0: 80, 1: 80})
    budget.record_read("free", "f", {0: 500})
    assert budget.victim() == ("small", "s", 0)
    budget.record_eviction("small", "s", 0)
    assert budget.victim() == ("mirrored", "m", 0)
    budget.record_eviction("mirrored", "m", 0)
    assert budget.victim() is None  # no global budget: "free" keeps its chunk
    assert budget.usage("mirrored")["pinned"] is False
    assert budget.usage("small")["quota"] == 100


def test_reads_of_a_root_with_a_quota_stay_within_it(tmp_path, publisher):
    store = Store(tmp_path / "sub")
    store.upsert_root(ROOT, publisher.url, "etag-1", True, owner="pub")
    quota = 1024 * 1024
    remote = RemoteRoots(store, tmp_path / "sub", cache_quotas={ROOT: quota})
    remote.follow(ROOT, wait=True)
    for row in range(12):
        np.testing.assert_array_equal(read_row(remote, row), publisher.data[row])
        assert remote.cache.budget.usage(ROOT)["bytes"] <= quota
    assert remote.cache.budget.usage(ROOT)["evictions"] > 0
    remote.close()
