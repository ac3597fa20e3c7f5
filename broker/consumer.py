"""Consumer: a subscriber's acking, reconnecting reader of its queue and of announcements."""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from . import topology
from .connection import Backoff, describe, parameters, redact
from .messages import ChangeMessage, DiscoverRequest, MessageError, RootAnnouncement, decode, encode

log = logging.getLogger(__name__)

Handler = Callable[[ChangeMessage | RootAnnouncement], Any]

REASON_HEADER = "x-caterva2-reason"
"""Header of a dead letter that says why it was refused."""
SENDER_HEADER = "x-caterva2-sender"
"""Header of a dead letter naming the broker user that sent it ('' when it did not say)."""
QUEUE_HEADER = "x-caterva2-queue"
"""Header of a dead letter naming the queue that refused it."""


class Refused(Exception):
    """Raised by a handler for a message it will never apply (not just not now).

    The consumer dead-letters it with the reason, instead of requeueing it.
    """


# How long the I/O thread blocks in pika at most; other threads wake it earlier.
_POLL = 1.0


@dataclass(eq=False)
class _Op:
    """Work for the I/O thread, queued by any thread."""

    kind: str  # ack | nack | refuse | bind | unbind | discover
    arg: Any = None  # delivery tag or root
    gen: int = 0  # channel generation an ack/nack belongs to
    future: Future | None = field(default=None)


@dataclass(eq=False)
class _Delivery:
    gen: int
    tag: int
    message: ChangeMessage | RootAnnouncement | None
    sender: str | None = None
    exchange: str = ""
    routing_key: str = ""
    body: bytes = b""


