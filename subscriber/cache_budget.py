"""The chunk cache's byte budget: which chunks it holds, least recently used first, and counters.

This is bookkeeping only: it says which chunk to evict next; the chunk cache
evicts it, under the lock of the chunk's dataset. Chunks of pinned roots
(mirrored ones) are counted but never chosen, and do not count against the
budget: a mirror is a promise to keep the whole root. A root may also have a
quota of its own: its chunks beyond it are evicted first (a mirrored root with
a quota is kept under its quota instead of pinned).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

ChunkId = tuple[str, str, int]

LOW_WATER = 0.95
"""Once over budget, evict down to this fraction of it: fewer, larger rounds of eviction
(each round makes the next read of a dataset rescan its chunks for the evicted ones)."""
"""(root, dataset path, chunk number)."""


@dataclass
class RootUsage:
    """What the cache holds of one root and how its reads went."""

    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def as_dict(self, pinned: bool) -> dict:
        reads = self.hits + self.misses
        return {
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": self.hits / reads if reads else None,
            "evictions": self.evictions,
            "pinned": pinned,
        }


class CacheBudget:
    """Resident chunks in least-recently-used order, bytes per root, hits, misses, evictions."""

    def __init__(self, limit: int | None = None, quotas: dict[str, int] | None = None) -> None:
        self.limit = limit  # None: no budget (roots' quotas still hold)
        self.quotas = dict(quotas or {})
        self._chunks: OrderedDict[ChunkId, int] = OrderedDict()
        self._usage: dict[str, RootUsage] = {}
        self._pinned: set[str] = set()
        self._by_dataset: dict[tuple[str, str], set[int]] = {}
        self._evictable_bytes = 0
        self._trimming = False  # over budget, and not yet down to LOW_WATER of it
        self._guard = threading.Lock()

    def _root(self, root: str) -> RootUsage:
        return self._usage.setdefault(root, RootUsage())

    def holds(self, root: str, path: str, nchunk: int) -> bool:
        with self._guard:
            return (root, path, nchunk) in self._chunks

    def held_of(self, root: str, path: str, nchunks: list[int]) -> set[int]:
        """Which of `nchunks` of a dataset are cached."""
        with self._guard:
            return {n for n in nchunks if (root, path, n) in self._chunks}

    def record_read(
        self, root: str, path: str, fetched: dict[int, int], hits: set[int] | None = None
    ) -> None:
        """A read fetched these chunks (number → stored size) and found `hits` cached."""
        with self._guard:
            usage = self._root(root)
            for nchunk, size in fetched.items():
                self._put((root, path, nchunk), size, usage)
                usage.misses += 1
            for nchunk in hits or ():
                if (root, path, nchunk) in self._chunks:
                    self._chunks.move_to_end((root, path, nchunk))
                    usage.hits += 1

    def record_held(self, root: str, path: str, sizes: dict[int, int]) -> None:
        """Chunks found in the cache (after a restart): the least recently used of all."""
        with self._guard:
            usage = self._root(root)
            for nchunk, size in sizes.items():
                self._put((root, path, nchunk), size, usage)
                self._chunks.move_to_end((root, path, nchunk), last=False)

    def _put(self, chunk: ChunkId, size: int, usage: RootUsage) -> None:
        old = self._chunks.pop(chunk, None)
        if old is not None:
            self._drop_bytes(chunk, old, usage)
        self._chunks[chunk] = size
        self._by_dataset.setdefault(chunk[:2], set()).add(chunk[2])
        usage.bytes += size
        if chunk[0] not in self._pinned:
            self._evictable_bytes += size

    def _drop_bytes(self, chunk: ChunkId, size: int, usage: RootUsage) -> None:
        self._by_dataset.get(chunk[:2], set()).discard(chunk[2])
        usage.bytes -= size
        if chunk[0] not in self._pinned:
            self._evictable_bytes -= size

    def record_eviction(self, root: str, path: str, nchunk: int) -> None:
        with self._guard:
            size = self._chunks.pop((root, path, nchunk), None)
            if size is not None:
                usage = self._root(root)
                self._drop_bytes((root, path, nchunk), size, usage)
                usage.evictions += 1

    def forget_dataset(self, root: str, path: str) -> None:
        """Its container was replaced or removed: none of its chunks are held any more."""
        with self._guard:
            self._forget(root, path)

    def _forget(self, root: str, path: str) -> None:
        usage = self._root(root)
        for nchunk in self._by_dataset.pop((root, path), set()):
            chunk = (root, path, nchunk)
            size = self._chunks.pop(chunk)
            usage.bytes -= size
            if root not in self._pinned:
                self._evictable_bytes -= size

    def forget_root(self, root: str) -> None:
        with self._guard:
            for dataset in [d for d in self._by_dataset if d[0] == root]:
                self._forget(*dataset)

    def pin(self, root: str, pinned: bool) -> None:
        """Keep every chunk of `root` (mirrored, without a quota), or make them evictable."""
        pinned = pinned and root not in self.quotas
        with self._guard:
            if pinned == (root in self._pinned):
                return
            held = sum(size for chunk, size in self._chunks.items() if chunk[0] == root)
            if pinned:
                self._pinned.add(root)
                self._evictable_bytes -= held
            else:
                self._pinned.discard(root)
                self._evictable_bytes += held

    def victim(self) -> ChunkId | None:
        """The chunk to evict next: from exceeding the budget until down to `LOW_WATER` of it."""
        with self._guard:
            for root, quota in self.quotas.items():
                usage = self._usage.get(root)
                if usage is not None and usage.bytes > quota:
                    oldest = next((c for c in self._chunks if c[0] == root), None)
                    if oldest is not None:
                        return oldest
            if self.limit is None:
                return None
            if self._evictable_bytes > self.limit:
                self._trimming = True
            if not self._trimming or self._evictable_bytes <= self.limit * LOW_WATER:
                self._trimming = False
                return None
            for chunk in self._chunks:
                if chunk[0] not in self._pinned:
                    return chunk
            return None

    @property
    def evictable_bytes(self) -> int:
        """Bytes held of roots that are not pinned: what the budget bounds."""
        with self._guard:
            return self._evictable_bytes

    def usage(self, root: str) -> dict:
        """The `cache` entry of a root in `/api/roots`."""
        with self._guard:
            entry = self._usage.get(root, RootUsage()).as_dict(root in self._pinned)
        entry["quota"] = self.quotas.get(root)
        return entry
