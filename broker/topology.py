"""Names of Caterva2's exchanges and queues, and their idempotent declaration.

Every durable name is fixed and every queue argument is constant, so re-declaring
from any process (or any node of a cluster, or through federation) never clashes.
Functions here take a pika BlockingChannel; the async publisher declares the
same names with the same arguments (see `EXCHANGES`).

Changes and announcements go through *topic* exchanges keyed by root name, so
that the broker's topic permissions can allow each publisher user to publish
only its own roots (a direct or fanout exchange is never checked by routing
key). They replaced the direct `cat2.changes` and fanout `cat2.roots` of
topology v1, whose names are kept in `LEGACY_EXCHANGES` for `cat2bro setup
--migrate`: an exchange's type cannot change in place.

Daemons first declare the exchanges passively (which needs no permission), and
declare them for real only when they are missing: a least-privilege user may
use a topology that `cat2bro setup` made, but not make or delete one.
"""

from __future__ import annotations

import re
from typing import Any

import pika.exceptions

from ..common.errors import BadRequest
from ..common.paths import check_root_name
from .messages import ChangeMessage, DiscoverRequest, Message, RootAnnouncement

CHANGES_EXCHANGE = "cat2.v2.changes"
"""Durable topic exchange; routing key = root name; one message per dataset change."""
ROOTS_EXCHANGE = "cat2.v2.roots"
"""Durable topic exchange for root announcements; routing key = root name."""
LEGACY_EXCHANGES = ("cat2.changes", "cat2.roots")
"""Topology v1's exchanges (direct and fanout), removed by `cat2bro setup --migrate`."""
ALL_ROOTS = "#"
"""Binding key that receives the announcements of every root."""
DISCOVER_EXCHANGE = "cat2.discover"
"""Durable fanout exchange on which publishers hear discover requests."""
DEAD_EXCHANGE = "cat2.dead"
"""Durable fanout exchange receiving rejected and poison messages."""
DEAD_LETTERS_QUEUE = "cat2.dead.letters"
"""Durable quorum queue collecting dead letters for inspection."""
SUBSCRIBER_QUEUE_PREFIX = "cat2.sub."

DEFAULT_QUEUE_EXPIRY = 7 * 24 * 3600.0
"""Seconds a subscriber queue outlives its last consumer before the broker deletes it."""
DELIVERY_LIMIT = 5
"""A change redelivered more often than this (handler keeps failing) is dead-lettered."""
DEAD_LETTERS_MAX = 100_000
"""Oldest dead letters are dropped beyond this many, so nobody has to babysit the queue."""

# (name, type) of every exchange, all durable and never auto-deleted.
EXCHANGES: tuple[tuple[str, str], ...] = (
    (CHANGES_EXCHANGE, "topic"),
    (ROOTS_EXCHANGE, "topic"),
    (DISCOVER_EXCHANGE, "fanout"),
    (DEAD_EXCHANGE, "fanout"),
)

# Quorum queues: replicated in a cluster, and the only kind with a delivery limit.
# Single active consumer: a second process started with the same subscriber id (or
# a reconnect racing the broker's detection of a dead connection) waits as a
# standby instead of applying changes concurrently and out of order.
SUBSCRIBER_QUEUE_ARGS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_EXCHANGE,
    "x-delivery-limit": DELIVERY_LIMIT,
    "x-single-active-consumer": True,
}
DEAD_LETTERS_QUEUE_ARGS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-max-length": DEAD_LETTERS_MAX,
}
# Announcement queues are per connection (exclusive, server-named); dead-letter
# malformed announcements like malformed changes so they show up in one place.
ANNOUNCEMENT_QUEUE_ARGS: dict[str, Any] = {"x-dead-letter-exchange": DEAD_EXCHANGE}

