"""Chunked ingestion: arrays laid out empty, filled a chunk at a time, then published.

An array laid out (an upload of a `blosc2.uninit` frame, every chunk a slot
nothing was written to) does not go into its root: it is staged under the
state directory (`staging/<root dir>/<path>`, so it survives a restart and is
outside every directory a publisher may watch).  Readers never see it: it is in
no listing, and only those who may write its root see it at all, through
`/api/info` (its geometry plus `state`) and byte ranges of its frame (what
blosc2's `C2Array.written_chunks` reads).  `publish` moves the finished frame
into the root with one `os.replace`, so the root only ever holds a complete
array, and a publisher watching it announces one complete file.

Which slots are written is read from the frame itself (each chunk's special
value), once per array and process, then kept in step by the writes; one lock
per array makes a slot's check-and-write atomic.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

from ..common.errors import BadRequest, Conflict, NotFound
from ..common.falcon_app import byte_range
from ..common.paths import SPECIAL_ROOTS, join_logical, split_logical_path
from .file_ops import FileOps, quota_exceeded
from .local_roots import Location
from .store import User

STAGING_DIR = "staging"
ARRAY_SUFFIX = ".b2nd"
# A chunk's flags byte in its Blosc2 header; its bits 4-6 code a special value.
FLAGS_BYTE = 31
UNINIT = blosc2.SpecialValue.UNINIT.value
TYPESIZE_BYTE = 3  # the typesize a chunk's filters ran on (1 past 255)
FILLING, COMPLETE, PUBLISHED = "filling", "complete", "published"
WRITE_ACTION = "Writing chunks"


def slot_is_unwritten(schunk: blosc2.SChunk, nchunk: int) -> bool:
    """Whether nothing was ever written to chunk `nchunk` (its header alone says so)."""
    return (schunk.get_lazychunk(nchunk)[FLAGS_BYTE] >> 4) & 0x7 == UNINIT


def written_slots(schunk: blosc2.SChunk) -> np.ndarray:
    """One boolean per chunk: True once something (zeros included) was written to it."""
    return np.array([not slot_is_unwritten(schunk, i) for i in range(schunk.nchunks)], dtype=bool)


def is_laid_out_empty(path: Path) -> bool:
    """Whether `path` is an NDArray frame with chunks and none of them written."""
    try:
        array = blosc2.open(str(path), mode="r")
    except Exception:
        return False
    if not isinstance(array, blosc2.NDArray) or array.schunk.nchunks == 0:
        return False
    # An ordinary upload has its first chunk written: one header read says so.
    schunk = array.schunk
    return all(slot_is_unwritten(schunk, i) for i in range(schunk.nchunks))


def check_chunk(schunk: blosc2.SChunk, chunk: bytes) -> None:
    """400 unless `chunk` is a whole Blosc2 chunk of `schunk`'s geometry.

    A chunk of another size, blocksize or typesize would be stored and then read
    as nonsense (a wrong typesize decompresses to scrambled values, no error), so
    it is refused before anything is written.
    """
    try:
        nbytes, cbytes, blocksize = blosc2.get_cbuffer_sizes(chunk)
    except Exception:
        raise BadRequest("The body is not a Blosc2 chunk") from None
    if cbytes != len(chunk):
        raise BadRequest(
            f"The body is not a whole Blosc2 chunk: its header says {cbytes} bytes, "
            f"{len(chunk)} came"
        )
    if nbytes != schunk.chunksize:
        raise BadRequest(
            f"The chunk holds {nbytes} bytes where this array's chunks hold {schunk.chunksize}"
        )
    if blocksize != schunk.blocksize:
        raise BadRequest(
            f"The chunk's blocks are {blocksize} bytes where this array's are "
            f"{schunk.blocksize}; compress it against the array's blocks"
        )
    typesize = schunk.typesize if schunk.typesize <= 255 else 1
    if chunk[TYPESIZE_BYTE] != typesize:
        raise BadRequest(
            f"The chunk was compressed with a typesize of {chunk[TYPESIZE_BYTE]} where this "
            f"array's is {schunk.typesize}; compress it against the array's dtype"
        )
    try:  # the header can be right and the payload not: decompressing tells
        blosc2.decompress2(chunk)
    except Exception:
        raise BadRequest("The chunk does not decompress: it is damaged") from None


@dataclass
class Fill:
    """What is known of one staged array: its lock and which slots are written."""

    lock: threading.Lock
    written: np.ndarray | None = None  # read from the frame at first use

    @property
    def state(self) -> str:
        """`complete` once every slot is written, else `filling`."""
        return COMPLETE if self.written is not None and self.written.all() else FILLING


class Ingestion:
    """Staging, slot writes and publishing of arrays laid out in the local roots."""

    def __init__(self, ops: FileOps) -> None:
        self.ops = ops
        self.roots = ops.roots
        self.stagedir = self.roots.statedir / STAGING_DIR
        self.stagedir.mkdir(parents=True, exist_ok=True)
        self._fills: dict[Path, Fill] = {}
        self._guard = threading.Lock()

    # --- where things are -------------------------------------------------

    def staged_path(self, loc: Location) -> Path:
        """Where the array laid out at `loc` is staged until published."""
        return self.stagedir / loc.rootdir.relative_to(self.roots.statedir) / loc.relpath

    def _array_location(self, logical: str, user: User | None, action: str) -> Location:
        """The location of an array path `user` may write (401/404 otherwise)."""
        loc = self.roots.locate(logical, user, action)
        if not loc.relpath.endswith(ARRAY_SUFFIX):
            raise BadRequest(f"{logical} is not a .b2nd array: only arrays are filled by chunks")
        return loc

    def staged_for_writer(self, logical: str, user: User | None) -> Location | None:
        """The staged array at `logical` as a location, if `user` may write it; else None.

        Cheap for everything else (a read of a remote root, an anonymous reader):
        asked before every info and fetch.
        """
        if user is None or not logical.endswith(ARRAY_SUFFIX):
            return None
        try:
            root, relpath = split_logical_path(logical)
            if root not in SPECIAL_ROOTS or not relpath:
                return None
            loc = self.roots.locate(logical, user, WRITE_ACTION)
        except Exception:
            return None  # the ordinary route gives the error
        staged = self.staged_path(loc)
        if not staged.is_file():
            return None
        staged_root = self.stagedir / loc.rootdir.relative_to(self.roots.statedir)
        try:
            found = staged.stat()
        except FileNotFoundError:
            return None  # published just now: the ordinary route answers
        return Location(loc.root, loc.relpath, staged_root, staged, found)

    def _fill(self, staged: Path) -> Fill:
        with self._guard:
            fill = self._fills.get(staged)
            if fill is None:
                fill = self._fills[staged] = Fill(threading.Lock())
            return fill

    def _known_slots(self, fill: Fill, staged: Path) -> np.ndarray:
        """The written slots of a staged array (call with `fill.lock` held).

        404 when it went while the lock was awaited (published or removed).
        """
        if not staged.is_file():
            raise NotFound(f"{staged.name} is no longer laid out: published or removed")
        if fill.written is None:
            fill.written = written_slots(blosc2.open(str(staged), mode="r").schunk)
        return fill.written

    def writable_staged(
        self, logical: str, user: User | None, action: str = WRITE_ACTION
    ) -> tuple[Location, Path]:
        """The location and staged frame of an array being filled (404/409 otherwise)."""
        loc = self._array_location(logical, user, action)
        staged = self.staged_path(loc)
        if not staged.is_file():
            if loc.path.is_file():
                raise Conflict(f"{logical} is already published: its chunks are all written")
            raise NotFound(f"{logical} is not laid out: lay it out before filling it")
        return loc, staged

    # --- the operations ---------------------------------------------------

    def claim_upload(self, loc: Location, tmp: Path) -> str | None:
        """Stage an upload that is a lay-out (an array with no chunk written); None if not one."""
        if not loc.relpath.endswith(ARRAY_SUFFIX) or not is_laid_out_empty(tmp):
            return None
        return self.lay_out(loc, tmp)

    def lay_out(self, loc: Location, tmp: Path) -> str:
        """Stage the empty array uploaded to `tmp` for `loc`; returns its logical path.

        Over a published array: refused (409), nothing already stored is
        replaced by an empty array; remove it first.  Over an array still being
        filled: it starts again, empty.
        """
        if loc.path.exists():
            raise Conflict(
                f"{loc.logical} already exists; remove it before laying out a new array there"
            )
        staged = self.staged_path(loc)
        fill = self._fill(staged)
        with fill.lock:
            staged.parent.mkdir(parents=True, exist_ok=True)
            with self.ops.writing():
                self.ops.put_charged(tmp, staged, loc.logical, "Lay-out")
            fill.written = None
        return loc.logical

    def fill_chunk(self, logical: str, nchunk: int, chunk: bytes, user: User | None) -> dict:
        """Write `chunk` into the unwritten slot `nchunk` (409 when it is written already)."""
        _loc, staged = self.writable_staged(logical, user, WRITE_ACTION)
        if not chunk:
            raise BadRequest("No chunk was sent")
        fill = self._fill(staged)
        with fill.lock:
            if not staged.is_file():  # published or laid out again while waiting
                raise Conflict(f"{logical} was published while this chunk waited")
            schunk = blosc2.open(str(staged), mode="a").schunk
            if not 0 <= nchunk < schunk.nchunks:
                raise NotFound(f"{logical} has no chunk {nchunk} (it has {schunk.nchunks})")
            check_chunk(schunk, chunk)
            written = self._known_slots(fill, staged)
            if written[nchunk] or not slot_is_unwritten(schunk, nchunk):
                written[nchunk] = True
                raise Conflict(f"Chunk {nchunk} of {logical} was already written")
            with self.ops.writing():  # the quota: checked and charged with no other write between
                room = self.ops.room(None)
                if room is not None and len(chunk) > room:
                    raise quota_exceeded("Chunk write")
                before = staged.stat().st_size
                schunk.update_chunk(nchunk, chunk)
                del schunk  # the frame's trailer is written; no handle outlives the lock
                self.ops.usage.changed(staged.stat().st_size - before)
            written[nchunk] = True
            return {
                "nchunk": nchunk,
                "written": int(written.sum()),
                "nchunks": int(written.size),
                "state": fill.state,
            }

    def progress(self, logical: str, user: User | None) -> dict:
        """`nchunks`, `written`, `state` and `chunks` ("0"/"1" per chunk) of a laid-out array.

        A published one has every chunk written (`state`: published).
        """
        loc = self._array_location(logical, user, WRITE_ACTION)
        if not self.staged_path(loc).is_file() and loc.path.is_file():
            try:
                nchunks = blosc2.open(str(loc.path), mode="r").schunk.nchunks
            except Exception:
                raise BadRequest(f"{logical} is not a Blosc2 array") from None
            return {
                "nchunks": nchunks,
                "written": nchunks,
                "state": PUBLISHED,
                "chunks": "1" * nchunks,
            }
        _loc, staged = self.writable_staged(logical, user, WRITE_ACTION)
        fill = self._fill(staged)
        with fill.lock:
            written = self._known_slots(fill, staged)
            return {
                "nchunks": int(written.size),
                "written": int(written.sum()),
                "state": fill.state,
                "chunks": "".join("1" if done else "0" for done in written),
            }

    def state(self, staged: Path) -> dict:
        """What `/api/info` adds for a staged array: its `state` and counts."""
        fill = self._fill(staged)
        with fill.lock:
            written = self._known_slots(fill, staged)
            done, nchunks = int(written.sum()), int(written.size)
            return {"state": fill.state, "written": done, "nchunks": nchunks}

    def frame_range(self, staged: Path, header: str) -> tuple[bytes, int, int, int] | None:
        """The bytes one `Range` header asks of a staged frame: (data, start, end, size).

        Read under the array's lock, so a writer's progress read (the frame's
        header, then its offsets) never sees a chunk write half done.  None for
        a header naming several ranges (the caller sends the whole frame).
        """
        fill = self._fill(staged)
        with fill.lock:
            if not staged.is_file():
                raise NotFound(f"{staged.name} was published or removed meanwhile")
            size = staged.stat().st_size
            span = byte_range(header, size) if size else None
            if span is None:
                return None
            start, end = span
            with open(staged, "rb") as f:
                f.seek(start)
                return f.read(end - start + 1), start, end, size

    def publish(self, logical: str, user: User | None) -> dict:
        """Move a complete staged array into its root, atomically (one `os.replace`)."""
        loc, staged = self.writable_staged(logical, user, "Publishing")
        fill = self._fill(staged)
        with fill.lock:
            if not staged.is_file():
                raise Conflict(f"{logical} was published meanwhile")
            written = self._known_slots(fill, staged)
            if not written.all():
                missing = int(written.size - written.sum())
                raise BadRequest(
                    f"{logical} has {missing} of its {written.size} chunks still unwritten; "
                    "it can be published once every chunk is written"
                )
            with self.ops.writing():
                if loc.path.exists():
                    raise Conflict(f"{logical} was stored meanwhile; remove it to publish this")
                loc.path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, loc.path)  # same file system: atomic, usage unchanged
            with self._guard:
                self._fills.pop(staged, None)
        self._drop_empty_dirs(staged.parent)
        return {"published": join_logical(loc.root, loc.relpath)}

    def discard(self, logical: str, user: User | None) -> bool:
        """Drop the staged array at `logical` (a fill given up); whether there was one."""
        loc = self.staged_for_writer(logical, user)
        if loc is None:
            return False
        fill = self._fill(loc.path)
        with fill.lock:
            with self.ops.writing():
                loc.path.unlink(missing_ok=True)
                self.ops.usage.forget()
            with self._guard:
                self._fills.pop(loc.path, None)
        self._drop_empty_dirs(loc.path.parent)
        return True

    def _drop_empty_dirs(self, folder: Path) -> None:
        """Remove the staging folders a publish left empty (not the staging dir itself)."""
        while folder != self.stagedir and self.stagedir in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (another array), or gone
            folder = folder.parent
