"""cat2bro: declare Caterva2's RabbitMQ topology and show roots and queue depths."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions

from ..common.config import ConfigError, load_config
from . import access, federation, topology
from .connection import (
    BrokerConfigError,
    describe,
    parameters,
    quiet_pika_logs,
    redact,
    resolve_url,
    use_ca_file,
)
from .consumer import REASON_HEADER, SENDER_HEADER
from .messages import DiscoverRequest, MessageError, RootAnnouncement, decode, encode

MANAGEMENT_PORT = 15672


class CliError(Exception):
    """An error worth one line on stderr and a non-zero exit."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run cat2bro with argv (default sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    url = ""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if not args.verbose:
        quiet_pika_logs()  # we report failures ourselves
    try:
        url = resolve_url(args.broker, args.config)
        use_ca_file(_config(args.config))
        if args.command == "access":
            return _access(url, args)
        if args.command in ("link", "unlink"):
            return _link(args)
        params = parameters(url, "cat2bro")
        if args.command == "setup":
            return _setup(url, params, args.migrate)
        return _status(url, params, args.wait, args.subscriber, args.management, args.ctl)
    except (CliError, BrokerConfigError, access.AccessError, ValueError) as exc:
        print(f"cat2bro: {exc}", file=sys.stderr)
        return 1
    except (pika.exceptions.AMQPConnectionError, OSError) as exc:
        print(f"cat2bro: cannot connect to broker {redact(url)}: {describe(exc)}", file=sys.stderr)
        return 1
    except pika.exceptions.AMQPError as exc:
        print(f"cat2bro: broker error: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _config(path: str | None) -> dict:
    """The configuration file's contents ({} when there is none)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cat2bro`."""
    parser = argparse.ArgumentParser(prog="cat2bro", description=__doc__)
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="AMQP URL (default: $CATERVA2_BROKER_URL, then [broker] url in caterva2.toml, "
        "then amqp://guest:guest@127.0.0.1:5672/)",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: ./caterva2.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="declare exchanges and the dead-letter queue (idempotent)")
    setup.add_argument(
        "--migrate",
        action="store_true",
        help="also delete topology v1's exchanges (" + ", ".join(topology.LEGACY_EXCHANGES) + ")",
    )
    grant = sub.add_parser(
        "access",
        help="create a least-privilege broker user for a publisher, a subscriber or the admin",
        description="Print (or, with --apply, run) the rabbitmqctl commands that create a vhost "
        "and a user allowed exactly what its role needs.",
    )
    grant.add_argument(
        "role",
        choices=("publisher", "subscriber", "admin", "federation"),
        help="what the user does: publish roots, follow them, administer, or federate sites",
    )
    grant.add_argument("user", help="broker user name")
    grant.add_argument(
        "--root", action="append", default=[], help="a root the publisher owns (repeatable)"
    )
    grant.add_argument("--id", dest="subscriber_id", help="the subscriber's id (its queue)")
    grant.add_argument("--vhost", default=access.DEFAULT_VHOST, help="default: %(default)s")
    grant.add_argument("--password", help="default: a new random one (printed)")
    grant.add_argument(
        "--no-new-user", action="store_true", help="only set permissions of an existing user"
    )
    grant.add_argument("--apply", action="store_true", help="run rabbitmqctl instead of printing")
    grant.add_argument(
        "--ctl",
        default="rabbitmqctl",
        help="how to run rabbitmqctl, e.g. 'rabbitmqctl -n rabbit@host' (default: %(default)s)",
    )
    for verb, what in (
        ("link", "federate two sites' brokers both ways (idempotent)"),
        ("unlink", "undo `link` and remove every queue and exchange it left"),
    ):
        linker = sub.add_parser(verb, help=what, description=what)
        linker.add_argument(
            "--site",
            nargs=3,
            action="append",
            required=True,
            metavar=("NAME", "CTL", "URI"),
            help="a site: its name, how to run rabbitmqctl on its broker (e.g. 'rabbitmqctl -n "
            "rabbit@host'), and the amqp(s):// URI of a `cat2bro access federation` user there, "
            "which the other broker connects with; give two",
        )
        if verb == "link":
            linker.add_argument(
                "--print", action="store_true", help="print the rabbitmqctl commands instead"
            )
    status = sub.add_parser("status", help="show announced roots and queue depths")
    status.add_argument(
        "--wait",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to collect root announcements after asking (default: 2)",
    )
    status.add_argument(
        "-s",
        "--subscriber",
        action="append",
        default=[],
        metavar="ID",
        help="also show queue cat2.sub.ID (repeatable; needed without the management plugin)",
    )
    status.add_argument(
        "--ctl",
        help="how to run rabbitmqctl on this broker: also show its federation links",
    )
    status.add_argument(
        "--management",
        metavar="URL",
        help=f"management API base URL (default: http://<broker host>:{MANAGEMENT_PORT}; "
        "optional, used to list every cat2.* queue)",
    )
    return parser