class Consumer:
    """Read changes from `cat2.sub.<id>` and announcements from `cat2.roots`; call handler.

    An I/O thread owns the connection (heartbeats keep flowing however long the
    handler takes) and a worker thread calls `handler(message)` for one message
    at a time, in queue order.  A change is acked only after the handler returns;
    if it raises, the change is nacked and requeued, and after
    `topology.DELIVERY_LIMIT` deliveries the broker dead-letters it.  A message
    that does not decode is rejected (dead-lettered) and logged.  Announcements
    are live state, not history: a failing handler just logs them, the next
    heartbeat brings them again.  Handlers must be idempotent: duplicates and
    redeliveries happen around reconnects.
    """

    def __init__(
        self,
        url: str,
        subscriber_id: str,
        handler: Handler,
        *,
        roots: Iterable[str] = (),
        prefetch: int = 8,
        discover_on_connect: bool = True,
        nack_delay: float = 1.0,
        backoff: Backoff | None = None,
        queue_expiry: float | None = topology.DEFAULT_QUEUE_EXPIRY,
        on_new_queue: Callable[[], Any] | None = None,
    ) -> None:
        """Start consuming for subscriber_id; roots are (re)bound on every connection.

        The queue expires after `queue_expiry` s without a consumer. When a
        connection finds the queue new (first run, expired, or re-created with new
        arguments), `on_new_queue()` is called once it is bound: the changes it
        would have held are gone, so the caller resyncs.
        """
        self.subscriber_id = subscriber_id
        self.queue = topology.subscriber_queue(subscriber_id)
        self._params = parameters(url, f"caterva2-sub-{subscriber_id}")
        self._url = redact(url)
        self._handler = handler
        self._prefetch = prefetch
        self._discover_on_connect = discover_on_connect
        self._nack_delay = nack_delay
        self._queue_expiry = queue_expiry
        self._on_new_queue = on_new_queue
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._followed = {topology.check_root(r) for r in roots}
        self._ops: collections.deque[_Op] = collections.deque()  # appends/pops are atomic
        self._work: queue.Queue[_Delivery | None] = queue.Queue()
        self._gen = 0
        self.refused = 0
        self._may_publish_dead_letters = True
        """Messages dead-lettered as invalid or refused by the handler, since start."""
        self._conn: pika.BlockingConnection | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._io = threading.Thread(target=self._run_io, name=f"{self.queue}-io", daemon=True)
        self._worker = threading.Thread(target=self._run_worker, name=self.queue, daemon=True)
        self._worker.start()
        self._io.start()

    # -- public API (any thread) -------------------------------------------

    def follow(self, root: str) -> Future[None]:
        """Bind this subscriber's queue to root's changes; the future resolves once bound."""
        root = topology.check_root(root)
        with self._lock:
            self._followed.add(root)
        return self._submit(_Op("bind", root, future=Future()))

    def unfollow(self, root: str) -> Future[None]:
        """Unbind this subscriber's queue from root's changes; the future resolves once unbound."""
        root = topology.check_root(root)
        with self._lock:
            self._followed.discard(root)
        return self._submit(_Op("unbind", root, future=Future()))

    def discover(self) -> Future[None]:
        """Ask every publisher to announce its root now (answers reach the handler)."""
        return self._submit(_Op("discover", future=Future()))

    @property
    def followed(self) -> frozenset[str]:
        """Return the roots this consumer binds on every connection."""
        with self._lock:
            return frozenset(self._followed)

    @property
    def connected(self) -> bool:
        """Return whether the consumer is connected and consuming."""
        return self._ready.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until consuming; return False on timeout."""
        return self._ready.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop consuming and close the connection; unacked messages go back to the queue."""
        self._stopping.set()
        self._wake()
        self._io.join(timeout)
        self._worker.join(timeout)

    def __enter__(self) -> Consumer:
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close."""
        self.close()

    # -- any thread ----------------------------------------------------------

    def _submit(self, op: _Op) -> Future[None]:
        if self._stopping.is_set():
            raise RuntimeError("consumer is closed")
        self._ops.append(op)
        self._wake()
        return op.future

    def _wake(self) -> None:
        with self._lock:
            conn = self._conn
        if conn is None:
            return  # not connected: queued ops run once the next session starts
        try:
            conn.add_callback_threadsafe(lambda: None)  # makes process_data_events return
        except pika.exceptions.ConnectionWrongStateError:
            pass  # closing: the I/O loop is about to notice by itself

    # -- I/O thread ----------------------------------------------------------

    def _run_io(self) -> None:
        try:
            while not self._stopping.is_set():
                conn = None
                try:
                    conn = pika.BlockingConnection(self._params)
                    self._session(conn)
                except (pika.exceptions.AMQPError, OSError) as exc:
                    if not self._stopping.is_set():
                        what = "connection lost" if self._ready.is_set() else "cannot connect"
                        log.warning("%s: %s to %s: %s", self.queue, what, self._url, describe(exc))
                except Exception:
                    log.exception("%s: consumer I/O failed", self.queue)
                finally:
                    self._ready.clear()
                    with self._lock:
                        self._conn = None
                    if conn is not None and conn.is_open:
                        try:
                            conn.close()
                        except Exception:
                            pass
                if self._stopping.is_set():
                    break
                delay = self._backoff.next()
                log.info("%s: reconnecting in %.2f s", self.queue, delay)
                self._stopping.wait(delay)
        finally:
            self._work.put(None)  # lets the worker exit
            while self._ops:
                op = self._ops.popleft()
                if op.future is not None and not op.future.done():
                    op.future.set_exception(RuntimeError("consumer closed before it was done"))

    def _session(self, conn: pika.BlockingConnection) -> None:
        with self._lock:
            self._conn = conn
            self._gen += 1
            gen = self._gen
            roots = sorted(self._followed)
        channel = topology.ensure_topology(conn)
        channel.basic_qos(prefetch_count=self._prefetch)
        new_queue = topology.declare_subscriber_queue_fresh(
            conn, self.subscriber_id, self._queue_expiry
        )
        for root in roots:
            # Bindings are durable; re-binding heals a queue that was deleted and re-created.
            topology.follow(channel, self.subscriber_id, root)
        if new_queue and self._on_new_queue is not None:
            log.info("%s: queue is new; resyncing the followed roots", self.queue)
            threading.Thread(target=self._on_new_queue, daemon=True).start()
        announcements = topology.declare_announcement_queue(channel)
        channel.basic_consume(self.queue, functools.partial(self._on_message, gen, ChangeMessage))
        channel.basic_consume(
            announcements, functools.partial(self._on_message, gen, RootAnnouncement)
        )
        self._backoff.reset()
        self._ready.set()
        log.info("%s: consuming from %s", self.queue, self._url)
        if self._discover_on_connect:
            # Announcements sent while we were away are gone: ask for fresh ones.
            self._send_discover(channel)
        while not self._stopping.is_set():
            self._run_ops(channel, gen)
            conn.process_data_events(time_limit=_POLL)
        self._run_ops(channel, gen)  # acks of messages handled before close
        conn.close()

    def _run_ops(self, channel: Any, gen: int) -> None:
        while True:
            try:
                op = self._ops.popleft()
            except IndexError:
                return
            if op.kind in ("ack", "nack", "refuse"):
                if op.gen != gen:
                    continue  # its channel is gone; the broker redelivers that message
                if op.kind == "ack":
                    channel.basic_ack(op.arg)
                elif op.kind == "nack":
                    channel.basic_nack(op.arg, requeue=True)
                else:
                    delivery, reason = op.arg
                    self._dead_letter(channel, delivery, reason)
                continue
            try:
                if op.kind == "bind":
                    topology.follow(channel, self.subscriber_id, op.arg)
                elif op.kind == "unbind":
                    topology.unfollow(channel, self.subscriber_id, op.arg)
                elif op.kind == "discover":
                    self._send_discover(channel)
            except Exception:
                self._ops.appendleft(op)  # retried on the next connection
                raise
            if op.future is not None:
                op.future.set_result(None)

    def _send_discover(self, channel: Any) -> None:
        request = DiscoverRequest(reply_to=self.subscriber_id)
        exchange, routing_key = topology.route(request)
        # Transient: a discover request is only worth something right now.
        channel.basic_publish(exchange, routing_key, encode(request))

    def _dead_letter(self, channel: Any, delivery: _Delivery, reason: str) -> None:
        """Send a refused message to the dead-letter exchange with why, then drop it here."""
        self.refused += 1
        log.warning(
            "%s: refused message from %r on %r (key %r): %s",
            self.queue,
            delivery.sender,
            delivery.exchange,
            delivery.routing_key,
            reason,
        )
        headers = {
            REASON_HEADER: reason[:1000],
            SENDER_HEADER: delivery.sender or "",
            QUEUE_HEADER: self.queue,
            "x-caterva2-exchange": delivery.exchange,
            "x-caterva2-routing-key": delivery.routing_key,
        }
        if not self._may_publish_dead_letters:
            # The broker dead-letters it all the same, only without our reason.
            channel.basic_reject(delivery.tag, requeue=False)
            return
        try:
            channel.basic_publish(
                topology.DEAD_EXCHANGE,
                delivery.routing_key,
                delivery.body,
                properties=pika.BasicProperties(headers=headers),
            )
            channel.basic_ack(delivery.tag)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 403:
                log.warning("%s: may not publish to %s", self.queue, topology.DEAD_EXCHANGE)
                self._may_publish_dead_letters = False
            raise  # the message comes back on the next connection

    def _on_message(
        self, gen: int, expected: type, channel: Any, method: Any, props: Any, body: bytes
    ) -> None:
        # RabbitMQ refuses a user_id that is not the publishing connection's user, so this
        # identity is the broker's word; a message that gives none has no identity at all.
        sender = props.user_id if isinstance(props.user_id, str) and props.user_id else None
        delivery = _Delivery(gen, method.delivery_tag, None, sender, method.exchange)
        delivery.routing_key, delivery.body = method.routing_key, body
        try:
            message = decode(body)
            if not isinstance(message, expected):
                raise MessageError(f"unexpected {message.type} message")
        except MessageError as exc:
            self._dead_letter(channel, delivery, f"invalid message: {exc}")
            return
        delivery.message = dataclasses.replace(message, sender=sender)
        self._work.put(delivery)

    # -- worker thread -------------------------------------------------------

    def _run_worker(self) -> None:
        while True:
            delivery = self._work.get()
            if delivery is None:
                return
            if self._stopping.is_set() or delivery.gen != self._gen:
                continue  # unacked, so the broker delivers it again
            try:
                self._handler(delivery.message)
                ok = True
            except Refused as exc:
                self._ops.append(_Op("refuse", (delivery, str(exc)), delivery.gen))
                self._wake()
                continue
            except Exception:
                log.exception("%s: handler failed on %r", self.queue, delivery.message)
                ok = False
            if not ok and isinstance(delivery.message, ChangeMessage):
                # A pause so a flapping dependency does not burn through the delivery limit.
                self._stopping.wait(self._nack_delay)
                self._ops.append(_Op("nack", delivery.tag, delivery.gen))
            else:
                self._ops.append(_Op("ack", delivery.tag, delivery.gen))
            self._wake()
