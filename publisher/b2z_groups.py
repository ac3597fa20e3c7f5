"""Group `.b2z` files (Blosc2 TreeStore / DictStore) of a directory root, served as their leaves.

A container `dir/x.b2z` is not announced as one file: each of its leaf arrays is
a dataset of its own, `dir/x.b2z/<inner path>` (`dir/x.b2z/a/v`), versioned by
the container file's version (so all are announced again when it changes, and
removed when it goes).  A leaf's info and chunks are the leaf's own, read in
place from the zip (big leaves) or from its `embed.b2e` (small ones), never
recompressed.  A `.b2z` holding a CTable of plain columns is served the same way,
as its member arrays plus a description (`b2z_tables`); any other table, or a
file that is no readable zip, stays a plain file.  Subscribers tell a container
by its name: a path component named `*.b2z` with datasets below it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2

from ..common.b2z_files import B2Z_SUFFIX, b2z_kind
from ..common.errors import BadRequest, NotFound, ServiceUnavailable
from ..common.paths import check_remote_path
from ..common.stored_chunks import Identity, file_identity
from . import b2z_tables

KEPT_STORES = 32
"""Group containers kept open between requests (opening one reads its zip index)."""


def is_b2z_name(name: str) -> bool:
    """Whether a file name is the one of a `.b2z` (a container or a table)."""
    return name.lower().endswith(B2Z_SUFFIX)


def split_leaf_path(relpath: str) -> tuple[str, str] | None:
    """(`dir/x.b2z`, `a/v`) for a path going into a `.b2z`, None for any other path."""
    parts = relpath.split("/")
    for i, part in enumerate(parts[:-1]):
        if is_b2z_name(part):
            return "/".join(parts[: i + 1]), "/".join(parts[i + 1 :])
    return None


def _leaf_keys(store: Any) -> list[str]:
    """Inner paths of the leaves of an open store (a key another goes below is a group)."""
    keys = [k.strip("/") for k in store.keys()]
    groups = {"/".join(k.split("/")[:i]) for k in keys for i in range(1, k.count("/") + 1)}
    leaves = []
    for key in sorted(k for k in keys if k and k not in groups):
        try:
            check_remote_path(key)  # a key subscribers would refuse is never announced
        except BadRequest:
            continue
        # Hidden names are never announced (as in folders); `v.b2` would share the file
        # a subscriber caches a leaf `v` in.
        if any(part.startswith((".", "#")) for part in key.split("/")) or key.endswith(".b2"):
            continue
        leaves.append(key)
    return leaves


@dataclass
class OpenStore:
    """One version of a group container, open, with the leaf arrays read so far."""

    identity: Identity
    store: Any
    leaves: list[str]
    arrays: dict[str, Any] = field(default_factory=dict)
    table: dict | None = None  # the description of a CTable (`b2z_tables.describe`)


class B2zGroups:
    """The group containers of a root, opened once per version of their file."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, OpenStore] = OrderedDict()
        self._lock = threading.Lock()
        # One reader at a time per container file: an open blosc2 store and its arrays
        # are not safe to share between threads (as `DirectoryRoot._locked` for files).
        self._readers: dict[str, threading.Lock] = {}

    def is_group(self, path: Path) -> bool:
        """Whether a `.b2z` is served as its members: a TreeStore/DictStore, or a CTable of
        plain columns (not another table, not a broken zip)."""
        try:
            kind = b2z_kind(path)
            if kind == "group":
                return True
            opened = self.opened(path, path.stat())
        except (BadRequest, OSError):
            return False
        return opened is not None and opened.table is not None

    def opened(self, path: Path, st: os.stat_result) -> OpenStore | None:
        """The open store of the file as `st` describes it; None when blosc2 cannot open it."""
        key = str(path)
        ident = file_identity(st)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept.identity == ident:
                self._kept.move_to_end(key)
                return kept
        try:
            is_table = b2z_kind(path) == "ctable"
            # A table's members are read as those of any store; blosc2.open gives a CTable.
            store = blosc2.DictStore(key, mode="r") if is_table else blosc2.open(key, mode="r")
        except FileNotFoundError:
            raise
        except Exception:  # blosc2 raises several kinds for a damaged store
            return None
        if not isinstance(store, blosc2.DictStore):
            return None
        try:
            if is_table:
                table = b2z_tables.describe(path, store)
                members = [] if table is None else [table["valid_rows"], *table["members"].values()]
                found = OpenStore(ident, store, sorted(members), table=table)
            else:
                found = OpenStore(ident, store, _leaf_keys(store))
        except Exception:
            return None
        with self._lock:
            self._kept[key] = found
            self._kept.move_to_end(key)
            while len(self._kept) > KEPT_STORES:
                self._kept.popitem(last=False)
        return found

    def leaves(self, path: Path) -> list[str]:
        """Inner paths of the leaves of a group container ([] when it is none, or unreadable)."""
        try:
            if not self.is_group(path):
                return []
            opened = self.opened(path, path.stat())
        except OSError:
            return []
        return list(opened.leaves) if opened is not None else []

    def table(self, path: Path, st: os.stat_result) -> dict | None:
        """The description of a table file as `st` describes it; None for a group container."""
        opened = self.opened(path, st)
        return opened.table if opened is not None else None

    def leaf(self, path: Path, st: os.stat_result, inner: str) -> Any:
        """The leaf array at `inner` of the file's version `st`; 404 when it has none."""
        opened = self.opened(path, st) if self.is_group(path) else None
        if opened is None or inner not in opened.leaves:
            raise NotFound(f"Not Found: {inner} in {path.name}")
        with self._lock:
            obj = opened.arrays.get(inner)
        if obj is None:
            obj = opened.store["/" + inner]
            if not isinstance(obj, blosc2.NDArray | blosc2.SChunk):
                raise NotFound(f"Not Found: {inner} in {path.name} is no array")
            with self._lock:
                opened.arrays[inner] = obj
        return obj

    def forget(self, path: Path) -> None:
        """Let go of a container file that changed or is gone."""
        with self._lock:
            self._kept.pop(str(path), None)

    def read_leaf(self, path: Path, inner: str, use: Any) -> tuple[os.stat_result, Any]:
        """`use(leaf)` on one version of the container file, with that version's stat.

        A file replaced or written while read is read again (its new version), so
        an answer never mixes two versions; 503 when it keeps changing.
        """
        with self._lock:
            reader = self._readers.setdefault(str(path), threading.Lock())
        for _ in range(5):
            try:
                with reader:
                    before = path.stat()
                    result = use(self.leaf(path, before, inner))
                after = path.stat()
            except FileNotFoundError:
                raise NotFound(f"Not Found: {path.name}") from None
            if file_identity(before) == file_identity(after):
                return before, result
            self.forget(path)
        raise ServiceUnavailable(f"{path.name} keeps changing; try again later")


def leaf_chunk(obj: Any, nchunk: int, relpath: str) -> bytes:
    """Chunk `nchunk` of a leaf, as stored in the container."""
    schunk = obj.schunk if isinstance(obj, blosc2.NDArray) else obj
    if nchunk >= schunk.nchunks:
        raise NotFound(f"Chunk {nchunk} out of range: {relpath} has {schunk.nchunks} chunks")
    return schunk.get_chunk(nchunk)


def leaf_frame(obj: Any) -> tuple[Any, int]:
    """A leaf as a frame of its own in an unnamed temporary file: (file, size)."""
    frame = obj.to_cframe()
    f = tempfile.TemporaryFile()
    f.write(frame)
    f.seek(0)
    return f, len(frame)