def _access(url: str, args: argparse.Namespace) -> int:
    if args.role == "publisher":
        if not args.root:
            raise CliError("a publisher user needs --root (one per root it publishes)")
        grant = access.publisher_grant(args.user, args.root)
    elif args.role == "subscriber":
        if not args.subscriber_id:
            raise CliError("a subscriber user needs --id (the subscriber's id)")
        grant = access.subscriber_grant(args.user, args.subscriber_id)
    elif args.role == "federation":
        grant = access.federation_grant(args.user)
    else:
        grant = access.admin_grant(args.user)
    password = None if args.no_new_user else (args.password or access.new_password())
    commands = access.rabbitmqctl_commands(grant, args.vhost, password)
    ctl = shlex.split(args.ctl)
    if not args.apply:
        print("\n".join(access.shell_lines(ctl, commands)))
        return 0
    access.apply(ctl, commands)
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"
    secret = urllib.parse.quote(password, safe="") if password else "PASSWORD"
    vhost = urllib.parse.quote(args.vhost, safe="")
    print(f"broker user {args.user} ({args.role}) on vhost {args.vhost}: ready")
    print(f"  URL: {parts.scheme or 'amqp'}://{args.user}:{secret}@{where}/{vhost}")
    return 0


def _sites(args: argparse.Namespace) -> tuple[federation.Site, federation.Site]:
    if len(args.site) != 2:
        raise CliError("give exactly two --site NAME CTL URI")
    sites = []
    for name, ctl, uri in args.site:
        try:
            topology.check_root(name)  # a site name becomes part of an upstream name
            parameters(uri.split("?")[0])  # the query may hold the broker's own TLS options
        except (ValueError, BrokerConfigError) as exc:
            raise CliError(f"site {name!r}: {exc}") from None
        sites.append(federation.Site(name, tuple(shlex.split(ctl)), uri))
    if sites[0].name == sites[1].name:
        raise CliError("the two sites need different names")
    return sites[0], sites[1]


def _link(args: argparse.Namespace) -> int:
    a, b = _sites(args)
    if args.command == "unlink":
        removed = federation.unlink(a, b)
        print(f"sites {a.name} and {b.name} unlinked")
        for item in removed:
            print(f"  removed {item}")
        return 0
    if args.print:
        for here, there in ((a, b), (b, a)):
            print(f"# at site {here.name}: take {there.name}'s news")
            print("\n".join(access.shell_lines(here.ctl, federation.link_commands(here, there))))
        return 0
    federation.link(a, b)
    print(f"sites {a.name} and {b.name} linked both ways ({', '.join(federation.FEDERATED)})")
    return 0


def _setup(url: str, params: pika.URLParameters, migrate: bool = False) -> int:
    with _connect(params) as conn:
        channel = conn.channel()
        topology.declare_topology(channel)
        if migrate:
            for name in topology.LEGACY_EXCHANGES:
                channel.exchange_delete(name)
    print(f"broker {redact(url)}: topology declared")
    if migrate:
        print(f"  removed topology v1 exchanges: {', '.join(topology.LEGACY_EXCHANGES)}")
    for name, kind in topology.EXCHANGES:
        print(f"  exchange {name} ({kind}, durable)")
    print(f"  queue    {topology.DEAD_LETTERS_QUEUE} (quorum, bound to {topology.DEAD_EXCHANGE})")
    return 0


def _status(
    url: str,
    params: pika.URLParameters,
    wait: float,
    subscribers: list[str],
    management: str | None,
    ctl: str | None = None,
) -> int:
    names = [topology.DEAD_LETTERS_QUEUE]
    for sid in subscribers:
        try:
            names.append(topology.subscriber_queue(sid))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    with _connect(params) as conn:
        missing = _missing_exchanges(conn)
        if missing:
            raise CliError(
                f"broker {redact(url)} lacks exchange(s) {', '.join(missing)}: run `cat2bro setup`"
            )
        roots = _collect_roots(conn, wait)
        refused = _dead_letter_reasons(conn)
        queues, source = _management_queues(params, management)
        listed = {q["name"] for q in queues or ()}
        # Known names the management API did not list (or all of them, without it).
        queues = (queues or []) + [_passive_queue(conn, n) for n in names if n not in listed]
    print(f"broker {redact(url)}")
    print(f"roots announced within {wait:g} s: {len(roots)}")
    if roots:
        rows = [
            (a.root, a.sender or "-", "online" if a.online else "offline", a.etag or "-", a.url)
            for a in sorted(roots.values(), key=lambda a: (a.root, a.sender or ""))
        ]
        _table(("ROOT", "PUBLISHER", "STATE", "ETAG", "URL"), rows)
        claimed = Counter(a.root for a in roots.values())
        for root in sorted(r for r, n in claimed.items() if n > 1):
            print(f"  warning: root {root} is announced by {claimed[root]} broker users")
    if refused:
        print(f"refused messages (in {topology.DEAD_LETTERS_QUEUE}): {sum(refused.values())}")
        rows = [
            (key, sender or "-", reason, str(n)) for (key, sender, reason), n in refused.items()
        ]
        _table(("ROOT", "SENDER", "REASON", "COUNT"), sorted(rows))
    if ctl:
        here = federation.Site("this broker", tuple(shlex.split(ctl)), url)
        links = federation.link_states(here)
        print(f"federation links: {len(links)}")
        if links:
            _table(("UPSTREAM", "EXCHANGE", "STATE"), links)
    print(f"queues ({source}): {len(queues)}")
    if queues:
        rows = [(q["name"], str(q["messages"]), str(q["consumers"])) for q in queues]
        _table(("QUEUE", "MESSAGES", "CONSUMERS"), sorted(rows))
    return 0


