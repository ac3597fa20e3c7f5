"""REST routes of chunked ingestion, and what info and fetch answer for a staged array.

`POST /api/chunk/<path>?nchunk=N` writes one compressed chunk (the body) into a
slot; `POST /api/publish/<path>` moves a complete array into its root;
`GET /api/written_chunks/<path>` says which slots are written.  Laying out is
an upload of an empty (`blosc2.uninit`) array (`FileOps.claim_upload`), as the
upstream client does it.  A staged array shows only to those who may write its
root: in `/api/info` (with its `state`) and as byte ranges of its frame in
`/api/fetch` (what blosc2's `C2Array.written_chunks` reads); to everyone else,
and in every listing, it does not exist.
"""

from __future__ import annotations

import falcon

from ..common.errors import ContentTooLarge, NotFound, ValidationError
from ..common.falcon_app import set_etag
from .api_data import ChunkResource, FetchResource, InfoResource, RemoveResource
from .chunked_ingestion import Ingestion
from .datasets import StoredDataset
from .http_answers import send_file
from .local_roots import Location
from .root_interface import WholeFile

# The biggest chunk accepted: Blosc2 chunks are under 2 GiB, useful ones far smaller.
MAX_CHUNK = 512 * 1024 * 1024


def nchunk_param(req: falcon.Request) -> int:
    """The `nchunk` query parameter (422 when missing or not an integer)."""
    raw = req.get_param("nchunk")
    if raw is None:
        raise ValidationError("query", "nchunk", "Field required")
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(
            "query", "nchunk", "Input should be a valid integer", "int_parsing", raw
        ) from None


class ChunkRoute:
    """`/api/chunk`: GET reads a chunk (as before), POST fills a slot of a staged array."""

    def __init__(self, read: ChunkResource, ingestion: Ingestion) -> None:
        self.read = read
        self.ingestion = ingestion

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        self.read.on_get(req, resp, path)

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        user = req.context.user
        # Rights and the array first, before a possibly large body is read.
        self.ingestion.writable_staged(path, user)
        nchunk = nchunk_param(req)
        length = req.content_length
        if length is None or length > MAX_CHUNK:
            raise ContentTooLarge(f"A chunk must give its length, at most {MAX_CHUNK} bytes")
        chunk = req.bounded_stream.read(length)
        resp.media = self.ingestion.fill_chunk(path, nchunk, chunk, user)


class PublishResource:
    """`/api/publish/<path>`: make a complete staged array visible, atomically."""

    def __init__(self, ingestion: Ingestion) -> None:
        self.ingestion = ingestion

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.media = self.ingestion.publish(path, req.context.user)


class WrittenChunksResource:
    """`/api/written_chunks/<path>`: which slots of a staged array are written."""

    def __init__(self, ingestion: Ingestion) -> None:
        self.ingestion = ingestion

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.media = self.ingestion.progress(path, req.context.user)


class StagedRead:
    """A read route that answers a staged array's writers itself, and everyone else as before."""

    def __init__(self, read: InfoResource | FetchResource, ingestion: Ingestion) -> None:
        self.read = read
        self.ingestion = ingestion

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        loc = self.ingestion.staged_for_writer(path, req.context.user)
        if loc is None:
            self.read.on_get(req, resp, path)
        else:
            self.staged(req, resp, path, loc)

    def staged(self, req: falcon.Request, resp: falcon.Response, path: str, loc: Location) -> None:
        raise NotImplementedError


class StagedInfo(StagedRead):
    """`/api/info`: a staged array's metadata plus its fill `state`, to its writers only."""

    def staged(self, req: falcon.Request, resp: falcon.Response, path: str, loc: Location) -> None:
        meta, tag = StoredDataset(loc).info()
        meta.update(self.ingestion.state(loc.path))
        resp.media = meta
        if tag is not None:
            set_etag(resp, tag)


class StagedFetch(StagedRead):
    """`/api/fetch`: byte ranges of a staged array's frame to its writers; else as before."""

    def staged(self, req: falcon.Request, resp: falcon.Response, path: str, loc: Location) -> None:
        header = req.get_header("Range")
        if header:
            # What a fill's progress is read from (the frame's offsets), never values.
            resp.content_type = "application/octet-stream"
            got = self.ingestion.frame_range(loc.path, header)
            if got is None:
                send_file(req, resp, WholeFile(loc.path))
                return
            data, start, end, size = got
            resp.status = falcon.HTTP_206
            resp.accept_ranges = "bytes"
            resp.content_range = (start, end, size)
            resp.data = data
            return
        try:
            self.read.on_get(req, resp, path)
        except NotFound:
            raise NotFound(
                f"{path} is laid out but not published: its values are read once it is"
            ) from None

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        self.read.on_post(req, resp, path)


class StagedRemove:
    """`/api/remove`: also drops a laid-out, unpublished array (a fill given up)."""

    def __init__(self, remove: RemoveResource, ingestion: Ingestion) -> None:
        self.remove = remove
        self.ingestion = ingestion

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if not self.ingestion.discard(path, req.context.user):
            self.remove.on_post(req, resp, path)
            return
        try:  # and a dataset stored at the same path since, as a remove always would
            self.remove.on_post(req, resp, path)
        except NotFound:
            resp.media = path


def register(app: falcon.App, ingestion: Ingestion) -> None:
    """Add the routes of chunked ingestion that have no read route to share."""
    app.add_route("/api/publish/{path:path}", PublishResource(ingestion))
    app.add_route("/api/written_chunks/{path:path}", WrittenChunksResource(ingestion))
