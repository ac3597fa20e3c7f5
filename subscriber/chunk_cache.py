"""The chunk cache: local Blosc2 containers of remote datasets, filled chunk by chunk on demand.

Each cached dataset is a `blosc2.Proxy` container under `<statedir>/cache/<root>/`
with the publisher's shape, chunks, blocks, dtype and cparams. A read asks the
proxy for the chunks its slice touches; the missing ones are fetched from the
publisher as stored (compressed bytes, never recompressed), several at once,
and written into the container. A per-dataset lock makes concurrent readers of
the same missing chunk wait for one transfer instead of starting their own.

The proxies stay open between reads (a few dozen, least recently used first
out): opening one rereads its container and its record of fetched chunks, which
costs more than a small read. A kept proxy is used only while its file is the
one it opened (the same inode: replacing a cached dataset swaps the file).

One version per answer: every cached container is tagged with the version
(etag) it holds (`VERSION_KEY` in its vlmeta). A new version is built aside
and swapped in under the dataset's lock, and a read names the version it wants
and uses the container under that same lock, so it sees one whole version or
none. A container whose tag is not the wanted version (left by a crash between
swap and store, or by an older Caterva2) is rebuilt empty for that version.

A byte budget (`CacheBudget`) bounds the chunks held: after a read, the least
recently used chunks are evicted one by one, each under its dataset's lock, so
an eviction and a read of the same dataset never overlap. Evicting turns the
chunk into an uninitialised special chunk through the proxy every reader of the
dataset shares (`SChunk.update_special`), which frees its bytes, clears it from
the proxy's record of fetched chunks, and makes the next read fetch it again.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common.b2meta import cparams_from_dict, str_to_dtype
from ..common.errors import BadRequest
from ..common.paths import check_remote_path, check_root_name, stored_name
from .cache_budget import CacheBudget
from .publisher_client import PublisherClient

log = logging.getLogger(__name__)

FETCH_CONCURRENCY = 8
KEPT_PROXIES = 64
VERSION_KEY = "cat2-version"
"""The vlmeta entry of a cached container naming the version (etag) it holds."""


class PublisherChunks:
    """What both remote sources share: a dataset's chunks fetched from its publisher."""

    def __init__(
        self, meta: dict, client: PublisherClient, path: str, etag: str | None = None
    ) -> None:
        self._meta, self._client, self._path, self._etag = meta, client, path, etag

    on_fetch: Callable[[int, int], None] | None = None
    """Told (chunk number, bytes) of every chunk fetched: the cache's accounting."""

    def get_chunk(self, nchunk: int) -> bytes:
        chunk = self._client.chunk(self._path, nchunk, self._etag)
        if self.on_fetch is not None:
            self.on_fetch(nchunk, len(chunk))
        return chunk

    def retarget(self, meta: dict, client: PublisherClient, etag: str | None) -> None:
        """Fetch from now on for this version (same geometry: same cached file)."""
        self._meta, self._client, self._etag = meta, client, etag


class RemoteArraySource(PublisherChunks, blosc2.ProxyNDSource):
    """An NDArray on a publisher, described by its info JSON."""

    @property
    def shape(self) -> tuple:
        return tuple(self._meta["shape"])

    @property
    def chunks(self) -> tuple:
        return tuple(self._meta["chunks"])

    @property
    def blocks(self) -> tuple:
        return tuple(self._meta["blocks"])

    @property
    def dtype(self) -> np.dtype:
        return str_to_dtype(self._meta["dtype"])

    @property
    def cparams(self) -> blosc2.CParams:
        return cparams_from_dict(self._meta["schunk"]["cparams"])


class RemoteFrameSource(PublisherChunks, blosc2.ProxySource):
    """An SChunk (frame or regular file) on a publisher."""

    @property
    def nbytes(self) -> int:
        return self._meta["nbytes"]

    @property
    def chunksize(self) -> int:
        return self._meta["chunksize"]

    @property
    def typesize(self) -> int:
        return self._meta["cparams"]["typesize"]

    @property
    def cparams(self) -> blosc2.CParams:
        return cparams_from_dict(self._meta["cparams"])


