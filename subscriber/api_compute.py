"""REST resources that compute: `/api/lazyexpr/`, `/api/concat/`, `/api/stack/`, `/api/append/`."""

from __future__ import annotations

import falcon

from ..common.errors import BadRequest, ValidationError
from .api_data import json_body
from .array_ops import ArrayOps
from .compute_budget import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, Limits, Runner
from .file_ops import FileOps
from .lazy_expressions import CREATE_ACTION
from .local_roots import LocalRoots
from .remote_roots import RemoteRoots
from .saved_expressions import Expressions


class LazyExprResource:
    def __init__(self, expressions: Expressions) -> None:
        self.expressions = expressions

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # 401 before looking at the body, as for every write.
        self.expressions.roots.rootdir("@personal", req.context.user, CREATE_ACTION)
        body = json_body(req, "name", "expression", "operands", "compute")
        if not isinstance(body["compute"], bool):
            raise ValidationError("body", "compute", "Input should be a valid boolean", "bool_type")
        resp.media = self.expressions.create(
            body["name"], body["expression"], body["operands"], body["compute"], req.context.user
        )


class CombineResource:
    """`/api/concat/` and `/api/stack/`."""

    def __init__(self, arrays: ArrayOps, stack: bool) -> None:
        self.arrays = arrays
        self.stack = stack

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        action = "Stacking datasets" if self.stack else "Concatenating datasets"
        self.arrays.roots.rootdir("@personal", req.context.user, action)
        body = json_body(req, "srcs", "dst", "axis")
        resp.media = self.arrays.combine(
            body["srcs"], body["dst"], body["axis"], req.context.user, self.stack
        )


class AppendResource:
    def __init__(self, arrays: ArrayOps) -> None:
        self.arrays = arrays

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        # Check the path and the rights before reading the body.
        self.arrays.roots.locate(path, req.context.user, "Appending data")
        if not (req.content_type or "").startswith("multipart/form-data"):
            raise ValidationError("body", "file", "Field required (multipart/form-data)")
        try:
            for part in req.get_media():
                if part.name == "file":
                    resp.media = self.arrays.append(path, part.stream, req.context.user)
                    return
        except falcon.MediaMalformedError as exc:
            raise BadRequest(f"Malformed multipart body: {exc.description}") from None
        raise ValidationError("body", "file", "Field required")


def limits_from(settings: object) -> Limits:
    """The compute limits of the settings (`compute_timeout`, `compute_max_size`)."""
    timeout = getattr(settings, "compute_timeout", None) or DEFAULT_TIMEOUT
    max_bytes = getattr(settings, "compute_max_size", None) or DEFAULT_MAX_BYTES
    threads = getattr(settings, "threads", 8) or 8
    # At most half the HTTP threads compute: the others keep serving plain reads.
    workers = max(2, threads // 2)
    return Limits(timeout=float(timeout), max_bytes=int(max_bytes), workers=workers)


def register(
    app: falcon.App,
    roots: LocalRoots,
    remote: RemoteRoots | None,
    ops: FileOps,
    settings: object,
) -> Expressions:
    """Add the computing routes; returns the service that also serves reads of saved expressions."""
    expressions = Expressions(roots, remote, ops, Runner(limits_from(settings)))
    arrays = ArrayOps(expressions)
    app.add_route("/api/lazyexpr", LazyExprResource(expressions))
    app.add_route("/api/concat", CombineResource(arrays, stack=False))
    app.add_route("/api/stack", CombineResource(arrays, stack=True))
    app.add_route("/api/append/{path:path}", AppendResource(arrays))
    return expressions
