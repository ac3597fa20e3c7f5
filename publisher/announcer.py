"""Tell the broker what changed in the root, and that the root is there.

Every change goes through the outbox: the new etag and the message are stored
in one transaction, then published; the row is dropped when the broker
confirms.  Whatever is left in the outbox at start (the broker was down, or
we crashed) is published again, and a scan of the root against the recorded
etags finds what changed while we were not running.  Root announcements are
live state, not history: they are not kept in the outbox.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from ..broker.messages import (
    ChangeMessage,
    DiscoverRequest,
    Message,
    MessageError,
    RootAnnouncement,
    decode,
    encode,
)
from ..broker.publisher import ConfirmedPublisher, PublisherClosed
from ..common.errors import NotFound
from .root_adapters import DatasetStat, RootAdapter
from .state import Change, State

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 10.0
DEFAULT_RESCAN = 60.0
"""Seconds between two rescans of the root, which catch changes whose events were lost."""
SETTLE = 2.0
"""A rescan leaves a file changed less than this long ago for later: it may be mid-write."""
BATCH = 256
"""Changes recorded in one transaction at most (bursts, the start-up scan)."""
_RESCAN = object()  # queue item: compare the whole root with the recorded etags


class Announcer:
    """Publish the root's changes and announcements through a `ConfirmedPublisher`."""

    def __init__(
        self,
        name: str,
        url: str,
        adapter: RootAdapter,
        state: State,
        broker_url: str,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        rescan_every: float = DEFAULT_RESCAN,
        settle: float = SETTLE,
    ) -> None:
        """Prepare to announce root `name`, served at `url`, to the broker at `broker_url`.

        The root is rescanned every `rescan_every` seconds (0: only at start and
        when asked); a rescan announces no file changed within `settle` seconds.
        """
        self.name = name
        self.url = url
        self.adapter = adapter
        self.state = state
        self.broker_url = broker_url
        self.heartbeat = heartbeat
        self.rescan_every = rescan_every
        self.settle = settle
        self.publisher: ConfirmedPublisher | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._scanned = threading.Event()
        self._unannounced = 0  # datasets the last scan left for later (changed a moment ago)
        self._last_heartbeat: Future | None = None
        self._worker = threading.Thread(target=self._work, name="cat2pub-changes", daemon=True)
        self._beater = threading.Thread(target=self._beat, name="cat2pub-heartbeat", daemon=True)
        self._rescanner = threading.Thread(
            target=self._rescan_loop, name="cat2pub-rescan", daemon=True
        )

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background), replay the outbox, announce, then scan the root."""
        self.publisher = ConfirmedPublisher(
            self.broker_url, on_discover=self._on_discover, name=f"cat2pub-{self.name}"
        )
        self._replay_outbox()
        self.announce()
        self._queue.put(_RESCAN)
        self._worker.start()
        self._beater.start()
        if self.rescan_every > 0:
            self._rescanner.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop handling changes, announce that the root is offline and flush to the broker."""
        self._stopping.set()
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout)
        if self._beater.is_alive():
            self._beater.join(timeout)
        if self._rescanner.is_alive():
            self._rescanner.join(timeout)
        if self.publisher is not None:
            try:
                self.announce(online=False)
            except PublisherClosed:
                pass
            # Unconfirmed changes stay in the outbox and go out at the next start, so
            # with the broker away there is little point waiting long for it.
            self.publisher.close(timeout if self.publisher.connected else min(timeout, 1.0))

    def wait_scanned(self, timeout: float | None = None) -> bool:
        """Wait until the start-up scan of the root is done."""
        return self._scanned.wait(timeout)

    def index_complete(self) -> bool:
        """Whether the recorded etags name every dataset: scanned, none left for later."""
        return self._scanned.is_set() and not self._unannounced

    # -- input ---------------------------------------------------------------

    def notify(self, fs_relpath: str) -> None:
        """A settled change of a path in the watched directory (from the watcher)."""
        self._queue.put(fs_relpath)

    def rescan(self) -> None:
        """Compare the whole root with the recorded etags (e.g. after lost events)."""
        if not self._stopping.is_set():
            self._queue.put(_RESCAN)

    def _rescan_loop(self) -> None:
        # Cheap: a walk and a stat per dataset; only what changed is opened.
        while not self._stopping.wait(self.rescan_every):
            self.rescan()

    # -- root announcements ----------------------------------------------------

    @property
    def root_etag(self) -> str:
        """The etag of the root as announced so far."""
        return self.state.root_etag()

    def announce(self, online: bool = True) -> Future[None]:
        """Publish a fresh announcement of the root, with its last change's seq."""
        message = RootAnnouncement(
            root=self.name,
            url=self.url,
            etag=self.state.root_etag(),
            online=online,
            seq=self.state.seq,
        )
        return self.publisher.publish(message)

    def _on_discover(self, request: DiscoverRequest) -> None:
        # Runs in the broker I/O thread: only queue a message, never wait.
        log.debug("discover request from %s", request.reply_to)
        if not self._stopping.is_set():
            self.announce()

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat):
            last = self._last_heartbeat
            # While the broker is away one unconfirmed heartbeat is enough: it is
            # re-sent on reconnect, and piling up more would only flood it then.
            if last is not None and not last.done():
                continue
            try:
                self._last_heartbeat = self.announce()
            except PublisherClosed:
                return

    # -- changes ----------------------------------------------------------------

    def _replay_outbox(self) -> None:
        rows = self.state.outbox()
        if rows:
            log.info("re-sending %d unconfirmed message(s) from the outbox", len(rows))
        for row_id, body in rows:
            try:
                message = decode(body)
            except MessageError as exc:
                log.error("dropping undecodable outbox row %d: %s", row_id, exc)
                self.state.confirmed(row_id)
                continue
            self._publish(row_id, message)

    def _publish(self, row_id: int, message: Message) -> None:
        self.publisher.publish(message, on_confirmed=lambda: self.state.confirmed(row_id))

    def _work(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                if item is _RESCAN:
                    self._rescan()
                    continue
                # A burst: take what else is waiting, and record it all in one transaction.
                items = [item]
                while len(items) < BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None or more is _RESCAN:
                        self._queue.put(more)  # after this batch
                        break
                    items.append(more)
                pending: dict[str, Change] = {}
                for fs_relpath in items:
                    for relpath in sorted(self.adapter.affected(fs_relpath, self.state.known())):
                        if self._stopping.is_set():
                            return
                        self._reconcile(relpath, pending)
                self._commit(pending)
            except Exception:
                log.exception("handling change %r failed", item)

    def _rescan(self) -> None:
        recorded = self.state.etags()
        before = self.state.root_etag()
        settled_before = time.time() - self.settle
        left = 0
        pending: dict[str, Change] = {}
        listed, versions = self.adapter.scan()
        for relpath in sorted(set(recorded) | set(listed)):
            if self._stopping.is_set():
                return
            try:
                found = versions.get(relpath)
                left += not self._reconcile(relpath, pending, settled_before, found)
            except Exception:
                log.exception("announcing %s failed", relpath)
            if len(pending) >= BATCH:
                self._commit(pending)
        self._commit(pending)
        self._unannounced = left
        if not self._scanned.is_set():
            log.info("start-up scan of %s done: %d datasets", self.name, len(self.state.known()))
        self._scanned.set()
        if self.state.root_etag() != before and not self._stopping.is_set():
            self.announce()
        if left and not self._stopping.is_set():
            # Changed a moment ago: the watcher reports them once settled, unless their
            # events were lost; look again once they had time to settle.
            log.info("%d recently changed dataset(s) left for the next look", left)
            timer = threading.Timer(self.settle, self.rescan)
            timer.daemon = True
            timer.start()

    def _reconcile(
        self,
        relpath: str,
        pending: dict[str, Change],
        settled_before: float | None = None,
        current: DatasetStat | None = None,
    ) -> bool:
        """Add a dataset's change to `pending` if its version differs from the recorded one.

        With `settled_before`, a version changed after that time is not announced
        (it may be mid-write): returns False then, True otherwise. `current`: its
        version if known already (from a scan), else asked of the adapter.
        """
        if relpath in pending:
            recorded = pending[relpath].etag
        else:
            recorded = self.state.etag(relpath)
        if current is None:
            current = self.adapter.stat(relpath)
        if (
            settled_before is not None
            and current is not None
            and current.etag != recorded
            and current.changed > settled_before
        ):
            return False
        if current is not None and current.etag != recorded:
            try:
                stat, meta = self.adapter.info(relpath)
            except NotFound:
                current = None  # vanished meanwhile
            else:
                if stat.etag != recorded:
                    was_known = self.state.etag(relpath) is not None
                    kind = "modified" if was_known else "created"
                    pending[relpath] = Change(relpath, kind, stat.etag, stat.mtime, meta)
                return True
        if current is None and recorded is not None:
            if self.state.etag(relpath) is None:
                pending.pop(relpath)  # created and gone within one batch: nothing to say
            else:
                pending[relpath] = Change(relpath, "deleted")
        return True

    def _commit(self, pending: dict[str, Change]) -> None:
        """Record and publish the pending changes (one transaction), then empty `pending`."""
        if not pending:
            return
        changes = list(pending.values())
        pending.clear()
        messages: dict[int, ChangeMessage] = {}

        def encoded(change: Change, seq: int) -> bytes:
            message = ChangeMessage(
                self.name,
                change.relpath,
                change.kind,
                change.etag,
                change.mtime,
                change.meta or {},
                seq=seq,
            )
            messages[seq] = message
            return encode(message)

        queued = self.state.record(changes, encoded)
        log.info(
            "recorded %d change(s) of %s, up to seq %d", len(changes), self.name, queued[-1][1]
        )
        for change in changes:
            log.debug("%s %s/%s (etag %s)", change.kind, self.name, change.relpath, change.etag)
            if change.kind == "deleted":
                self.adapter.forget(change.relpath)
        for row_id, seq in queued:
            self._publish(row_id, messages[seq])
