"""Root adapters: what a published root contains, and its datasets' metadata and chunks.

An adapter turns some storage (a directory, `DirectoryRoot`; an HDF5 file, `hdf5_root`) into
datasets addressed by a relative path.  Everything else in the publisher (the
announcer, the HTTP API) talks to the `RootAdapter` interface only.
"""

from __future__ import annotations

import abc
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import blosc2

from ..common import b2files, b2meta
from ..common.b2z_files import TABLE_DESCRIPTION, TABLE_VALID_ROWS
from ..common.errors import BadRequest, Caterva2Error, NotFound, ServiceUnavailable
from ..common.paths import CONTAINER_SUFFIXES, check_relpath, check_remote_path
from ..common.stored_chunks import Identity, file_identity, file_version, read_chunk
from . import b2z_groups
from .b2z_groups import is_b2z_name

"""Blosc2 containers served as they are stored."""
STORED_SUFFIX = ".b2"
"""A regular file already compressed (as the subscriber stores them): served as `<name>`."""
KEPT_CONTAINERS = 64
"""Native containers kept open between requests (see `DirectoryRoot._open_container`)."""

# Names that editors, downloaders and atomic writers use for work in progress;
# they never become datasets, so a half-written file is never announced.
TEMP_PREFIXES = (".", "#")
TEMP_SUFFIXES = ("~", ".tmp", ".temp", ".part", ".partial", ".swp", ".swx", ".crdownload")


class UnreadableDataset(Caterva2Error):
    """The file exists but Blosc2 cannot read it (corrupt, truncated or not Blosc2)."""

    status = 500


@dataclass(frozen=True)
class DatasetStat:
    """What identifies one version of a dataset."""

    etag: str
    mtime: float
    size: int
    changed: float = 0.0  # when the version came to be (inode change time), if known


@dataclass
class StoredFile:
    """An open stored file, ready to be streamed (the handle keeps it even if replaced)."""

    file: BinaryIO
    size: int
    filename: str
    stat: DatasetStat


def is_temp_name(name: str) -> bool:
    """Whether a file or directory name looks like work in progress or hidden."""
    return name.startswith(TEMP_PREFIXES) or name.endswith(TEMP_SUFFIXES)


def _still(path: Path, etag: str) -> bool:
    """Whether a file still has the version `etag`."""
    try:
        return file_version(path.stat()) == etag
    except FileNotFoundError:
        return False


def _copy_version(copy: Path) -> Path:
    """Where the version of the source of a compressed copy is recorded."""
    return copy.with_name(f".{copy.name}.source")


def _dataset_stat(st: os.stat_result) -> DatasetStat:
    return DatasetStat(file_version(st), st.st_mtime, st.st_size, st.st_ctime)


def _unreadable_meta(mtime: float | None, why: str) -> dict[str, Any]:
    # The original answers unreadable files with this shape (compat 3.3 e).
    return {"mtime": b2meta.iso_mtime(mtime), "error": why}


