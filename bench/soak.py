"""Soak: many changes of every kind, kill -9 of broker, publisher and subscriber, checked reads.

    python -m bench.soak [--changes 1000] [--seed 1] [--readers 3] [--kills 6]

Starts its own throwaway RabbitMQ node (own node name, ports, mnesia and log
directories, no plugins), a publisher of a scratch directory, and two
subscribers (one following the root, one mirroring it). A writer makes
`--changes` changes of every kind (create, atomic replace, shape change, blosc2
in-place update, `mode="w"` onto the live path, delete, directory rename,
plain files, HDF5 files) while readers read through the Python client and
check every answer against the versions written; `--kills` times during the
run one of the broker, the publisher and the following subscriber is killed
with SIGKILL and started again. At the end both subscribers must converge to
exactly the publisher's root. Prints one JSON object: counts of answers by
kind (`wrong_200` and `status_500` must be 0), kills, and the convergence time.

Every array version carries its own number in its values (`v * 1e6 + i` at
flat index `i`), so an answer tells which version it claims to be, and is
checked against that version's shape and values.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import blosc2
import httpx
import numpy as np

import caterva2 as cat2
from caterva2.broker.local_node import RabbitMQNode
from caterva2.common.waiting import WaitTimeout, wait_for, wait_http

from .servers import free_port

STEP = 1_000_000  # values of version v are v * STEP + flat index
CHUNKS, BLOCKS = (4, 5), (2, 5)
KINDS = (
    "create",
    "replace",
    "reshape",
    "inplace",
    "overwrite",
    "delete",
    "rename_dir",
    "text",
    "text_inplace",
    "hdf5",
)


def values(version: int, shape: tuple[int, ...]) -> np.ndarray:
    """The content of array version `version`."""
    return (version * STEP + np.arange(int(np.prod(shape)), dtype=np.int64)).reshape(shape)


class Server:
    """A cat2pub or cat2sub process that can be killed and started again."""

    def __init__(self, args: list[str], url: str, log: Path, env: dict | None = None) -> None:
        self.args, self.url, self.log, self.env = args, url, log, env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_http(self.url, self.proc, 60)
        except (RuntimeError, WaitTimeout) as exc:
            raise RuntimeError(f"{self.args[0]}: {exc}; see {self.log}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Versions:
    """What the writer wrote: array versions (shape, paths) and file contents by path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 1
        self.shape: dict[int, tuple[int, ...]] = {}
        self.paths_of: dict[int, set[str]] = collections.defaultdict(set)
        self.contents: dict[str, set[bytes]] = collections.defaultdict(set)
        self.current: dict[str, Any] = {}  # path → version (arrays) or bytes (files)

    def new_array(self, path: str, shape: tuple[int, ...]) -> int:
        with self.lock:
            v, self.next = self.next, self.next + 1
            self.shape[v] = shape
            self.paths_of[v].add(path)
            return v

    def settled(self, path: str, current: Any) -> None:
        with self.lock:
            if current is None:
                self.current.pop(path, None)
            else:
                self.current[path] = current
                if isinstance(current, bytes):
                    self.contents[path].add(current)
                else:
                    self.paths_of[current].add(path)

    def pick(self, rng: random.Random) -> tuple[str, Any] | None:
        with self.lock:
            if not self.current:
                return None
            path = rng.choice(sorted(self.current))
            return path, self.current[path]