def source_for(meta: dict, client: PublisherClient, path: str, etag: str | None = None):
    """The proxy source matching a dataset's metadata (and version, when given)."""
    if "shape" in meta:
        return RemoteArraySource(meta, client, path, etag)
    return RemoteFrameSource(meta, client, path, etag)


def _version_of(proxy: blosc2.Proxy) -> str | None:
    try:
        return proxy.vlmeta[VERSION_KEY]
    except KeyError:
        return None


def touched_chunks(container: Any, key: Any) -> list[int]:
    """The chunk numbers a read of `key` touches (a superset for stepped slices)."""
    schunk = container.schunk if isinstance(container, blosc2.NDArray) else container
    items = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in items):
        return list(range(schunk.nchunks))  # backwards: look at every chunk
    # Without their steps: the chunks a stepped slice touches are among those of its span.
    items = tuple(slice(k.start, k.stop) if isinstance(k, slice) else k for k in items)
    try:
        return [
            int(n)
            for n in blosc2.get_slice_nchunks(
                container, items if isinstance(key, tuple) else items[0]
            )
        ]
    except (IndexError, ValueError, TypeError):
        return list(range(schunk.nchunks))  # a key it cannot place: look at every chunk


# Blosc2 chunk header: compressed size at bytes 12-15; special kind in bits 4-6 of byte 31.
_NOT_SPECIAL = blosc2.SpecialValue.NOT_SPECIAL.value


def stored_sizes(schunk: blosc2.SChunk, nchunks: list[int]) -> dict[int, int]:
    """Compressed size of each of `nchunks` that holds data.

    Special chunks are left out: not fetched yet (an empty container starts as
    zeros or uninitialised chunks) or evicted; a fetched chunk that is itself
    special (all zeros, say) costs a header only and is not worth counting.
    """
    sizes = {}
    for n in nchunks:
        header = schunk.get_lazychunk(n)
        if (header[31] >> 4) & 7 == _NOT_SPECIAL:
            sizes[n] = int.from_bytes(header[12:16], "little")
    return sizes


