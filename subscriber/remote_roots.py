"""Remote roots: what publishers announce, the roots this subscriber follows, and reads of them.

A followed root's listing and metadata live in the store (table `datasets`);
its data lives in the chunk cache, whose containers are created at first read.
Roots are kept current by their change sequence (see `replication`): following
returns at once and the root's metadata arrives in the background. Every update
is idempotent and keyed by etag, so replayed or duplicated change messages are
harmless. Publishers without sequences are followed the old way: a resync (on
follow, on restart, or when a heartbeat shows a new root etag) lists the root
and revalidates every dataset.

One version per answer: a dataset's store row and its cached container change
together under the dataset's cache lock, and every read (slices, chunks, whole
reads, downloads) takes its version from the store and reads the cache under
that lock. Only versions the publisher has announced are installed: a change
message names one, and an `info` answer says whether its version is announced.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from typing import Any

from ..broker.consumer import Refused
from ..common.b2meta import str_to_dtype
from ..common.errors import BadRequest, NotFound, PreconditionFailed, ServiceUnavailable
from ..common.falcon_app import etag_matches, file_part
from ..common.paths import CONTAINER_SUFFIXES, check_remote_path, logical_name, stored_name
from ..common.slices import Key
from . import datasets, remote_containers
from .chunk_cache import ChunkCache
from .publisher_client import PublisherClient, PublisherPool, StaleDataset
from .read_plans import (
    Plan,
    chunk_key,
    chunk_plan,
    chunked_array,
    readable,
    schunk_of,
    selection_plan,
    served_name,
)
from .remote_containers import in_container
from .replication import Replication, check_meta
from .root_interface import StreamedFile as RemoteFile
from .store import Store

log = logging.getLogger(__name__)

# Seconds without an announcement after which a root counts as offline.
STALE_AFTER = 60.0


class RemoteRoots:
    """Remote roots known from announcements, and the datasets of followed ones."""

    def __init__(
        self,
        store: Store,
        statedir,
        on_follow: Callable[[str], None] | None = None,
        owners: dict[str, str] | None = None,
        publisher_ca_file: str | None = None,
        cache_size: int | None = None,
        upstream: str | None = None,
        root_upstreams: dict[str, str | None] | None = None,
        cache_quotas: dict[str, int] | None = None,
    ):
        """`cache_size`: the chunk cache's byte budget (mirrored roots aside); None: no limit.

        `upstream`: a parent subscriber that chunk bytes are asked of before the publisher;
        `root_upstreams`: another parent for some roots (None: their publisher directly).
        `cache_quotas`: root → the bytes of its chunks the cache keeps at most.
        """
        self.store = store
        # Roots whose owner the operator configured: never pinned to whoever announces first.
        self.owners = dict(owners or {})
        self.cache = ChunkCache(statedir, cache_size, cache_quotas)
        self._index_cache()
        self.pool = PublisherPool(publisher_ca_file, upstream, root_upstreams)
        self.on_follow = on_follow  # binds the broker queue; set by the follower
        self._sync_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # Mirroring: a root's change count, and the count its last complete mirror pass saw.
        self._changes: dict[str, int] = {}
        self._mirrored_at: dict[str, int] = {}
        # root → (its change count, its paths, its top listing: each container named once)
        self._listings: dict[str, tuple[int, list[str], list[str]]] = {}
        self.mirror_wanted = threading.Event()
        """Set when a mirrored root may have chunks left to fetch (wakes the mirror loop)."""
        self.replication = Replication(self)

    def close(self) -> None:
        self.replication.close()  # before the pool: catch-ups use its clients
        self.pool.close()

    def _index_cache(self) -> None:
        """Count what the cache holds from earlier runs, and fit it in the budget."""
        for root, mirror in self.store.subscriptions().items():
            self.cache.budget.pin(root, mirror)
            for path in self.store.dataset_etags(root):
                if not self.cache.path(root, path).exists():
                    continue  # never read: nothing cached (most of a big root)
                found = self.store.dataset(root, path)
                if found is None or ("shape" not in found[1] and "nbytes" not in found[1]):
                    continue
                try:
                    self.cache.index_cached(root, path, found[1])
                except (OSError, KeyError, ValueError, RuntimeError) as exc:
                    # Not counted, so dropped: a read rebuilds it.
                    log.warning("cached %s/%s is unreadable (%s); dropped", root, path, exc)
                    with self.cache.lock(root, path):
                        self.cache.remove(root, path)
        self.cache.enforce_budget()

    # Registry

    def names(self) -> dict[str, dict]:
        """Known remote roots → their `/api/roots` entries."""
        subs = self.store.subscriptions()
        now = time.time()
        return {
            name: {
                "name": name,
                "http": row["url"],
                "subscribed": name in subs,
                # A publisher that died without saying so stops sending heartbeats.
                "online": bool(row["online"]) and now - row["seen"] < STALE_AFTER,
                "owner": self.owners.get(name) or row.get("owner"),
                "refused": row.get("refused") or 0,
                "refusal": row.get("refusal"),
                "cache": self.cache.budget.usage(name),
                # Followed roots: "syncing" until their metadata is all here, then "ready".
                **({"sync": self.replication.status(name)} if name in subs else {}),
            }
            for name, row in self.store.remote_roots().items()
        }

    def is_known(self, root: str) -> bool:
        return self.store.remote_root(root) is not None

    def client(self, root: str) -> PublisherClient:
        row = self.store.remote_root(root)
        if row is None:
            raise NotFound(f"{root} not known by the broker")
        return self.pool.client(root, row["url"])

    def check_sender(self, root: str, sender: str | None, what: str) -> str:
        """The owner of `root` if `sender` may speak for it; else refuse, record and say why.

        A root belongs to the broker user configured for it, or else to the first
        one that announced it (pinned in the store); `sender` is the broker's
        validated `user_id` of the message, never a field of its body.
        """
        row = self.store.remote_root(root)
        owner = self.owners.get(root) or (row or {}).get("owner")
        if sender is None:
            reason = f"{what} for root {root!r} without a validated sender (user_id)"
        elif owner == sender:
            return sender
        elif owner is None:
            if row is not None:
                self.store.pin_root_owner(root, sender)
            return sender
        else:
            reason = f"{what} for root {root!r} from {sender!r}; the root belongs to {owner!r}"
        if row is not None:
            self.store.record_refusal(root, reason)
        log.warning("refused: %s", reason)
        raise Refused(reason)

    def announce(
        self,
        root: str,
        url: str,
        etag: str | None,
        online: bool,
        sender: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Record a root announcement by its owner; catch up a followed root left behind.

        With a `seq`, by the change sequence; without (an older publisher), by resyncing
        the whole root when its etag moved.
        """
        owner = self.check_sender(root, sender, "announcement")
        previous = self.store.upsert_root(root, url, etag, online, owner)
        if not online or root not in self.store.subscriptions():
            return
        if seq is not None:
            self.replication.on_announce(root, seq)
        elif previous is None or (previous["etag"] or "") != (etag or ""):
            threading.Thread(target=self._quiet_sync, args=(root,), daemon=True).start()

    # Following

    def follow(self, root: str, mirror: bool = False, wait: bool = False) -> None:
        """Follow a root: record it, bind its changes; its metadata comes in the background.

        `wait`: return only once that first sync has ended (`/api/roots` shows its progress).
        """
        if not self.is_known(root):
            raise NotFound(f"{root} not known by the broker")
        self.store.add_subscription(root, mirror)
        self.cache.budget.pin(root, mirror)
        self._changed(root)
        if self.on_follow is not None:
            self.on_follow(root)
        done = self.replication.start(root)
        if wait:
            done.wait()

    def unfollow(self, root: str) -> None:
        self.store.remove_subscription(root)
        self.store.delete_root_datasets(root)
        self.cache.remove_root(root)
        self.cache.budget.pin(root, False)
        self._changed(root)

    def ensure_followed(self, root: str) -> None:
        """Follow a known root on first access (v2025.8.7 clients never subscribe)."""
        if root not in self.store.subscriptions():
            self.follow(root, wait=True)

    def _sync_lock(self, root: str) -> threading.Lock:
        with self._guard:
            return self._sync_locks.setdefault(root, threading.Lock())

    def _quiet_sync(self, root: str) -> None:
        try:
            self.sync(root)
        except ServiceUnavailable as exc:
            log.warning("cannot sync %s now: %s", root, exc.detail)

    def sync(self, root: str) -> None:
        """Revalidate every dataset of a root against its publisher (If-None-Match)."""
        client = self.client(root)
        with self._sync_lock(root):
            listed = set(self._valid_paths(root, client.list()))
            known = self.store.dataset_etags(root)
            for path in sorted(listed):
                self._refresh(root, path, client, known.get(path))
            for path in set(known) - listed:
                self._drop(root, path)

    def _valid_paths(self, root: str, paths) -> list[str]:
        """The dataset paths of a publisher's listing that are safe to name files after."""
        if not isinstance(paths, list):
            self.store.record_refusal(root, "the publisher's listing is not a JSON list")
            raise ServiceUnavailable(f"the publisher of {root} answered an invalid listing")
        valid = []
        for path in paths:
            try:
                valid.append(check_remote_path(path))
            except BadRequest as exc:
                reason = f"listing of {root!r} names an invalid path: {exc.detail}"
                log.warning("ignored: %s", reason)
                self.store.record_refusal(root, reason)
        return valid

    def _refresh(self, root: str, path: str, client: PublisherClient, etag: str | None) -> bool:
        """Install the publisher's version if it differs and is announced; whether it did."""
        try:
            answer = client.info(path, etag)
        except NotFound:
            self._drop(root, path)
            return True
        if answer is None:
            return False
        meta, new_etag, settled = answer
        if not settled:
            # Being written, or not announced yet: its change message installs it.
            log.info("%s/%s: version %s not announced yet; kept ours", root, path, new_etag)
            return False
        try:
            self._install(root, path, new_etag, check_meta(meta), client)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            # Nothing is installed: the publisher's answer is not metadata we can use.
            reason = f"invalid metadata for {path!r} ({type(exc).__name__}: {exc})"
            log.warning("ignored: %s of %s", reason, root)
            self.store.record_refusal(root, reason[:500])
            return False
        return True

    def _changed(self, root: str) -> None:
        """A dataset of `root` changed: a mirror of it has chunks to fetch again."""
        with self._guard:
            self._changes[root] = self._changes.get(root, 0) + 1
        self.mirror_wanted.set()

    def _install(self, root: str, path: str, etag: str, meta: dict, client) -> None:
        try:
            self._install_version(root, path, etag, meta, client)
        finally:
            self._changed(root)  # after the swap: a mirror pass must not see the old chunks

    def _install_version(self, root: str, path: str, etag: str, meta: dict, client) -> None:
        if "shape" not in meta and "nbytes" not in meta:
            log.warning("%s/%s has no Blosc2 metadata; not cached", root, path)
        # The old version's container goes with its row; the first read builds the new one.
        with self.cache.lock(root, path):
            self.cache.remove(root, path)
            self.store.put_dataset(root, path, etag, meta)

    def _drop(self, root: str, path: str) -> None:
        with self.cache.lock(root, path):
            self.cache.remove(root, path)
            self.store.delete_dataset(root, path)
        self._changed(root)

    def apply_change(
        self,
        root: str,
        path: str,
        kind: str,
        etag: str | None,
        meta: dict,
        sender: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Apply one change message from the root's owner (idempotent: repeats change nothing).

        With a `seq`, in sequence order (see `Replication.on_change`).
        """
        if root not in self.store.subscriptions():
            return
        self.check_sender(root, sender, f"{kind} change of {path!r}")
        path = check_remote_path(path)  # messages are checked on decoding; this is the last door
        if seq is not None:
            row = (path, None, None) if kind == "deleted" else (path, etag, meta)
            if row[1] is None and kind != "deleted":
                # A change without its version: the publisher's change log has it.
                self.replication.start(root)
                return
            self.replication.on_change(root, seq, row)
            return
        if kind == "deleted":
            self._drop(root, path)
            return
        current = self.store.dataset(root, path)
        if current is not None and etag and current[0] == etag:
            return
        client = self.client(root)
        if meta and etag:
            self._install(root, path, etag, meta, client)
        else:
            self._refresh(root, path, client, None)

    # Reads

    def dataset(self, root: str, relpath: str) -> tuple[str, dict]:
        """(etag, metadata) of a dataset of a followed root; 404 when it has none."""
        self.ensure_followed(root)
        found = self.store.dataset(root, relpath)
        if found is None:
            raise NotFound("Not Found")
        return found

    def dataset_paths(self, root: str) -> tuple[list[str], list[str]]:
        """A followed root's dataset paths, sorted, and its top listing (the same lists until
        the root changes: a big listing's JSON is kept while its list is the same one).
        """
        self.ensure_followed(root)
        with self._guard:
            generation = self._changes.get(root, 0)
            kept = self._listings.get(root)
        if kept is not None and kept[0] == generation:
            return kept[1], kept[2]
        # Kept until the root's next change (a listing of 100,000 paths costs ~50 ms);
        # under the generation read before it, so a change meanwhile discards it.
        paths = self.store.dataset_paths(root)
        top = remote_containers.collapse(paths)
        with self._guard:
            self._listings[root] = (generation, paths, top)
        return paths, top

    def listing(self, root: str, relpath: str) -> list[str]:
        """A folder's datasets (a container named once), a container's leaves, or one name."""
        paths, top = self.dataset_paths(root)
        return top if not relpath else remote_containers.listed(paths, relpath)

    def info(self, root: str, relpath: str) -> dict:
        return self.versioned_info(root, relpath)[0]

    def versioned_info(self, root: str, relpath: str) -> tuple[dict, str | None]:
        """`info` and the ETag naming its version, for arrays stored as Blosc2 containers."""
        etag, stored = self.dataset(root, relpath)
        meta = dict(stored)
        if "schunk" in meta:
            meta["schunk"] = {**meta["schunk"], "urlpath": f"{root}/{stored_name(relpath)}"}
        elif "urlpath" in meta:
            meta["urlpath"] = f"{root}/{stored_name(relpath)}"
        return meta, (etag if chunked_array(relpath, stored) else None)

    def _read(self, root: str, relpath: str, plan: Plan, if_match: str | None = None):
        """Read one version through the cache: `plan(meta)` gives the (key, use) of the read.

        The version is the one in the store when the dataset's lock is taken, and
        the whole read happens under that lock. A newer version met on the
        publisher is installed if it is announced, then the read retried once;
        if it is not announced yet, 503. With `if_match`, only that version is
        read: (result, etag) or 412. Then, holding no lock, the cache is fitted back
        in its budget.
        """
        try:
            return self._read_pinned(root, relpath, plan, if_match)
        finally:
            self.cache.enforce_budget()

    def _read_pinned(self, root: str, relpath: str, plan: Plan, if_match: str | None):
        self.ensure_followed(root)
        for attempt in range(2):
            client = self.client(root)
            with self.cache.lock(root, relpath):
                found = self.store.dataset(root, relpath)
                if found is None:
                    raise NotFound("Not Found")
                etag, meta = found
                if if_match is not None and not etag_matches(if_match, etag):
                    raise PreconditionFailed(f"{root}/{relpath} changed: its version is now {etag}")
                readable(meta)
                key, use = plan(meta)
                try:
                    result = self.cache.read(root, relpath, meta, etag, client, key, use)
                    return result if if_match is None else (result, etag)
                except StaleDataset:
                    if attempt:
                        raise
            # The change message may still be on its way: do not wait for it, but
            # take the new version only once its publisher has announced it.
            if not self._refresh(root, relpath, client, etag):
                raise StaleDataset(
                    f"{root}/{relpath} is changing on its publisher; try again shortly"
                )

    def fetch(
        self,
        root: str,
        relpath: str,
        key: Key,
        field: str | None,
        filter_: str | None,
        blocks: bool = False,
    ):
        """The selection (values, or an SChunk frame), or the whole file from the publisher.

        `blocks`: the client takes big array selections as stored blocks (`BlockStream`).
        """
        etag, meta = self.dataset(root, relpath)
        readable(meta)
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")
        if blocks and not field and not filter_ and chunked_array(relpath, meta):
            stream = datasets.block_stream_of(
                (meta["shape"], meta["chunks"], meta["blocks"]),
                str_to_dtype(meta["dtype"]),
                key,
                # One version throughout: a chunk of any other ends the stream.
                lambda nchunk: self.chunk(root, relpath, nchunk, etag)[0],
            )
            if stream is not None:
                return stream
        if filter_:
            return self._read(
                root,
                relpath,
                lambda _meta: ((), lambda c: datasets.filtered_result(c, key, filter_)),
            )
        if "shape" in meta:
            if datasets.is_whole_read(tuple(meta["shape"]), key, field):
                return self.whole_file(root, relpath)
        elif field:
            raise BadRequest("A byte stream has no fields")
        else:
            nitems = meta["nbytes"] // meta["cparams"]["typesize"]
            if datasets.item_range(key, nitems) == (0, nitems):
                return self.whole_file(root, relpath)
        return self._read(root, relpath, lambda pinned: selection_plan(pinned, key, field))

    def values(self, root: str, relpath: str, key: Key, if_match: str) -> Any:
        """Values of a selection of version `if_match` of an array, read through the cache."""
        plan = lambda pinned: selection_plan(pinned, key, None)  # noqa: E731
        return self._read(root, relpath, plan, if_match)[0].values

    def chunk(
        self, root: str, relpath: str, nchunk: int, if_match: str | None = None
    ) -> tuple[bytes, str | None]:
        """A compressed chunk, through the cache, and its version (for arrays).

        With `if_match`, a chunk of any other version is refused (412).
        """
        etag, meta = self.dataset(root, relpath)
        readable(meta)
        schunk_meta = meta.get("schunk", meta)
        nchunks = schunk_meta["nchunks"]
        if not 0 <= nchunk < nchunks:
            raise BadRequest(f"Chunk {nchunk} out of range (the dataset has {nchunks} chunks)")
        use = lambda c: schunk_of(c).get_chunk(nchunk)  # noqa: E731

        def plan(pinned: dict) -> tuple[Any, Callable]:
            # The version read may have more or fewer chunks than the one checked above.
            count = pinned.get("schunk", pinned)["nchunks"]
            if not 0 <= nchunk < count:
                raise BadRequest(f"Chunk {nchunk} out of range (the dataset has {count} chunks)")
            return chunk_key(pinned, nchunk), use

        if not chunked_array(relpath, meta):
            if if_match is not None:
                raise PreconditionFailed(f"{root}/{relpath} has no version to match")
            return self._read(root, relpath, plan), None
        return self._read(root, relpath, plan, if_match or "*")

    def whole_file(self, root: str, relpath: str) -> RemoteFile:
        """The stored container of one version, assembled from the cache (chunks as stored)."""

        def plan(pinned: dict) -> tuple[Any, Callable]:
            whole = () if "shape" in pinned else slice(None)
            return whole, lambda c: self.cache.export(c, pinned)

        length, f = self._read(root, relpath, plan)
        name = served_name(relpath, self.dataset(root, relpath)[1])
        return RemoteFile(name, length, file_part(f))

    def download(self, root: str, relpath: str) -> datasets.Download:
        """The content: frames as stored, regular files decompressed (through the cache)."""
        _etag, meta = self.dataset(root, relpath)
        readable(meta)
        leaf = in_container(relpath) and "shape" in meta  # an array inside a container
        filename = served_name(relpath, meta) if leaf else logical_name(relpath).rsplit("/")[-1]
        ctype = mimetypes.guess_type(filename)[0]
        # Publishers serve every file but Blosc2 containers as a frame of its bytes, an
        # .h5 too (a publisher's `.h5` is no root of its own, unlike a subscriber's).
        if "shape" not in meta and not relpath.endswith(CONTAINER_SUFFIXES):
            content = self._read(root, relpath, lambda _m: (slice(None), lambda c: bytes(c[:])))
            return datasets.Download(filename, ctype, iter([content]), len(content))
        remote = self.whole_file(root, relpath)
        return datasets.Download(filename, ctype, remote.blocks, remote.length)

    def mirror_complete(self, root: str) -> bool:
        """Whether a mirror pass has fetched every chunk of `root` since its last change."""
        with self._guard:
            return self._mirrored_at.get(root) == self._changes.get(root, 0)

    def mirror(
        self,
        root: str,
        stop: threading.Event,
        chunks_per_second: float,
        bytes_per_second: float = 0.0,
    ) -> bool:
        """Fetch every chunk of a root into the cache, at a bounded rate; whether all are in.

        Only chunks missing from the cache are fetched (and count against the rate).
        """
        with self._guard:
            seen = self._changes.get(root, 0)
        complete = True
        for path in sorted(self.store.dataset_etags(root)):
            found = self.store.dataset(root, path)
            if found is None or stop.is_set():
                complete = False
                continue
            meta = found[1]
            if "shape" not in meta and "nbytes" not in meta:
                continue  # nothing to cache: no Blosc2 metadata
            nchunks = meta.get("schunk", meta).get("nchunks", 0)
            pause = mirror_pause(meta, chunks_per_second, bytes_per_second)
            for n in range(nchunks):
                if stop.is_set():
                    return False
                if self.cache.budget.holds(root, path, n):
                    continue
                if pause and stop.wait(pause):
                    return False
                try:
                    self._read(root, path, chunk_plan(n))
                except (NotFound, ServiceUnavailable, BadRequest):
                    complete = False
                    break
        if complete:
            with self._guard:
                self._mirrored_at[root] = seen  # a change meanwhile leaves it incomplete
        return complete


def mirror_pause(meta: dict, chunks_per_second: float, bytes_per_second: float) -> float:
    """Seconds between two chunks a mirror fetches, by both limits (0: no limit).

    A chunk counts as its uncompressed size: what was sent is at most that.
    """
    chunk_bytes = meta.get("schunk", meta).get("chunksize", 0)
    by_count = 1.0 / chunks_per_second if chunks_per_second else 0.0
    by_bytes = chunk_bytes / bytes_per_second if bytes_per_second else 0.0
    return max(by_count, by_bytes)
