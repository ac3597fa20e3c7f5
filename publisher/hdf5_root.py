"""An HDF5 file as a root: every dataset is served as `<group path>/<name>.b2nd`.

The file is described by a *catalog*: for each dataset its Blosc2 layout, its
info JSON and an etag that is a fingerprint of its metadata, attributes and
stored bytes.  Every h5py call runs in a `WorkerPool` process, so slow HDF5
reads never hold up the API or the announcer, and a crash on a corrupt file
costs one request, not the daemon.

Chunks of datasets whose only HDF5 filter is Blosc2 are served as stored (the
Blosc2 chunk inside the HDF5 chunk).  Other datasets are compressed chunk by
chunk on demand into a Blosc2 copy in the cache, which also becomes the whole
file `/api/file` streams once every chunk is in.  When the file changes, a new
catalog is built and only datasets whose fingerprint moved are reported.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2

from ..common import b2meta, hdf5_attrs, hdf5_convert, hdf5_workers
from ..common.errors import BadRequest, Caterva2Error, NotFound, ServiceUnavailable
from ..common.hdf5_base import HDF5Error, file_signature
from ..common.hdf5_workers import FileChanged, WorkerPool
from ..common.paths import check_relpath
from .root_adapters import DatasetStat, RootAdapter, StoredFile

log = logging.getLogger(__name__)

CATALOG_FILE = "hdf5-catalog.json"
CATALOG_VERSION = 1
SUFFIX = ".b2nd"
TAG_LEN = 16  # etag characters in a cache file name: `<name>.<tag>.b2nd`
QUICK_BYTES = 2 * 1024 * 1024  # chunks up to this size convert in the quick lane
SETTLE = 1.0  # seconds a changed file must stay still before reads rescan it


class HDF5RootError(ValueError):
    """The HDF5 file cannot be published (missing, or not readable at start)."""


@dataclass(frozen=True)
class Entry:
    """One dataset of the catalog (or one that cannot be served, with the reason)."""

    relpath: str
    dsetname: str
    etag: str
    size: int
    mtime: float
    layout: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    error: str | None = None

    @property
    def stat(self) -> DatasetStat:
        return DatasetStat(self.etag, self.mtime, self.size)


@dataclass
class Catalog:
    """The datasets of one version of the file."""

    signature: tuple | None  # the file version the entries describe
    entries: dict[str, Entry] = field(default_factory=dict)
    error: str | None = None  # set while the file cannot be read: entries are the last good ones
    seen: tuple | None = None  # the file version looked at last (good or not)


# -- tasks run in the worker processes ---------------------------------------------


def _error_entry(relpath: str, dsetname: str, reason: str) -> dict[str, Any]:
    etag = hashlib.sha1(f"{dsetname}\0{reason}".encode(), usedforsecurity=False).hexdigest()
    return {"relpath": relpath, "dsetname": dsetname, "etag": etag, "size": 0, "error": reason}


def _describe(relpath: str, dsetname: str, dset: Any, fd: int) -> dict[str, Any]:
    layout = hdf5_convert.dataset_layout(dset)
    attrs = hdf5_attrs.read_attrs(dset)
    etag, size = hdf5_convert.fingerprint(dset, layout, attrs, fd)
    array = hdf5_convert.new_array(layout, vlmeta=attrs.plain)
    meta = b2meta.ndarray_meta(array, relpath, None)
    # The stored bytes are the honest compressed size; the empty array's are not.
    meta["schunk"]["cbytes"] = size
    meta["schunk"]["cratio"] = meta["schunk"]["nbytes"] / size if size else 0.0
    entry = {"relpath": relpath, "dsetname": dsetname, "etag": etag, "size": size}
    return {**entry, "layout": layout, "meta": meta, "notes": attrs.problems}


def scan_task(path: str) -> dict[str, Any]:
    """Catalog a file: every dataset with its layout, info and fingerprint."""
    signature = file_signature(path)
    f = hdf5_workers.h5file(path, signature)
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    with open(path, "rb") as raw:
        for node in hdf5_convert.walk(f):
            if not node.has_data:
                if node.reason:
                    notes.append(f"/{node.path}: {node.reason}")
                continue
            relpath = node.path + SUFFIX
            try:
                valid = check_relpath(relpath) == relpath
            except Caterva2Error:
                valid = False
            if not valid:
                notes.append(f"/{node.path}: a name that cannot be a dataset path (left out)")
                continue
            if node.kind != "dataset":
                entries.append(_error_entry(relpath, node.path, node.reason or "cannot be read"))
                continue
            try:
                entries.append(_describe(relpath, node.path, node.obj, raw.fileno()))
            except HDF5Error as exc:
                entries.append(_error_entry(relpath, node.path, str(exc)))
            except Exception as exc:  # h5py raises many kinds on damaged objects
                entries.append(_error_entry(relpath, node.path, f"cannot be read: {exc}"))
    hdf5_workers.check_unchanged(path, signature)
    return {"signature": list(signature), "entries": entries, "notes": notes}


def chunk_task(path: str, signature: list, dsetname: str, layout: dict, nchunk: int) -> bytes:
    """Chunk `nchunk` of a dataset: as stored when Blosc2-filtered, else compressed now."""
    f = hdf5_workers.h5file(path, signature)
    data = hdf5_convert.read_chunk(f[dsetname], layout, nchunk)
    hdf5_workers.check_unchanged(path, signature)
    return data


# -- the adapter -------------------------------------------------------------------


def _chunk_bytes(entry: Entry) -> int:
    """Uncompressed bytes of one chunk of a dataset."""
    layout = entry.layout
    itemsize = b2meta.str_to_dtype(layout["dtype"]).itemsize
    return math.prod(layout["chunks"]) * itemsize


class HDF5FileRoot(RootAdapter):
    """Serve the datasets of one HDF5 file through the publisher API."""

    def __init__(
        self,
        h5path: str | os.PathLike,
        cachedir: str | os.PathLike,
        workers: int | None = None,
    ) -> None:
        """Catalog `h5path` (in a worker), caching converted chunks in `cachedir`."""
        self.h5path = Path(h5path).resolve()
        if not self.h5path.is_file():
            raise HDF5RootError(f"HDF5 file not found: {h5path}")
        self.cachedir = Path(cachedir).resolve()
        self.cachedir.mkdir(parents=True, exist_ok=True)
        self.pool = WorkerPool(workers)
        self._refresh_lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._reported_lock = threading.Lock()
        try:
            self._catalog = self._saved_catalog() or self._scan(Catalog(None))
        except BaseException:
            self.pool.close()
            raise
        if self._catalog.error:
            self.pool.close()
            raise HDF5RootError(self._catalog.error)
        self._reported = {p: e.etag for p, e in self._catalog.entries.items()}
        self._save(self._catalog)
        self._clean_cache(self._catalog)

    # -- names ---------------------------------------------------------------

    @property
    def watch_dir(self) -> Path:
        """The directory holding the file (replacing the file by a rename is a change too)."""
        return self.h5path.parent

    def is_ignored(self, fs_relpath: str) -> bool:
        """Everything but the file itself."""
        return fs_relpath != self.h5path.name

    def datasets(self) -> list[str]:
        """Every dataset of the file, including those that cannot be served."""
        return sorted(self._catalog.entries)

    def affected(self, fs_relpath: str, known: Iterable[str]) -> set[str]:
        """After the file changed: the datasets whose fingerprint differs from the last report."""
        if fs_relpath not in ("", self.h5path.name):
            return set()
        catalog = self.refresh()
        if catalog.error and catalog.signature is not None:
            return set()  # unreadable for now (being written?): keep the last good view
        current = {p: e.etag for p, e in catalog.entries.items()}
        with self._reported_lock:
            before = self._reported
            changed = {p for p in set(current) | set(before) if current.get(p) != before.get(p)}
            self._reported = current
        changed.update(p for p in known if p not in current)
        return changed

    # -- the catalog ---------------------------------------------------------

    def _saved_catalog(self) -> Catalog | None:
        """The catalog saved by the last run, if the file has not changed since."""
        try:
            saved = json.loads((self.cachedir / CATALOG_FILE).read_text())
            if saved.get("version") != CATALOG_VERSION or saved.get("file") != str(self.h5path):
                return None
            signature = tuple(saved["signature"])
            if signature != file_signature(self.h5path):
                return None
            entries = {e["relpath"]: Entry(**e) for e in saved["entries"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Catalog(signature, entries, seen=signature)

    def _save(self, catalog: Catalog) -> None:
        if catalog.error or catalog.signature is None:
            return
        data = {
            "version": CATALOG_VERSION,
            "file": str(self.h5path),
            "signature": list(catalog.signature),
            "entries": [e.__dict__ for e in catalog.entries.values()],
        }
        tmp = self.cachedir / f".{CATALOG_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.cachedir / CATALOG_FILE)

    def _scan(self, previous: Catalog) -> Catalog:
        """A new catalog; on failure the previous entries, marked with the error."""
        try:
            seen = file_signature(self.h5path)
        except FileNotFoundError:
            return Catalog(None, {}, error=f"{self.h5path.name} was deleted")
        started = time.perf_counter()
        for _ in range(3):
            try:
                found = self.pool.run(scan_task, str(self.h5path))
                break
            except FileChanged:
                continue  # rewritten while we read it: look again
            except FileNotFoundError:
                return Catalog(None, {}, error=f"{self.h5path.name} was deleted")
            except (HDF5Error, OSError) as exc:
                log.error("cannot read %s: %s", self.h5path, exc)
                return Catalog(previous.signature, previous.entries, str(exc), seen)
        else:
            why = f"{self.h5path.name} keeps changing"
            return Catalog(previous.signature, previous.entries, why, seen)
        signature = tuple(found["signature"])
        mtime = signature[2] / 1e9
        entries = {}
        for raw in found["entries"]:
            for note in raw.pop("notes", ()):
                log.warning("%s: /%s: %s (left out)", self.h5path.name, raw["dsetname"], note)
            old = previous.entries.get(raw["relpath"])
            # A dataset's mtime is when its content last changed, not when the file did.
            kept = old.mtime if old is not None and old.etag == raw["etag"] else mtime
            entries[raw["relpath"]] = Entry(mtime=kept, **raw)
        for note in found["notes"]:
            log.warning("%s: %s", self.h5path.name, note)
        seconds = time.perf_counter() - started
        log.info("%s: %d datasets catalogued in %.1f s", self.h5path.name, len(entries), seconds)
        return Catalog(signature, entries, seen=signature)

    def refresh(self) -> Catalog:
        """Re-catalog the file if it changed since it was looked at last."""
        with self._refresh_lock:
            catalog = self._catalog
            try:
                signature = file_signature(self.h5path)
            except FileNotFoundError:
                signature = None
            if signature is not None and signature == catalog.seen:
                return catalog
            if signature is None and catalog.signature is None and catalog.error:
                return catalog
            new = self._scan(catalog)
            self._catalog = new
            self._save(new)
            self._clean_cache(new)
            return new

    def _current(self) -> Catalog:
        """The catalog, refreshed first if the file moved on (reads must match the etags)."""
        catalog = self._catalog
        try:
            signature = file_signature(self.h5path)
        except FileNotFoundError:
            return self.refresh()
        if signature == catalog.seen:
            return catalog
        if time.time() - signature[2] / 1e9 < SETTLE:
            # Being written: its bytes are not a consistent file yet, and scanning it
            # on every read would only repeat work the watcher will ask for anyway.
            raise ServiceUnavailable(f"{self.h5path.name} is being written; try again shortly")
        return self.refresh()

    def _entry(self, relpath: str, catalog: Catalog | None = None) -> Entry:
        relpath = check_relpath(relpath)
        entry = (catalog or self._catalog).entries.get(relpath)
        if entry is None:
            raise NotFound(f"Not Found: {relpath}")
        return entry

    def _servable(self, relpath: str) -> tuple[Catalog, Entry]:
        """The current catalog and entry of a dataset whose data is to be read."""
        catalog = self._current()
        entry = self._entry(relpath, catalog)
        if catalog.error:
            raise ServiceUnavailable(f"{self.h5path.name} cannot be read now: {catalog.error}")
        if entry.error:
            raise BadRequest(f"{relpath} cannot be served: {entry.error}")
        return catalog, entry

    # -- metadata --------------------------------------------------------------

    def stat(self, relpath: str) -> DatasetStat | None:
        """The version of a dataset, or None."""
        entry = self._catalog.entries.get(check_relpath(relpath))
        return entry.stat if entry is not None else None

    def info(self, relpath: str) -> tuple[DatasetStat, dict[str, Any]]:
        """The NDArray info of a dataset; for one that cannot be served, the reason."""
        entry = self._entry(relpath)
        if entry.error:
            reason = f"Unsupported dataset: {entry.error}"
            return entry.stat, {"mtime": b2meta.iso_mtime(entry.mtime), "error": reason}
        return entry.stat, {**entry.meta, "mtime": b2meta.iso_mtime(entry.mtime)}

    # -- data --------------------------------------------------------------------

    @contextmanager
    def _locked(self, entry: Entry, what: str = "cache") -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault((what, entry.relpath, entry.etag), threading.Lock())
        with lock:
            yield

    def _cache_path(self, entry: Entry) -> Path:
        stem = entry.relpath[: -len(SUFFIX)]
        return self.cachedir / f"{stem}.{entry.etag[:TAG_LEN]}{SUFFIX}"

    def _read(self, catalog: Catalog, entry: Entry, nchunk: int) -> bytes:
        """Ask a worker for a chunk of the version `catalog` describes."""
        future = self._submit(catalog, entry, nchunk)
        return self._chunk_result(future, entry)

    def _submit(
        self, catalog: Catalog, entry: Entry, nchunk: int, quick: bool = True
    ) -> concurrent.futures.Future:
        signature = list(catalog.signature)
        # Stored chunks and small conversions take the quick lane: they never wait
        # behind big conversions (whole-file builds always take the bulk lane).
        quick = quick and (entry.layout["direct"] or _chunk_bytes(entry) <= QUICK_BYTES)
        return self.pool.submit(
            chunk_task,
            str(self.h5path),
            signature,
            entry.dsetname,
            entry.layout,
            nchunk,
            quick=quick,
        )

    def _chunk_result(self, future: concurrent.futures.Future, entry: Entry) -> bytes:
        try:
            return self.pool.result(future)
        except FileChanged:
            self.refresh()
            raise ServiceUnavailable(
                f"{entry.relpath} changed while it was read; try again"
            ) from None
        except (HDF5Error, OSError) as exc:
            raise ServiceUnavailable(f"{entry.relpath} cannot be read: {exc}") from None

    def _cached_chunk(self, entry: Entry, nchunk: int) -> bytes | None:
        path = self._cache_path(entry)
        with self._locked(entry):
            if not path.is_file():
                return None
            array = blosc2.open(str(path), mode="r")
            if hdf5_convert.is_uninit_chunk(array.schunk.get_lazychunk(nchunk)):
                return None
            return array.schunk.get_chunk(nchunk)

    def _store_chunks(self, entry: Entry, chunks: dict[int, bytes]) -> None:
        """Write converted chunks into the dataset's cached copy (made when missing)."""
        path = self._cache_path(entry)
        with self._locked(entry):
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                vlmeta = entry.meta["schunk"]["vlmeta"]
                array = hdf5_convert.new_array(entry.layout, tmp, vlmeta=vlmeta)
                del array
                os.replace(tmp, path)
            array = blosc2.open(str(path), mode="a")
            for nchunk, data in sorted(chunks.items()):
                if hdf5_convert.is_uninit_chunk(array.schunk.get_lazychunk(nchunk)):
                    array.schunk.update_chunk(nchunk, data)

    def chunk(self, relpath: str, nchunk: int) -> tuple[DatasetStat, bytes]:
        """Chunk `nchunk` in Blosc2 form, with the version it belongs to."""
        if nchunk < 0:
            raise BadRequest("Chunk number required (a non-negative integer)")
        catalog, entry = self._servable(relpath)
        nchunks = entry.layout["nchunks"]
        if nchunk >= nchunks:
            raise NotFound(f"Chunk {nchunk} out of range: {entry.relpath} has {nchunks} chunks")
        if not entry.layout["direct"]:
            cached = self._cached_chunk(entry, nchunk)
            if cached is not None:
                return entry.stat, cached
        data = self._read(catalog, entry, nchunk)
        if not entry.layout["direct"]:
            self._store_chunks(entry, {nchunk: data})
        return entry.stat, data

    def _missing(self, entry: Entry) -> list[int]:
        path = self._cache_path(entry)
        with self._locked(entry):
            if not path.is_file():
                return list(range(entry.layout["nchunks"]))
            array = blosc2.open(str(path), mode="r")  # alive while its SChunk is used
            return [
                n
                for n in range(entry.layout["nchunks"])
                if hdf5_convert.is_uninit_chunk(array.schunk.get_lazychunk(n))
            ]

    def _complete(self, catalog: Catalog, entry: Entry) -> None:
        """Fill every missing chunk of the cached copy, a few workers at a time."""
        missing = self._missing(entry)
        if not missing and self._cache_path(entry).is_file():
            return
        if not missing:
            self._store_chunks(entry, {})
            return
        window = max(2, 2 * max(self.pool.workers, 1))  # bounded: memory stays a few chunks
        pending: dict[concurrent.futures.Future, int] = {}
        todo = iter(missing)
        done: dict[int, bytes] = {}
        for nchunk in todo:
            pending[self._submit(catalog, entry, nchunk, quick=False)] = nchunk
            if len(pending) >= window:
                break
        while pending:
            finished, _ = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in finished:
                done[pending.pop(future)] = self._chunk_result(future, entry)
                nxt = next(todo, None)
                if nxt is not None:
                    pending[self._submit(catalog, entry, nxt, quick=False)] = nxt
            self._store_chunks(entry, done)
            done.clear()

    def open_file(self, relpath: str) -> StoredFile:
        """The dataset as a whole `.b2nd`, built in the cache chunk by chunk on first use."""
        catalog, entry = self._servable(relpath)
        with self._locked(entry, "build"):
            self._complete(catalog, entry)
            if self._missing(entry):  # the copy was removed under us (the file changed)
                raise ServiceUnavailable(f"{entry.relpath} changed while it was read; try again")
            with self._locked(entry):
                f = open(self._cache_path(entry), "rb")
        filename = entry.relpath.rsplit("/", 1)[-1]
        return StoredFile(f, os.fstat(f.fileno()).st_size, filename, entry.stat)

    # -- housekeeping ------------------------------------------------------------

    def _clean_cache(self, catalog: Catalog) -> None:
        """Delete cached copies of versions the catalog no longer has."""
        keep = {self._cache_path(e) for e in catalog.entries.values()}
        pattern = re.compile(rf"\.[0-9a-f]{{{TAG_LEN}}}{re.escape(SUFFIX)}$")
        for path in self.cachedir.rglob(f"*{SUFFIX}"):
            if pattern.search(path.name) and path not in keep:
                path.unlink(missing_ok=True)

    def forget(self, relpath: str) -> None:
        """Cached copies of datasets that are gone are cleaned when the catalog changes."""

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()
