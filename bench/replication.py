"""Replication of big roots: what following and changing a root of N datasets costs.

    python -m bench.replication [--sizes 1000,10000] [--big] [--burst 1000] [--broker URL]

For each N (1k and 10k by default; `--big` adds 100k), a scratch directory
under /tmp gets N small `.b2nd` files (copies of one 4-element array, 1,000 per
folder), then, with a `cat2pub` and a `cat2sub` on 127.0.0.1 over RabbitMQ:

- `publisher_cold_s`: from starting `cat2pub` on a fresh state until its
  snapshot says every dataset is announced (seq = N);
- `publisher_warm_s`: from restarting it on that state until its start-up scan
  is done (its log says so); `*_after_start_s`: the same from the process's
  first log line (its Python start and imports left out);
- `follow_s`: from `POST /api/subscribe` until `/api/roots` says the root is
  ready with N datasets (`subscribe_answer_s`: how long that POST took);
- `subscriber_list_ms`, `publisher_list_ms`: median of 5 `/api/list` of the root;
- `burst_s`: from the first of `--burst` modifications (each file replaced
  once) until the subscriber has applied the last (its seq = N + burst);
- `requests_per_change`: requests the publisher answered (any route but
  `/api/stats`) from the burst until 3 heartbeats after it, per change, per
  subscriber (one subscriber here); `requests` gives them by route;
- `rss_mb`: peak RSS (VmHWM) of each daemon.

Prints one JSON object: the targets and, per N, the figures (and how each grew
from the previous N). The scratch files are deleted at the end (`--keep` not).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import blosc2
import httpx
import msgpack
import numpy as np

from .servers import free_port
from .soak import Server

TARGETS_100K = {
    "publisher_cold_s": 60,
    "publisher_warm_s": 5,
    "follow_s": 10,
    "subscriber_list_ms": 50,
    "publisher_list_ms": 500,
    "requests_per_change": 2,
    "burst_s": 10,
    "rss_mb": 300,
}
HEARTBEAT = 2.0
PER_FOLDER = 1000


def wait(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def make_root(rootdir: Path, n: int) -> list[Path]:
    """N small arrays (copies of one file: making 100k with Blosc2 would be the benchmark)."""
    model = rootdir.parent / "model.b2nd"
    blosc2.asarray(np.arange(4, dtype=np.int64), urlpath=str(model), mode="w")
    files = []
    for i in range(n):
        folder = rootdir / f"f{i // PER_FOLDER:03}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        target = folder / f"ds{i:06}.b2nd"
        shutil.copyfile(model, target)
        files.append(target)
    return files


STARTED = "cat2pub publishing"
SCANNED = "start-up scan of"


def _stamp(line: str) -> float:
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_time(log: Path, nth: int) -> float:
    """When the publisher logged that it started, the `nth` time."""
    lines = [line for line in log.read_text().splitlines() if STARTED in line]
    return _stamp(lines[nth - 1])


def peak_rss_mb(server: Server) -> float | None:
    try:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, AttributeError):
        return None
    return None


def snapshot_seq(url: str) -> int:
    resp = httpx.get(f"{url}/api/snapshot", params={"limit": 1}, timeout=10)
    return msgpack.unpackb(resp.content)["seq"]


def median_ms(url: str, times: int = 5) -> float:
    samples = []
    # One client, as a real one would keep: a new httpx client costs ~50 ms of set-up.
    with httpx.Client(timeout=60) as client:
        client.get(url).raise_for_status()  # connect
        for _ in range(times):
            t0 = time.perf_counter()
            client.get(url).raise_for_status()
            samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 2)


def publisher(name: str, rootdir: Path, statedir: Path, port: int, broker: str, log: Path):
    args = ["caterva2.publisher.server", name, str(rootdir), "--http", f"127.0.0.1:{port}"]
    args += ["--statedir", str(statedir), "--broker", broker, "--heartbeat", str(HEARTBEAT)]
    args += ["--loglevel", "info"]
    return Server(args, f"http://127.0.0.1:{port}/api/stats", log)


def run_size(n: int, burst: int, broker: str, base: Path) -> dict:
    name = f"bench-repl-{n}-{uuid.uuid4().hex[:6]}"
    rootdir = base / f"root-{n}"
    files = make_root(rootdir, n)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    publog = base / f"pub-{n}.log"
    pub = publisher(name, rootdir, base / f"pubstate-{n}", port, broker, publog)
    figures: dict = {"n": n}
    sub = None
    try:
        t0 = time.perf_counter()
        pub.start()
        wait(lambda: snapshot_seq(url) == n, "every dataset announced", 3600)
        figures["publisher_cold_s"] = round(time.perf_counter() - t0, 2)
        # The same without the process's start (imports, Python): from its first log line.
        figures["publisher_cold_after_start_s"] = round(time.time() - log_time(publog, 1), 2)
        rss_pub = peak_rss_mb(pub)
        pub.stop()

        t0 = time.perf_counter()
        pub.start()
        wait(lambda: publog.read_text().count(STARTED) == 2, "the warm start", 600)
        wait(lambda: publog.read_text().count(SCANNED) >= 2, "the warm scan", 600)
        figures["publisher_warm_s"] = round(time.perf_counter() - t0, 2)
        scanned = [line for line in publog.read_text().splitlines() if SCANNED in line][-1]
        figures["publisher_warm_after_start_s"] = round(_stamp(scanned) - log_time(publog, 2), 2)

        sub_id = f"bench-{uuid.uuid4().hex[:8]}"
        sub_port = free_port()
        substate = base / f"sub-{n}"
        substate.mkdir()
        (substate / "caterva2.toml").write_text(
            f'[subscriber]\nstatedir = "{substate}"\nhttp = "127.0.0.1:{sub_port}"\n'
            f'login = false\nid = "{sub_id}"\nloglevel = "info"\n[broker]\nurl = "{broker}"\n'
        )
        suburl = f"http://127.0.0.1:{sub_port}"
        sub = Server(
            ["caterva2.subscriber.server", "--conf", str(substate / "caterva2.toml")],
            f"{suburl}/api/roots",
            base / f"sub-{n}.log",
        )
        sub.start()
        wait(lambda: name in httpx.get(f"{suburl}/api/roots").json(), "the root announced", 60)

        def sync() -> dict:
            return httpx.get(f"{suburl}/api/roots", timeout=10).json()[name].get("sync", {})

        t0 = time.perf_counter()
        httpx.post(f"{suburl}/api/subscribe/{name}", timeout=60).raise_for_status()
        figures["subscribe_answer_s"] = round(time.perf_counter() - t0, 3)
        wait(lambda: sync().get("state") == "ready" and sync()["datasets"] == n, "ready", 3600)
        figures["follow_s"] = round(time.perf_counter() - t0, 2)

        figures["subscriber_list_ms"] = median_ms(f"{suburl}/api/list/{name}")
        figures["publisher_list_ms"] = median_ms(f"{url}/api/list")

        # The burst: each of `burst` files replaced once by a bigger array.
        model = base / "model8.b2nd"
        blosc2.asarray(np.arange(8, dtype=np.int64), urlpath=str(model), mode="w")
        seq0 = snapshot_seq(url)
        httpx.delete(f"{url}/api/stats").raise_for_status()
        count = min(burst, n)
        t0 = time.perf_counter()
        for i, target in enumerate(files[:count]):
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(model, tmp)
            os.replace(tmp, target)
            if i == 0:
                t0 = time.perf_counter()
        wait(lambda: (sync().get("seq") or 0) >= seq0 + count, "the burst applied", 3600)
        figures["burst_s"] = round(time.perf_counter() - t0, 2)
        time.sleep(3 * HEARTBEAT)  # heartbeats after it must not cost requests
        stats = httpx.get(f"{url}/api/stats", timeout=10).json()["requests"]
        stats.pop("/api/stats", None)
        figures["requests"] = stats
        figures["requests_per_change"] = round(sum(stats.values()) / count, 4)
        figures["rss_mb"] = {
            "publisher": max(filter(None, [rss_pub, peak_rss_mb(pub)])),
            "subscriber": peak_rss_mb(sub),
        }
    finally:
        if sub is not None:
            sub.stop()
            _delete_queue(broker, sub_id)
        pub.stop()
        shutil.rmtree(rootdir, ignore_errors=True)
    return figures


def _delete_queue(broker: str, sub_id: str) -> None:
    import pika

    from caterva2.broker import topology
    from caterva2.broker.connection import parameters

    conn = pika.BlockingConnection(parameters(broker, "caterva2-bench-cleanup"))
    conn.channel().queue_delete(topology.subscriber_queue(sub_id))
    conn.close()


def growth(results: list[dict]) -> dict:
    """Each figure's ratio from one size to the next (how it grows with N)."""
    out = {}
    for before, after in zip(results, results[1:], strict=False):
        key = f"{before['n']}->{after['n']}"
        out[key] = {
            k: round(after[k] / before[k], 2)
            for k in after
            if k not in ("n", "requests", "rss_mb")
            and isinstance(after[k], int | float)
            and before.get(k)
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication")
    parser.add_argument("--sizes", default="1000,10000", help="root sizes (comma-separated)")
    parser.add_argument("--big", action="store_true", help="also 100,000 datasets")
    parser.add_argument("--burst", type=int, default=1000, help="modifications in the burst")
    parser.add_argument(
        "--broker",
        default=os.environ.get("CATERVA2_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and states")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big:
        sizes.append(100_000)
    base = Path(tempfile.mkdtemp(prefix="cat2-bench-repl-"))
    try:
        results = [run_size(n, args.burst, args.broker, base) for n in sizes]
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(
        json.dumps(
            {"targets_at_100k": TARGETS_100K, "sizes": results, "growth": growth(results)},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
