"""Chunked ingestion in the client: lay out an empty array, fill it by chunks, publish it.

The same wire contract as upstream Caterva2 2026.9.2: laying out is an upload
of a `blosc2.uninit` array, a chunk is POSTed to `/api/chunk/<path>?nchunk=N`,
and `/api/publish/<path>` makes the finished array visible.  Mixed into
`Client` (by path) and `Dataset` (the array itself).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import blosc2
import numpy as np

from caterva2.http_errors import APIError


class ChunkAlreadyWritten(APIError, blosc2.ChunkAlreadyWritten):
    """409: the slot already holds a chunk; the array is untouched.

    Both an `APIError` (with the server's answer) and blosc2's own
    `ChunkAlreadyWritten`, as upstream clients raise it.
    """


class ClientIngestion:
    """`Client` methods of chunked ingestion (the client's `_post`, `_get`, `_url`, `get`)."""

    def lay_out(
        self,
        path: str | os.PathLike,
        shape: Any,
        dtype: Any,
        chunks: Any = None,
        blocks: Any = None,
        cparams: Any = None,
    ) -> Any:
        """Lay out an empty array at ``path``, to be filled with `fill_chunk`; return it.

        It stays invisible to readers (in no listing, not readable) until `publish`.
        Refused (409) where a published dataset already is: remove that first.
        """
        kwargs = {"chunks": chunks, "blocks": blocks, "cparams": cparams}
        array = blosc2.uninit(shape, dtype=dtype, **{k: v for k, v in kwargs.items() if v})
        logical = os.fspath(path)
        name = pathlib.PurePosixPath(logical).name
        files = {"file": (name, array.to_cframe(), "application/octet-stream")}
        stored = self._post(self._url("upload", logical), files=files)
        return self.get(stored)

    def fill_chunk(self, path: str | os.PathLike, nchunk: int, chunk: bytes) -> dict:
        """Write one compressed chunk into slot ``nchunk`` of a laid-out array.

        ``chunk`` as `blosc2.compress2` gives it with the array's geometry
        (``typesize`` of its dtype, ``blocksize`` of its blocks).  Returns
        ``nchunk``, ``written``, ``nchunks`` and ``state`` (``filling`` or
        ``complete``); raises `ChunkAlreadyWritten` when the slot holds one.
        """
        url = self._url("chunk", os.fspath(path))
        headers = {"Content-Type": "application/octet-stream"}
        try:
            return self._post(url, params={"nchunk": nchunk}, content=bytes(chunk), headers=headers)
        except APIError as exc:
            if exc.status_code == 409:
                raise ChunkAlreadyWritten(exc.response) from None
            raise

    def written_chunks(self, path: str | os.PathLike) -> np.ndarray:
        """One boolean per chunk of a laid-out array: True once it is written."""
        got = self._get(self._url("written_chunks", os.fspath(path)))
        return np.frombuffer(got["chunks"].encode("ascii"), dtype=np.uint8) == ord("1")

    def publish(self, path: str | os.PathLike) -> str:
        """Make a completely filled array visible to readers, atomically; return its path."""
        return self._post(self._url("publish", os.fspath(path)))["published"]


class ArrayIngestion:
    """The same methods on a laid-out array (a `Dataset`: its ``client`` and ``path``)."""

    def fill_chunk(self, nchunk: int, chunk: bytes) -> dict:
        """Write one compressed chunk into slot ``nchunk``; see `Client.fill_chunk`."""
        return self.client.fill_chunk(self.path, nchunk, chunk)

    def written_chunks(self) -> np.ndarray:
        """Which chunks of this array are written; see `Client.written_chunks`."""
        return self.client.written_chunks(self.path)

    def publish(self) -> str:
        """Make this array visible to readers; see `Client.publish`."""
        return self.client.publish(self.path)
