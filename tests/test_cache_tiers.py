"""Tiers: subscribers taking chunk bytes from a parent subscriber, under the same version rules.

In-process: a real publisher app and a real parent subscriber app, each on
127.0.0.1 (waitress in a thread); the edge subscribers are remote roots whose
upstream is the parent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from caterva2.common.config import ConfigError
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings, build_settings
from caterva2.subscriber.store import Store

from .app_support import served
from .inprocess_publisher import (
    ROOT,
    Publisher,
    read_row,
    running_publisher,
    subscriber,
    write_rows,
)

EDGES = 10


@pytest.fixture
def publisher(tmp_path):
    with running_publisher(tmp_path) as running:
        yield running


@contextmanager
def serving(remote: RemoteRoots, statedir: Path) -> Iterator[str]:
    """The subscriber app over `remote`, served on 127.0.0.1: its URL."""
    app = create_subscriber(SubscriberSettings(statedir=statedir, login=False), lambda _s: remote)
    try:
        with served(app.app, threads=8) as url:
            yield url
    finally:
        app.close()


def edge(statedir: Path, publisher: Publisher, upstream: str) -> RemoteRoots:
    store = Store(statedir)
    store.upsert_root(ROOT, publisher.url, "etag-1", True, owner="pub")
    remote = RemoteRoots(store, statedir, upstream=upstream)
    remote.follow(ROOT, wait=True)
    return remote


def test_edges_under_one_parent_cost_the_publisher_one_transfer_per_chunk(tmp_path, publisher):
    parent = subscriber(tmp_path / "parent", publisher, budget=None)
    with serving(parent, tmp_path / "parent") as url:
        edges = [edge(tmp_path / f"edge{i}", publisher, url) for i in range(EDGES)]
        answers: list[np.ndarray] = [None] * EDGES
        start = threading.Barrier(EDGES)

        def read(i: int) -> None:
            start.wait()  # all at once, while the chunk is cached nowhere
            answers[i] = read_row(edges[i], 9)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(EDGES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for answer in answers:
            np.testing.assert_array_equal(answer, publisher.data[9])
        assert publisher.transfers(9) == 1
        assert parent.cache.budget.usage(ROOT)["misses"] == 1
        for remote in edges:
            remote.close()


def test_an_edge_ahead_of_its_parent_takes_the_new_version_from_the_publisher(tmp_path, publisher):
    parent = subscriber(tmp_path / "parent", publisher, budget=None)
    with serving(parent, tmp_path / "parent") as url:
        np.testing.assert_array_equal(read_row(parent, 2), publisher.data[2])
        data = write_rows(publisher.file, seed=18)
        child = edge(tmp_path / "edge", publisher, url)  # follows the new version
        # The parent still holds the old one: it answers 412, so the publisher serves it.
        np.testing.assert_array_equal(read_row(child, 2), data[2])
        assert publisher.transfers(2) == 2
        np.testing.assert_array_equal(read_row(parent, 2), publisher.data[2])  # its own version
        child.close()


def test_upstream_must_be_an_http_url_other_than_our_own():
    assert build_settings({"upstream": "http://parent:8000/"}, {}).upstream == "http://parent:8000"
    with pytest.raises(ConfigError, match="upstream must be an http"):
        build_settings({"upstream": "parent:8000"}, {})
    settings = build_settings({"upstream": "http://localhost:8000", "login": False}, {})
    with pytest.raises(ConfigError, match="upstream is this subscriber"):
        settings.check()


def test_an_edge_whose_parent_is_down_reads_from_the_publisher(tmp_path, publisher):
    parent = subscriber(tmp_path / "parent", publisher, budget=None)
    with serving(parent, tmp_path / "parent") as url:
        child = edge(tmp_path / "edge", publisher, url)
    # The parent has stopped listening: the chunk comes from the publisher.
    np.testing.assert_array_equal(read_row(child, 4), publisher.data[4])
    assert publisher.transfers(4) == 1
    np.testing.assert_array_equal(read_row(child, 5), publisher.data[5])
    child.close()


def test_some_roots_take_another_parent_or_none(tmp_path):
    from caterva2.subscriber.publisher_client import PublisherPool

    pool = PublisherPool(
        upstream="http://parent-a:8000",
        root_upstreams={"b": "http://parent-b:8000", "direct": None, "a2": "http://parent-a:8000"},
    )
    try:
        assert pool.client("any", "http://pub:8001").upstream.url == "http://parent-a:8000"
        assert pool.client("b", "http://pub:8001").upstream.url == "http://parent-b:8000"
        assert pool.client("direct", "http://pub:8001").upstream is None
        # One parent, one state: a failure seen through one root pauses it for all.
        assert pool.client("a2", "http://p").upstream is pool.client("any", "http://p").upstream
    finally:
        pool.close()


def test_upstreams_table_is_checked():
    from caterva2.common.config import ConfigError
    from caterva2.subscriber.settings import root_upstreams

    assert root_upstreams({"b": "http://x:8000/", "c": ""}) == {"b": "http://x:8000", "c": None}
    for bad in ({"../b": "http://x"}, {"b": "ftp://x"}, ["b"]):
        with pytest.raises(ConfigError):
            root_upstreams(bad)
