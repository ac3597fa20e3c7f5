"""Plain HTTP/1.1 with the standard library: what a program without our client sends."""

from __future__ import annotations

import http.client
import io
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from caterva2.api_utils import slice_to_string

NPY_TYPES = ("application/x-npy", "application/npy", "application/vnd.numpy")
COPY_BLOCK = 1 << 20


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