def _connect(params: pika.URLParameters) -> pika.BlockingConnection:
    return pika.BlockingConnection(params)


def _missing_exchanges(conn: pika.BlockingConnection) -> list[str]:
    missing = []
    channel = conn.channel()
    for name, kind in topology.EXCHANGES:
        try:
            channel.exchange_declare(name, exchange_type=kind, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            missing.append(name)
            channel = conn.channel()  # a failed passive declare closes the channel
    channel.close()
    return missing


def _dead_letter_reasons(
    conn: pika.BlockingConnection, limit: int = 1000
) -> Counter[tuple[str, str, str]]:
    """The (root, sender, reason) of the dead letters subscribers refused, counted.

    Read without acknowledging: closing the channel puts them all back.
    """
    channel = conn.channel()
    found: Counter[tuple[str, str, str]] = Counter()
    try:
        for _ in range(limit):
            method, props, _body = channel.basic_get(topology.DEAD_LETTERS_QUEUE)
            if method is None:
                break
            headers = props.headers or {}
            reason = headers.get(REASON_HEADER)
            if reason:
                found[method.routing_key, headers.get(SENDER_HEADER, ""), str(reason)[:80]] += 1
    except pika.exceptions.ChannelClosedByBroker:
        return found  # this user may not read dead letters: nothing to show
    channel.close()
    return found


def _collect_roots(
    conn: pika.BlockingConnection, wait: float
) -> dict[tuple[str, str | None], RootAnnouncement]:
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, topology.ROOTS_EXCHANGE, routing_key=topology.ALL_ROOTS)
    request = DiscoverRequest(reply_to=f"cat2bro-{os.getpid()}")
    exchange, key = topology.route(request)
    channel.basic_publish(exchange, key, encode(request))
    roots: dict[tuple[str, str | None], RootAnnouncement] = {}

    def on_message(_channel: Any, _method: Any, props: Any, body: bytes) -> None:
        try:
            message = decode(body)
        except MessageError:
            return
        if isinstance(message, RootAnnouncement):
            # The broker's word for who sent it; the latest announcement of each wins.
            message = dataclasses.replace(message, sender=props.user_id or None)
            roots[message.root, message.sender] = message

    channel.basic_consume(queue, on_message, auto_ack=True)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        conn.process_data_events(time_limit=left)
    channel.close()
    return roots


def _passive_queue(conn: pika.BlockingConnection, name: str) -> dict[str, Any]:
    channel = conn.channel()
    try:
        method = channel.queue_declare(name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return {"name": name, "messages": "-", "consumers": "no such queue"}
    channel.close()
    return {"name": name, "messages": method.message_count, "consumers": method.consumer_count}


def _management_queues(
    params: pika.URLParameters, base: str | None
) -> tuple[list[dict[str, Any]] | None, str]:
    """Return every cat2.* queue from the management API, or None if it does not answer."""
    explicit = base is not None
    if base is None:
        base = f"http://{params.host}:{MANAGEMENT_PORT}"
    vhost = urllib.parse.quote(params.virtual_host, safe="")
    request = urllib.request.Request(
        f"{base.rstrip('/')}/api/queues/{vhost}?columns=name,messages,consumers"
    )
    creds = params.credentials
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            data = json.load(response)
    except (OSError, ValueError) as exc:
        if explicit:
            raise CliError(f"management API at {base} did not answer: {exc}") from exc
        return None, "management plugin not reachable; known names only, add -s ID for more"
    queues = [
        {
            "name": q["name"],
            "messages": q.get("messages", 0),
            "consumers": q.get("consumers", 0),
        }
        for q in data
        if q.get("name", "").startswith("cat2.")
    ]
    return queues, "from the management API"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
