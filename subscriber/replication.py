"""Replication of followed roots by their change sequence: deltas, snapshots, progress.

Each publisher numbers its root's changes (`seq`).  A followed root records
the last seq applied here (`subscriptions.seq`).  A change message with the
next seq is applied from its own content (no request to the publisher); one
with an older seq is a duplicate and ignored; one further ahead (a gap), a
heartbeat naming a seq ahead of ours, a follow and a restart start a
*catch-up* in the background: the changes since our seq from the publisher's
change log (`/api/changes`), or, when it no longer has them (410) or we have
no seq, a snapshot of the whole root (`/api/snapshot`, paged) and then the
changes since the snapshot's first page.  A publisher without these routes (an
older Caterva2) is followed the old way: its listing and one info per dataset.

Messages are the fast path, not the only one: a followed root whose publisher
has not been heard for `SILENT_AFTER` seconds (no heartbeat: the broker is down
or wedged, or our queue lost its binding) is caught up over HTTP all the same,
at most once per `SILENT_AFTER`.  A broker node restarted after `kill -9` was
seen to accept connections and then hang them for over a minute while the
publisher's HTTP answered: without this, subscribers stayed behind until it
recovered.

Publisher answers are untrusted: a page is checked whole (types, paths,
metadata) before anything of it is stored; a bad one is refused, counted
against the root and logged, and the catch-up stops with nothing of it applied.

Datasets are recorded, not cached: a cache container is created by the first
read of a dataset (see `ChunkCache.proxy`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import blosc2

from ..broker.consumer import Refused
from ..broker.messages import CHANGE_KINDS
from ..common.b2meta import str_to_dtype
from ..common.errors import BadRequest, ServiceUnavailable
from ..common.paths import check_remote_path
from .publisher_client import InvalidAnswer, NoReplication, PublisherClient

if TYPE_CHECKING:
    from .remote_roots import RemoteRoots

log = logging.getLogger(__name__)

SILENT_AFTER = 30.0
"""Seconds without a heartbeat before a followed root is polled (3 default heartbeats)."""

Row = tuple[str, str | None, dict | str | None]
"""(path, etag, meta) of a dataset version to install (meta a map, or its checked JSON
text); etag None: deleted."""


def check_meta(meta: Any) -> dict:
    """A publisher's dataset metadata, if it can describe a cached container; else ValueError."""
    if not isinstance(meta, dict):
        raise ValueError(f"metadata must be a map, not {type(meta).__name__}")
    try:
        if "shape" in meta:
            dims = [meta["shape"], meta["chunks"], meta["blocks"]]
            if not all(isinstance(d, list) and len(d) == len(dims[0]) for d in dims):
                raise ValueError("shape, chunks and blocks must be lists of one length")
            if not all(_count(n) for d in dims for n in d):
                raise ValueError("shape, chunks and blocks must hold non-negative integers")
            str_to_dtype(meta["dtype"])
            schunk = meta["schunk"]
            _check_cparams(schunk["cparams"])
            if not _count(schunk["nchunks"]):
                raise ValueError("nchunks must be a non-negative integer")
        elif "nbytes" in meta:
            if not (_count(meta["nbytes"]) and _count(meta["chunksize"])):
                raise ValueError("nbytes and chunksize must be non-negative integers")
            _check_cparams(meta["cparams"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return meta


_CODECS = frozenset(int(c.value) for c in blosc2.Codec)
_FILTERS = frozenset(int(f.value) for f in blosc2.Filter)


def _check_cparams(cparams: Any) -> None:
    """What `cparams_from_meta` takes, checked without building it (a snapshot has 100,000)."""
    if not isinstance(cparams, dict):
        raise ValueError("cparams must be a map")
    codec = cparams["codec"]
    if not _count(codec) or (codec < 32 and codec not in _CODECS):
        raise ValueError(f"unknown codec {codec!r}")
    if not (_count(cparams["clevel"]) and _count(cparams["typesize"])):
        raise ValueError("clevel and typesize must be non-negative integers")
    filters, filters_meta = cparams["filters"], cparams["filters_meta"]
    if not isinstance(filters, list) or not all(f in _FILTERS for f in filters):
        raise ValueError(f"unknown filters {filters!r:.80}")
    if not isinstance(filters_meta, list) or not all(_int(m) for m in filters_meta):
        raise ValueError("filters_meta must be a list of integers")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seq(value: Any, what: str) -> int:
    if not _count(value):
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a path must be a string, not {value!r}")
    try:
        return check_remote_path(value)
    except BadRequest as exc:
        raise ValueError(f"invalid path {value!r}: {exc.detail}") from None


def _version(path: Any, etag: Any, mtime: Any, meta: Any) -> Row:
    """One dataset version of an answer, checked."""
    path = _path(path)
    if not isinstance(etag, str) or not etag:
        raise ValueError(f"{path}: etag must be a non-empty string, not {etag!r}")
    if mtime is not None and not (
        isinstance(mtime, int | float) and not isinstance(mtime, bool) and math.isfinite(mtime)
    ):
        raise ValueError(f"{path}: mtime must be a number, not {mtime!r}")
    try:
        return path, etag, check_meta(meta)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid metadata ({exc})") from None


def parse_changes(body: dict, since: int) -> tuple[int, list[tuple[int, Row]], bool]:
    """(publisher's seq, [(seq, row)] in order, more) of a `/api/changes` answer; ValueError."""
    seq = _seq(body.get("seq"), "seq")
    changes, more = body.get("changes"), body.get("more")
    if not isinstance(changes, list) or not isinstance(more, bool):
        raise ValueError("changes must be a list and more a boolean")
    parsed, last = [], since
    for entry in changes:
        if not isinstance(entry, list) or len(entry) != 6:
            raise ValueError(f"a change must be a list of 6 fields, not {entry!r:.80}")
        number, path, kind, etag, mtime, meta = entry
        number = _seq(number, "a change's seq")
        if number <= last or number > seq:
            raise ValueError(f"change seq {number} out of order (after {last}, up to {seq})")
        last = number
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change kind {kind!r:.40}")
        if kind == "deleted":
            parsed.append((number, (_path(path), None, None)))
        else:
            parsed.append((number, _version(path, etag, mtime, meta)))
    return seq, parsed, more


def _stored_version(path: Any, etag: Any, mtime: Any, meta: Any) -> Row:
    """A snapshot's dataset version, its metadata as JSON text: checked, kept as text."""
    if not isinstance(meta, str):
        raise ValueError(f"{path!r:.80}: metadata must be JSON text, not {type(meta).__name__}")
    try:
        decoded = json.loads(meta)
    except ValueError as exc:
        raise ValueError(f"{path!r:.80}: metadata is not JSON ({exc})") from None
    checked = _version(path, etag, mtime, decoded)
    return checked[0], checked[1], meta  # stored as it came: no second encoding


def parse_snapshot(body: dict, after: str) -> tuple[int, list[Row], str | None]:
    """(seq, rows, next page's `after`) of a `/api/snapshot` answer; ValueError if invalid."""
    seq = _seq(body.get("seq"), "seq")
    datasets, following = body.get("datasets"), body.get("next")
    if not isinstance(datasets, list):
        raise ValueError("datasets must be a list")
    if following is not None and (not isinstance(following, str) or following <= after):
        raise ValueError(f"next must be a path after {after!r}, not {following!r:.80}")
    rows = []
    for entry in datasets:
        if not isinstance(entry, list) or len(entry) != 4:
            raise ValueError(f"a dataset must be a list of 4 fields, not {entry!r:.80}")
        rows.append(_stored_version(*entry))
    return seq, rows, following


class Replication:
    """Keeps followed roots current by sequence; catch-ups run in background threads."""

    def __init__(self, remote: RemoteRoots) -> None:
        self.remote = remote
        self.store = remote.store
        self._guard = threading.Lock()
        self._running: dict[str, threading.Event] = {}  # root → set when its catch-up ends
        self._again: set[str] = set()  # roots to catch up once more when the running one ends
        self._errors: dict[str, str] = {}
        self._legacy: set[str] = set()  # roots whose publisher has no change log
        self._polled: dict[str, float] = {}  # silent root → when it was last polled
        self._closed = False

    # -- progress ----------------------------------------------------------------

    def status(self, root: str) -> dict:
        """`{"state": "syncing" | "ready" | "error", "seq", "datasets", "error"?}` of a root."""
        seq = self.store.root_seq(root)
        with self._guard:
            running = root in self._running
            error = self._errors.get(root)
            legacy = root in self._legacy
        if running:
            state = "syncing"
        elif error:
            state = "error"
        else:
            state = "ready" if seq is not None or legacy else "syncing"
        found = {"state": state, "seq": seq, "datasets": self.store.count_datasets(root)}
        if error:
            found["error"] = error
        return found

    # -- catch-ups -----------------------------------------------------------------

    def poll_silent(self, now: float, silent_after: float | None = None) -> list[str]:
        """Catch up the followed roots not heard from for `silent_after` s (not gone offline).

        Called periodically by the follower; returns the roots whose catch-up it started.
        """
        silent_after = SILENT_AFTER if silent_after is None else silent_after
        started = []
        roots = self.store.remote_roots()
        for root in self.store.subscriptions():
            row = roots.get(root)
            if row is None or not row["online"] or now - row["seen"] < silent_after:
                continue
            with self._guard:
                if root in self._legacy or now - self._polled.get(root, -math.inf) < silent_after:
                    continue
                self._polled[root] = now
            log.info("%s: no heartbeat for %.0f s: catching up over HTTP", root, now - row["seen"])
            self.start(root)
            started.append(root)
        return started

    def start(self, root: str) -> threading.Event:
        """Catch `root` up in the background (once more if one runs); set when done."""
        with self._guard:
            done = self._running.get(root)
            if done is not None:
                self._again.add(root)
                return done
            if self._closed:
                done = threading.Event()
                done.set()
                return done
            done = self._running[root] = threading.Event()
        threading.Thread(
            target=self._run, args=(root, done), name=f"cat2sub-sync-{root}", daemon=True
        ).start()
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Start no more catch-ups; give the running ones `timeout` s to end."""
        with self._guard:
            self._closed = True
            running = list(self._running.values())
        deadline = time.monotonic() + timeout
        for done in running:
            done.wait(max(0.0, deadline - time.monotonic()))

    def wait(self, root: str, timeout: float | None = None) -> bool:
        """Wait for the running catch-up of `root` (if any) to end."""
        with self._guard:
            done = self._running.get(root)
        return done is None or done.wait(timeout)

    def _run(self, root: str, done: threading.Event) -> None:
        try:
            while True:
                with self._guard:
                    self._again.discard(root)
                try:
                    self.catch_up(root)
                except Exception as exc:  # logged and shown; the next heartbeat retries
                    if self._closed:  # the subscriber stopped under it (its clients closed)
                        with self._guard:
                            self._running.pop(root, None)
                        break
                    reason = getattr(exc, "detail", None) or str(exc)
                    log.warning("catching up %s failed: %s", root, reason)
                    with self._guard:
                        self._errors[root] = str(reason)[:500]
                with self._guard:
                    if root not in self._again or root not in self.store.subscriptions():
                        del self._running[root]
                        break
        finally:
            done.set()

    def catch_up(self, root: str) -> None:
        """Bring `root` to its publisher's latest seq: delta, else snapshot, else the old way."""
        if root not in self.store.subscriptions():
            return
        client = self.remote.client(root)
        try:
            with self.remote._sync_lock(root):
                seq = self.store.root_seq(root)
                if seq is None or not self._delta(root, client, seq):
                    self._snapshot(root, client)
        except NoReplication:
            with self._guard:
                self._legacy.add(root)
            self.remote.sync(root)  # takes the sync lock itself
        with self._guard:
            self._errors.pop(root, None)

    def _refuse(self, root: str, route: str, why: str) -> InvalidAnswer:
        reason = f"refused the {route} answer of {root!r}: {why}"
        log.warning("%s", reason)
        self.store.record_refusal(root, reason)
        return InvalidAnswer(reason)

    def _delta(self, root: str, client: PublisherClient, seq: int) -> bool:
        """Apply the changes after `seq`; False if the publisher has them no more."""
        while True:
            body = client.changes(seq)
            if body is None:
                log.info("%s: changes since %d are gone from its publisher: snapshot", root, seq)
                return False
            try:
                _current, changes, more = parse_changes(body, seq)
            except ValueError as exc:
                raise self._refuse(root, "/api/changes", str(exc)) from None
            if changes:
                # Each change carries the whole new state of its path: the last one counts.
                final = {row[0]: row for _number, row in changes}
                self.apply(root, list(final.values()))
                seq = changes[-1][0]
                self.store.set_root_seq(root, seq)
            if not more or not changes:
                return True

    def _snapshot(self, root: str, client: PublisherClient) -> None:
        """Install the whole root from its snapshot pages, then the changes after it."""
        known = self.store.dataset_etags(root)
        seen: set[str] = set()
        after, first_seq = "", None
        # The next page is asked for while this one is checked and stored: the publisher
        # and we each take about half of a page's time.
        with ThreadPoolExecutor(1, thread_name_prefix="cat2sub-snapshot") as pool:
            page = pool.submit(client.snapshot, after)
            while True:
                body = page.result()
                ahead = body.get("next")
                if isinstance(ahead, str) and ahead > after:
                    page = pool.submit(client.snapshot, ahead)
                try:
                    seq, rows, following = parse_snapshot(body, after)
                except ValueError as exc:
                    raise self._refuse(root, "/api/snapshot", str(exc)) from None
                if first_seq is None:
                    first_seq = seq
                seen.update(path for path, _, _ in rows)
                self.apply(root, [row for row in rows if known.get(row[0]) != row[1]], known)
                if following is None:
                    break
                after = following
        self.apply(root, [(path, None, None) for path in known.keys() - seen])
        # Later pages may be newer than the first: the changes since it settle every path.
        self.store.set_root_seq(root, first_seq)
        log.info("%s: snapshot of %d datasets at seq %d", root, len(seen), first_seq)
        if not self._delta(root, client, first_seq):
            raise ServiceUnavailable(f"the publisher of {root} lost its changes during a snapshot")

    def apply(self, root: str, rows: list[Row], known: dict | None = None) -> None:
        """Record checked versions (etag None: deleted) in one transaction; drop stale caches.

        `known`: the paths stored before (others have nothing cached: a snapshot's new ones).
        """
        if not rows:
            return
        cache = self.remote.cache
        if known is not None:
            # New to us: nothing cached, nothing read yet; stored all in one transaction.
            self.store.put_datasets(root, [r for r in rows if r[0] not in known and r[1]])
        for path, etag, meta in rows:
            if known is not None and path not in known and etag is not None:
                continue
            # Row and container change together under the dataset's lock: a read between
            # them would open the old version's container for the new metadata. The old
            # container goes; the next read builds the new version's.
            with cache.lock(root, path):
                cache.remove(root, path)
                if etag is None:
                    self.store.delete_dataset(root, path)
                else:
                    self.store.put_datasets(root, [(path, etag, meta)])
        self.remote._changed(root)

    # -- messages ------------------------------------------------------------------

    def on_change(self, root: str, seq: int, row: Row) -> None:
        """A change message with a seq: apply it if it is the next one, else catch up."""
        lock = self.remote._sync_lock(root)
        if not lock.acquire(blocking=False):
            self.start(root)  # a catch-up runs: it (or the one after it) gets this change
            return
        try:
            last = self.store.root_seq(root)
            if last is not None and seq <= last:
                log.debug("%s: change %d already applied (at %d); ignored", root, seq, last)
                return
            if last is None or seq > last + 1:
                log.info("%s: change %d after %s: catching up", root, seq, last)
                self.start(root)
                return
            if row[1] is not None:
                try:
                    check_meta(row[2])
                except ValueError as exc:
                    reason = f"change {seq} of {row[0]!r} in {root!r}: invalid metadata ({exc})"
                    self.store.record_refusal(root, reason)
                    raise Refused(reason) from None
            self.apply(root, [row])
            self.store.set_root_seq(root, seq)
        finally:
            lock.release()

    def on_announce(self, root: str, seq: int) -> None:
        """A heartbeat naming the publisher's seq: catch up if ours differs."""
        last = self.store.root_seq(root)
        if last != seq:
            # Behind: fetch what we missed. Ahead: the publisher lost its history; the
            # delta answers 410 and a snapshot follows.
            log.info("%s: publisher at seq %d, we are at %s: catching up", root, seq, last)
            self.start(root)