class Writer:
    """Makes the changes, each of a random kind, in a scratch root directory."""

    def __init__(self, root: Path, versions: Versions, rng: random.Random) -> None:
        self.root, self.versions, self.rng = root, versions, rng
        self.dirs = ["d0", "d1"]
        for d in self.dirs:
            (root / d).mkdir(parents=True, exist_ok=True)
        self.counts: collections.Counter[str] = collections.Counter()

    def _arrays(self) -> list[str]:
        return [p for p, c in self.versions.current.items() if not isinstance(c, bytes)]

    def _shape(self) -> tuple[int, int]:
        return self.rng.randint(3, 12), self.rng.randint(5, 16)

    def _aside(self, path: str, version: int) -> None:
        final = self.root / path
        tmp = final.with_name(f".{final.name}.tmp")
        blosc2.asarray(
            values(version, self.versions.shape[version]),
            urlpath=str(tmp),
            mode="w",
            chunks=CHUNKS,
            blocks=BLOCKS,
        )
        os.replace(tmp, final)

    def change(self) -> None:
        kind = self.rng.choice(KINDS)
        arrays = self._arrays()
        if kind in ("replace", "reshape", "inplace", "overwrite", "delete") and not arrays:
            kind = "create"
        if kind == "create":
            path = f"{self.rng.choice(self.dirs)}/a{self.rng.randint(0, 15)}.b2nd"
            v = self.versions.new_array(path, self._shape())
            self._aside(path, v)
            self.versions.settled(path, v)
        elif kind in ("replace", "reshape"):
            path = self.rng.choice(arrays)
            old = self.versions.shape[self.versions.current[path]]
            v = self.versions.new_array(path, self._shape() if kind == "reshape" else old)
            self._aside(path, v)
            self.versions.settled(path, v)
        elif kind == "inplace":  # blosc2 update of the live file, same shape
            path = self.rng.choice(arrays)
            old = self.versions.shape[self.versions.current[path]]
            v = self.versions.new_array(path, old)
            array = blosc2.open(str(self.root / path), mode="a")
            array[...] = values(v, old)
            del array
            self.versions.settled(path, v)
        elif kind == "overwrite":  # mode="w" onto the live path
            path = self.rng.choice(arrays)
            v = self.versions.new_array(path, self._shape())
            blosc2.asarray(
                values(v, self.versions.shape[v]),
                urlpath=str(self.root / path),
                mode="w",
                chunks=CHUNKS,
                blocks=BLOCKS,
            )
            self.versions.settled(path, v)
        elif kind == "delete":
            path = self.rng.choice(arrays)
            self.versions.settled(path, None)
            (self.root / path).unlink()
        elif kind == "rename_dir":
            old = self.rng.choice(self.dirs)
            new = f"d{self.rng.randint(2, 10**6)}"
            with self.versions.lock:
                moved = {p: c for p, c in self.versions.current.items() if p.startswith(old + "/")}
            for p in moved:
                self.versions.settled(new + p[len(old) :], moved[p])
            os.rename(self.root / old, self.root / new)
            for p in moved:
                self.versions.settled(p, None)
            self.dirs[self.dirs.index(old)] = new
        elif kind in ("text", "text_inplace"):
            path = f"{self.rng.choice(self.dirs)}/t{self.rng.randint(0, 5)}.txt"
            content = f"{path} {self.rng.random():.12f}\n".encode() * self.rng.randint(1, 50)
            final = self.root / path
            if kind == "text_inplace" and final.exists():
                with open(final, "r+b") as f:  # rewritten in place, then truncated
                    f.write(content)
                    f.truncate()
            else:
                tmp = final.with_name(f".{final.name}.tmp")
                tmp.write_bytes(content)
                os.replace(tmp, final)
            self.versions.settled(path, content)
        elif kind == "hdf5":
            import h5py

            path = f"{self.rng.choice(self.dirs)}/h{self.rng.randint(0, 3)}.h5"
            final = self.root / path
            tmp = final.with_name(f".{final.name}.tmp")
            with h5py.File(tmp, "w") as h5:
                h5["x"] = np.arange(self.rng.randint(1, 100))
            content = tmp.read_bytes()
            os.replace(tmp, final)
            self.versions.settled(path, content)
        self.counts[kind] += 1


