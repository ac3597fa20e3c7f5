"""The file part of an upload read straight from the file its body was spooled to.

waitress reads a whole request body before it calls the app, and keeps one
above `inbuf_overflow` (512 KiB) in a temporary file, which the app gets as
`wsgi.input`.  Reading the file part through falcon's multipart parser then
copies every byte through Python a second time (in 64 KiB pieces, searching
each for the boundary), and writing it out a third.  Here the part is found by
looking at the file (its headers at the start, its end by one search of the
mapped file for the delimiter), and its bytes go to their destination with
`copy_file_range`: a copy inside the kernel.

Only the plain case takes this way: a body in a real file whose first part,
right after the first boundary, is the `file` field.  Anything else (a body in
memory, a streamed one under gunicorn, a prologue, another field first, a
body whose delimiter is missing) returns None and goes through falcon, which
answers malformed bodies as before.  The body file is read with `pread` and
`mmap` only: its position, which falcon would read from, never moves.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import falcon
from falcon.media.multipart import BodyPart, MultipartParseOptions
from falcon.util.mediatypes import parse_header

from ..common.errors import BadRequest

HEAD_MAX = 8192  # falcon's default `max_body_part_headers_size`
COPY_BLOCK = 8 << 20  # bytes per copy call: few calls, and a quota check between them


@dataclass
class SpooledPart:
    """The `file` part of a body spooled to a file: `length` bytes at `offset` of `fd`."""

    filename: str
    fd: int
    offset: int
    length: int

    def copy_into(self, dst: BinaryIO, limit: int | None = None) -> int:
        """Write the part's bytes to `dst` (an open file); 400 past `limit` bytes (the quota)."""
        from .file_ops import quota_exceeded

        if limit is not None and self.length > limit:
            raise quota_exceeded()
        dst.flush()
        with contextlib.suppress(OSError):
            # Blocks allocated now, not at writeback: ext4 then need not write the file
            # out when it is renamed over an older one (`auto_da_alloc`), ~0.1 s a 300 MB.
            os.posix_fallocate(dst.fileno(), 0, self.length)
        copy_range(self.fd, dst.fileno(), self.offset, self.length)
        return self.length


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Copy `length` bytes at `offset` of `src` to the end of `dst`, in the kernel if it can."""
    done = 0
    fast = hasattr(os, "copy_file_range")
    while done < length:
        n = min(COPY_BLOCK, length - done)
        if fast:
            try:
                got = os.copy_file_range(src, dst, n, offset + done)
            except OSError:  # another file system or kernel: copy through user space
                fast = False
                continue
        else:
            data = os.pread(src, n, offset + done)
            got = os.write(dst, data) if data else 0
            if got != len(data):
                raise OSError(f"short write: {got} of {len(data)} bytes")
        if got == 0:
            raise BadRequest("The upload ended before its file did")
        done += got


def _spooled_fd(stream: Any, length: int | None) -> int | None:
    """The descriptor of a body kept whole in a file at position 0, else None."""
    if length is None or length <= 0:
        return None
    try:
        fd = stream.fileno()
        if stream.tell() != 0:
            return None
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
    if os.fstat(fd).st_size != length:
        return None
    return fd


def spooled_file_part(req: falcon.Request) -> SpooledPart | None:
    """The `file` part of an upload body spooled to a file; None: read it through falcon."""
    content_type = req.content_type or ""
    if not content_type.startswith("multipart/form-data"):
        return None
    boundary = parse_header(content_type)[1].get("boundary", "").rstrip()
    if not boundary:
        return None
    fd = _spooled_fd(req.env.get("wsgi.input"), req.content_length)
    if fd is None:
        return None
    start = f"--{boundary}\r\n".encode("latin-1", "replace")
    head = os.pread(fd, len(start) + HEAD_MAX + 4, 0)
    if not head.startswith(start):
        return None  # a prologue, or not multipart at all
    end = head.find(b"\r\n\r\n", len(start))
    if end < 0:
        return None
    headers = {}
    for line in head[len(start) : end].split(b"\r\n"):
        name, sep, value = line.partition(b": ")
        if sep:
            headers[name.lower()] = value
    if headers.get(b"content-transfer-encoding", b"binary") != b"binary":
        return None
    part = BodyPart(None, headers, MultipartParseOptions())  # type: ignore[arg-type]
    try:
        if part.name != "file":
            return None
        filename = part.secure_filename if part.filename else ""
    except (falcon.MediaMalformedError, ValueError):
        return None  # falcon answers it
    offset = end + 4
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as body:
        stop = body.find(b"\r\n" + start[:-2], offset)
    if stop < 0:
        return None  # falcon says what is wrong with it
    return SpooledPart(filename, fd, offset, stop - offset)
