"""Bulk and small-read figures of one server through its own `caterva2.Client`; prints JSON.

Run by `bench.peers` with the python of the venv whose client is measured
(ours, or an upstream release's): it imports only the standard library, NumPy,
Blosc2 and that venv's `caterva2`, never this repository's code.  With
`--local` it measures the floors instead: Blosc2 reading the file in place.

    python bench/peer_driver.py --urlbase URL --user U:P --data FILE --name field.b2nd
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import blosc2
import numpy as np

SMALL_KEY = (10, slice(10, 20), slice(10, 20))
# Every client the same read timeout (their default, 5 s, is less than a slab takes some).
TIMEOUT = 120


def slab_key(shape: tuple[int, ...]) -> tuple:
    """[n/8 : 3n/8] along the first axis: [25:75] of 200 rows."""
    n = shape[0]
    return (slice(n // 8, n // 8 + n // 4),)


def nbytes_of(array: np.ndarray) -> int:
    return int(array.nbytes)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def local(args: argparse.Namespace) -> dict:
    """Blosc2 reading the file in place: the whole array and the slab, seconds per read."""
    path = str(args.data)
    shape = blosc2.open(path, mode="r").shape
    key = slab_key(shape)
    out = {"whole_s": [], "slab_s": []}
    for _ in range(args.reps):
        out["whole_s"].append(timed(lambda: blosc2.open(path, mode="r")[()]))
        out["slab_s"].append(timed(lambda: blosc2.open(path, mode="r")[key]))
    return out


def threads8(client_cls, urlbase: str, auth, path: str, shape, seconds: float) -> float:
    """Requests per second of 8 threads, each its own client, reading random 1x10x10 slices."""
    clients = [client_cls(urlbase, auth, timeout=TIMEOUT) for _ in range(8)]
    datasets = [c.get(path) for c in clients]
    counts = [0] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(9)

    def loop(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        keys = []
        for _ in range(64):
            z = int(rng.integers(0, shape[0]))
            y, x = (int(rng.integers(0, s - 10)) for s in shape[1:])
            keys.append((z, slice(y, y + 10), slice(x, x + 10)))
        try:
            datasets[i][keys[0]]
            barrier.wait()
            deadline = time.perf_counter() + seconds
            n = 0
            while time.perf_counter() < deadline:
                datasets[i][keys[n % 64]]
                n += 1
            counts[i] = n
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    for c in clients:
        close = getattr(c, "close", None)
        if close is not None:
            close()
    return sum(counts) / elapsed


def remote(args: argparse.Namespace) -> dict:
    """The figures through the client of this venv."""
    import caterva2 as cat2

    user, _, password = args.user.partition(":")
    auth = (user, password)
    client = cat2.Client(args.urlbase, auth, timeout=TIMEOUT)
    path = f"@public/{args.name}"
    expected = blosc2.open(str(args.data), mode="r")
    shape = expected.shape
    key = slab_key(shape)
    tmp = Path(tempfile.mkdtemp(prefix="peer-driver-"))
    out: dict = {k: [] for k in ("upload_s", "download_s", "whole_s", "slab_s", "small_s")}
    checks = {}
    dst = tmp / "download.b2nd"
    box: dict = {}
    try:
        for rep in range(args.reps):
            # Dirty pages of earlier writes (other servers' uploads, other programs) are
            # written out now, not in the middle of a timed read.
            os.sync()
            out["whole_s"].append(timed(lambda: box.update(a=client.fetch(path))))
            if rep == 0:
                checks["whole"] = bool(np.array_equal(box["a"], expected[()]))
            box.clear()
            ds = client.get(path)
            out["slab_s"].append(timed(lambda ds=ds: box.update(a=ds[key])))
            if rep == 0:
                checks["slab"] = bool(np.array_equal(box["a"], expected[key]))
            box.clear()
            small = []
            for _ in range(args.small):
                small.append(timed(lambda ds=ds: ds[SMALL_KEY]))
            out["small_s"].append(float(np.median(small)))
            out["download_s"].append(timed(lambda: client.download(path, dst)))
            if rep == 0:
                checks["download"] = dst.read_bytes() == Path(args.data).read_bytes()
            dst.unlink()
            os.sync()
            # Uploads last: what they write is on its way to the disk for a while.
            up = f"@public/peer-up/{rep % 2}-{args.name}"
            out["upload_s"].append(timed(lambda up=up: client.upload(args.data, up)))
        out["threads8_rps"] = [
            threads8(cat2.Client, args.urlbase, auth, path, shape, args.thread_seconds)
        ]
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    out["checks"] = checks
    out["client_version"] = getattr(cat2, "__version__", "?")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urlbase")
    parser.add_argument("--user", default="")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--name", default="field.b2nd")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--small", type=int, default=50, help="small slices per rep")
    parser.add_argument("--thread-seconds", type=float, default=3.0)
    parser.add_argument("--local", action="store_true", help="measure Blosc2 in place only")
    args = parser.parse_args(argv)
    result = local(args) if args.local else remote(args)
    result["nbytes"] = int(np.prod(blosc2.open(str(args.data), mode="r").shape)) * 8
    result["stored_bytes"] = os.path.getsize(args.data)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
