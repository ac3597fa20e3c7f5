"""Writes to local roots: upload, remove, move and copy, with the quota kept."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import blosc2

from ..common import b2files
from ..common.errors import BadRequest, NotFound
from ..common.paths import (
    STORED_AS_IS_SUFFIXES,
    is_hdf5,
    join_logical,
    logical_name,
    stored_name,
    suffix,
)
from .local_roots import LocalRoots, Location
from .quota_ledger import UsageLedger
from .store import User

COPY_BLOCK = 1024 * 1024

# Writers are serialised so two concurrent uploads cannot both pass the quota check.
_write_lock = threading.Lock()


def quota_exceeded(what: str = "Upload") -> BadRequest:
    """The error of a write the quota has no room for (`what`: Upload, Append, Unfold...)."""
    return BadRequest(f"{what} failed because quota limit has been exceeded.")


def put_in_place(
    tmp: Path, target: Path, shown: str, room: int | None = None, what: str = "Upload"
) -> None:
    """Move a finished file onto `target` (call with `_write_lock` held).

    Refused when it is bigger than `room` bytes, or `target` (`shown` in the
    message) is a directory; `tmp` is the caller's to remove if it stays.
    """
    if room is not None and tmp.stat().st_size > room:
        raise quota_exceeded(what)
    if target.is_dir():
        raise BadRequest(f"{shown} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def receive_stream(stream: BinaryIO, dst: Path, limit: int | None = None) -> int:
    """Copy an upload to `dst`; stop with 400 once it exceeds `limit` bytes.

    `stream` is a file-like body, or a part that copies itself
    (`upload_stream.SpooledPart`: a copy inside the kernel).
    """
    with open(dst, "wb") as f:
        if hasattr(stream, "copy_into"):
            return stream.copy_into(f, limit)
        size = 0
        while block := stream.read(COPY_BLOCK):
            size += len(block)
            if limit is not None and size > limit:
                raise quota_exceeded()
            f.write(block)
    return size


def commit_upload(ops: FileOps, tmp: Path, target: Path, shown: str) -> None:
    """Put a received upload in place, its quota checked (takes `_write_lock`, briefly).

    The body arrived with no lock held; here, under the lock, it is charged
    against the usage of every write put in place before it, so two uploads
    cannot both take the last room.  A file replaced is linked aside first and
    unlinked after the answer: dropping a big file's pages from memory took ~0.1 s.
    """
    old = None
    with _write_lock:
        if target.is_file():
            old = ops.roots.new_tmp_path(f"replaced-{target.name}")
            os.link(target, old)
        try:
            ops.put_charged(tmp, target, shown)
        except BaseException:
            if old is not None:
                old.unlink(missing_ok=True)
            raise
    if old is not None:
        threading.Thread(target=old.unlink, kwargs={"missing_ok": True}, daemon=True).start()


def validate_blosc2_file(path: Path, name: str) -> None:
    """400 unless `path` holds a Blosc2 frame of the kind its name promises."""
    try:
        obj = blosc2.open(str(path), mode="r")
    except Exception:
        raise BadRequest(f"Uploaded file {name!r} is not a valid Blosc2 file") from None
    if name.endswith(".b2nd") and not isinstance(obj, blosc2.NDArray):
        raise BadRequest(f"Uploaded file {name!r} is not a Blosc2 NDArray")


def validate_hdf5_file(path: Path, name: str) -> None:
    """400 unless `path` starts with the HDF5 signature."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89HDF\r\n\x1a\n":
            raise BadRequest(f"Uploaded file {name!r} is not a valid HDF5 file")


