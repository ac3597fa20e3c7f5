"""The HDF5 root adapter of the publisher, in process, with its API (no broker needed)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import blosc2
import falcon.testing
import h5py
import hdf5plugin
import numpy as np
import pytest

from caterva2.common.b2meta import str_to_dtype
from caterva2.common.hdf5_workers import WorkerCrashed, WorkerPool
from caterva2.publisher.api import create_app
from caterva2.publisher.hdf5_root import HDF5FileRoot, HDF5RootError

from .hdf5_support import make_all_types


@pytest.fixture
def example(tmp_path, examples_dir):
    path = tmp_path / "root" / "root-example.h5"
    path.parent.mkdir()
    shutil.copyfile(examples_dir / "root-example.h5", path)
    return path


@pytest.fixture
def root(example, tmp_path):
    adapter = HDF5FileRoot(example, tmp_path / "cache", workers=2)
    yield adapter
    adapter.close()


def values_of(adapter: HDF5FileRoot, relpath: str) -> np.ndarray:
    """Rebuild a dataset from the chunks the adapter serves, as a subscriber does."""
    _stat, meta = adapter.info(relpath)
    array = blosc2.uninit(
        tuple(meta["shape"]),
        dtype=str_to_dtype(meta["dtype"]),
        chunks=tuple(meta["chunks"]) or None,
        blocks=tuple(meta["blocks"]) or None,
    )
    for nchunk in range(meta["schunk"]["nchunks"]):
        array.schunk.update_chunk(nchunk, adapter.chunk(relpath, nchunk)[1])
    return array[()]


def h5_values(path, relpath: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        dset = f[relpath.removesuffix(".b2nd")]
        return np.zeros((), dset.dtype) if dset.shape is None else dset[()]


def test_every_supported_dataset_is_served_equal_to_h5py(tmp_path):
    source = make_all_types(tmp_path / "all.h5")
    adapter = HDF5FileRoot(source, tmp_path / "cache", workers=2)
    try:
        listed = adapter.datasets()
        assert "links/dangling.b2nd" in listed and "numbers/enum.b2nd" in listed
        for relpath in listed:
            _stat, meta = adapter.info(relpath)
            if "error" in meta:
                assert relpath == "links/dangling.b2nd" and "dangling" in meta["error"]
                continue
            got, want = values_of(adapter, relpath), h5_values(source, relpath)
            assert got.dtype == want.dtype.newbyteorder("=") or got.dtype == want.dtype, relpath
            np.testing.assert_array_equal(got, want, err_msg=relpath)
            whole = adapter.open_file(relpath)
            array = blosc2.ndarray_from_cframe(whole.file.read())
            whole.file.close()
            np.testing.assert_array_equal(array[()], want, err_msg=relpath)
    finally:
        adapter.close()


def test_listing_info_and_reasons(root):
    listed = root.datasets()
    assert "arrays/soft-link.b2nd" in listed and "unsupported/too-many-dimensions.b2nd" in listed
    _stat, meta = root.info("unsupported/too-many-dimensions.b2nd")
    assert meta["error"] == "Unsupported dataset: 23 dimensions (Blosc2 supports at most 8)"
    _stat, meta = root.info("arrays/3d-blosc2.b2nd")
    assert meta["chunks"] == [4, 10, 10] and meta["dtype"] == "uint8"
    assert meta["schunk"]["cparams"]["codec"] == 1 and meta["schunk"]["nchunks"] == 3
    _stat, meta = root.info("arrays/empty.b2nd")
    assert meta["shape"] == [] and meta["dtype"] == "float64"
    assert root.stat("arrays/soft-link.b2nd").etag == root.stat("arrays/1d-raw.b2nd").etag
    assert root.stat("nope.b2nd") is None


def test_blosc2_chunks_are_read_directly_not_cached(root, example):
    with h5py.File(example, "r") as f:
        dset = f["arrays/1ds-blosc2"]
        for nchunk in range(2):
            raw = dset.id.read_direct_chunk((50 * nchunk,))[1]
            stored = blosc2.schunk_from_cframe(raw, copy=True).get_chunk(0)
            assert root.chunk("arrays/1ds-blosc2.b2nd", nchunk)[1] == stored
    cache = root.cachedir / "arrays"
    assert not cache.exists() or not list(cache.glob("1ds-blosc2.*"))
    root.chunk("arrays/2d-gzip.b2nd", 1)
    assert len(list(cache.glob("2d-gzip.*.b2nd"))) == 1  # converted chunks are kept


def test_only_changed_datasets_are_affected(root, example):
    known = root.datasets()
    assert root.affected("unrelated.txt", known) == set()
    with h5py.File(example, "a") as f:
        f["arrays/2d-gzip"][3, 3] = 7
    assert root.affected(example.name, known) == {"arrays/2d-gzip.b2nd"}
    assert root.affected(example.name, known) == set()  # nothing new since
    with h5py.File(example, "a") as f:
        f["scalar"].attrs["unit"] = "m"
        f["arrays/3d-blosc2"][9, 9, 9] = 1
        f["new"] = np.arange(4)
        del f["string"]
    expected = {"scalar.b2nd", "arrays/3d-blosc2.b2nd", "new.b2nd", "string.b2nd"}
    assert root.affected(example.name, known) == expected
    assert root.stat("string.b2nd") is None
    np.testing.assert_array_equal(values_of(root, "new.b2nd"), np.arange(4))
    assert values_of(root, "arrays/2d-gzip.b2nd")[3, 3] == 7


def test_unchanged_rewrite_keeps_etags_and_the_catalog_survives_restarts(example, tmp_path):
    adapter = HDF5FileRoot(example, tmp_path / "cache", workers=1)
    etags = {p: adapter.stat(p).etag for p in adapter.datasets()}
    adapter.close()
    again = HDF5FileRoot(example, tmp_path / "cache", workers=1)
    assert not again.pool.started  # the saved catalog was used: no worker needed
    assert {p: again.stat(p).etag for p in again.datasets()} == etags
    copy = example.with_name("copy.tmp")
    shutil.copyfile(example, copy)
    os.replace(copy, example)  # same bytes, new file: nothing to announce
    assert again.affected(example.name, etags) == set()
    again.close()


def test_corrupt_file_at_start_and_while_running(example, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(HDF5RootError, match="bad.h5 is not a readable HDF5 file"):
        HDF5FileRoot(bad, tmp_path / "cache-bad", workers=1)
    adapter = HDF5FileRoot(example, tmp_path / "cache", workers=1)
    try:
        known = adapter.datasets()
        good = example.read_bytes()
        example.write_bytes(good[: len(good) // 3])  # truncated by a careless writer
        assert adapter.affected(example.name, known) == set()
        assert adapter.datasets() == known  # the last good view stays
        with pytest.raises(Exception, match="cannot be read now") as info:
            adapter.chunk("arrays/1d-raw.b2nd", 0)
        assert info.value.status == 503
        example.write_bytes(good)
        assert adapter.affected(example.name, known) == set()
        assert adapter.chunk("arrays/1d-raw.b2nd", 0)[1]
        example.unlink()
        assert adapter.affected(example.name, known) == set(known)
        assert adapter.datasets() == []
    finally:
        adapter.close()


def test_external_links_and_damaged_datasets_are_listed_with_reasons(tmp_path):
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f["good"] = np.arange(5)
        f["away"] = h5py.ExternalLink("/etc/passwd.h5", "/x")
        f.create_dataset("vlen", (1,), dtype=h5py.vlen_dtype("i4"))[0] = np.arange(3)
    adapter = HDF5FileRoot(path, tmp_path / "cache", workers=1)
    try:
        assert adapter.datasets() == ["away.b2nd", "good.b2nd", "vlen.b2nd"]
        assert "points outside the file" in adapter.info("away.b2nd")[1]["error"]
        assert "variable-length" in adapter.info("vlen.b2nd")[1]["error"]
        np.testing.assert_array_equal(values_of(adapter, "good.b2nd"), np.arange(5))
    finally:
        adapter.close()


def test_a_crashed_worker_is_replaced():
    pool = WorkerPool(1)
    try:
        with pytest.raises(WorkerCrashed):
            pool.run(os._exit, 3)
        assert pool.run(abs, -4) == 4
    finally:
        pool.close()


def test_api_stays_responsive_while_workers_convert(tmp_path):
    path = tmp_path / "heavy.h5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        data = rng.integers(0, 1000, (2000, 4000), dtype="i8")
        f.create_dataset("heavy", data=data, chunks=(250, 4000), compression="gzip")
        f.create_dataset("light", data=np.arange(10), **hdf5plugin.Blosc2())
    adapter = HDF5FileRoot(path, tmp_path / "cache", workers=2)
    client = falcon.testing.TestClient(create_app(adapter))
    try:
        client.simulate_get("/api/chunk/light.b2nd", params={"nchunk": "0"})  # workers up
        worker = threading.Thread(target=lambda: client.simulate_get("/api/file/heavy.b2nd"))
        worker.start()
        latencies = []
        while worker.is_alive():
            start = time.perf_counter()
            assert client.simulate_get("/api/info/light.b2nd").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.005)
        worker.join()
        assert latencies and max(latencies) < 0.5, max(latencies)
    finally:
        adapter.close()