class Reader(threading.Thread):
    """Reads through the Python client and checks every answer."""

    def __init__(self, url: str, root: str, versions: Versions, seed: int, tally, stop) -> None:
        super().__init__(daemon=True)
        self.client = cat2.Client(url, timeout=10)
        self.root, self.versions, self.rng = root, versions, random.Random(seed)
        self.tally, self.stop = tally, stop
        self.wrong: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            picked = self.versions.pick(self.rng)
            if picked is None:
                time.sleep(0.05)
                continue
            path, current = picked
            try:
                outcome = self._read(path, current)
            except httpx.HTTPStatusError as exc:
                code = exc.response.status_code
                outcome = "status_500" if code >= 500 and code != 503 else f"status_{code}"
                if outcome == "status_500":
                    self.wrong.append(f"{path}: {code} {exc.response.text[:200]}")
            except (httpx.TransportError, OSError):
                outcome = "unreachable"
            self.tally[outcome] += 1

    def _read(self, path: str, current: Any) -> str:
        full = f"{self.root}/{path}"
        if isinstance(current, bytes):
            with tempfile.TemporaryDirectory() as tmp:
                got = self.client.download(full, Path(tmp) / "f").read_bytes()
            return self._check(got in self.versions.contents[path], path, "download", got[:60])
        shape = self.versions.shape[current]
        if self.rng.random() < 0.3:
            got, key = self.client.fetch(full), (...)
        else:
            r0 = self.rng.randint(0, shape[0] - 1)
            c0 = self.rng.randint(0, shape[1] - 1)
            key = (slice(r0, r0 + self.rng.randint(1, 4)), slice(c0, c0 + self.rng.randint(1, 12)))
            text = f"{key[0].start}:{key[0].stop},{key[1].start}:{key[1].stop}"
            got = self.client.fetch(full, text)
        got = np.asarray(got)
        if got.size == 0:
            return "ok"
        v = int(got.flat[0]) // STEP
        if v not in self.versions.shape or path not in self.versions.paths_of[v]:
            return self._check(False, path, f"unknown version {v}", key)
        expected = values(v, self.versions.shape[v])[key]
        same = got.shape == expected.shape and np.array_equal(got, expected)
        return self._check(same, path, f"v{v} {got.shape} vs {expected.shape}", key)

    def _check(self, ok: bool, path: str, what: str, key: Any) -> str:
        if not ok:
            self.wrong.append(f"{path} {key}: {what}")
        return "ok" if ok else "wrong_200"


def _view(url: str, root: str) -> dict[str, bytes] | None:
    """Every dataset of a root as a subscriber serves it (arrays as values); None on error."""
    client = cat2.Client(url, timeout=10)
    try:
        out = {}
        for path in client.get_list(root):
            if path.endswith(".b2nd"):
                out[path] = np.asarray(client.fetch(f"{root}/{path}")).tobytes()
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    out[path] = client.download(f"{root}/{path}", Path(tmp) / "f").read_bytes()
        return out
    except (httpx.HTTPError, OSError):
        return None
    finally:
        client.close()