class RootAdapter(abc.ABC):
    """The datasets of one root, by relative path (`dir/name.b2nd`)."""

    @property
    @abc.abstractmethod
    def watch_dir(self) -> Path:
        """The directory whose changes may change the datasets."""

    @abc.abstractmethod
    def is_ignored(self, fs_relpath: str) -> bool:
        """Whether changes to this path (relative to `watch_dir`) never matter."""

    @abc.abstractmethod
    def datasets(self) -> list[str]:
        """Every dataset path, sorted."""

    def scan(self) -> tuple[list[str], dict[str, DatasetStat]]:
        """Every dataset path, and the versions of those it found without `stat` (rescans)."""
        return self.datasets(), {}

    @abc.abstractmethod
    def affected(self, fs_relpath: str, known: Iterable[str]) -> set[str]:
        """Dataset paths a settled change of `fs_relpath` (see `Watcher`) may concern.

        `known` are the datasets announced so far; new files below a new
        directory are reported by the watcher one by one, so need not be listed.
        """

    @abc.abstractmethod
    def stat(self, relpath: str) -> DatasetStat | None:
        """The current version of a dataset, or None when there is no such dataset."""

    @abc.abstractmethod
    def info(self, relpath: str) -> tuple[DatasetStat, dict[str, Any]]:
        """The metadata JSON (compat 3.3) of a dataset with the version it describes."""

    @abc.abstractmethod
    def chunk(self, relpath: str, nchunk: int) -> tuple[DatasetStat, bytes]:
        """The compressed chunk `nchunk` exactly as stored, with the version it comes from."""

    @abc.abstractmethod
    def open_file(self, relpath: str) -> StoredFile:
        """The whole stored container, opened for streaming."""

    def forget(self, relpath: str) -> None:  # noqa: B027 - optional hook
        """Drop whatever was derived from a dataset that is gone (caches)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class DirectoryRoot(RootAdapter):
    """Every file below a directory is a dataset named by its relative path.

    `.b2nd` and `.b2frame` files are served natively.  A `<name>.b2` file (a
    regular file compressed, as subscribers store them) is served natively as
    `<name>`.  Any other file is served through a compressed copy in the cache,
    `<cachedir>/<relpath>.b2`, rebuilt whenever the source changes.  A TreeStore or
    DictStore `.b2z` is served as its leaf arrays, `x.b2z/<inner path>` (`b2z_groups`).
    """

    def __init__(
        self,
        rootdir: str | os.PathLike,
        cachedir: str | os.PathLike,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> None:
        """Serve `rootdir`, caching compressed copies in `cachedir`; skip `exclude` dirs."""
        self.rootdir = Path(rootdir).resolve()
        if not self.rootdir.is_dir():
            raise NotADirectoryError(f"root directory not found: {rootdir}")
        self.cachedir = Path(cachedir).resolve()
        # The state directory may live inside the root (the default is relative to the cwd).
        self._excluded = {Path(p).resolve() for p in (*exclude, self.cachedir)}
        # The same as strings: checked for every file of every scan, where pathlib costs.
        self._root_s = str(self.rootdir)
        self._excluded_s = [str(p) for p in self._excluded]
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Open native containers by path, with the identity of the file they read:
        # opening costs more than serving a chunk. Used under the dataset's lock.
        self._opened: OrderedDict[str, tuple[Identity, Any]] = OrderedDict()
        self._groups = b2z_groups.B2zGroups()
        if self.cachedir.is_dir():
            # Copies half-built when a previous run was killed.
            for tmp in self.cachedir.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- names --------------------------------------------------------------

    @property
    def watch_dir(self) -> Path:
        """The root directory itself."""
        return self.rootdir

    def is_ignored(self, fs_relpath: str) -> bool:
        """Temp and hidden names anywhere in the path, excluded directories, invalid names."""
        if not fs_relpath:
            return False
        if any(is_temp_name(part) for part in fs_relpath.split("/")):
            return True
        try:
            # A name subscribers would refuse (a newline, a backslash...) is never announced.
            check_remote_path(fs_relpath)
        except BadRequest:
            return True
        full = os.path.normpath(os.path.join(self._root_s, fs_relpath))
        return any(full == ex or full.startswith(ex + os.sep) for ex in self._excluded_s)

    @staticmethod
    def logical_name(fs_relpath: str) -> str:
        """The dataset path of a file (`a/x.txt.b2` → `a/x.txt`)."""
        if fs_relpath.endswith(STORED_SUFFIX) and len(fs_relpath.rsplit("/", 1)[-1]) > 3:
            return fs_relpath[: -len(STORED_SUFFIX)]
        return fs_relpath

    def _inside(self, path: Path) -> bool:
        """Whether a file really lies inside the root once every symlink is followed."""
        real = os.path.realpath(path)
        return real == self._root_s or real.startswith(self._root_s + os.sep)

    def _source(self, relpath: str) -> tuple[Path, bool] | None:
        """The file behind a dataset path and whether it is served natively.

        A symlink (to a file, or in a folder of the path) that leads out of the
        root is no dataset: the publisher never serves a byte from outside it.
        """
        if not relpath or self.is_ignored(relpath):
            return None
        if b2z_groups.is_b2z_name(relpath) or b2z_groups.split_leaf_path(relpath):
            if self._group_file(relpath) or self._leaf_source(relpath):
                return None  # a group container is its leaves; a leaf is no file
        if relpath.endswith(CONTAINER_SUFFIXES):
            path = self.rootdir / relpath
            return (path, True) if path.is_file() and self._inside(path) else None
        # An already compressed `<name>.b2` wins over a raw `<name>` next to it.
        stored = self.rootdir / (relpath + STORED_SUFFIX)
        if stored.is_file() and self._inside(stored):
            return stored, True
        if relpath.endswith(STORED_SUFFIX):
            return None  # `x.b2` on disk is the dataset `x`, never `x.b2`
        path = self.rootdir / relpath
        return (path, False) if path.is_file() and self._inside(path) else None

    def _group_file(self, relpath: str) -> Path | None:
        """The file of a group container (TreeStore/DictStore `.b2z`) inside the root, or None."""
        if self.is_ignored(relpath):
            return None
        path = self.rootdir / relpath
        if path.is_file() and self._inside(path) and self._groups.is_group(path):
            return path
        return None

    def _leaf_source(self, relpath: str) -> tuple[Path, str] | None:
        """(container file, inner path) of a leaf of a group container, or None."""
        split = b2z_groups.split_leaf_path(relpath)
        if split is None:
            return None
        path = self._group_file(split[0])
        if path is None or split[1] not in self._groups.leaves(path):
            return None
        return path, split[1]

    def _leaves_of(self, relpath: str) -> list[str]:
        """The dataset paths of the leaves of a group container file ([] for any other)."""
        path = self._group_file(relpath)
        return [f"{relpath}/{leaf}" for leaf in self._groups.leaves(path)] if path else []

    def _checked(self, relpath: str) -> str:
        relpath = check_relpath(relpath)
        if not relpath:
            raise BadRequest("Invalid path: a dataset path is required")
        return relpath

    def _walk(self, top: Path) -> Iterator[str]:
        """Relative paths of the non-ignored files below `top`."""
        for dirpath, dirnames, filenames in os.walk(top):
            base = Path(dirpath).relative_to(self.rootdir).as_posix()
            prefix = "" if base == "." else base + "/"
            dirnames[:] = sorted(d for d in dirnames if not self.is_ignored(prefix + d))
            for name in filenames:
                if not self.is_ignored(prefix + name) and os.path.isfile(
                    os.path.join(dirpath, name)
                ):
                    yield prefix + name

    def datasets(self) -> list[str]:
        """Every dataset path, sorted."""
        found = {self.logical_name(p) for p in self._walk(self.rootdir)}
        leaves = [leaf for p in found if b2z_groups.is_b2z_name(p) for leaf in self._leaves_of(p)]
        return sorted([p for p in found if self._source(p) is not None] + leaves)

    def scan(self) -> tuple[list[str], dict[str, DatasetStat]]:
        """Every dataset path, and the version of each plain Blosc2 container among them.

        One pass of `os.scandir`: a container that is a regular file (no symlink) in
        folders the walk entered (it follows no symlink) lies inside the root, and its
        directory entry gives its version; only the other files need `_source`. A
        rescan of 100,000 datasets took 20 s through `datasets()` and `stat()`.
        """
        found: set[str] = set()
        versions: dict[str, DatasetStat] = {}
        folders = [""]
        while folders:
            prefix = folders.pop()
            try:
                entries = list(os.scandir(os.path.join(self._root_s, prefix)))
            except OSError:
                continue  # gone meanwhile, or unreadable: as os.walk does
            for entry in entries:
                fs_relpath = prefix + entry.name
                if self.is_ignored(fs_relpath):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(fs_relpath + "/")
                        continue
                    if not entry.is_file():
                        continue
                    if entry.name.endswith(CONTAINER_SUFFIXES) and not entry.is_symlink():
                        versions[fs_relpath] = _dataset_stat(entry.stat())
                        found.add(fs_relpath)
                        continue
                    leaves = self._leaves_of(fs_relpath) if is_b2z_name(entry.name) else []
                    if leaves:  # a group container: its leaves, of the file's version
                        version = _dataset_stat(entry.stat())
                        versions.update(dict.fromkeys(leaves, version))
                        found.update(leaves)
                        continue
                except OSError:
                    continue
                relpath = self.logical_name(fs_relpath)
                if relpath not in found and self._source(relpath) is not None:
                    found.add(relpath)
        return sorted(found), versions

    def affected(self, fs_relpath: str, known: Iterable[str]) -> set[str]:
        """The dataset of that file, and the known datasets below it if it is a directory."""
        fs_relpath = check_relpath(fs_relpath)
        if not fs_relpath:
            return set(known)
        name = self.logical_name(fs_relpath)
        paths = {name}
        if b2z_groups.is_b2z_name(name):
            # A container's leaves: those announced (some may be gone) and those it holds now.
            prefix = name + "/"
            paths.update(p for p in known if p.startswith(prefix))
            paths.update(self._leaves_of(name))
        if name in known or os.path.isfile(os.path.join(self._root_s, fs_relpath)):
            # A file (or a dataset that was one): nothing below it. Looking through every
            # known dataset for each event made a burst in a big root quadratic.
            return paths
        prefix = fs_relpath + "/"
        paths.update(p for p in known if p.startswith(prefix))
        return paths

    # -- content -------------------------------------------------------------

    @contextmanager
    def _locked(self, relpath: str) -> Iterator[None]:
        # Serialises building a cached copy with reading it, so a reader never
        # sees a copy being replaced under it.
        with self._locks_guard:
            lock = self._locks.setdefault(relpath, threading.Lock())
        with lock:
            yield

    def stat(self, relpath: str) -> DatasetStat | None:
        """The version of the source file, or None."""
        relpath = self._checked(relpath)
        if (leaf := self._leaf_source(relpath)) is not None:
            try:
                return _dataset_stat(leaf[0].stat())
            except FileNotFoundError:
                return None
        source = self._source(relpath)
        if source is None:
            return None
        try:
            return _dataset_stat(source[0].stat())
        except FileNotFoundError:
            return None

    def _cache_path(self, relpath: str) -> Path:
        return self.cachedir / (relpath + STORED_SUFFIX)

    def _open_container(self, path: Path, st: os.stat_result) -> Any:
        """The open container of a native file as `st` describes it (kept for the next call)."""
        key = str(path)
        ident = file_identity(st)
        with self._locks_guard:
            kept = self._opened.get(key)
            if kept is not None and kept[0] == ident:
                self._opened.move_to_end(key)
                return kept[1]
        try:
            obj = blosc2.open(key, mode="r")
        except FileNotFoundError:
            raise
        except Exception as exc:  # blosc2 raises RuntimeError/ValueError for bad frames
            raise UnreadableDataset(_unreadable_meta(st.st_mtime, "Unrecognized format")) from exc
        with self._locks_guard:
            self._opened[key] = (ident, obj)
            self._opened.move_to_end(key)
            while len(self._opened) > KEPT_CONTAINERS:
                self._opened.popitem(last=False)
        return obj

    def _identity(self, path: Path, obj: Any) -> Identity | None:
        """The identity of the file a kept-open container was opened from, if it is one."""
        with self._locks_guard:
            kept = self._opened.get(str(path))
        return kept[0] if kept is not None and kept[1] is obj else None

    def _open(self, relpath: str) -> tuple[DatasetStat, Any, Path]:
        """Open the container behind a dataset: (version, container, stored file)."""
        for _ in range(5):
            source = self._source(relpath)
            if source is None:
                raise NotFound(f"Not Found: {relpath}")
            path, native = source
            try:
                before = path.stat()
                if native:
                    stored = path
                    obj = self._open_container(path, before)
                else:
                    stored = self._cache_path(relpath)
                    obj = self._cached_copy(path, stored, before)
                after = path.stat()
            except FileNotFoundError:
                continue
            if file_version(before) == file_version(after):
                return _dataset_stat(before), obj, stored
            # The source changed while we opened it: try again with the new version.
        raise ServiceUnavailable(f"{relpath} keeps changing; try again later")

    def _cached_copy(self, src: Path, stored: Path, st: os.stat_result) -> Any:
        """The compressed copy of a regular file, rebuilt if the source changed."""
        # The version of the source a copy was made from is recorded next to it:
        # the source's mtime alone would miss a change whose writer restored it.
        made_from = _copy_version(stored)
        if stored.is_file() and made_from.is_file() and made_from.read_text() == file_version(st):
            try:
                obj = blosc2.open(str(stored), mode="r")
                if obj.nbytes == st.st_size:
                    return obj
            except Exception:  # a damaged copy is just rebuilt
                pass
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_name(f".{stored.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            made_from.unlink(missing_ok=True)  # a crash before the new record: rebuilt again
            b2files.compress_file(src, tmp)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, stored)
            made_from.write_text(file_version(st))
        finally:
            tmp.unlink(missing_ok=True)
        return blosc2.open(str(stored), mode="r")

    def info(self, relpath: str) -> tuple[DatasetStat, dict[str, Any]]:
        """Metadata of the container (for regular files, of their compressed copy)."""
        relpath = self._checked(relpath)
        if (leaf := self._leaf_source(relpath)) is not None:
            st, meta = self._groups.read_leaf(
                *leaf, lambda obj: b2meta.container_meta(obj, relpath, None)
            )
            meta = {**meta, "mtime": b2meta.iso_mtime(st.st_mtime)}
            if leaf[1] == TABLE_VALID_ROWS and (table := self._groups.table(leaf[0], st)):
                meta[TABLE_DESCRIPTION] = table  # a table's description rides on its mask
            return _dataset_stat(st), meta
        with self._locked(relpath):
            try:
                st, obj, stored = self._open(relpath)
            except UnreadableDataset as exc:
                current = self.stat(relpath)
                if current is None:
                    raise NotFound(f"Not Found: {relpath}") from None
                return current, exc.detail
            urlpath = stored.relative_to(
                self.cachedir if stored.is_relative_to(self.cachedir) else self.rootdir
            ).as_posix()
            try:
                return st, b2meta.container_meta(obj, urlpath, st.mtime)
            except TypeError:  # e.g. a saved lazy expression: not a container we can serve
                return st, _unreadable_meta(st.mtime, "Unsupported Blosc2 object")

    def chunk(self, relpath: str, nchunk: int) -> tuple[DatasetStat, bytes]:
        """The stored chunk, never decompressed nor recompressed."""
        relpath = self._checked(relpath)
        if nchunk < 0:
            raise BadRequest("Chunk number required (a non-negative integer)")
        if (leaf := self._leaf_source(relpath)) is not None:
            st, data = self._groups.read_leaf(
                *leaf, lambda obj: b2z_groups.leaf_chunk(obj, nchunk, relpath)
            )
            return _dataset_stat(st), data
        with self._locked(relpath):
            for _ in range(5):
                st, obj, stored = self._open(relpath)
                # Keep `obj` alive while using its SChunk: a dropped NDArray frees it.
                schunk = obj.schunk if isinstance(obj, blosc2.NDArray) else obj
                if not isinstance(schunk, blosc2.SChunk):
                    raise UnreadableDataset(f"{relpath} has no stored chunks")
                if nchunk >= schunk.nchunks:
                    raise NotFound(
                        f"Chunk {nchunk} out of range: {relpath} has {schunk.nchunks} chunks"
                    )
                data = read_chunk(schunk, nchunk, self._identity(stored, obj))
                del schunk, obj
                if stored.is_relative_to(self.cachedir) or _still(stored, st.etag):
                    return st, data
                # Written in place while we read: the bytes may belong to no version.
            raise ServiceUnavailable(f"{relpath} keeps changing; try again later")

    def open_file(self, relpath: str) -> StoredFile:
        """The stored `.b2nd`/`.b2frame`/`.b2` file, or the compressed copy of a regular file."""
        relpath = self._checked(relpath)
        if (leaf := self._leaf_source(relpath)) is not None:
            st, (f, size) = self._groups.read_leaf(*leaf, b2z_groups.leaf_frame)
            name = relpath.rsplit("/", 1)[-1] + ".b2nd"
            return StoredFile(f, size, name, _dataset_stat(st))
        with self._locked(relpath):
            source = self._source(relpath)
            if source is None:
                raise NotFound(f"Not Found: {relpath}")
            if source[1]:
                # No need to parse a native file to stream it.
                path = source[0]
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    raise NotFound(f"Not Found: {relpath}") from None
                st = _dataset_stat(os.fstat(f.fileno()))
            else:
                st, obj, path = self._open(relpath)
                del obj
                f = open(path, "rb")  # still ours: rebuilding it needs the lock we hold
        return StoredFile(f, os.fstat(f.fileno()).st_size, path.name, st)

    def forget(self, relpath: str) -> None:
        """Remove the compressed copy of a regular file that is gone (and let go of its file)."""
        relpath = check_relpath(relpath)
        if not relpath:
            return
        with self._locks_guard:  # an open container keeps its deleted file on disk
            for name in (relpath, relpath + STORED_SUFFIX):
                self._opened.pop(str(self.rootdir / name), None)
        if (split := b2z_groups.split_leaf_path(relpath)) is not None:
            self._groups.forget(self.rootdir / split[0])
        with self._locked(relpath):
            cached = self._cache_path(relpath)
            cached.unlink(missing_ok=True)
            _copy_version(cached).unlink(missing_ok=True)
            # Prune emptied cache folders so the cache mirrors the root.
            parent = cached.parent
            while parent != self.cachedir and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
