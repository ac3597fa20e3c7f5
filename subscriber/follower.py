"""The subscriber's link to RabbitMQ: follows roots, applies changes, mirrors on request."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from ..broker.consumer import Consumer
from ..broker.messages import ChangeMessage, RootAnnouncement
from ..broker.topology import DEFAULT_QUEUE_EXPIRY
from .mirroring import MirrorLoop
from .remote_roots import RemoteRoots

log = logging.getLogger(__name__)

BIND_TIMEOUT = 10.0
SILENCE_CHECK = 5.0  # seconds between looks for followed roots whose heartbeats stopped


def subscriber_id(remote: RemoteRoots, configured: str | None) -> str:
    """This subscriber's durable identity (its queue is `cat2.sub.<id>`)."""
    if configured:
        return configured
    known = remote.store.get_setting("subscriber_id")
    if known is None:
        known = uuid.uuid4().hex[:12]
        remote.store.set_setting("subscriber_id", known)
    return known


class Follower:
    """Consumes this subscriber's queue and keeps the followed roots current."""

    def __init__(
        self,
        remote: RemoteRoots,
        broker_url: str,
        sub_id: str | None = None,
        mirror_rate: float = 200.0,
        mirror_bandwidth: float = 0.0,
        queue_expiry: float | None = DEFAULT_QUEUE_EXPIRY,
        silent_after: float | None = None,
    ) -> None:
        self.remote = remote
        self.id = subscriber_id(remote, sub_id)
        self.mirror_rate = mirror_rate
        self.silent_after = silent_after  # None: replication.SILENT_AFTER
        self.consumer = Consumer(
            broker_url,
            self.id,
            self.handle,
            roots=remote.store.subscriptions(),
            queue_expiry=queue_expiry,
            # A new queue (expired while we were away) holds none of the changes missed.
            on_new_queue=self._resume,
        )
        remote.on_follow = self._bind
        threading.Thread(target=self._resume, name="cat2sub-resume", daemon=True).start()
        self._closing = threading.Event()
        threading.Thread(target=self._watch_silence, name="cat2sub-silence", daemon=True).start()
        self._mirror = MirrorLoop(remote, mirror_rate, mirror_bandwidth).start()

    def _bind(self, root: str) -> None:
        try:
            self.consumer.follow(root).result(timeout=BIND_TIMEOUT)
        except Exception as exc:  # the binding is redone on every reconnection anyway
            log.warning("could not bind %s now (%s); will bind on reconnection", root, exc)

    def handle(self, message: ChangeMessage | RootAnnouncement) -> None:
        """Apply one message; raising makes the consumer requeue it."""
        if isinstance(message, ChangeMessage):
            self.remote.apply_change(
                message.root,
                message.path,
                message.kind,
                message.etag,
                message.meta,
                message.sender,
                message.seq,
            )
        elif isinstance(message, RootAnnouncement):
            self.remote.announce(
                message.root,
                message.url,
                message.etag,
                message.online,
                message.sender,
                message.seq,
            )

    def _resume(self) -> None:
        """After a restart: catch every followed root up (the changes since its seq)."""
        for root in self.remote.store.subscriptions():
            if self.remote.is_known(root):
                self.remote.replication.start(root)

    def _watch_silence(self) -> None:
        """Poll the publishers of followed roots whose heartbeats stopped coming."""
        if self.silent_after == 0:  # configured off: the broker alone brings news
            return
        while not self._closing.wait(SILENCE_CHECK):
            try:
                self.remote.replication.poll_silent(time.time(), self.silent_after)
            except Exception:  # noqa: BLE001 - a bad round must not end the watch
                log.exception("looking for silent roots failed")

    def close(self) -> None:
        self._closing.set()
        self._mirror.close()
        self.consumer.close(timeout=5)
