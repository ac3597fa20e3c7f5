"""An HDF5 file published as a root and read through a subscriber, over a real RabbitMQ."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid

import blosc2
import h5py
import hdf5plugin  # noqa: F401 - Blosc2-filtered datasets decode
import httpx
import msgpack
import numpy as np
import pika
import pytest

from caterva2.broker import topology
from caterva2.broker.connection import parameters

from .broker_support import RUN
from .services import PublisherProcess
from .test_pubsub import Lab, follow, wait_for

EXAMPLE = "root-example.h5"
SLICES = {
    "scalar.b2nd": [None],
    "string.b2nd": [None],
    "attrs.b2nd": [None],
    "arrays/1d-raw.b2nd": [None, "3:97", "50"],
    "arrays/soft-link.b2nd": [None, "10:20"],
    "arrays/1ds-blosc2.b2nd": [None, "45:55"],
    "arrays/2d-gzip.b2nd": [None, "1:9,2:7", "3", "5:10,-2"],
    "arrays/2d-nochunks.b2nd": [None, "2:4,:"],
    "arrays/3d-blosc2.b2nd": [None, "2:9,1,3:8", "7:10,0:2,0:10"],
    "arrays/array-dtype.b2nd": [None, "2:5"],
    "arrays/compound-dtype.b2nd": [None, "4:9"],
}


@pytest.fixture
def lab(tmp_path, broker_url):
    lab = Lab(tmp_path, broker_url)
    yield lab
    lab.close()


def hdf5_publisher(lab: Lab, source, label: str = "h5") -> PublisherProcess:
    name = f"{label}-{RUN}-{uuid.uuid4().hex[:4]}"
    folder = lab.base / name
    folder.mkdir()
    h5 = folder / EXAMPLE
    shutil.copyfile(source, h5)
    pub = PublisherProcess(name, h5, lab.base / f"pub-{name}", lab.broker_url, heartbeat=1.0)
    lab.processes.append(pub)
    return pub.start()


def expected(h5file: h5py.File, relpath: str, slice_: str | None):
    dset = h5file[relpath.removesuffix(".b2nd")]
    if dset.shape is None:
        return np.zeros((), dtype=dset.dtype)
    if slice_ is None:
        return dset[()]
    items = tuple(
        int(p) if ":" not in p else slice(*[int(x) if x else None for x in p.split(":")])
        for p in slice_.split(",")
    )
    return dset[items[0] if len(items) == 1 else items]


def fetch(sub, path: str, slice_: str | None = None):
    params = {"slice_": slice_} if slice_ else {}
    resp = httpx.get(f"{sub.urlbase}/api/fetch/{path}", params=params, timeout=60)
    resp.raise_for_status()
    return blosc2.ndarray_from_cframe(resp.content)[()]


def test_hdf5_root_served_through_subscriber_equals_h5py(lab, examples_dir):
    pub = hdf5_publisher(lab, examples_dir / EXAMPLE)
    listed = pub.get("/api/list").json()
    assert "unsupported/vlstring.b2nd" in listed and "arrays/soft-link.b2nd" in listed
    sub = lab.subscriber()
    follow(sub, pub.name)
    wait_for(
        lambda: httpx.get(f"{sub.urlbase}/api/list/{pub.name}").json() == listed, "the listing"
    )
    with h5py.File(pub.rootdir, "r") as f:
        for relpath, slices in SLICES.items():
            for slice_ in slices:
                got = fetch(sub, f"{pub.name}/{relpath}", slice_)
                want = expected(f, relpath, slice_)
                assert np.asarray(got).dtype == np.asarray(want).dtype, (relpath, slice_)
                np.testing.assert_array_equal(got, want, err_msg=f"{relpath}[{slice_}]")
    info = httpx.get(f"{sub.urlbase}/api/info/{pub.name}/attrs.b2nd").json()
    assert info["schunk"]["vlmeta"]["Arr"] == [[0, 1], [2, 3]]
    assert info["schunk"]["vlmeta"]["NilInt"] is None and info["schunk"]["vlmeta"]["Int"] == 42
    gzip = httpx.get(f"{sub.urlbase}/api/info/{pub.name}/arrays/2d-gzip.b2nd").json()
    assert gzip["chunks"] == [4, 4] and gzip["dtype"] == "complex128"
    bad = httpx.get(f"{sub.urlbase}/api/info/{pub.name}/unsupported/vlstring.b2nd").json()
    assert "variable-length strings" in bad["error"]


def test_blosc2_filtered_chunks_leave_the_publisher_as_stored(lab, examples_dir):
    pub = hdf5_publisher(lab, examples_dir / EXAMPLE)
    sub = lab.subscriber()
    follow(sub, pub.name)
    path = "arrays/3d-blosc2.b2nd"
    wait_for(lambda: httpx.get(f"{sub.urlbase}/api/info/{pub.name}/{path}").is_success, "info")
    with h5py.File(pub.rootdir, "r") as f:
        dset = f[path.removesuffix(".b2nd")]
        for nchunk, offset in enumerate([(0, 0, 0), (4, 0, 0), (8, 0, 0)]):
            frame = blosc2.schunk_from_cframe(dset.id.read_direct_chunk(offset)[1], copy=True)
            stored = frame.get_chunk(0)
            served = pub.get(f"/api/chunk/{path}", params={"nchunk": nchunk}).content
            assert served == stored
            via_sub = httpx.get(
                f"{sub.urlbase}/api/chunk/{pub.name}/{path}", params={"nchunk": nchunk}
            ).content
            assert via_sub == stored
    np.testing.assert_array_equal(
        fetch(sub, f"{pub.name}/{path}", "0:10"),
        (np.arange(1000) % 256).astype(np.uint8).reshape(10, 10, 10),
    )


def _spy(broker_url: str, root: str):
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-hdf5-spy"))
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, topology.CHANGES_EXCHANGE, routing_key=root)
    return conn, channel, queue


def _drain(channel, queue: str, seconds: float) -> list[dict]:
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.1)
        else:
            found.append(msgpack.unpackb(body))
    return found


def test_changing_one_dataset_announces_only_that_dataset(lab, examples_dir, broker_url):
    pub = hdf5_publisher(lab, examples_dir / EXAMPLE)
    sub = lab.subscriber()
    follow(sub, pub.name)
    path = f"{pub.name}/arrays/2d-gzip.b2nd"
    wait_for(lambda: httpx.get(f"{sub.urlbase}/api/info/{path}").is_success, "the dataset")
    assert fetch(sub, path, "0:1,0:1")[0, 0] == 0
    conn, channel, queue = _spy(broker_url, pub.name)
    try:
        with h5py.File(pub.rootdir, "a") as f:
            f["arrays/2d-gzip"][0, 0] = 99 + 99j
            f["arrays/1d-raw"].attrs["note"] = "added"
        messages = _drain(channel, queue, 6.0)
    finally:
        conn.close()
    changed = sorted(m["path"] for m in messages if m.get("type") == "change")
    assert changed == ["arrays/1d-raw.b2nd", "arrays/2d-gzip.b2nd", "arrays/soft-link.b2nd"]
    wait_for(lambda: fetch(sub, path, "0:1,0:1")[0, 0] == 99 + 99j, "the new value")
    info = httpx.get(f"{sub.urlbase}/api/info/{pub.name}/arrays/1d-raw.b2nd").json()
    assert info["schunk"]["vlmeta"] == {"note": "added"}


def test_whole_fetch_of_converted_dataset_streams_a_b2nd(lab, examples_dir):
    pub = hdf5_publisher(lab, examples_dir / EXAMPLE)
    resp = pub.get("/api/file/arrays/2d-gzip.b2nd")
    assert resp.status_code == 200
    array = blosc2.ndarray_from_cframe(resp.content)
    assert array.chunks == (4, 4)
    with h5py.File(pub.rootdir, "r") as f:
        np.testing.assert_array_equal(array[()], f["arrays/2d-gzip"][()])
        assert pub.get("/api/file/attrs.b2nd").status_code == 200
    bad = pub.get("/api/chunk/unsupported/vlstring.b2nd", params={"nchunk": 0})
    assert bad.status_code == 400 and "variable-length strings" in bad.json()["detail"]


def test_cat2pub_refuses_a_corrupt_hdf5_file_clearly(tmp_path, broker_url):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    proc = subprocess.run(
        [sys.executable, "-m", "caterva2.publisher.server", "bad", str(bad)]
        + ["--statedir", str(tmp_path / "state"), "--broker", broker_url, "--http", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cat2pub: error: bad.h5 is not a readable HDF5 file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unsupported_dataset_through_subscriber_is_a_clear_error(lab, examples_dir):
    pub = hdf5_publisher(lab, examples_dir / EXAMPLE)
    sub = lab.subscriber()
    follow(sub, pub.name)
    path = f"{pub.name}/unsupported/vlstring.b2nd"
    wait_for(lambda: httpx.get(f"{sub.urlbase}/api/info/{path}").is_success, "the listing")
    for verb in ("fetch", "download", "chunk"):
        resp = httpx.get(f"{sub.urlbase}/api/{verb}/{path}", params={"nchunk": 0}, timeout=30)
        assert resp.status_code == 400, verb
        assert "variable-length strings are not supported" in resp.json()["detail"], verb
