"""Uploads: a local file streamed to `/api/upload/<path>` as multipart/form-data.

httpx builds a multipart body from a file in 64 KiB reads, each sent with its
own system call: 5,000 of them for a 300 MB file, and the server's side of the
loopback waits on every one.  Here the body is the same multipart/form-data
(one `file` part, as httpx and upstream clients send it) written out by hand:
its head, the file in 4 MiB pieces, its tail, with its length known up front.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import httpx

from caterva2.api_utils import Progress, api_url, request

PIECE = 4 << 20  # bytes of the file per piece sent


def _quoted(name: str) -> str:
    """A file name as a quoted header parameter (what httpx does: `"` and `\\` escaped)."""
    return name.replace("\\", "\\\\").replace('"', "%22")


class MultipartFile:
    """The body of a one-file multipart/form-data upload, readable once or more (retries)."""

    def __init__(self, path: pathlib.Path, progress: Progress | None = None) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.progress = progress
        self.boundary = secrets.token_hex(16)
        self.head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{_quoted(path.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def headers(self) -> dict[str, str]:
        """Content-Type and Content-Length of the body."""
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(len(self.head) + self.size + len(self.tail)),
        }

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        done = 0
        with open(self.path, "rb", buffering=0) as f:
            while done < self.size:
                piece = f.read(min(PIECE, self.size - done))
                if not piece:
                    raise OSError(f"{self.path} shrank while it was being uploaded")
                done += len(piece)
                yield piece
                if self.progress is not None:
                    self.progress(done, self.size)
        yield self.tail


def upload_file(
    localpath: str | os.PathLike,
    remotepath: str | os.PathLike,
    urlbase: str,
    auth_cookie: str | None = None,
    timeout: float | httpx.Timeout = 5,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
) -> Any:
    """Stream ``localpath`` to ``/api/upload/<remotepath>``; return the JSON answer."""
    body = MultipartFile(pathlib.Path(localpath), progress)
    response = request(
        "POST",
        api_url(urlbase, "upload", remotepath),
        content=body,
        headers=body.headers,
        timeout=timeout,
        auth_cookie=auth_cookie,
        client=client,
    )
    return response.json()
