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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

import caterva2 as cat2

from .data import FieldSpec
from .plain_http import COPY_BLOCK, Http
from .report import Figure, Row, Target
from .servers import Publisher, Subscriber
from .timing import (
    check_equal,
    copy_file,
    interleaved,
    key_text,
    local_read,
    need_remote,
    result_nbytes,
)

SMALL_KEY = (10, slice(10, 20), slice(10, 20))


# --- the run's plan and context -------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of a run (quick or full)."""

    mode: str
    field: FieldSpec
    big: FieldSpec
    small_reps: int
    cold_reps: int
    io_reps: int
    whole_reps: int
    file_reps: int
    thread_seconds: float
    floor_thread_seconds: float
    changes: int
    rss_reps: int
    warmup: int = 5


PLANS = {
    "full": Plan(
        mode="full",
        field=FieldSpec((200, 500, 500), (50, 100, 100)),
        big=FieldSpec((600, 500, 500), (50, 100, 100), seed=7, precision="float64"),
        small_reps=1000,
        cold_reps=100,
        io_reps=10,
        whole_reps=7,
        file_reps=7,
        thread_seconds=10.0,
        floor_thread_seconds=3.0,
        changes=50,
        rss_reps=2,
    ),
    "quick": Plan(
        mode="quick",
        field=FieldSpec((100, 250, 250), (25, 50, 50)),
        big=FieldSpec((120, 500, 500), (50, 100, 100), seed=7, precision="float64"),
        small_reps=200,
        cold_reps=30,
        io_reps=5,
        whole_reps=3,
        file_reps=3,
        thread_seconds=3.0,
        floor_thread_seconds=1.0,
        changes=10,
        rss_reps=1,
        warmup=3,
    ),
}


@dataclass
class Remote:
    """A publisher and a subscriber following its root through RabbitMQ."""

    pub: Publisher
    sub: Subscriber
    root: str
    client: cat2.Client


@dataclass
class Context:
    """What every figure may use."""

    plan: Plan
    field_path: Path
    big_path: Path | None
    sub: Subscriber
    client: cat2.Client
    tmpdir: Path
    remote: Remote | None = None
    remote_problem: str | None = None
    log: Callable[[str], None] = print
    server_note: str = ""
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def cookie(self) -> str | None:
        """The login cookie our client sends, for the plain-HTTP rows."""
        return self.client.cookie


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


from .figures_more import propagation, rss, threads8  # noqa: E402

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
