"""The publisher's HTTP API (Falcon): list, info, chunks as stored, whole files, stats.

Routes (paths relative to the root, e.g. `dir1/ds-2d.b2nd`):

- `GET /api/list` → JSON list of dataset paths, sorted (the announced ones, when the
  publisher keeps a state); `?after=PATH&limit=N` pages it.
- `GET /api/changes`, `GET /api/snapshot`: replication (see `change_api`).
- `GET /api/info/{path}` → metadata JSON (compat 3.3) with `ETag`;
  `If-None-Match` with the current etag → 304. `Caterva2-Announced: false`
  says the version described has not been announced yet (still settling):
  subscribers install only announced versions.
- `GET /api/chunk/{path}?nchunk=N` (also the original's
  `GET /api/download/{path}?nchunk=N`) → chunk N exactly as stored, with the
  `ETag` of the version it comes from; `If-Match` with another etag → 412.
- `GET /api/file/{path}` → the whole stored container (`.b2nd`, `.b2frame`,
  or the `.b2` copy of a regular file), with `ETag` and single `Range` support.
  If the file is written while it is streamed, the answer is cut short (the
  connection closed before `Content-Length` bytes), which clients report.
- `GET /api/stats` → how many times each chunk and file was served, and
  how many requests each route answered (`requests`, by route template);
  `DELETE /api/stats` resets the counters.
"""

from __future__ import annotations

import bisect
import collections
import email.utils
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import falcon

from ..common.access_log import AccessLog
from ..common.errors import BadRequest, PreconditionFailed
from ..common.falcon_app import (
    ANNOUNCED_HEADER,
    byte_range,
    etag_matches,
    file_part,
    new_app,
    set_body,
    set_etag,
)
from ..common.stored_chunks import file_version
from . import change_api
from .root_adapters import RootAdapter, StoredFile
from .state import State

log = logging.getLogger(__name__)


class Stats:
    """Counters of what was served, so tests can prove only needed chunks travel."""

    def __init__(self) -> None:
        """Start from zero."""
        self._lock = threading.Lock()
        self.chunks: collections.Counter[tuple[str, int]] = collections.Counter()
        self.files: collections.Counter[str] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """Falcon middleware: count every request by its route (what replication costs)."""
        with self._lock:
            self.requests[req.uri_template or "(no route)"] += 1

    def chunk_served(self, relpath: str, nchunk: int) -> None:
        """Count one chunk sent."""
        with self._lock:
            self.chunks[relpath, nchunk] += 1

    def file_served(self, relpath: str) -> None:
        """Count one whole-file response."""
        with self._lock:
            self.files[relpath] += 1

    def as_json(self) -> dict[str, Any]:
        """`{"chunks": {path: {nchunk: count}}, "files": {path: count}, "chunks_total": n}`."""
        with self._lock:
            chunks: dict[str, dict[str, int]] = {}
            for (relpath, nchunk), count in sorted(self.chunks.items()):
                chunks.setdefault(relpath, {})[str(nchunk)] = count
            return {
                "chunks": chunks,
                "chunks_total": sum(self.chunks.values()),
                "files": dict(sorted(self.files.items())),
                "requests": dict(sorted(self.requests.items())),
            }

    def reset(self) -> None:
        """Back to zero."""
        with self._lock:
            self.chunks.clear()
            self.files.clear()
            self.requests.clear()


class ListResource:
    def __init__(
        self, adapter: RootAdapter, index: Callable[[], list[str] | None] | None = None
    ) -> None:
        self.adapter = adapter
        # The announced paths, sorted, kept in memory (no walk of the root); None until
        # the start-up scan has announced them all.
        self.index = index

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        paths = self.index() if self.index is not None else None
        if paths is None:
            paths = self.adapter.datasets()
        after = req.get_param("after")
        limit = req.get_param_as_int("limit", min_value=1)
        if after:
            paths = paths[bisect.bisect_right(paths, after) :]
        if limit is not None:
            paths = paths[:limit]
        # Serialised here: Falcon's media handler costs much more on 100,000 paths.
        resp.content_type = falcon.MEDIA_JSON
        set_body(resp, json.dumps(paths).encode())


class InfoResource:
    def __init__(
        self, adapter: RootAdapter, announced: Callable[[str], str | None] | None = None
    ) -> None:
        self.adapter = adapter
        self.announced = announced  # relpath → the etag last announced for it

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        current = self.adapter.stat(path)
        if current is not None and etag_matches(req.get_header("If-None-Match"), current.etag):
            resp.status = falcon.HTTP_304
            set_etag(resp, current.etag)
            return
        stat, meta = self.adapter.info(path)
        set_etag(resp, stat.etag)
        if self.announced is not None:
            announced = self.announced(path) == stat.etag
            resp.set_header(ANNOUNCED_HEADER, "true" if announced else "false")
        resp.media = meta


