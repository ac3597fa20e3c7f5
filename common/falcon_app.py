"""What both HTTP servers (publisher and subscriber) share: a Falcon app with JSON errors.

Imported only by the servers: the client never loads Falcon.
"""

from __future__ import annotations

import io
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any, BinaryIO

import falcon

from .errors import Caterva2Error

log = logging.getLogger(__name__)

# One byte range of a `Range` header (RFC 9110 14.1.2); other forms are ignored.
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _reason(status: int) -> str:
    return falcon.code_to_http_status(status).split(" ", 1)[1]


def _caterva2_error(req, resp, ex: Caterva2Error, params) -> None:
    resp.status = falcon.code_to_http_status(ex.status)
    resp.content_type = falcon.MEDIA_JSON  # a handler may have set another type already
    resp.media = {"detail": ex.detail}
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)


def _http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    resp.status = ex.status
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"detail": ex.description or _reason(ex.status_code)}
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)


def _unexpected_error(req, resp, ex: Exception, params) -> None:
    if isinstance(ex, falcon.HTTPError | falcon.HTTPStatus):
        raise ex
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = "Internal Server Error"


def new_app(middleware: list | None = None) -> falcon.App:
    """A Falcon app answering errors as `{"detail": ...}` (500s as plain text, logged)."""
    app = falcon.App(middleware=middleware or [])
    # Clients never follow redirects: `/api/list/x/` must answer like `/api/list/x`.
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(Caterva2Error, _caterva2_error)
    return app


# Bigger bodies go out as a file-like stream (`wsgi.file_wrapper`): waitress copies a
# plain body whole into its output buffer and copies the rest again after every partial
# send (a 1.5 MB chunk took 2.7 ms to send, 0.6 ms as a stream).
ANNOUNCED_HEADER = "Caterva2-Announced"
"""Publisher info answers: `false` while the version described is not announced yet."""
STREAM_BODY = 256 * 1024


def set_body(resp: falcon.Response, body: bytes) -> None:
    """Answer with `body`, streamed when big (see `STREAM_BODY`)."""
    if len(body) > STREAM_BODY:
        resp.set_stream(io.BytesIO(body), len(body))  # BytesIO shares the bytes: no copy
    else:
        resp.data = body


STREAM_BLOCK = 1024 * 1024
"""Bytes per piece of a streamed file: few Python round trips, little memory."""
FILE_PIECE = 4 * 1024 * 1024
"""Bytes per piece of a whole file sent by waitress (`set_file`): two of its 2 MiB sends."""


def file_part(
    f: BinaryIO, start: int = 0, length: int | None = None, block: int = 0
) -> Iterator[bytes]:
    """Stream `length` bytes (None: to the end) of an open file from `start`, then close it.

    `block`: bytes per piece (0: `STREAM_BLOCK`).

    Closed also when the client goes away (the server closes the iterator).
    """
    try:
        f.seek(start)
        left = length
        while left is None or left > 0:
            size = block or STREAM_BLOCK
            piece = f.read(size if left is None else min(size, left))
            if not piece:
                break
            if left is not None:
                left -= len(piece)
            yield piece
    finally:
        f.close()


class PiecesFile:
    """A body of known length made of pieces produced on demand, read as a file.

    Waitress copies every piece of an iterable body into its own buffer and out
    again; a file-like body (`wsgi.file_wrapper`) it sends straight from what
    `read` returns.  It reads a range, seeks back to its start, and reads it
    again once sent, so the current piece is kept until read past.  `read`
    gives the pieces themselves where it can, else a view of part of one: no
    copy either (a slice copied up to 2 MiB for every send that left some).
    """

    def __init__(self, pieces: Iterator[bytes], length: int) -> None:
        self._pieces = pieces
        self._length = length
        self._piece = b""
        self._start = 0  # where `_piece` starts in the body
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._length)[whence]
        target = base + offset
        if target < self._start:
            raise OSError("cannot seek back past the piece being read")
        self._pos = target
        return target

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._length:
            return b""
        while self._pos >= self._start + len(self._piece):
            self._start += len(self._piece)
            piece = next(self._pieces, None)
            if piece is None:
                raise OSError(f"body ended at {self._start} bytes of {self._length}")
            self._piece = piece
        offset = self._pos - self._start
        end = len(self._piece) if size < 0 else min(len(self._piece), offset + size)
        if (offset, end) == (0, len(self._piece)):
            data = self._piece
        else:  # a view: waitress sends it as it is, and a slice would copy it
            data = memoryview(self._piece)[offset:end]
        self._pos += len(data)
        return data

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


