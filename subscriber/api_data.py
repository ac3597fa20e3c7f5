"""REST resources for datasets: roots, list, info, fetch, chunk, download and the writes."""

from __future__ import annotations

import email.utils
import re

import falcon

from ..common import block_stream
from ..common.errors import BadRequest, NotFound, PreconditionFailed, ValidationError
from ..common.falcon_app import set_attachment, set_body, set_etag, set_file, set_pieces
from ..common.paths import split_logical_path
from ..common.slices import parse_slice
from . import datasets
from .auth import check_follow
from .file_ops import FileOps
from .lazy_expressions import Expressions, SavedExpression
from .local_roots import LocalRoots, Location
from .remote_roots import RemoteFile, RemoteRoots
from .upload_stream import spooled_file_part

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def json_body(req: falcon.Request, *keys: str) -> dict:
    """The JSON object of a request, with `keys` required (422 otherwise)."""
    try:
        body = req.get_media()
    except falcon.MediaNotFoundError:
        body = None
    except falcon.MediaMalformedError as exc:
        raise ValidationError(
            "body", "", f"Invalid JSON: {exc.description}", "json_invalid"
        ) from None
    if not isinstance(body, dict):
        raise ValidationError("body", "", "A JSON object is required", "model_attributes_type")
    for key in keys:
        if key not in body:
            raise ValidationError("body", key, "Field required")
    return body


class ReadResource:
    """Base of the read resources: local roots on disk, remote roots through the cache."""

    def __init__(
        self,
        roots: LocalRoots,
        remote: RemoteRoots | None = None,
        expressions: Expressions | None = None,
    ) -> None:
        self.roots = roots
        self.remote = remote
        self.expressions = expressions

    def saved_expression(self, loc: Location, req: falcon.Request) -> SavedExpression | None:
        """The saved lazy expression at `loc`, evaluated with the caller's rights; else None."""
        if self.expressions is None:
            return None
        return self.expressions.saved(loc, req.context.user)

    def remote_path(self, path: str) -> tuple[str, str] | None:
        """(root, relpath) when `path` is in a remote root, else None."""
        root, relpath = split_logical_path(path)
        if self.remote is None or self.roots.is_local(root):
            return None
        return root, relpath


class RootsResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        roots = {
            name: {"name": name, "http": "", "subscribed": True}
            for name in self.roots.names(req.context.user)
        }
        if self.remote is not None:
            roots.update(self.remote.names())
        resp.media = roots


class ListResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if remote := self.remote_path(path):
            resp.media = self.remote.listing(*remote)
            return
        resp.media = self.roots.listing(self.roots.locate(path, req.context.user))