# Conservative so the name is valid everywhere (queue names are at most 255 bytes).
_SUBSCRIBER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def subscriber_queue(subscriber_id: str) -> str:
    """Return the durable queue name `cat2.sub.<id>` of a subscriber, validating the id."""
    if not isinstance(subscriber_id, str) or not _SUBSCRIBER_ID.match(subscriber_id):
        raise ValueError(
            f"invalid subscriber id {subscriber_id!r}: use 1-200 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return SUBSCRIBER_QUEUE_PREFIX + subscriber_id


def check_root(root: str) -> str:
    """Return root if it is a valid root name (also a routing key without wildcards)."""
    try:
        return check_root_name(root)
    except BadRequest as exc:
        raise ValueError(exc.detail) from None


def route(message: Message) -> tuple[str, str]:
    """Return the (exchange, routing key) a message is published to."""
    if isinstance(message, ChangeMessage):
        return CHANGES_EXCHANGE, check_root(message.root)
    if isinstance(message, RootAnnouncement):
        return ROOTS_EXCHANGE, check_root(message.root)
    if isinstance(message, DiscoverRequest):
        return DISCOVER_EXCHANGE, ""
    raise TypeError(f"not a caterva2 message: {message!r}")


def declare_exchanges(channel: Any) -> None:
    """Declare every exchange (idempotent)."""
    for name, kind in EXCHANGES:
        channel.exchange_declare(name, exchange_type=kind, durable=True)


def declare_dead_letters(channel: Any) -> None:
    """Declare the dead-letter queue and bind it to the dead-letter exchange (idempotent)."""
    channel.queue_declare(DEAD_LETTERS_QUEUE, durable=True, arguments=DEAD_LETTERS_QUEUE_ARGS)
    channel.queue_bind(DEAD_LETTERS_QUEUE, DEAD_EXCHANGE)


def declare_topology(channel: Any) -> None:
    """Declare all shared exchanges and queues: what `cat2bro setup` does (idempotent)."""
    declare_exchanges(channel)
    declare_dead_letters(channel)


def check_topology(channel: Any) -> None:
    """Check that every exchange and the dead-letter queue exist (passive: needs no rights).

    Raises pika's ChannelClosedByBroker (404) when one is missing; the channel is then closed.
    """
    for name, _kind in EXCHANGES:
        channel.exchange_declare(name, passive=True)
    channel.queue_declare(DEAD_LETTERS_QUEUE, passive=True)


def ensure_topology(conn: Any) -> Any:
    """Return a channel on conn once the topology exists, declaring it only if it is missing."""
    channel = conn.channel()
    try:
        check_topology(channel)
        return channel
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
    channel = conn.channel()
    declare_topology(channel)  # a 403 here: this user may not, `cat2bro setup` must
    return channel


def subscriber_queue_args(expiry: float | None = DEFAULT_QUEUE_EXPIRY) -> dict[str, Any]:
    """The arguments of a subscriber queue that expires `expiry` s unused (None/0: never)."""
    if not expiry:
        return dict(SUBSCRIBER_QUEUE_ARGS)
    return {**SUBSCRIBER_QUEUE_ARGS, "x-expires": max(1, round(expiry * 1000))}


def declare_subscriber_queue(
    channel: Any, subscriber_id: str, expiry: float | None = DEFAULT_QUEUE_EXPIRY
) -> str:
    """Declare the durable quorum queue of a subscriber and return its name (idempotent).

    The queue is deleted by the broker once it has had no consumer for `expiry`
    seconds; a subscriber that comes back later gets a new, empty queue and
    must resync (see `declare_subscriber_queue_fresh`).
    """
    name = subscriber_queue(subscriber_id)
    channel.queue_declare(name, durable=True, arguments=subscriber_queue_args(expiry))
    return name


def subscriber_queue_exists(connection: Any, subscriber_id: str) -> bool:
    """Whether a subscriber's queue exists (a passive declare, on a channel of its own)."""
    channel = connection.channel()
    try:
        channel.queue_declare(subscriber_queue(subscriber_id), durable=True, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return False
        raise
    channel.close()
    return True


def declare_subscriber_queue_fresh(
    connection: Any, subscriber_id: str, expiry: float | None = DEFAULT_QUEUE_EXPIRY
) -> bool:
    """Declare a subscriber's queue with today's arguments; True if it is new (resync then).

    A queue's arguments cannot change in place: the broker refuses a declare
    that differs (406 PRECONDITION_FAILED) and closes the channel. A queue
    declared with other arguments (by an older Caterva2, or another expiry) is
    therefore deleted and declared again. Its pending changes are lost with it,
    which is safe only because the caller treats the queue as new: it binds it
    and resyncs every followed root from the publishers, as after an expiry.
    """
    existed = subscriber_queue_exists(connection, subscriber_id)
    channel = connection.channel()
    try:
        declare_subscriber_queue(channel, subscriber_id, expiry)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        channel = connection.channel()  # the refused declare closed the other one
        channel.queue_delete(subscriber_queue(subscriber_id))
        declare_subscriber_queue(channel, subscriber_id, expiry)
        existed = False
    channel.close()
    return not existed


def declare_announcement_queue(channel: Any) -> str:
    """Declare an exclusive server-named queue bound to cat2.roots and return its name."""
    result = channel.queue_declare(
        "", exclusive=True, auto_delete=True, arguments=ANNOUNCEMENT_QUEUE_ARGS
    )
    name = result.method.queue
    channel.queue_bind(name, ROOTS_EXCHANGE, routing_key=ALL_ROOTS)
    return name


def follow(channel: Any, subscriber_id: str, root: str) -> None:
    """Bind the subscriber's queue to root's changes (idempotent)."""
    channel.queue_bind(
        subscriber_queue(subscriber_id), CHANGES_EXCHANGE, routing_key=check_root(root)
    )


def unfollow(channel: Any, subscriber_id: str, root: str) -> None:
    """Unbind the subscriber's queue from root's changes (idempotent)."""
    channel.queue_unbind(
        subscriber_queue(subscriber_id), CHANGES_EXCHANGE, routing_key=check_root(root)
    )
