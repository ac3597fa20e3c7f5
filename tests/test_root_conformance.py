"""Every kind of root passes the conformance suite (`tests/root_conformance.py`).

Subscriber kinds: a local directory root, a saved lazy expression, an unfolded
HDF5 dataset (shell), a remote root read through the chunk cache from a real
publisher on 127.0.0.1. Publisher kinds: a directory root and an HDF5 file
root, through the parts of the suite that apply to them (no selections).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from typing import Any

import blosc2
import h5py
import numpy as np
import pytest

from caterva2.common import block_stream
from caterva2.common.daemon import http_server
from caterva2.publisher.api import Stats, create_app
from caterva2.publisher.hdf5_root import HDF5FileRoot
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.subscriber import hdf5_shells
from caterva2.subscriber.compute_budget import Limits, Runner
from caterva2.subscriber.fetch_values import values_of
from caterva2.subscriber.file_ops import FileOps
from caterva2.subscriber.hdf5_unfold import unfold_task
from caterva2.subscriber.lazy_expressions import write_shell
from caterva2.subscriber.local_roots import LocalRoots
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.root_interface import BlockStream, Download
from caterva2.subscriber.root_registry import RootRegistry
from caterva2.subscriber.saved_expressions import Expressions
from caterva2.subscriber.store import Store

from .root_conformance import (
    BLOCKS,
    CHUNKS,
    DATASET,
    EXPECTED,
    DatasetConformance,
    Kind,
    SelectionConformance,
    write_expected,
)
from .services import free_port


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)

    def read_into(self, view: memoryview) -> None:
        if self.file.readinto(view) != len(view):
            raise EOFError

    def abort(self) -> None:
        pass


def result_values(result: Any) -> np.ndarray:
    """Values of any fetch result, the block stream included (the pages never ask for it)."""
    if isinstance(result, BlockStream):
        return block_stream.read(BytesSource(b"".join(result.pieces)))
    return values_of(result)


def local_registry(tmp_path, expressions: bool = False) -> RootRegistry:
    roots = LocalRoots(tmp_path / "state", login=False)
    if not expressions:
        return RootRegistry(roots)
    runner = Runner(Limits(timeout=30, workers=1))
    service = Expressions(roots, None, FileOps(roots, None), runner)
    return RootRegistry(roots, None, service)


class TestLocalDirectoryRoot(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        registry = local_registry(tmp_path)
        public = registry.local.statedir / "public"
        (public / "data").mkdir()
        write_expected(public / DATASET)
        return Kind(registry.root("@public", None), result_values)


class TestSavedExpression(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        registry = local_registry(tmp_path, expressions=True)
        public = registry.local.statedir / "public"
        (public / "data").mkdir()
        (public / "src").mkdir()
        write_expected(public / "src" / "b.b2nd")
        write_shell(public / DATASET, "b + 0", {"b": "@public/src/b.b2nd"})
        yield Kind(registry.root("@public", None), result_values, versioned=False)
        registry.expressions.runner.close()


@pytest.fixture(scope="module")
def hdf5_workers():
    """The subscriber's HDF5 worker processes, started once for these tests and stopped after."""
    yield
    hdf5_shells.close_pool()


class TestHDF5Shell(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path, hdf5_workers):
        registry = local_registry(tmp_path)
        public = registry.local.statedir / "public"
        with h5py.File(public / "data.h5", "w") as f:
            f.create_dataset("a", data=EXPECTED, chunks=CHUNKS)
        unfold_task(str(public / "data.h5"), str(tmp_path / "unfolded"))
        shutil.move(tmp_path / "unfolded", public / "data")
        return Kind(registry.root("@public", None), result_values, versioned=False)


def published_directory(tmp_path) -> DirectoryRoot:
    """A publisher's directory root holding the conformance dataset."""
    rootdir = tmp_path / "published"
    (rootdir / "data").mkdir(parents=True)
    write_expected(rootdir / DATASET)
    return DirectoryRoot(rootdir, tmp_path / "pubcache")


def serve_publisher(adapter: Any) -> tuple[str, Any]:
    """A real publisher app over `adapter` on 127.0.0.1 (waitress in a thread)."""
    port = free_port()
    server = http_server(create_app(adapter, Stats()), f"127.0.0.1:{port}", 4, "conformance")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", server