class InfoResource(ReadResource):
    """Metadata; for Blosc2 arrays also an ETag, which `/api/chunk` takes as `If-Match`."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if remote := self.remote_path(path):
            resp.media, tag = self.remote.versioned_info(*remote)
        else:
            loc = self.roots.locate(path, req.context.user)
            expr = self.saved_expression(loc, req)
            if expr:
                resp.media, tag = expr.info(), None  # computed chunks have no stored version
            else:
                tag = datasets.info_version(loc)
                resp.media = datasets.info(loc)
        if tag is not None:
            set_etag(resp, tag)


def _send_file(req: falcon.Request, resp: falcon.Response, path, filename: str) -> None:
    """Stream a stored file as an attachment, honouring a single byte Range."""
    stat = path.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    resp.content_type = "application/octet-stream"
    set_attachment(resp, filename)
    resp.etag = etag
    resp.set_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
    resp.accept_ranges = "bytes"
    if req.if_none_match and any(str(t) == etag.strip('"') for t in req.if_none_match):
        resp.status = falcon.HTTP_304
        return
    start, length = 0, stat.st_size
    header = req.get_header("Range")
    if header:
        match = RANGE_RE.match(header.strip())
        if not match or match.groups() == ("", ""):
            raise falcon.HTTPRangeNotSatisfiable(stat.st_size)
        first, last = match.groups()
        if first:
            start, end = int(first), int(last) if last else stat.st_size - 1
        else:
            start, end = max(0, stat.st_size - int(last)), stat.st_size - 1
        end = min(end, stat.st_size - 1)
        if start > end:
            raise falcon.HTTPRangeNotSatisfiable(stat.st_size)
        length = end - start + 1
        resp.status = falcon.HTTP_206
        resp.content_range = (start, end, stat.st_size)
    if start == 0 and length == stat.st_size:
        set_file(req, resp, path, length)
    else:
        resp.stream = datasets.file_blocks(path, start, length)
        resp.content_length = length


def accepts(req: falcon.Request, media_type: str) -> bool:
    """Whether the client named `media_type` in `Accept` (opt-in: `*/*` keeps the Blosc2 frames)."""
    header = req.get_header("Accept")
    if not header or media_type not in header.lower():
        return False
    for item in header.split(","):
        mtype, _, params = item.partition(";")
        if mtype.strip().lower() == media_type:
            return not re.search(r"\bq\s*=\s*0(\.0*)?\s*(;|$)", params)
    return False


class FetchResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        key = parse_slice(req.get_param("slice_"))
        field, filter_ = req.get_param("field"), req.get_param("filter")
        blocks = accepts(req, block_stream.MEDIA_TYPE)
        if remote := self.remote_path(path):
            result = self.remote.fetch(*remote, key, field, filter_, blocks)
        else:
            loc = self.roots.locate(path, req.context.user)
            if expr := self.saved_expression(loc, req):
                result = expr.fetch(key, field, filter_)
            else:
                result = datasets.fetch(loc, key, field, filter_, blocks)
        resp.content_type = "application/octet-stream"
        resp.vary = ("Accept",)
        if isinstance(result, datasets.ArrayResult):
            body, resp.content_type = result.encode(npy=accepts(req, datasets.NPY_TYPE))
            set_body(resp, body)
        elif isinstance(result, datasets.BlockStream):
            resp.content_type = block_stream.MEDIA_TYPE
            if result.length is not None:
                set_pieces(req, resp, result.pieces, result.length)
            else:  # sent chunked: waitress copies every piece once more
                resp.stream = result.pieces
        elif isinstance(result, datasets.WholeFile):
            _send_file(req, resp, result.path, result.path.name)
        elif isinstance(result, RemoteFile):
            set_attachment(resp, result.filename)
            resp.stream = result.blocks
            if result.length is not None:
                resp.content_length = result.length
        else:
            set_body(resp, result)


class ChunkResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        remote = self.remote_path(path)
        loc = None if remote else self.roots.locate(path, req.context.user)
        raw = req.get_param("nchunk")
        if raw is None:
            raise ValidationError("query", "nchunk", "Field required")
        try:
            nchunk = int(raw)
        except ValueError:
            raise ValidationError(
                "query", "nchunk", "Input should be a valid integer", "int_parsing", raw
            ) from None
        if_match = req.get_header("If-Match")
        if remote:
            data, tag = self.remote.chunk(*remote, nchunk, if_match)
        elif expr := self.saved_expression(loc, req):
            if if_match is not None:
                raise PreconditionFailed(f"{path} is computed: it has no version to match")
            data, tag = expr.chunk(nchunk), None
        else:
            data, tag = datasets.chunk(loc, nchunk, if_match)
        if tag is not None:
            set_etag(resp, tag)
        resp.content_type = "application/octet-stream"
        set_body(resp, data)


class DownloadResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if remote := self.remote_path(path):
            content = self.remote.download(*remote)
        else:
            loc = self.roots.locate(path, req.context.user)
            expr = self.saved_expression(loc, req)
            content = expr.download() if expr else datasets.download(loc)
        set_attachment(resp, content.filename)
        resp.content_type = content.content_type or "application/octet-stream"
        resp.stream = content.blocks
        if content.length is not None:
            resp.content_length = content.length


class UploadResource:
    def __init__(self, ops: FileOps) -> None:
        self.ops = ops

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        # Check the path and the rights before reading a possibly large body.
        self.ops.roots.locate(path, req.context.user, "Uploading")
        if not (req.content_type or "").startswith("multipart/form-data"):
            raise ValidationError("body", "file", "Field required (multipart/form-data)")
        if spooled := spooled_file_part(req):  # the body in a file: no parsing through Python
            resp.media = self.ops.upload(path, spooled.filename, spooled, req.context.user)
            return
        try:
            for part in req.get_media():
                if part.name == "file":
                    resp.media = self.ops.upload(
                        path,
                        part.secure_filename if part.filename else "",
                        part.stream,
                        req.context.user,
                    )
                    return
        except falcon.MediaMalformedError as exc:
            raise BadRequest(f"Malformed multipart body: {exc.description}") from None
        raise ValidationError("body", "file", "Field required")


class RemoveResource:
    def __init__(self, ops: FileOps) -> None:
        self.ops = ops

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.media = self.ops.remove(path, req.context.user)


class TransferResource:
    """`/api/move/` and `/api/copy/`."""

    def __init__(self, ops: FileOps, move: bool) -> None:
        self.ops = ops
        self.move = move

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        action = "Moving files" if self.move else "Copying files"
        self.ops.roots.rootdir("@public", req.context.user, action)  # 401 first, as the original
        body = json_body(req, "src", "dst")
        src, dst = str(body["src"]), str(body["dst"])
        op = self.ops.move if self.move else self.ops.copy
        resp.media = op(src, dst, req.context.user)


class SubscribeResource(ReadResource):
    """`/api/subscribe/<root>` (`?mirror=true` to replicate it): follow a remote root."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        root, _ = split_logical_path(name)
        if not self.roots.is_local(root):
            if self.remote is None:
                raise NotFound(f"{root} not known by the broker")
            check_follow(req.context.user, self.roots.login)
            self.remote.follow(root, mirror=req.get_param_as_bool("mirror", default=False))
            resp.media = "Ok"
            return
        if root != "@public" and req.context.user is None:
            from ..common.errors import Unauthorized

            raise Unauthorized(f"Subscribing to {root} requires authentication")
        resp.media = "Ok"


class UnsubscribeResource(ReadResource):
    """`/api/unsubscribe/<root>`: stop following a remote root and drop its cache."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        root, _ = split_logical_path(name)
        if self.remote is None or not self.remote.is_known(root):
            raise NotFound(f"{root} not known by the broker")
        check_follow(req.context.user, self.roots.login, unfollow=True)
        self.remote.unfollow(root)
        resp.media = "Ok"
