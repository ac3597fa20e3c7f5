"""ConfirmedPublisher: thread-safe, persistent, confirmed publishing that survives reconnects."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.select_connection import SelectConnection

from . import topology
from .connection import Backoff, describe, parameters, redact
from .messages import DiscoverRequest, Message, MessageError, decode, encode

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1000
"""Unconfirmed messages on the wire at most; the rest wait in memory (bounds socket buffers)."""
NACK_RETRY_DELAY = 1.0
"""Seconds before re-sending a message the broker nacked (an internal broker error)."""


class PublisherClosed(RuntimeError):
    """Raised by publish() after close(); set on the futures still pending at close()."""


@dataclass(eq=False)
class _Entry:
    """A message the broker has not confirmed yet."""

    ticket: int
    exchange: str
    routing_key: str
    body: bytes
    mtype: str
    future: Future = field(default_factory=Future)
    on_confirmed: Callable[[], Any] | None = None
    tag: int | None = None  # delivery tag on the current channel; None while unsent


class ConfirmedPublisher:
    """Publish messages with confirms from any thread; re-send the unconfirmed after reconnects.

    One I/O thread owns the pika connection (pika is not thread-safe); publish()
    hands messages to it.  A message stays pending until the broker confirms it;
    whatever is pending when the connection drops is sent again on the next
    connection, so duplicates are possible and losses are not.  `on_confirmed`
    callbacks and `on_discover` run in the I/O thread: keep them short (an SQLite
    DELETE is fine), since heartbeats wait for them.
    """

    def __init__(
        self,
        url: str,
        *,
        on_discover: Callable[[DiscoverRequest], Any] | None = None,
        name: str = "caterva2-publisher",
        backoff: Backoff | None = None,
    ) -> None:
        """Start the I/O thread that connects to url (and keeps reconnecting)."""
        self._params = parameters(url, name)
        # Stamped on every message: the broker refuses a user_id that is not the
        # connection's own user, so subscribers can trust it to tell who sent what.
        self._user_id = getattr(self._params.credentials, "username", None) or None
        # Exchanges are first declared passively (no permission needed); only when
        # one is missing does the next connection declare them for real.
        self._passive = True
        self._url = redact(url)
        self._on_discover = on_discover
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever pending shrinks
        self._pending: dict[int, _Entry] = {}  # by ticket, i.e. in publish order
        self._to_send: collections.deque[_Entry] = collections.deque()
        self._next_ticket = 0
        self._flush_scheduled = False
        self._closing = threading.Event()
        self._ready = threading.Event()
        # Owned by the I/O thread, except _conn which close()/publish() read under _lock.
        self._conn: SelectConnection | None = None
        self._channel: Any = None
        self._tags: dict[int, _Entry] = {}
        self._last_tag = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- public API (any thread) -------------------------------------------

    def publish(
        self, message: Message, on_confirmed: Callable[[], Any] | None = None
    ) -> Future[None]:
        """Queue message for persistent delivery; the future resolves once the broker confirms."""
        exchange, routing_key = topology.route(message)
        body = encode(message)
        with self._lock:
            if self._closing.is_set():
                raise PublisherClosed("publisher is closed")
            self._next_ticket += 1
            entry = _Entry(
                self._next_ticket,
                exchange,
                routing_key,
                body,
                message.type,
                on_confirmed=on_confirmed,
            )
            self._pending[entry.ticket] = entry
            self._to_send.append(entry)
            self._schedule_flush_locked()
        return entry.future

    @property
    def pending(self) -> int:
        """Return how many published messages are not confirmed yet."""
        with self._lock:
            return len(self._pending)

    @property
    def connected(self) -> bool:
        """Return whether a channel is open and ready to publish."""
        return self._ready.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until a channel is ready; return False on timeout."""
        return self._ready.wait(timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every published message is confirmed; return False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Wait up to timeout for confirms, close the connection and stop the I/O thread."""
        if timeout:
            self.flush(timeout)
        with self._lock:
            self._closing.set()
            conn = self._conn
        if conn is not None:
            conn.ioloop.add_callback_threadsafe(self._shutdown)
        self._thread.join()
        with self._lock:
            left = list(self._pending.values())
            self._pending.clear()
            self._to_send.clear()
            self._idle.notify_all()
        # The caller's outbox still holds these; they are re-sent by the next publisher.
        for entry in left:
            if not entry.future.done():
                entry.future.set_exception(PublisherClosed("closed before confirmation"))

    def __enter__(self) -> ConfirmedPublisher:
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close, waiting a little for pending confirms."""
        self.close()

    # -- I/O thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                conn = SelectConnection(
                    self._params,
                    on_open_callback=self._on_connection_open,
                    on_open_error_callback=self._on_connection_open_error,
                    on_close_callback=self._on_connection_closed,
                )
            except Exception:
                log.exception("cannot create connection to %s", self._url)
                conn = None
            if conn is not None:
                with self._lock:
                    stop = self._closing.is_set()
                    if not stop:
                        self._conn = conn
                if stop:
                    conn.ioloop.close()
                    break
                try:
                    conn.ioloop.start()
                except Exception:
                    log.exception("publisher I/O loop failed")
                with self._lock:
                    self._conn = None
                self._channel = None
                self._ready.clear()
                conn.ioloop.close()
            if self._closing.is_set():
                break
            delay = self._backoff.next()
            log.info("reconnecting to %s in %.2f s", self._url, delay)
            self._closing.wait(delay)

    def _shutdown(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.is_open:
            conn.close()  # on_close_callback then stops the loop
        elif conn.is_closed:
            conn.ioloop.stop()
        else:
            # Opening or closing: closing an opening connection aborts it, then it calls back.
            try:
                conn.close()
            except Exception:
                conn.ioloop.stop()

    def _on_connection_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, conn: SelectConnection, error: BaseException) -> None:
        log.warning("cannot connect to %s: %s", self._url, describe(error))
        conn.ioloop.stop()

    def _on_connection_closed(self, conn: SelectConnection, reason: BaseException) -> None:
        self._ready.clear()
        if not self._closing.is_set():
            log.warning("connection to %s lost: %s", self._url, describe(reason))
        conn.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_delivery_confirmation, callback=self._on_confirm_mode)

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        self._ready.clear()
        if channel is not self._channel:
            return
        self._channel = None
        if getattr(reason, "reply_code", None) == 404:
            self._passive = False  # an exchange is missing: declare it on the next connection
        conn = self._conn
        if conn is not None and conn.is_open:
            # The broker closed just the channel, e.g. an exchange was deleted under us:
            # a fresh connection re-declares everything and re-sends what is pending.
            if not self._closing.is_set():
                log.warning("channel closed by broker: %s; reconnecting", describe(reason))
            conn.close()

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._declare_exchange(0)

    def _declare_exchange(self, index: int) -> None:
        if index == len(topology.EXCHANGES):
            self._declare_discover_queue()
            return
        name, kind = topology.EXCHANGES[index]
        self._channel.exchange_declare(
            name,
            exchange_type=kind,
            durable=True,
            passive=self._passive,
            callback=lambda _frame: self._declare_exchange(index + 1),
        )

    def _declare_discover_queue(self) -> None:
        if self._on_discover is None:
            self._on_ready()
            return
        channel = self._channel

        def declared(frame: Any) -> None:
            queue = frame.method.queue
            channel.queue_bind(queue, topology.DISCOVER_EXCHANGE, callback=lambda _f: bound(queue))

        def bound(queue: str) -> None:
            channel.basic_consume(queue, self._on_discover_message, auto_ack=True)
            self._on_ready()

        channel.queue_declare("", exclusive=True, auto_delete=True, callback=declared)

    def _on_ready(self) -> None:
        self._backoff.reset()
        self._tags.clear()
        self._last_tag = 0  # delivery tags restart at 1 on every channel
        with self._lock:
            # Re-send, in publish order, everything not confirmed on earlier connections.
            for entry in self._pending.values():
                entry.tag = None
            self._to_send = collections.deque(self._pending.values())
            self._flush_scheduled = False
            resent = len(self._to_send)
        self._ready.set()
        log.info("publishing to %s (%d pending)", self._url, resent)
        self._flush()

    def _schedule_flush_locked(self) -> None:
        # One wake-up per batch: publish() may be called far faster than the loop turns.
        if self._flush_scheduled or self._conn is None:
            return
        self._flush_scheduled = True
        self._conn.ioloop.add_callback_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            if not self._ready.is_set() or self._channel is None or not self._channel.is_open:
                return
            room = MAX_IN_FLIGHT - len(self._tags)
            batch = [self._to_send.popleft() for _ in range(min(room, len(self._to_send)))]
        for entry in batch:
            self._last_tag += 1
            entry.tag = self._last_tag
            self._tags[entry.tag] = entry
            self._channel.basic_publish(
                entry.exchange,
                entry.routing_key,
                entry.body,
                properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent,
                    content_type="application/msgpack",
                    type=entry.mtype,
                    user_id=self._user_id,
                ),
            )

    def _on_delivery_confirmation(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            tags = []
            for tag in self._tags:  # ascending: tags are inserted in increasing order
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._tags else []
        entries = [self._tags.pop(t) for t in tags]
        if isinstance(method, pika.spec.Basic.Nack):
            log.warning("broker nacked %d message(s); re-sending", len(entries))
            with self._lock:
                for entry in reversed(entries):
                    entry.tag = None
                    self._to_send.appendleft(entry)
            self._conn.ioloop.call_later(NACK_RETRY_DELAY, self._flush)
            return
        with self._lock:
            for entry in entries:
                self._pending.pop(entry.ticket, None)
            self._idle.notify_all()
            more = bool(self._to_send)
        if more:
            self._flush()  # confirms made room in the in-flight window
        for entry in entries:
            if not entry.future.done():
                entry.future.set_result(None)
            if entry.on_confirmed is not None:
                try:
                    entry.on_confirmed()
                except Exception:
                    log.exception("on_confirmed callback failed")

    def _on_discover_message(self, _channel: Any, _method: Any, _props: Any, body: bytes) -> None:
        try:
            request = decode(body)
        except MessageError as exc:
            log.warning("ignoring malformed discover request: %s", exc)
            return
        if not isinstance(request, DiscoverRequest):
            log.warning("ignoring %s message on %s", request.type, topology.DISCOVER_EXCHANGE)
            return
        try:
            self._on_discover(request)
        except Exception:
            log.exception("on_discover callback failed")
