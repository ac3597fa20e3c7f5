"""What the figures are measured with: the run's plan and context, plain HTTP on a
kept-alive connection, and the timing helpers (see figures.py for the figures)."""

from __future__ import annotations

import http.client
import io
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

import caterva2 as cat2
from caterva2.api_utils import slice_to_string

from .data import FieldSpec
from .report import Figure
from .servers import Publisher, Subscriber

SMALL_KEY = (10, slice(10, 20), slice(10, 20))
NPY_TYPES = ("application/x-npy", "application/npy", "application/vnd.numpy")
COPY_BLOCK = 1 << 20


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


# --- plain HTTP ---------------------------------------------------------------------


class Http:
    """Plain HTTP/1.1 with the standard library, on one kept-alive connection."""

    def __init__(self, url: str, cookie: str | None = None, timeout: float = 300) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.headers = {"Cookie": cookie} if cookie else {}
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, target: str, body: Any = None, headers: dict | None = None
    ) -> http.client.HTTPResponse:
        """Send a request; a GET is retried once on a connection the server closed."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, target, body, {**self.headers, **(headers or {})})
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if attempt or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def get(self, target: str) -> tuple[http.client.HTTPResponse, bytes]:
        """GET `target` and read the whole body."""
        resp = self.request("GET", target)
        body = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"GET {target}: {resp.status} {body[:200]!r}")
        return resp, body

    def fetch_array(self, path: str, key: Any = None) -> np.ndarray:
        """GET `/api/fetch/<path>?slice_=...` and decode the answer into NumPy."""
        resp, body = self.get(fetch_target(path, key))
        return decode_array(body, resp.getheader("Content-Type", ""))

    def download(self, path: str, dst: Path) -> int:
        """Stream `/api/fetch/<path>` into `dst`; return the bytes written."""
        resp = self.request("GET", fetch_target(path, None))
        if resp.status >= 400:
            raise RuntimeError(f"download {path}: {resp.status} {resp.read()[:200]!r}")
        done = 0
        with open(dst, "wb") as out:
            while block := resp.read(COPY_BLOCK):
                out.write(block)
                done += len(block)
        return done

    def upload(self, src: Path, path: str) -> None:
        """POST `src` to `/api/upload/<path>` as multipart/form-data, streamed."""
        boundary = f"bench{uuid.uuid4().hex}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{src.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():
            yield head
            with open(src, "rb") as f:
                while block := f.read(COPY_BLOCK):
                    yield block
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + src.stat().st_size + len(tail)),
        }
        resp = self.request("POST", f"/api/upload/{quote(path)}", body(), headers)
        answer = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"upload {path}: {resp.status} {answer[:200]!r}")


def quote(path: str) -> str:
    """A logical path as it goes into a URL."""
    return urllib.parse.quote(path, safe="/@")


def fetch_target(path: str, key: Any) -> str:
    """The request target of `/api/fetch` for a path and an index."""
    text = slice_to_string(key)
    query = f"?slice_={urllib.parse.quote(text)}" if text else ""
    return f"/api/fetch/{quote(path)}{query}"


def decode_array(body: bytes, content_type: str) -> np.ndarray:
    """An array answer as NumPy: a `.npy` body, else a Blosc2 frame."""
    if content_type.split(";")[0].strip().lower() in NPY_TYPES:
        return np.load(io.BytesIO(body), allow_pickle=False)
    array = blosc2.ndarray_from_cframe(body, False)
    return array[()]


# --- timing helpers -----------------------------------------------------------------


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int) -> dict[str, list]:
    """Time each function `reps` times, one of each per round, after `warmup` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for n in range(warmup + reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if n >= warmup:
                samples[name].append(elapsed)
    return samples


def local_read(path: Path, key: Any) -> np.ndarray:
    """The floor: open the file with Blosc2 and read `key`, as a local program would."""
    array = blosc2.open(str(path), mode="r")
    return array[key] if key != () else array[()]


def copy_file(src: Path, dst: Path) -> None:
    """The floor of transfers: read and write the file through user space, 1 MiB at a time."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(COPY_BLOCK):
            fout.write(block)


def key_text(key: Any) -> str:
    """An index as printed in titles: `[25:75, :, :]`."""
    return f"[{slice_to_string(key) or ':'}]"


def result_nbytes(shape: tuple[int, ...], key: Any) -> int:
    """Bytes of the float64 result of `key` on an array of `shape`."""
    return int(np.empty(shape, dtype=np.uint8)[key if key != () else ...].size) * 8


def check_equal(ctx: Context, name: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Record whether a served result equals the local one; fail loudly when not."""
    same = got.shape == expected.shape and bool(np.array_equal(got, expected))
    ctx.checks[name] = same
    if not same:
        raise AssertionError(f"{name}: the served data differ from the local read")


def need_remote(ctx: Context, name: str, title: str, kind: str) -> Figure | None:
    """A skipped figure when the publisher side is not running, else None."""
    if ctx.remote is None:
        return Figure(name, title, kind, [], skipped=ctx.remote_problem or "no publisher")
    return None
