"""REST resources for datasets: roots, list, info, fetch, chunk, download and the writes."""

from __future__ import annotations

import json
import threading

import falcon

from ..common import block_stream
from ..common.errors import (
    BadRequest,
    ContentTooLarge,
    NotFound,
    Unauthorized,
    ValidationError,
)
from ..common.falcon_app import set_attachment, set_body, set_etag
from ..common.paths import split_logical_path
from ..common.slices import parse_slice
from .auth import check_follow
from .coordinate_gather import gather
from .file_ops import FileOps
from .http_answers import accepts, answer_fetch
from .root_registry import RootRegistry
from .upload_stream import spooled_file_part


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
    """Base of the read resources: every kind of root, through the root registry."""

    def __init__(self, registry: RootRegistry) -> None:
        self.registry = registry
        self.roots = registry.local
        self.remote = registry.remote


class RootsResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.registry.names(req.context.user)


class ListResource(ReadResource):
    """`/api/list`; the JSON of a big listing is kept while the root gives the same list.

    Encoding 100,000 paths (2.4 MB) costs ~33 ms, two thirds of a whole `/api/list`
    at that size; a remote root keeps one list object per root until its next
    change, so the identity of that object says the encoded answer still holds.
    """

    BIG = 1000  # entries; below this, encoding costs less than a millisecond
    KEPT = 8  # encoded listings kept (the roots listed last)

    def __init__(self, registry: RootRegistry) -> None:
        super().__init__(registry)
        self._encoded: dict[str, tuple[list[str], bytes]] = {}
        self._guard = threading.Lock()

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        names = self.registry.listing(path, req.context.user)
        if len(names) < self.BIG:
            resp.media = names
            return
        with self._guard:
            kept = self._encoded.get(path)
        if kept is not None and kept[0] is names:
            data = kept[1]
        else:
            data = json.dumps(names, ensure_ascii=False).encode()
            with self._guard:
                self._encoded.pop(path, None)
                while len(self._encoded) >= self.KEPT:
                    del self._encoded[next(iter(self._encoded))]
                # The list is held with its bytes, so its identity cannot be reused.
                self._encoded[path] = (names, data)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = data


class InfoResource(ReadResource):
    """Metadata; for Blosc2 arrays also an ETag, which `/api/chunk` takes as `If-Match`."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.media, tag = self.registry.dataset(path, req.context.user).info()
        if tag is not None:
            set_etag(resp, tag)


class FetchResource(ReadResource):
    """`/api/fetch`: a slice, a field, a filter, or coordinates (`indices`).

    POST takes the same parameters as a JSON object in the body, for coordinates
    too many for a URL (as the newest upstream client sends them).
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        self._answer(req, resp, path, req.params)

    MAX_BODY = 16 * 1024 * 1024  # about two million coordinates

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if req.content_length is None or req.content_length > self.MAX_BODY:
            raise ContentTooLarge(
                f"A fetch body must give its length, at most {self.MAX_BODY} bytes"
            )
        params = json_body(req)
        for name, value in params.items():
            if value is not None and not isinstance(value, str):
                raise ValidationError("body", name, "Input should be a valid string", "string_type")
        self._answer(req, resp, path, params)

    def _answer(self, req: falcon.Request, resp: falcon.Response, path: str, params) -> None:
        field, filter_ = params.get("field"), params.get("filter")
        indices = params.get("indices")
        dataset = self.registry.dataset(path, req.context.user)
        if indices is not None:
            if params.get("slice_") or field or filter_:
                raise BadRequest("indices cannot go with slice_, field or filter")
            result = gather(dataset, indices)
        else:
            key = parse_slice(params.get("slice_"))
            result = dataset.fetch(key, field, filter_, accepts(req, block_stream.MEDIA_TYPE))
        resp.content_type = "application/octet-stream"
        resp.vary = ("Accept",)
        answer_fetch(result, req, resp)


class ChunkResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        dataset = self.registry.dataset(path, req.context.user)
        raw = req.get_param("nchunk")
        if raw is None:
            raise ValidationError("query", "nchunk", "Field required")
        try:
            nchunk = int(raw)
        except ValueError:
            raise ValidationError(
                "query", "nchunk", "Input should be a valid integer", "int_parsing", raw
            ) from None
        data, tag = dataset.chunk(nchunk, req.get_header("If-Match"))
        if tag is not None:
            set_etag(resp, tag)
        resp.content_type = "application/octet-stream"
        set_body(resp, data)


class DownloadResource(ReadResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        content = self.registry.dataset(path, req.context.user).download()
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