def _truth(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = blosc2.open(str(p))[()].tobytes() if p.suffix == ".b2nd" else p.read_bytes()
    return out


def run(
    changes: int = 1000,
    seed: int = 1,
    readers: int = 3,
    kills: int = 6,
    workdir: Path | None = None,
    pace: float = 0.01,
) -> dict[str, Any]:
    """Run the soak; return its figures (see the module docstring)."""
    base = Path(workdir or tempfile.mkdtemp(prefix="cat2-soak-"))
    rng = random.Random(seed)
    node = RabbitMQNode()
    started = time.monotonic()
    node.start()
    name = f"soak{seed}"
    rootdir = base / "root"
    rootdir.mkdir(parents=True, exist_ok=True)
    pub_port = free_port()
    pub = Server(
        [
            "caterva2.publisher.server",
            name,
            str(rootdir),
            "--http",
            f"127.0.0.1:{pub_port}",
            "--statedir",
            str(base / "pub"),
            "--broker",
            node.admin_url,
            "--heartbeat",
            "1",
            "--rescan",
            "5",
            "--loglevel",
            "info",
        ],
        f"http://127.0.0.1:{pub_port}/api/list",
        base / "pub.log",
    )
    subs = []
    for label in ("follow", "mirror"):
        port = free_port()
        conf = base / f"{label}.toml"
        conf.write_text(f'[subscriber]\nlogin = false\nid = "soak-{label}"\nloglevel = "info"\n')
        args = ["caterva2.subscriber.server", "--conf", str(conf)]
        args += ["--statedir", str(base / label), "--http", f"127.0.0.1:{port}"]
        args += ["--broker", node.admin_url]
        url = f"http://127.0.0.1:{port}"
        subs.append(Server(args, f"{url}/api/roots", base / f"{label}.log"))
    versions = Versions()
    writer = Writer(rootdir, versions, rng)
    tally: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    reader_threads: list[Reader] = []
    killed: collections.Counter[str] = collections.Counter()
    try:
        pub.start()
        for sub in subs:
            sub.start()
        for sub, mirror in zip(subs, (False, True), strict=True):
            base_url = sub.url.rsplit("/api/", 1)[0]
            _wait(lambda u=base_url: name in httpx.get(f"{u}/api/roots").json(), "announced")
            httpx.post(
                f"{base_url}/api/subscribe/{name}", params={"mirror": mirror}
            ).raise_for_status()
        sub_urls = [s.url.rsplit("/api/", 1)[0] for s in subs]
        for i in range(readers):
            reader = Reader(sub_urls[i % 2], name, versions, seed * 100 + i, tally, stop)
            reader_threads.append(reader)
            reader.start()
        victims = {"broker": node, "publisher": pub, "subscriber": subs[0]}
        kill_at = {int(changes * (k + 1) / (kills + 1)): list(victims)[k % 3] for k in range(kills)}
        for n in range(changes):
            writer.change()
            if n in kill_at:
                who = kill_at[n]
                victims[who].kill()
                killed[who] += 1
                victims[who].start()
            time.sleep(pace)
        # Give the last changes time to settle while readers keep reading.
        converge_from = time.monotonic()
        truth = _truth(rootdir)
        converged: float | None = None
        differing: dict[str, list[str]] = {}
        try:
            for url in sub_urls:
                _wait(lambda u=url: _view(u, name) == truth, "convergence", timeout=120)
            converged = time.monotonic() - converge_from
        except WaitTimeout:
            for url in sub_urls:
                view = _view(url, name) or {}
                keys = set(view) | set(truth)
                differing[url] = sorted(k for k in keys if view.get(k) != truth.get(k))[:20]
    finally:
        stop.set()
        for reader in reader_threads:
            reader.join(15)
        for sub in subs:
            sub.stop()
        pub.stop()
        # The broker's own log, beside the daemons' (its folder goes with it).
        shutil.copytree(node.basedir / "log", base / "broker-log", dirs_exist_ok=True)
        node.stop()
    wrong = [w for r in reader_threads for w in r.wrong]
    result = {
        "changes": changes,
        "change_kinds": dict(writer.counts),
        "kills": dict(killed),
        "answers": dict(tally),
        "wrong_200": tally["wrong_200"],
        "status_500": tally["status_500"],
        "wrong_examples": wrong[:10],
        "converged_s": None if converged is None else round(converged, 2),
        "not_converged": differing,
        "datasets_at_end": len(truth),
        "total_s": round(time.monotonic() - started, 1),
        "workdir": str(base),
    }
    if workdir is None and not wrong and converged is not None:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _wait(predicate, what: str, timeout: float = 60) -> None:
    """`wait_for`, a server not answering (yet) counting as "not yet"."""
    wait_for(predicate, f"soak: {what}", timeout, 0.2, ignore=(httpx.HTTPError,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    result = run(args.changes, args.seed, args.readers, args.kills, args.workdir)
    print(json.dumps(result, indent=2))
    ok = result["converged_s"] is not None
    return 0 if ok and result["wrong_200"] == 0 and result["status_500"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
