"""The figures: each a function of the run's context that measures and returns a `Figure`.

Every figure times the same operation three ways where it can: through our
Python client (`cat2.Client`), through plain HTTP (the standard library's
`http.client` on one kept-alive connection, the body decoded with Blosc2 when
the result is an array), and locally with Blosc2 straight from the same file
(the floor). The three are interleaved rep by rep, so drift in the machine's
load hits them alike.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

import caterva2 as cat2

from .data import FieldSpec
from .harness import (
    COPY_BLOCK,
    SMALL_KEY,
    Context,
    Http,
    check_equal,
    copy_file,
    interleaved,
    key_text,
    local_read,
    need_remote,
    quote,
    result_nbytes,
)
from .report import Figure, Row, Target
from .servers import USER, RssSampler, reset_peak, status_bytes

# --- small slices -------------------------------------------------------------------


def small_warm(ctx: Context) -> Figure:
    """[10, 10:20, 10:20] of @public/field.b2nd, served many times: latency."""
    ds = ctx.client.get("@public/field.b2nd")
    plain = Http(ctx.sub.url, ctx.cookie)
    kept = blosc2.open(str(ctx.field_path), mode="r")
    check_equal(ctx, "small_warm", ds[SMALL_KEY], local_read(ctx.field_path, SMALL_KEY))
    s = interleaved(
        {
            "client": lambda: ds[SMALL_KEY],
            "http": lambda: plain.fetch_array("@public/field.b2nd", SMALL_KEY),
            "floor": lambda: local_read(ctx.field_path, SMALL_KEY),
            "kept": lambda: kept[SMALL_KEY],
        },
        ctx.plan.small_reps,
        ctx.plan.warmup * 4,
    )
    plain.close()
    kept_median = Row("kept", s["kept"]).median
    return Figure(
        "small_warm",
        f"small slice {key_text(SMALL_KEY)}, warm",
        "latency",
        [Row("client", s["client"]), Row("http", s["http"])],
        Row("blosc2 local", s["floor"], extra={"kept_open_median": kept_median}),
        [Target("median", "<=", 0.002, "median ≤ 2 ms", ("client",))],
        [
            "floor = blosc2.open(file)[slice] each time; with the array kept open: "
            f"{kept_median * 1e6:.0f} µs"
        ],
    )


def chunk_keys(spec: FieldSpec) -> list[tuple]:
    """The small slice's shape placed inside each chunk, in a fixed shuffled order."""
    grid = [s // c for s, c in zip(spec.shape, spec.chunks, strict=True)]
    keys = []
    for i, j, k in itertools.product(*(range(g) for g in grid)):
        z, y, x = i * spec.chunks[0], j * spec.chunks[1], k * spec.chunks[2]
        keys.append((z + 10, slice(y + 10, y + 20), slice(x + 10, x + 20)))
    order = np.random.default_rng(3).permutation(len(keys))
    return [keys[n] for n in order]


def publisher_chunks(ctx: Context) -> dict[str, int]:
    """How many chunks of each dataset the publisher has served so far."""
    assert ctx.remote is not None
    plain = Http(ctx.remote.pub.url)
    _resp, body = plain.get("/api/stats")
    plain.close()
    return {path: sum(c.values()) for path, c in json.loads(body)["chunks"].items()}


def small_cold(ctx: Context) -> Figure:
    """The small slice on a remote root, its chunk not cached yet: latency."""
    title = "small slice, remote root, cold cache"
    if skipped := need_remote(ctx, "small_cold", title, "latency"):
        return skipped
    remote = ctx.remote
    keys = chunk_keys(ctx.plan.field)[: ctx.plan.cold_reps]
    ds = remote.client.get(f"{remote.root}/cold-a.b2nd")
    plain = Http(remote.sub.url)
    local = remote.pub.rootdir / "cold-a.b2nd"
    # Warm the connections (client → subscriber → publisher) on another dataset.
    warm = remote.client.get(f"{remote.root}/warm.b2nd")
    for _ in range(3):
        warm[SMALL_KEY]
        plain.fetch_array(f"{remote.root}/warm.b2nd", SMALL_KEY)
    before = publisher_chunks(ctx)
    client_s, http_s, floor_s = [], [], []
    for n, key in enumerate(keys):
        t0 = time.perf_counter()
        got = ds[key]
        t1 = time.perf_counter()
        plain.fetch_array(f"{remote.root}/cold-b.b2nd", key)
        t2 = time.perf_counter()
        expected = local_read(local, key)
        t3 = time.perf_counter()
        client_s.append(t1 - t0)
        http_s.append(t2 - t1)
        floor_s.append(t3 - t2)
        if n == 0:
            check_equal(ctx, "small_cold", got, expected)
    plain.close()
    after = publisher_chunks(ctx)
    served = {p: after.get(p, 0) - before.get(p, 0) for p in ("cold-a.b2nd", "cold-b.b2nd")}
    return Figure(
        "small_cold",
        title,
        "latency",
        [
            Row("client", client_s, extra={"chunks_from_publisher": served["cold-a.b2nd"]}),
            Row("http", http_s, extra={"chunks_from_publisher": served["cold-b.b2nd"]}),
        ],
        Row("blosc2 local", floor_s),
        [Target("median", "<=", 0.010, "median ≤ 10 ms")],
        [
            f"each read is {key_text(SMALL_KEY)}'s shape inside a chunk not cached yet; "
            f"chunks pulled from the publisher: client {served['cold-a.b2nd']}, "
            f"http {served['cold-b.b2nd']} for {len(keys)} reads each"
        ],
    )


def small_remote_warm(ctx: Context) -> Figure:
    """The small slice on a remote root once its chunk is cached: latency."""
    title = "small slice, remote root, warm cache"
    if skipped := need_remote(ctx, "small_remote_warm", title, "latency"):
        return skipped
    remote = ctx.remote
    path = f"{remote.root}/warm.b2nd"
    ds = remote.client.get(path)
    plain = Http(remote.sub.url)
    local = remote.pub.rootdir / "warm.b2nd"
    check_equal(ctx, "small_remote_warm", ds[SMALL_KEY], local_read(local, SMALL_KEY))
    s = interleaved(
        {
            "client": lambda: ds[SMALL_KEY],
            "http": lambda: plain.fetch_array(path, SMALL_KEY),
            "floor": lambda: local_read(local, SMALL_KEY),
        },
        ctx.plan.small_reps // 2,
        ctx.plan.warmup * 4,
    )
    plain.close()
    return Figure(
        "small_remote_warm",
        title,
        "latency",
        [Row("client", s["client"]), Row("http", s["http"])],
        Row("blosc2 local", s["floor"]),
        notes=["no target: shows what the chunk cache adds to a local read"],
    )


# --- bigger reads into NumPy --------------------------------------------------------


def _array_read(ctx: Context, name: str, title: str, key: Any, reps: int, targets) -> Figure:
    ds = ctx.client.get("@public/field.b2nd")
    plain = Http(ctx.sub.url, ctx.cookie)
    nbytes = result_nbytes(ctx.plan.field.shape, key)
    client_key = slice(None) if key == () else key
    check_equal(ctx, name, ds[client_key], local_read(ctx.field_path, key))
    s = interleaved(
        {
            "client": lambda: ds[client_key],
            "http": lambda: plain.fetch_array("@public/field.b2nd", key),
            "floor": lambda: local_read(ctx.field_path, key),
        },
        reps,
        1,
    )
    plain.close()
    return Figure(
        name,
        title,
        "throughput",
        [Row("client", s["client"], nbytes), Row("http", s["http"], nbytes)],
        Row("blosc2 local", s["floor"], nbytes),
        targets,
        [f"{nbytes / 1e6:.1f} MB of float64 per read"],
    )


def zplane(ctx: Context) -> Figure:
    """A plane across the first axis, [n/2, :, :]."""
    key = (ctx.plan.field.shape[0] // 2, slice(None), slice(None))
    return _array_read(ctx, "zplane", f"z-plane {key_text(key)}", key, ctx.plan.io_reps, [])


def xplane(ctx: Context) -> Figure:
    """A plane across the last axis, [:, :, n/2] (touches every chunk)."""
    key = (slice(None), slice(None), ctx.plan.field.shape[2] // 2)
    return _array_read(ctx, "xplane", f"x-plane {key_text(key)}", key, ctx.plan.io_reps, [])


# Big reads are judged where the stored blocks can travel: our client asks for them
# (`application/x-caterva2-blocks`); a plain HTTP reader gets a new Blosc2 frame, which
# the server must compress first (its rows are measured, not judged).
BLOCK_READERS = ("client",)


def slab(ctx: Context) -> Figure:
    """A quarter of the array along the first axis: [n/8 : 3n/8, :, :] (100 MB in full)."""
    n = ctx.plan.field.shape[0]
    key = (slice(n // 8, n // 8 + n // 4), slice(None), slice(None))
    target = Target("ratio", ">=", 0.8, "≥ 0.8 of floor", BLOCK_READERS)
    return _array_read(ctx, "slab", f"slab {key_text(key)}", key, ctx.plan.io_reps, [target])


def whole(ctx: Context) -> Figure:
    """The whole array into NumPy."""
    target = Target("ratio", ">=", 0.8, "≥ 0.8 of floor", BLOCK_READERS)
    return _array_read(ctx, "whole", "whole array into NumPy", (), ctx.plan.whole_reps, [target])


# --- whole files ----------------------------------------------------------------------


def download(ctx: Context) -> Figure:
    """The whole stored file to disk."""
    size = ctx.field_path.stat().st_size
    plain = Http(ctx.sub.url, ctx.cookie)
    dst = ctx.tmpdir / "download.b2nd"

    def client() -> None:
        ctx.client.download("@public/field.b2nd", dst)
        dst.unlink()

    def http_() -> None:
        plain.download("@public/field.b2nd", dst)
        dst.unlink()

    def floor() -> None:
        copy_file(ctx.field_path, dst)
        dst.unlink()

    ctx.client.download("@public/field.b2nd", dst)
    same = dst.stat().st_size == size and _same_file(dst, ctx.field_path)
    ctx.checks["download"] = same
    dst.unlink()
    s = interleaved({"client": client, "http": http_, "floor": floor}, ctx.plan.file_reps, 1)
    plain.close()
    return Figure(
        "download",
        "whole-file download to disk",
        "throughput",
        [Row("client", s["client"], size), Row("http", s["http"], size)],
        Row("local copy", s["floor"], size),
        [Target("mbps", ">=", 1000, "≥ 1 GB/s")],
        [f"{size / 1e6:.0f} MB file; floor = read + write of the file in 1 MiB blocks"],
    )


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(COPY_BLOCK * 8), fb.read(COPY_BLOCK * 8)
            if x != y:
                return False
            if not x:
                return True


def upload(ctx: Context) -> Figure:
    """A whole file uploaded into @public."""
    size = ctx.field_path.stat().st_size
    plain = Http(ctx.sub.url, ctx.cookie)
    dst = ctx.tmpdir / "upload-copy.b2nd"

    def floor() -> None:
        copy_file(ctx.field_path, dst)
        dst.unlink()

    s = interleaved(
        {
            "client": lambda: ctx.client.upload(ctx.field_path, "@public/bench-up/client.b2nd"),
            "http": lambda: plain.upload(ctx.field_path, "@public/bench-up/http.b2nd"),
            "floor": floor,
        },
        ctx.plan.file_reps,
        1,
    )
    plain.close()
    ctx.client.remove("@public/bench-up")
    return Figure(
        "upload",
        "whole-file upload",
        "throughput",
        [Row("client", s["client"], size), Row("http", s["http"], size)],
        Row("local copy", s["floor"], size),
        notes=[f"{size / 1e6:.0f} MB file, multipart/form-data as the client sends it"],
    )


# --- concurrency --------------------------------------------------------------------


def _run_threads(
    shape: tuple[int, ...], seconds: float, make: Callable[[int], Callable[[Any], Any]]
) -> tuple[list[float], float]:
    """Run 8 loops of `make(i)(key)` on random small slices for `seconds`; (latencies, req/s)."""
    nthreads = 8
    latencies: list[list[float]] = [[] for _ in range(nthreads)]
    barrier = threading.Barrier(nthreads + 1)
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        try:
            rng = np.random.default_rng(100 + i)
            read = make(i)
            keys = [_random_key(rng, shape) for _ in range(64)]
            for key in keys[:3]:
                read(key)
            barrier.wait()
            deadline = time.perf_counter() + seconds
            out = latencies[i]
            for key in itertools.cycle(keys):
                t0 = time.perf_counter()
                read(key)
                t1 = time.perf_counter()
                out.append(t1 - t0)
                if t1 >= deadline:
                    break
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    flat = [x for per in latencies for x in per]
    return flat, len(flat) / elapsed


def _random_key(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple:
    z = int(rng.integers(0, shape[0]))
    y = int(rng.integers(0, shape[1] - 10))
    x = int(rng.integers(0, shape[2] - 10))
    return (z, slice(y, y + 10), slice(x, x + 10))


def threads8(ctx: Context) -> Figure:
    """8 client threads reading random small slices of @public/field.b2nd."""
    shape = ctx.plan.field.shape
    url, path = ctx.sub.url, "@public/field.b2nd"
    clients = [cat2.Client(url, USER) for _ in range(8)]
    datasets = [c.get(path) for c in clients]
    plains = [Http(url, ctx.cookie) for _ in range(8)]
    seconds = ctx.plan.thread_seconds
    c_lat, c_rate = _run_threads(shape, seconds, lambda i: datasets[i].__getitem__)
    h_lat, h_rate = _run_threads(shape, seconds, lambda i: lambda k: plains[i].fetch_array(path, k))

    def local(i: int) -> Callable[[Any], Any]:
        return lambda k: local_read(ctx.field_path, k)

    f_lat, f_rate = _run_threads(shape, ctx.plan.floor_thread_seconds, local)
    for c in clients:
        c.close()
    for p in plains:
        p.close()
    return Figure(
        "threads8",
        "8 threads, small slices",
        "rate",
        [Row("client", c_lat, rate=c_rate), Row("http", h_lat, rate=h_rate)],
        Row("blosc2 local", f_lat, rate=f_rate),
        [Target("rps", ">=", 700, "≥ 700 req/s", ("client",))],
        [
            f"{seconds:g} s per row; 1×10×10 slices at random places, every thread its own "
            "connection; median/p95 are per-request latencies"
        ],
    )


# --- change propagation -------------------------------------------------------------


def _write_array(path: Path, length: int) -> None:
    """Write a dataset as another program would: aside, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    blosc2.asarray(np.arange(length, dtype=np.float64), urlpath=str(tmp), mode="w")
    os.rename(tmp, path)


def _wait_served(plain: Http, target: str, want: Callable[[int, bytes], bool], t0: float):
    """Seconds from `t0` until `want(status, body)` holds for `target` (None on timeout)."""
    deadline = t0 + 15.0
    while True:
        resp = plain.request("GET", target)
        body = resp.read()
        now = time.perf_counter()
        if want(resp.status, body):
            return now - t0
        if now > deadline:
            return None
        time.sleep(0.002)


def propagation(ctx: Context) -> Figure:
    """A file written in the publisher's root until the subscriber serves its new version."""
    title = "change propagation"
    if skipped := need_remote(ctx, "propagation", title, "latency"):
        return skipped
    remote = ctx.remote
    plain = Http(remote.sub.url)
    samples: dict[str, list[float]] = {"create": [], "modify": [], "delete": []}
    timeouts = {k: 0 for k in samples}

    def shape_is(length: int) -> Callable[[int, bytes], bool]:
        return lambda status, body: status == 200 and json.loads(body).get("shape") == [length]

    def record(kind: str, elapsed: float | None) -> None:
        if elapsed is None:
            timeouts[kind] += 1
            samples[kind].append(15.0)
        else:
            samples[kind].append(elapsed)

    for i in range(ctx.plan.changes):
        path = remote.pub.rootdir / "prop" / f"p{i:03d}.b2nd"
        target = f"/api/info/{quote(remote.root)}/prop/{path.name}"
        _write_array(path, 100 + 2 * i)
        record("create", _wait_served(plain, target, shape_is(100 + 2 * i), time.perf_counter()))
        _write_array(path, 101 + 2 * i)
        record("modify", _wait_served(plain, target, shape_is(101 + 2 * i), time.perf_counter()))
        path.unlink()
        t0 = time.perf_counter()
        record("delete", _wait_served(plain, target, lambda status, _b: status == 404, t0))
    plain.close()
    notes = [
        "from the rename (or unlink) in the publisher's root until the subscriber's "
        "/api/info shows the new shape (or 404); polled every 2 ms"
    ]
    if any(timeouts.values()):
        notes.append(f"timeouts after 15 s (counted as 15 s): {timeouts}")
    targets = [
        Target("median", "<=", 0.050, "median ≤ 50 ms"),
        Target("p95", "<=", 0.200, "p95 ≤ 200 ms"),
    ]
    rows = [Row(kind, s, extra={"timeouts": timeouts[kind]}) for kind, s in samples.items()]
    return Figure("propagation", title, "latency", rows, None, targets, notes)


# --- memory -------------------------------------------------------------------------


def _peak_during(pid: int, work: Callable[[], Any]) -> tuple[int, int, float, dict]:
    """(baseline RSS, peak RSS, seconds, details) of a server process while `work` runs."""
    baseline = status_bytes(pid, "VmRSS")
    exact = reset_peak(pid)
    with RssSampler(pid) as sampler:
        t0 = time.perf_counter()
        work()
        elapsed = time.perf_counter() - t0
    peak = sampler.peak
    if exact:
        peak = max(peak, status_bytes(pid, "VmHWM"))
    return baseline, peak, elapsed, {"samples": sampler.count, "hwm_reset": exact}


def rss(ctx: Context) -> Figure:
    """Subscriber peak RSS while a client downloads the big dataset."""
    if ctx.big_path is None:
        return Figure("rss", "subscriber peak RSS, big download", "memory", [], skipped="no data")
    size = ctx.big_path.stat().st_size
    dst = ctx.tmpdir / "big.b2nd"
    # A fresh process, so that the floor is its idle RSS, not what earlier figures left.
    ctx.sub.stop()
    ctx.sub.start()
    ctx.client.close()
    plain = Http(ctx.sub.url, ctx.cookie)
    ways: list[tuple[str, int, Callable[[], Any]]] = [
        ("client", ctx.sub.pid, lambda: ctx.client.download("@public/big.b2nd", dst)),
        ("http", ctx.sub.pid, lambda: plain.download("@public/big.b2nd", dst)),
    ]
    if ctx.remote is not None:
        remote = ctx.remote
        ways.append(
            (
                "client, remote root",
                remote.sub.pid,
                lambda: remote.client.download(f"{remote.root}/big.b2nd", dst),
            )
        )
    rows, baselines = [], []
    for variant, pid, work in ways:
        peaks, speeds, details = [], [], []
        for _ in range(ctx.plan.rss_reps):
            baseline, peak, elapsed, info = _peak_during(pid, work)
            if dst.stat().st_size != size:
                raise AssertionError(f"{variant}: downloaded {dst.stat().st_size} of {size} bytes")
            dst.unlink()
            baselines.append(baseline)
            peaks.append(peak)
            speeds.append(size / elapsed / 1e6)
            details.append({"baseline": baseline, **info})
        rows.append(Row(variant, peaks, extra={"mbps": speeds, "runs": details}))
    plain.close()
    notes = [
        f"{size / 1e6:.0f} MB file ({ctx.plan.big.nbytes / 1e9:.1f} GB array); local rows on "
        "a freshly restarted subscriber; floor = RSS before the download; peak from VmHWM "
        "(reset through clear_refs) and VmRSS sampled every 5 ms",
        "download speeds (MB/s): "
        + ", ".join(f"{r.variant} {np.median(r.extra['mbps']):.0f}" for r in rows),
    ]
    return Figure(
        "rss",
        "subscriber peak RSS, big download",
        "memory",
        rows,
        Row("idle", baselines),
        [Target("max", "<=", 200e6, "peak ≤ 200 MB")],
        notes,
    )


FIGURES: dict[str, Callable[[Context], Figure]] = {
    "small_warm": small_warm,
    "small_cold": small_cold,
    "small_remote_warm": small_remote_warm,
    "zplane": zplane,
    "xplane": xplane,
    "slab": slab,
    "whole": whole,
    "download": download,
    "upload": upload,
    "threads8": threads8,
    "propagation": propagation,
    "rss": rss,
}
# Figures that use the publisher side (rss only for one of its rows).
USES_REMOTE = {"small_cold", "small_remote_warm", "propagation", "rss"}
NEEDS_BIG = {"rss"}