def set_pieces(req: falcon.Request, resp: falcon.Response, pieces: Iterator[bytes], length: int):
    """Answer with a body of `length` bytes made of `pieces` (sent without copies on waitress)."""
    wrapper = req.env.get("wsgi.file_wrapper")
    if getattr(wrapper, "__module__", "").startswith("waitress"):
        resp.set_stream(PiecesFile(pieces, length), length)
    else:  # gunicorn reads a file-like body 8 KiB at a time: pieces are better whole
        resp.stream = pieces
        resp.content_length = length


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) of a single `bytes=` range; None to ignore it; 416 if unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match:
        return None  # several ranges or another unit: answer the whole file (RFC 9110)
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    elif last:
        start, end = max(0, size - int(last)), size - 1
    else:
        return None
    if start > end or start >= size:
        raise falcon.HTTPRangeNotSatisfiable(size)
    return start, end


def set_file(req: falcon.Request, resp: falcon.Response, path: Any, length: int) -> None:
    """Answer with a whole file of `length` bytes.

    waitress sends a file body (`wsgi.file_wrapper`) by reading 2 MiB, sending
    what the socket takes and reading the rest again: a download read its file
    1.7 times over.  It gets the file as pieces read once (`PiecesFile`, which
    hands out views of them).  Other servers get the file itself: gunicorn
    sends it with `sendfile(2)`.
    """
    f = open(path, "rb")
    wrapper = req.env.get("wsgi.file_wrapper")
    if getattr(wrapper, "__module__", "").startswith("waitress"):
        resp.set_stream(PiecesFile(file_part(f, 0, length, FILE_PIECE), length), length)
    else:
        resp.set_stream(f, length)


def set_attachment(resp: falcon.Response, filename: str | None) -> None:
    """Answer as a download named `filename` (None: no name), its control characters (no
    header may hold them, and a name found on disk may have them) turned into `_`."""
    if filename is not None:
        filename = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in filename)
    resp.downloadable_as = filename


def set_etag(resp: falcon.Response, etag: str) -> None:
    """Name the version of the answer (quoted, as HTTP wants)."""
    resp.set_header("ETag", f'"{etag}"')


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an `If-None-Match`/`If-Match` header names this etag (quoted or bare)."""
    if not header:
        return False
    for item in header.split(","):
        item = item.strip().removeprefix("W/").strip('"')
        if item == "*" or item == etag:
            return True
    return False


def waitress_options() -> dict[str, Any]:
    """`waitress.create_server` settings for serving arrays and whole files.

    - `outbuf_overflow`: a response that the client does not take at once is
      buffered; past 1 MiB (the default) waitress spools it to a temporary
      file, so a cold read or a big result is written to disk and read back.
      Up to 64 MiB stays in memory instead.
    - `outbuf_high_watermark`: a streamed response waits for the client once
      1 MiB is buffered (waitress's default is 16), well below the overflow:
      streams never spool, and a server relaying a 1 GB file from a publisher
      holds little of it (the buffer is copied as it drains: 16 MiB cost ~50 MB
      of peak RSS, and relaying was no faster).
    - `recv_bytes`: waitress reads a request body 8 KiB per `recv` (its default),
      appending each piece to its buffer file with two seeks and a write: a
      300 MB upload took ~40,000 trips through its main loop, 1.5 s of the one
      thread that serves every connection.  1 MiB pieces take ~300 (a small
      request still reads what arrived, the buffer is sized at the call).
    """
    return {
        "outbuf_overflow": 64 * 1024 * 1024,
        "outbuf_high_watermark": 1024 * 1024,
        "recv_bytes": 1024 * 1024,
    }


def tune_waitress(server: Any) -> None:
    """Set what `waitress_options` cannot (settings read at each accept and each write).

    - A 1 MiB send buffer on accepted TCP sockets: waitress sends at most the
      socket's send buffer per call, as sized at accept (16 KiB on Linux by
      default); 2 MiB pieces (the kernel doubles the value) take a whole file
      out in ~100 times fewer Python round trips.  `socket_options` is a class
      setting of waitress's `Adjustments`, not a `create_server` argument.
    - `send_bytes` back to waitress 2's 18000: since waitress 3 (default 1) the
      worker thread sends each response itself, header and body apart, and every
      send hands the GIL to another thread.  With 8 busy connections that
      doubled the CPU per small request (~1.5 ms instead of ~0.8 ms; 560 instead
      of 1060 requests/s); answers under 18000 bytes now go out from the main
      loop, a few at a time, bigger ones as before.  A lone client's answer takes
      one more thread hop (within the noise of our measurements).  Set on the
      instance: as an argument waitress 3 warns that it will go, and then this
      line just does nothing.
    """
    adj = getattr(server, "adj", None)
    if adj is None:
        return
    adj.send_bytes = 18000
    if adj.unix_socket is None:
        adj.socket_options = [
            (socket.SOL_TCP, socket.TCP_NODELAY, 1),  # waitress's default, kept
            (socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024),
        ]