class ChunkCache:
    """Cached containers of remote datasets, by root and path."""

    def __init__(
        self, statedir: Path, budget: int | None = None, quotas: dict[str, int] | None = None
    ) -> None:
        """`budget`: bytes of chunks held at most (mirrored roots aside); None: no limit.
        `quotas`: root → bytes of its chunks held at most."""
        self.dir = Path(statedir).resolve() / "cache"
        self.tmpdir = Path(statedir).resolve() / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # (root, path) → (inode of the cached file, its open proxy, the version it holds);
        # used under the lock.
        self._proxies: OrderedDict[
            tuple[str, str], tuple[tuple[int, int], blosc2.Proxy, str | None]
        ] = OrderedDict()
        self.budget = CacheBudget(budget, quotas)
        # (root, path) → the metadata it was last read with: enough to reopen it for an eviction.
        self._metas: dict[tuple[str, str], dict] = {}
        # (root, path) → chunks fetched and not yet accounted (number → bytes); under its lock.
        self._fetched: dict[tuple[str, str], dict[int, int]] = {}

    def path(self, root: str, path: str) -> Path:
        """The cached file of a dataset: built only from validated names, and inside the cache."""
        target = self.dir / check_root_name(root) / stored_name(check_remote_path(path))
        # Belt and braces: the checks above already exclude every way out.
        if not target.resolve().is_relative_to(self.dir):
            raise BadRequest(f"Invalid path {path!r}: outside the cache")
        return target

    def lock(self, root: str, path: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((root, path), threading.Lock())

    def build(self, path: str, meta: dict, etag: str, client: PublisherClient) -> Path:
        """An empty container for one version, built aside (no lock needed): see `swap`."""
        tmp = self.tmpdir / f"{uuid.uuid4().hex}-{Path(path).name}"
        tmp = tmp.with_name(tmp.name if tmp.suffix in (".b2nd", ".b2frame") else tmp.name + ".b2")
        proxy = blosc2.Proxy(
            source_for(meta, client, path, etag),
            urlpath=str(tmp),
            mode="w",
            vlmeta={VERSION_KEY: etag},
        )
        del proxy
        return tmp

    def swap(self, root: str, path: str, built: Path) -> None:
        """Put a container made by `build` in place; call it holding `lock(root, path)`."""
        target = self.path(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._forget(root, path)
        os.replace(built, target)
        self.budget.forget_dataset(root, path)

    def discard(self, built: Path) -> None:
        """Drop a container made by `build` that was not swapped in."""
        built.unlink(missing_ok=True)

    def remove(self, root: str, path: str) -> None:
        """Drop a cached dataset; call it holding `lock(root, path)`."""
        self._forget(root, path)
        self.path(root, path).unlink(missing_ok=True)
        self.budget.forget_dataset(root, path)

    def remove_root(self, root: str) -> None:
        with self._locks_guard:
            for key in [k for k in self._proxies if k[0] == root]:
                self._proxies.pop(key, None)
        shutil.rmtree(self.dir / check_root_name(root), ignore_errors=True)
        self.budget.forget_root(root)

    def _forget(self, root: str, path: str) -> None:
        with self._locks_guard:
            self._proxies.pop((root, path), None)
        self._fetched.pop((root, path), None)

    def proxy(
        self, root: str, path: str, meta: dict, etag: str | None, client: PublisherClient | None
    ) -> blosc2.Proxy:
        """The open proxy over the cached file, fetching for version `etag` (None: any).

        Call it holding `lock(root, path)`, and use the proxy only while holding it:
        every user of a cached file shares this one proxy, so that none writes into
        the file behind another's record of what it holds. Without a `client`, it
        can only read what is cached (every read passes its own).
        """
        target = self.path(root, path)
        self._metas[(root, path)] = meta
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        if st is not None:
            inode = (st.st_dev, st.st_ino)
            with self._locks_guard:
                kept = self._proxies.get((root, path))
                if kept is not None and kept[0] == inode and etag in (None, kept[2]):
                    self._proxies.move_to_end((root, path))
                    kept[1].src.retarget(meta, client, etag)
                    return kept[1]  # its source reports fetches already (see below)
            try:
                proxy = blosc2.Proxy(
                    source_for(meta, client, path, etag), urlpath=str(target), mode="a"
                )
                held = _version_of(proxy)
            except ValueError:
                # Built for another geometry: another version's container (left by a
                # crash between store and cache). Rebuilt below for the one wanted.
                if etag is None:
                    raise
                proxy = held = None
            if etag is None:
                etag = held  # whichever version is cached
        elif etag is None:
            raise FileNotFoundError(target)  # not cached, and no version to build one for
        else:
            proxy = held = None
        if etag is not None and held != etag:
            # Another version's chunks (or none) are here: start this version afresh.
            del proxy
            self.swap(root, path, self.build(path, meta, etag, client))
            st = os.stat(target)
            inode = (st.st_dev, st.st_ino)
            proxy = blosc2.Proxy(
                source_for(meta, client, path, etag), urlpath=str(target), mode="a"
            )
        fetched = self._fetched.setdefault((root, path), {})
        proxy.src.on_fetch = fetched.__setitem__  # from fetching threads: one dict store each
        with self._locks_guard:
            self._proxies[(root, path)] = (inode, proxy, etag)
            self._proxies.move_to_end((root, path))
            while len(self._proxies) > KEPT_PROXIES:
                self._proxies.popitem(last=False)
        return proxy

    def read(self, root: str, path: str, meta: dict, etag: str, client: PublisherClient, key, use):
        """Call `use(container)` once every chunk `key` touches is in the cache.

        Call it holding `lock(root, path)`, having read `meta` and `etag` under it:
        another thread may be writing fetched chunks into the same file, or
        swapping in another version, which a reader must not see.
        """
        proxy = self.proxy(root, path, meta, etag, client)
        try:
            container = proxy.fetch(key, max_concurrency=FETCH_CONCURRENCY)
        finally:
            # Counted even when the fetch failed partway: what did arrive is stored.
            fetched = self._take_fetched(root, path)
            self.budget.record_read(root, path, fetched)
        hits = self.budget.held_of(root, path, touched_chunks(container, key)) - fetched.keys()
        self.budget.record_read(root, path, {}, hits)
        return use(container)

    def _take_fetched(self, root: str, path: str) -> dict[int, int]:
        pending = self._fetched.get((root, path))
        if not pending:
            return {}
        taken = dict(pending)
        pending.clear()
        return taken

    def account(self, root: str, path: str) -> None:
        """Count chunks fetched through the shared proxy outside `read` (computations);
        call it holding `lock(root, path)`, then `enforce_budget` holding none."""
        self.budget.record_read(root, path, self._take_fetched(root, path))

    def index_cached(self, root: str, path: str, meta: dict) -> None:
        """Count the chunks a cached container already holds (on start, before any read)."""
        if not self.path(root, path).exists():
            return
        with self.lock(root, path):
            proxy = self.proxy(root, path, meta, None, None)
            schunk = proxy.schunk
            self.budget.record_held(root, path, stored_sizes(schunk, list(range(schunk.nchunks))))

    def enforce_budget(self) -> int:
        """Evict least recently used chunks while the budget asks for it (`CacheBudget.victim`).

        Returns how many it evicted.

        Call it holding no dataset lock: it takes each victim's in turn.
        """
        evicted = 0
        while (victim := self.budget.victim()) is not None:
            root, path, nchunk = victim
            with self.lock(root, path):
                if not self.budget.holds(root, path, nchunk):
                    continue  # replaced, removed or evicted while we waited for the lock
                try:
                    self._evict(root, path, nchunk)
                except (OSError, KeyError, ValueError, RuntimeError) as exc:
                    # Whatever is left of it is rebuilt by its next read; it must not stay a victim.
                    log.warning("cannot evict from %s/%s (%s); forgot it", root, path, exc)
                    self.budget.forget_dataset(root, path)
                    continue
                self.budget.record_eviction(root, path, nchunk)
                evicted += 1
        return evicted

    def _evict(self, root: str, path: str, nchunk: int) -> None:
        """Free one chunk; call it holding `lock(root, path)`."""
        with self._locks_guard:
            kept = self._proxies.get((root, path))
        # The shared proxy when open (it notices the eviction); swaps and removals forget it.
        proxy = kept[1] if kept is not None else None
        if proxy is None:
            proxy = self.proxy(root, path, self._metas[(root, path)], None, None)
        proxy.schunk.update_special(nchunk, blosc2.SpecialValue.UNINIT)

    def export(self, container: Any, meta: dict) -> tuple[int, Any]:
        """A plain copy of a fully fetched container, as (size, open file) (already unlinked).

        The cached file itself carries the proxy's bookkeeping (a client opening
        it would get a proxy of our cache), so its stored chunks are copied as
        they are, never recompressed, into a new container with the dataset's
        own vlmeta.
        """
        tmp = self.tmpdir / f"{uuid.uuid4().hex}.export"
        schunk = container.schunk if isinstance(container, blosc2.NDArray) else container
        try:
            if isinstance(container, blosc2.NDArray):
                out = blosc2.empty(
                    container.shape,
                    container.dtype,
                    chunks=container.chunks,
                    blocks=container.blocks,
                    cparams=schunk.cparams,
                    urlpath=str(tmp),
                    mode="w",
                )
                target = out.schunk
                for n in range(schunk.nchunks):
                    target.update_chunk(n, schunk.get_chunk(n))
            else:
                out = target = blosc2.SChunk(
                    chunksize=schunk.chunksize, cparams=schunk.cparams, urlpath=str(tmp), mode="w"
                )
                for n in range(schunk.nchunks):
                    target.insert_chunk(n, schunk.get_chunk(n))
            for name, value in meta.get("schunk", meta).get("vlmeta", {}).items():
                target.vlmeta[name] = value
            del out, target
            f = open(tmp, "rb")
        finally:
            tmp.unlink(missing_ok=True)  # the open file keeps its bytes until closed
        return os.fstat(f.fileno()).st_size, f