def size_of(path: Path) -> int:
    """Bytes of a file or a whole tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class FileOps:
    """The write operations of the REST API on local roots."""

    def __init__(self, roots: LocalRoots, quota: int | None) -> None:
        self.roots = roots
        self.quota = quota
        self.usage = UsageLedger(lambda: roots.disk_usage(with_tmp=False))
        # Set by chunked ingestion: stages an upload that lays out an empty array
        # (its logical path), or answers None for any other upload.
        self.claim_upload: Callable[[Location, Path], str | None] | None = None

    def room(self, replacing: Path | None) -> int | None:
        """Bytes that may still be written, counting a file about to be replaced as free."""
        if not self.quota:
            return None
        used = self.usage.used()
        if replacing is not None and replacing.exists():
            used -= size_of(replacing)
        return self.quota - used

    def writing(self) -> threading.Lock:
        """The lock every write to the local roots holds from its quota check to its rename."""
        return _write_lock

    def install(self, tmp: Path, target: Path, what: str) -> None:
        """Move a finished file into place atomically, if the quota allows it; `tmp` goes."""
        try:
            with _write_lock:
                self.put_charged(tmp, target, target.name, what)
        finally:
            tmp.unlink(missing_ok=True)

    def put_charged(self, tmp: Path, target: Path, shown: str, what: str = "Upload") -> None:
        """`put_in_place` within the quota, the ledger charged (call with `_write_lock`)."""
        replaced = size_of(target) if target.exists() else 0
        size = tmp.stat().st_size
        put_in_place(tmp, target, shown, self.room(target), what)
        self.usage.changed(size - replaced)

    def upload(self, logical: str, filename: str, stream: BinaryIO, user: User | None) -> str:
        """Store an uploaded file; returns its logical path."""
        loc = self.roots.locate(logical, user, "Uploading")
        if not filename and (loc.is_dir() or not loc.relpath):
            raise BadRequest("The upload has no file name")
        if loc.is_dir() or not loc.relpath:
            loc = self.roots.locate(join_logical(loc.logical, Path(filename).name), user)
        relpath = loc.relpath
        target = loc.rootdir / stored_name(relpath)
        tmp = self.roots.new_tmp_path(target.name)
        try:
            # No lock while the body arrives: other writers go on.  The room now is
            # an early limit (a body too big stops as it arrives); it is checked
            # again, under the lock, when the file is put in place.
            receive_stream(stream, tmp, self.room(target))
            if relpath.endswith(STORED_AS_IS_SUFFIXES):
                if is_hdf5(relpath):
                    validate_hdf5_file(tmp, relpath)
                else:
                    validate_blosc2_file(tmp, relpath)
                    if self.claim_upload is not None and (staged := self.claim_upload(loc, tmp)):
                        return staged
            else:
                raw, tmp = tmp, self.roots.new_tmp_path(target.name)
                try:
                    b2files.compress_file(raw, tmp)
                finally:
                    raw.unlink(missing_ok=True)
            commit_upload(self, tmp, target, loc.logical)
        finally:
            tmp.unlink(missing_ok=True)
        return join_logical(loc.root, logical_name(relpath))

    def remove(self, logical: str, user: User | None) -> str:
        """Delete a file, or a directory with everything below it."""
        loc = self.roots.locate(logical, user, "Removing files")
        with _write_lock:
            if not loc.relpath:
                for child in loc.path.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif loc.path.is_dir():
                shutil.rmtree(loc.path)
            elif loc.path.is_file():
                loc.path.unlink()
            else:
                raise NotFound("The specified path does not exist")
            self.usage.forget()
        return logical

    def _destination(self, src: Location, dst_logical: str, user: User | None, action: str):
        """Where a copy or move lands: into `dst` when it is a directory or has no suffix."""
        dst = self.roots.locate(dst_logical, user, action)
        if dst.is_dir() or not dst.relpath or not suffix(dst.relpath):
            basename = src.relpath.rsplit("/", 1)[-1]
            dst = self.roots.locate(join_logical(dst.logical, basename), user)
        return dst, (dst.rootdir / dst.relpath if src.is_dir() else dst.path)

    def _check_roots(self, src: str, dst: str, verb: str) -> None:
        for path, prep in ((src, "from"), (dst, "to")):
            root = str(path).split("/", 1)[0]
            if root not in ("@personal", "@shared", "@public"):
                raise BadRequest(
                    f"Only {verb} {prep} @personal or @shared or @public roots is allowed"
                )

    def _transfer(self, src_logical: str, dst_logical: str, user: User | None, move: bool) -> str:
        verb = "moving" if move else "copying"
        self._check_roots(src_logical, dst_logical, verb)
        action = "Moving files" if move else "Copying files"
        src = self.roots.locate(src_logical, user, action)
        if not src.relpath:
            raise BadRequest(f"Cannot {verb[:-3]}e a whole root")
        if not src.exists():
            raise NotFound(f"The source {src_logical} does not exist")
        dst, stored = self._destination(src, dst_logical, user, action)
        if stored == src.path:
            return dst.logical
        if src.is_dir() and (stored == src.path or src.path in stored.parents):
            raise BadRequest(f"Cannot {verb[:-3]}e a directory into itself")
        with _write_lock:
            if not move:
                room = self.room(stored)
                if room is not None and size_of(src.path) > room:
                    raise quota_exceeded("Copy")
            stored.parent.mkdir(parents=True, exist_ok=True)
            if move:
                if stored.is_dir():
                    shutil.rmtree(stored)
                os.replace(src.path, stored)
            elif src.is_dir():
                tmp = self.roots.new_tmp_path(stored.name)
                shutil.copytree(src.path, tmp)
                if stored.is_dir():
                    shutil.rmtree(stored)
                os.replace(tmp, stored)
            else:
                tmp = self.roots.new_tmp_path(stored.name)
                shutil.copyfile(src.path, tmp)
                os.replace(tmp, stored)
            self.usage.forget()  # whole trees copied, or replaced by a move
        return dst.logical

    def move(self, src: str, dst: str, user: User | None) -> str:
        return self._transfer(src, dst, user, move=True)

    def copy(self, src: str, dst: str, user: User | None) -> str:
        return self._transfer(src, dst, user, move=False)
