"""`python -m bench.cache_budget`: the chunk cache under a byte budget, on a skewed workload.

A publisher app (waitress on 127.0.0.1, in this process) serves one array of
incompressible chunks; remote roots with a cache budget of 10% of the data read
single chunks drawn from a Zipf distribution (a few chunks are hot, most are
cold). Prints JSON: the hit ratio, read latency percentiles (all reads, hits,
misses), and the cost of evicting one chunk (`enforce_budget` after lowering
the budget, divided by the chunks it evicted). `--quick`: a small run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import blosc2
import numpy as np

from caterva2.common.daemon import http_server
from caterva2.publisher.api import Stats, create_app
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.store import Store

ROOT = "bench-cache"


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 in milliseconds (None for no samples)."""
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "n": 0}
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "n": len(samples),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(workdir: Path, nchunks: int, row: int, reads: int, zipf_s: float, seed: int) -> dict:
    rootdir = workdir / "root"
    rootdir.mkdir()
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2**63, (nchunks, row), dtype=np.uint64)
    array = blosc2.asarray(data, chunks=(1, row), urlpath=str(rootdir / "a.b2nd"), mode="w")
    data_bytes = array.schunk.cbytes
    del array
    budget = data_bytes // 10

    adapter = DirectoryRoot(rootdir, workdir / "pubcache")
    stats = Stats()
    port = free_port()
    server = http_server(create_app(adapter, stats), f"127.0.0.1:{port}", 4, "bench-publisher")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    statedir = workdir / "sub"
    store = Store(statedir)
    store.upsert_root(ROOT, f"http://127.0.0.1:{port}", "etag-1", True, owner="bench")
    remote = RemoteRoots(store, statedir, cache_size=budget)
    remote.follow(ROOT, wait=True)
    try:
        # Rank r (1 = hottest) lands on a chunk chosen by a fixed shuffle.
        order = rng.permutation(nchunks)
        ranks = rng.zipf(zipf_s, size=reads * 4)
        ranks = ranks[ranks <= nchunks][:reads]
        hits, misses, every = [], [], []
        wrong = 0
        for rank in ranks:
            n = int(order[rank - 1])
            was_held = remote.cache.budget.holds(ROOT, "a.b2nd", n)
            t0 = time.perf_counter()
            got = remote.fetch(ROOT, "a.b2nd", (slice(n, n + 1),), None, None).values[0]
            elapsed = time.perf_counter() - t0
            every.append(elapsed)
            (hits if was_held else misses).append(elapsed)
            wrong += not np.array_equal(got, data[n])
        usage = remote.cache.budget.usage(ROOT)
        held_after = remote.cache.budget.evictable_bytes
        cached_file = remote.cache.path(ROOT, "a.b2nd")
        file_after = os.path.getsize(cached_file)

        # Eviction cost: the workload left the cache full; halve the budget at once.
        remote.cache.budget.limit = budget // 2
        t0 = time.perf_counter()
        evicted = remote.cache.enforce_budget()
        evict_time = time.perf_counter() - t0
        return {
            "benchmark": "cache_budget",
            "workload": {
                "chunks": nchunks,
                "chunk_bytes": row * 8,
                "data_bytes": int(data_bytes),
                "cache_budget_bytes": int(budget),
                "budget_fraction": 0.1,
                "reads": len(ranks),
                "distinct_chunks_read": len(set(int(r) for r in ranks)),
                "zipf_s": zipf_s,
                "reader": "RemoteRoots.fetch of one chunk, in process; publisher over HTTP",
            },
            "hit_ratio": usage["hit_ratio"],
            "hits": usage["hits"],
            "misses": usage["misses"],
            "evictions": usage["evictions"],
            "wrong_answers": wrong,
            "cache_bytes_after": held_after,
            "cache_file_bytes_after": file_after,
            "publisher_chunk_transfers": sum(stats.chunks.values()),
            "latency": {
                "all": percentiles(every),
                "hits": percentiles(hits),
                "misses": percentiles(misses),
            },
            "eviction": {
                "chunks": evicted,
                "seconds_total": round(evict_time, 6),
                "ms_per_chunk": round(evict_time * 1000 / evicted, 4) if evicted else None,
            },
        }
    finally:
        remote.close()
        store.close()
        server.close()
        thread.join(timeout=10)
        adapter.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_budget", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--zipf", type=float, default=1.2, help="Zipf exponent s (> 1)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.quick:
        nchunks, row, reads = 200, 8192, 1000  # 64 KiB chunks, 12.5 MiB
    else:
        nchunks, row, reads = 1000, 32768, 5000  # 256 KiB chunks, 250 MiB
    with tempfile.TemporaryDirectory(prefix="cat2-bench-cache-") as tmp:
        result = run(Path(tmp), nchunks, row, reads, args.zipf, args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
