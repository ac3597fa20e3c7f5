"""The figures of concurrency, change propagation and memory (see `figures`)."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np

import caterva2 as cat2

from .plain_http import Http, quote
from .report import Figure, Row, Target
from .servers import USER, RssSampler, reset_peak, status_bytes
from .timing import local_read, need_remote

if TYPE_CHECKING:
    from .figures import Context


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