class TestRemoteRoot(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        adapter = published_directory(tmp_path)
        url, server = serve_publisher(adapter)
        store = Store(tmp_path / "sub")
        store.upsert_root("conform", url, "etag-1", True, owner="pub")
        remote = RemoteRoots(store, tmp_path / "sub")
        remote.follow("conform", wait=True)
        registry = RootRegistry(LocalRoots(tmp_path / "sub", login=False), remote)
        yield Kind(registry.root("conform", None), result_values)
        remote.close()
        server.close()
        adapter.close()
        store.close()


class PublisherRoot:
    """A publisher's root adapter seen as a root: what it serves subscribers."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def listing(self, relpath: str) -> list[str]:
        names = self.adapter.datasets()
        if not relpath:
            return names
        prefix = relpath + "/"
        return [n[len(prefix) :] for n in names if n.startswith(prefix)]

    def dataset(self, relpath: str) -> PublisherDataset:
        return PublisherDataset(self.adapter, relpath)


class PublisherDataset:
    def __init__(self, adapter: Any, relpath: str) -> None:
        self.adapter = adapter
        self.relpath = relpath

    def info(self) -> tuple[dict, str | None]:
        stat, meta = self.adapter.info(self.relpath)
        return meta, stat.etag

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        # The publisher's route checks If-Match against the chunk's version; so does this.
        from caterva2.common.errors import PreconditionFailed
        from caterva2.common.falcon_app import etag_matches

        stat, data = self.adapter.chunk(self.relpath, nchunk)
        if if_match is not None and not etag_matches(if_match, stat.etag):
            raise PreconditionFailed(f"{self.relpath} changed")
        return data, stat.etag

    def download(self) -> Download:
        stored = self.adapter.open_file(self.relpath)
        with stored.file:
            body = stored.file.read()
        return Download(stored.filename, None, iter([body]), stored.size)


class TestPublisherDirectoryRoot(DatasetConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        adapter = published_directory(tmp_path)
        yield Kind(PublisherRoot(adapter))
        adapter.close()


class TestPublisherHDF5FileRoot(DatasetConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        path = tmp_path / "file.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("data/a", data=EXPECTED, chunks=CHUNKS)
        adapter = HDF5FileRoot(path, tmp_path / "pubcache", workers=1)
        yield Kind(PublisherRoot(adapter))
        adapter.close()


def test_the_layout_the_suite_relies_on_is_the_one_it_writes(tmp_path):
    """The suite's constants agree with the files it writes (else every kind would be wrong)."""
    write_expected(tmp_path / "x.b2nd")
    import blosc2

    array = blosc2.open(str(tmp_path / "x.b2nd"))
    assert array.chunks == CHUNKS and array.blocks == BLOCKS
    assert array.schunk.nchunks == 6
    assert os.path.getsize(tmp_path / "x.b2nd") > 0


class InContainer:
    """A root seen from inside one container file: `data/a.b2nd` is the leaf `box/data/a.b2nd`."""

    def __init__(self, root: Any, container: str) -> None:
        self.root = root
        self.container = container

    def inner(self, relpath: str) -> str:
        return f"{self.container}/{relpath}" if relpath else self.container

    def listing(self, relpath: str) -> list[str]:
        return self.root.listing(self.inner(relpath))

    def dataset(self, relpath: str) -> Any:
        return self.root.dataset(self.inner(relpath))


class TestTreeStoreLeaf(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path):
        registry = local_registry(tmp_path)
        public = registry.local.statedir / "public"
        values = blosc2.asarray(EXPECTED, chunks=CHUNKS, blocks=BLOCKS)
        with blosc2.TreeStore(str(public / "box.b2z"), mode="w") as tree:
            tree[f"/{DATASET}"] = values
            tree["/data/small"] = np.arange(3)  # an embedded leaf next to it
        return Kind(InContainer(registry.root("@public", None), "box.b2z"), result_values)


class TestHDF5ContainerLeaf(SelectionConformance):
    @pytest.fixture
    def kind(self, tmp_path, hdf5_workers):
        registry = local_registry(tmp_path)
        public = registry.local.statedir / "public"
        with h5py.File(public / "box.h5", "w") as f:
            f.create_dataset(DATASET, data=EXPECTED, chunks=CHUNKS)
        root = InContainer(registry.root("@public", None), "box.h5")
        return Kind(root, result_values, versioned=False)
