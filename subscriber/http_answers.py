"""How each typed result of a read (`root_interface`) is answered over HTTP.

A registry from result types to answers (`functools.singledispatch`): the
routes never switch over result types, and a new type registers its answer
here.
"""

from __future__ import annotations

import email.utils
import functools
import re

import falcon

from ..common import block_stream
from ..common.falcon_app import (
    byte_range,
    file_part,
    set_attachment,
    set_body,
    set_file,
    set_pieces,
)
from ..common.stored_chunks import file_version
from .root_interface import NPY_TYPE, ArrayResult, BlockStream, StreamedFile, WholeFile


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


@functools.singledispatch
def answer_fetch(result: object, req: falcon.Request, resp: falcon.Response) -> None:
    """Answer `/api/fetch` with `result`; plain bytes are a new Blosc2 frame."""
    if not isinstance(result, bytes | bytearray | memoryview):
        raise TypeError(f"no HTTP answer for a {type(result).__name__}")
    set_body(resp, bytes(result))


@answer_fetch.register
def _(result: ArrayResult, req: falcon.Request, resp: falcon.Response) -> None:
    body, resp.content_type = result.encode(npy=accepts(req, NPY_TYPE))
    set_body(resp, body)


@answer_fetch.register
def _(result: BlockStream, req: falcon.Request, resp: falcon.Response) -> None:
    resp.content_type = block_stream.MEDIA_TYPE
    if result.length is not None:
        set_pieces(req, resp, result.pieces, result.length)
    else:  # sent chunked: waitress copies every piece once more
        resp.stream = result.pieces


@answer_fetch.register
def _(result: WholeFile, req: falcon.Request, resp: falcon.Response) -> None:
    send_file(req, resp, result)


@answer_fetch.register
def _(result: StreamedFile, req: falcon.Request, resp: falcon.Response) -> None:
    set_attachment(resp, result.filename)
    resp.stream = result.blocks
    if result.length is not None:
        resp.content_length = result.length


def send_file(req: falcon.Request, resp: falcon.Response, result: WholeFile) -> None:
    """Stream a stored file as an attachment, honouring a single byte `Range`."""
    path = result.path
    stat = path.stat()
    etag = file_version(stat)
    set_attachment(resp, path.name)
    resp.etag = f'"{etag}"'
    resp.set_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
    resp.accept_ranges = "bytes"
    if req.if_none_match and any(str(t) == etag for t in req.if_none_match):
        resp.status = falcon.HTTP_304
        return
    header = req.get_header("Range")
    span = byte_range(header, stat.st_size) if header and stat.st_size else None
    if span is None:
        set_file(req, resp, path, stat.st_size)
        return
    start, end = span
    resp.status = falcon.HTTP_206
    resp.content_range = (start, end, stat.st_size)
    resp.stream = file_part(open(path, "rb"), start, end - start + 1)
    resp.content_length = end - start + 1