def _nchunk(req: falcon.Request) -> int:
    raw = req.get_param("nchunk")
    try:
        nchunk = int(raw) if raw is not None else -1
    except ValueError:
        nchunk = -1
    if nchunk < 0:
        raise BadRequest("Chunk number required (nchunk, a non-negative integer)")
    return nchunk


class ChunkResource:
    def __init__(self, adapter: RootAdapter, stats: Stats) -> None:
        self.adapter = adapter
        self.stats = stats

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        nchunk = _nchunk(req)
        stat, data = self.adapter.chunk(path, nchunk)
        if_match = req.get_header("If-Match")
        if if_match and not etag_matches(if_match, stat.etag):
            # The caller's metadata describes another version: a chunk of this one
            # would not fit it.
            raise PreconditionFailed(f"{path} changed: its etag is now {stat.etag}")
        set_etag(resp, stat.etag)
        resp.content_type = "application/octet-stream"
        set_body(resp, data)
        self.stats.chunk_served(path, nchunk)


class FileResource:
    def __init__(self, adapter: RootAdapter, stats: Stats) -> None:
        self.adapter = adapter
        self.stats = stats

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        stored = self.adapter.open_file(path)
        try:
            etag = stored.stat.etag
            not_modified = etag_matches(req.get_header("If-None-Match"), etag)
            header = req.get_header("Range")
            span = None
            if header and stored.size and not not_modified:
                span = byte_range(header, stored.size)
        except BaseException:
            stored.file.close()
            raise
        set_etag(resp, etag)
        resp.set_header("Last-Modified", email.utils.formatdate(stored.stat.mtime, usegmt=True))
        resp.accept_ranges = "bytes"
        if not_modified:
            stored.file.close()
            resp.status = falcon.HTTP_304
            return
        resp.content_type = "application/octet-stream"
        resp.downloadable_as = stored.filename
        start, end = span or (0, stored.size - 1)
        if span is not None:
            resp.status = falcon.HTTP_206
            resp.content_range = (start, end, stored.size)
        resp.content_length = end - start + 1
        resp.stream = _unchanged_part(stored, start, end - start + 1)
        self.stats.file_served(path)


class FileChangedWhileStreamed(Exception):
    """The file being streamed was written to: the answer would mix two versions."""


def _unchanged_part(stored: StoredFile, start: int, length: int) -> Iterator[bytes]:
    """`file_part`, checking after each block that the open file still has its version.

    A replaced file keeps its old bytes behind the open handle; only a writer
    changing it in place can make the answer mix versions. Raising here makes
    the server close the connection before `Content-Length` bytes: the client
    sees an incomplete answer, never a whole one of mixed content.
    """
    etag = file_version(os.fstat(stored.file.fileno()))  # now, not at the first block

    def blocks() -> Iterator[bytes]:
        for block in file_part(stored.file, start, length):
            if stored.file.closed or file_version(os.fstat(stored.file.fileno())) != etag:
                raise FileChangedWhileStreamed(f"{stored.filename} changed while streamed")
            yield block

    return blocks()


class StatsResource:
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.stats.as_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.stats.reset()
        resp.status = falcon.HTTP_204


def create_app(
    adapter: RootAdapter,
    stats: Stats | None = None,
    announced: Callable[[str], str | None] | None = None,
    state: State | None = None,
    index: Callable[[], list[str] | None] | None = None,
) -> falcon.App:
    """The WSGI app serving one root; `announced(relpath)` is the etag last announced.

    With the publisher's `state`, it also serves the change log and snapshots.
    `index()`: the sorted dataset paths to list (None: walk the root).
    """
    stats = stats or Stats()
    app = new_app(middleware=[AccessLog(), stats])  # cat2pub --loglevel info: one line a request
    if state is not None:
        announced = announced or state.etag
        change_api.add_routes(app, state)
    app.add_route("/api/list", ListResource(adapter, index))
    app.add_route("/api/info/{path:path}", InfoResource(adapter, announced))
    chunks = ChunkResource(adapter, stats)
    app.add_route("/api/chunk/{path:path}", chunks)
    app.add_route("/api/download/{path:path}", chunks)
    app.add_route("/api/file/{path:path}", FileResource(adapter, stats))
    app.add_route("/api/stats", StatsResource(stats))
    return app
