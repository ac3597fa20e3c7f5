"""A 2 GiB HDF5 dataset imports, exports and is served by processes limited to 512 MiB.

The limit is RLIMIT_AS (address space, like `ulimit -v`) set in each process
before it starts; the HDF5 workers a publisher spawns inherit it.  The data is
compressible but not constant (`value[r, c] = r + c % 1000`), written chunk by
chunk, stored uncompressed in HDF5 so that every path really converts 2 GiB.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import subprocess
import sys
import time
import uuid

import blosc2
import h5py
import hdf5plugin  # noqa: F401 - reads of the exported (Blosc2-filtered) file
import httpx
import numpy as np
import pytest

from caterva2.subscriber.hdf5_unfold import unfold_task

from . import services
from .broker_support import RUN
from .services import PublisherProcess
from .test_pubsub import Lab, follow, wait_for

LIMIT = 512 * 1024 * 1024
ROWS = COLS = 16384  # float64: 2 GiB
CHUNK_ROWS = 64  # 8 MiB chunks
MIB = 1024 * 1024


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def values(rows: slice, cols: slice) -> np.ndarray:
    r = np.arange(ROWS, dtype="f8")[rows]
    c = np.arange(COLS, dtype="f8")[cols] % 1000
    return np.add.outer(r, c)


@pytest.fixture(scope="module")
def big_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("data", (ROWS, COLS), "f8", chunks=(CHUNK_ROWS, COLS))
        dset.attrs["what"] = "r + c % 1000"
        for start in range(0, ROWS, CHUNK_ROWS):
            dset[start : start + CHUNK_ROWS] = values(slice(start, start + CHUNK_ROWS), slice(None))
    yield path
    path.unlink()


def run_limited(tmp_path, *args) -> tuple[int, str, float, float]:
    """Run a tool under the limit: (exit status, stderr, seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    errors = tmp_path / "tool-stderr.txt"
    with open(errors, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "caterva2.hdf5_tools", *map(str, args)],
            preexec_fn=limit_memory,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return proc.returncode, errors.read_text(), seconds, usage.ru_maxrss / 1024


def peak_rss_mib(pid: int) -> dict[int, float]:
    """The high-water RSS (MiB) of a live process and of each of its descendants."""
    pids, peaks = [pid], {}
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks[current] = int(line.split()[1]) / 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pids += [int(p) for p in children.read().split()]
        except OSError:
            continue
    return peaks


def test_big_dataset_imports_and_exports_within_512_mib(big_h5, tmp_path):
    tree, back = tmp_path / "tree", tmp_path / "back.h5"
    status, stderr, seconds, rss = run_limited(tmp_path, "import", big_h5, tree, "-q")
    assert status == 0, stderr
    array = blosc2.open(str(tree / "data.b2nd"))
    assert array.shape == (ROWS, COLS) and array.chunks == (CHUNK_ROWS, COLS)
    np.testing.assert_array_equal(
        array[9000:9010, 100:300], values(slice(9000, 9010), slice(100, 300))
    )
    assert array.vlmeta["what"] == "r + c % 1000"
    print(f"import: {seconds:.1f} s, peak RSS {rss:.0f} MiB")
    status, stderr, seconds, rss = run_limited(tmp_path, "export", tree, back, "-q")
    assert status == 0, stderr
    with h5py.File(back, "r") as f:
        dset = f["data"]
        assert dset.shape == (ROWS, COLS) and dset.attrs["what"] == "r + c % 1000"
        np.testing.assert_array_equal(
            dset[ROWS - 5 :, -7:], values(slice(ROWS - 5, None), slice(-7, None))
        )
        np.testing.assert_array_equal(dset[1234], values(slice(1234, 1235), slice(None))[0])
    size = back.stat().st_size / MIB
    print(f"export: {seconds:.1f} s, peak RSS {rss:.0f} MiB, {size:.1f} MiB written")


@contextlib.contextmanager
def limited_popen():
    """Start the processes of `services` with the memory limit."""
    original = services.subprocess.Popen
    services.subprocess.Popen = functools.partial(original, preexec_fn=limit_memory)
    try:
        yield
    finally:
        services.subprocess.Popen = original


def test_big_dataset_is_served_within_512_mib(big_h5, tmp_path, broker_url, monkeypatch):
    # glibc reserves 64 MiB of address space per thread arena: a threaded server under
    # RLIMIT_AS needs them capped, as anyone running it under `ulimit -v` would.
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    lab = Lab(tmp_path, broker_url)
    try:
        name = f"big-{RUN}-{uuid.uuid4().hex[:4]}"
        pub = PublisherProcess(name, big_h5, tmp_path / "pub", broker_url, heartbeat=1.0)
        lab.processes.append(pub)
        started = time.perf_counter()
        with limited_popen():
            pub.start()
            sub = lab.subscriber()
        print(f"publisher up (2 GiB fingerprinted) in {time.perf_counter() - started:.1f} s")
        follow(sub, name)
        path = f"{name}/data.b2nd"
        info = lambda: httpx.get(f"{sub.urlbase}/api/info/{path}", timeout=10)  # noqa: E731
        wait_for(lambda: info().is_success, "the dataset")
        assert info().json()["shape"] == [ROWS, COLS]
        resp = httpx.get(f"{sub.urlbase}/api/fetch/{path}", params={"slice_": "100:200,5000:5100"})
        got = blosc2.ndarray_from_cframe(resp.content)[()]
        np.testing.assert_array_equal(got, values(slice(100, 200), slice(5000, 5100)))
        assert sorted(pub.chunk_transfers("data.b2nd")) == [1, 2, 3]
        started = time.perf_counter()
        whole = tmp_path / "whole.b2nd"
        with httpx.stream("GET", f"{sub.urlbase}/api/fetch/{path}", timeout=300) as stream:
            assert stream.status_code == 200
            with open(whole, "wb") as out:
                for block in stream.iter_bytes(MIB):
                    out.write(block)
        print(f"whole fetch through the subscriber: {time.perf_counter() - started:.1f} s")
        array = blosc2.open(str(whole))
        assert array.shape == (ROWS, COLS)
        np.testing.assert_array_equal(
            array[ROWS - 3 :, :50], values(slice(ROWS - 3, None), slice(0, 50))
        )
        # The same file unfolded in the (limited) subscriber: shells read through its workers.
        public = sub.statedir / "public"
        os.link(big_h5, public / "big.h5")
        unfold_task(str(public / "big.h5"), str(public / "big"))
        started = time.perf_counter()
        shell = tmp_path / "shell.b2nd"
        with httpx.stream(
            "GET", f"{sub.urlbase}/api/fetch/@public/big/data.b2nd", timeout=300
        ) as stream:
            assert stream.status_code == 200
            with open(shell, "wb") as out:
                for block in stream.iter_bytes(MIB):
                    out.write(block)
        print(f"whole fetch of the unfolded shell: {time.perf_counter() - started:.1f} s")
        array = blosc2.open(str(shell))
        assert array.shape == (ROWS, COLS) and "_ftype" not in array.vlmeta
        np.testing.assert_array_equal(array[7:9, -40:], values(slice(7, 9), slice(-40, None)))
        resp = httpx.get(
            f"{sub.urlbase}/api/fetch/@public/big/data.b2nd", params={"slice_": "5000:5003"}
        )
        np.testing.assert_array_equal(
            blosc2.ndarray_from_cframe(resp.content)[()], values(slice(5000, 5003), slice(None))
        )
        pub_peaks = peak_rss_mib(pub.proc.pid)
        for pid in pub_peaks:  # the workers inherited the limit
            limits = open(f"/proc/{pid}/limits").read()
            assert f"Max address space         {LIMIT}" in limits, limits
        main, workers = pub_peaks.pop(pub.proc.pid), max(pub_peaks.values(), default=0)
        sub_peak = max(peak_rss_mib(sub.proc.pid).values())
        print(
            f"peak RSS: publisher {main:.0f} MiB, its workers {workers:.0f} MiB (max), "
            f"subscriber {sub_peak:.0f} MiB"
        )
        assert pub.proc.poll() is None and sub.proc.poll() is None
    finally:
        lab.close()
