"""A real publisher app on 127.0.0.1 (waitress in a thread) and remote roots following it.

No broker is needed: remote roots follow a root whose publisher is recorded in
the store, and `sync` stands for the resync a heartbeat with a new etag starts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

from caterva2.common.daemon import http_server
from caterva2.publisher.api import Stats, create_app
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings
from caterva2.subscriber.store import Store

from .app_support import served
from .services import free_port

ROOT = "budget"
ROWS, ROW = 48, 32768  # 48 chunks of one row of 32768 uint64: 256 KiB each, 12 MiB in all


@dataclass
class Publisher:
    url: str
    stats: Stats
    data: np.ndarray
    file: Path

    def chunk_size(self, nchunk: int) -> int:
        """Bytes of a chunk as the publisher stores it (and the cache holds it)."""
        array = blosc2.open(str(self.file))
        return len(array.schunk.get_chunk(nchunk))

    def transfers(self, nchunk: int) -> int:
        return self.stats.chunks["a.b2nd", nchunk]


@contextmanager
def running_publisher(tmp_path: Path) -> Iterator[Publisher]:
    """A publisher of root `ROOT` holding `a.b2nd` (`ROWS` chunks of one row), until exit."""
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    data = write_rows(rootdir / "a.b2nd", seed=16)
    adapter = DirectoryRoot(rootdir, tmp_path / "pubcache")
    stats = Stats()
    port = free_port()
    server = http_server(create_app(adapter, stats), f"127.0.0.1:{port}", 4, "test-publisher")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield Publisher(f"http://127.0.0.1:{port}", stats, data, rootdir / "a.b2nd")
    finally:
        server.close()
        thread.join(timeout=10)
        adapter.close()


def write_rows(path: Path, seed: int) -> np.ndarray:
    """A new version of the dataset at `path`, swapped in whole; its values."""
    # Random bits do not compress: every chunk costs its full size in the cache.
    data = np.random.default_rng(seed).integers(0, 2**63, (ROWS, ROW), dtype=np.uint64)
    tmp = path.with_name(f"tmp-{path.name}")
    blosc2.asarray(data, chunks=(1, ROW), urlpath=str(tmp), mode="w")
    os.replace(tmp, path)
    return data


def subscriber(
    statedir: Path, publisher: Publisher, budget: int | None, mirror: bool = False
) -> RemoteRoots:
    """Remote roots over `statedir` following the publisher's root, with a byte budget."""
    store = Store(statedir)
    store.upsert_root(ROOT, publisher.url, "etag-1", True, owner="pub")
    remote = RemoteRoots(store, statedir, cache_size=budget)
    remote.follow(ROOT, mirror=mirror, wait=True)
    return remote


def read_row(remote: RemoteRoots, row: int) -> np.ndarray:
    return remote.fetch(ROOT, "a.b2nd", (slice(row, row + 1),), None, None).values[0]


@dataclass
class FollowedRoot:
    """A publisher's root followed by a subscriber that is served over HTTP (both in-process)."""

    url: str
    publisher: Publisher
    remote: RemoteRoots
    rootdir: Path

    def transfers(self, relpath: str) -> set[int]:
        """The chunks of the dataset `relpath` the publisher has sent."""
        return {n for (path, n) in self.publisher.stats.chunks if path == relpath}


@contextmanager
def followed_root(
    tmp_path: Path,
    fill: Callable[[Path], object],
    kind: type[FollowedRoot] = FollowedRoot,
    **settings: object,
) -> Iterator[FollowedRoot]:
    """`fill(rootdir)` published, followed and served (`settings`: the subscriber's)."""
    with running_publisher(tmp_path) as publisher:
        rootdir = publisher.file.parent
        fill(rootdir)
        remote = subscriber(tmp_path / "sub", publisher, None)
        app = create_subscriber(
            SubscriberSettings(statedir=tmp_path / "sub", login=False, **settings),
            lambda _s: remote,
        )
        try:
            with served(app.app) as base:
                yield kind(base, publisher, remote, rootdir)
        finally:
            app.close()
