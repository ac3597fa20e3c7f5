"""`python -m bench.hdf5_latency`: does heavy HDF5 work stall a publisher's API?

Publishes an HDF5 file with a heavy gzip dataset and a light Blosc2 one, keeps
converting the heavy one (whole-file builds and chunk reads) from 4 client
threads, and meanwhile times `/api/info` and `/api/chunk` of the light dataset.
It does so with h5py called in the server's own threads (`workers=0`) and with
the process pool (`workers=2`), and prints the latency percentiles of each.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin
import httpx
import numpy as np
import waitress

from caterva2.publisher.api import create_app
from caterva2.publisher.hdf5_root import HDF5FileRoot

HEAVY_SHAPE = (8000, 4000)  # int64, 256 MB, gzip chunks of 16 MB
HEAVY_CHUNKS = (500, 4000)
DURATION = 8.0


def make_file(path: Path) -> None:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        heavy = f.create_dataset(
            "heavy", HEAVY_SHAPE, "i8", chunks=HEAVY_CHUNKS, compression="gzip", compression_opts=6
        )
        for start in range(0, HEAVY_SHAPE[0], HEAVY_CHUNKS[0]):
            rows = slice(start, start + HEAVY_CHUNKS[0])
            heavy[rows] = rng.integers(0, 5000, (HEAVY_CHUNKS[0], HEAVY_SHAPE[1]))
        f.create_dataset("light", data=np.arange(1000), chunks=(100,), **hdf5plugin.Blosc2())


def percentiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return f"n={len(ms):5d}  p50={q[49]:7.1f} ms  p99={q[98]:7.1f} ms  max={ms[-1]:7.1f} ms"


def measure(h5path: Path, workers: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as cache:
        adapter = HDF5FileRoot(h5path, cache, workers=workers)
        server = waitress.create_server(create_app(adapter), host="127.0.0.1", port=0, threads=8)
        url = f"http://127.0.0.1:{server.effective_port}"
        threading.Thread(target=server.run, daemon=True).start()
        stop = threading.Event()
        nchunks = HEAVY_SHAPE[0] // HEAVY_CHUNKS[0]

        def load(n: int) -> None:
            with httpx.Client(timeout=120) as http:
                i = n
                while not stop.is_set():
                    if n == 0:  # one whole-file build, then chunk reads like the others
                        http.get(f"{url}/api/file/heavy.b2nd").read()
                    http.get(f"{url}/api/chunk/heavy.b2nd", params={"nchunk": i % nchunks})
                    i += 4
                    # Re-convert: drop the cached copy so the work is real each round.
                    for path in Path(cache).rglob("heavy.*.b2nd"):
                        path.unlink(missing_ok=True)

        timings: dict[str, list[float]] = {"info": [], "chunk": []}
        with httpx.Client(timeout=120) as http:
            http.get(f"{url}/api/chunk/light.b2nd", params={"nchunk": 0})  # workers up
            loaders = [threading.Thread(target=load, args=(n,)) for n in range(4)]
            for t in loaders:
                t.start()
            deadline = time.monotonic() + DURATION
            n = 0
            while time.monotonic() < deadline:
                for kind, path, params in (
                    ("info", "/api/info/light.b2nd", None),
                    ("chunk", "/api/chunk/light.b2nd", {"nchunk": n % 10}),
                ):
                    start = time.perf_counter()
                    assert http.get(url + path, params=params).status_code == 200
                    timings[kind].append(time.perf_counter() - start)
                n += 1
                time.sleep(0.01)
            stop.set()
            for t in loaders:
                t.join()
        server.close()
        adapter.close()
        return timings


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        h5path = Path(tmp) / "latency.h5"
        make_file(h5path)
        for workers, label in ((0, "h5py in the server's threads"), (2, "2 worker processes")):
            timings = measure(h5path, workers)
            print(f"{label}:")
            for kind, values in timings.items():
                print(f"  /api/{kind:5s} of a light dataset: {percentiles(values)}")


if __name__ == "__main__":
    main()
