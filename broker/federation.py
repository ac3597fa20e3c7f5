"""Sites linked by RabbitMQ federation: `cat2bro link` and `cat2bro unlink`.

Each site runs its own broker. Linking two sites makes each broker an upstream
of the other for the three exchanges that carry news (changes, announcements,
discover requests), so a subscriber at one site hears the publishers of both,
and its discover requests reach them at once (no wait for a heartbeat).

- `max-hops` 1: what crosses a link is never sent back over it.
- `trust-user-id`: the broker that received a message checked its `user_id`
  (see `access`), so the validated identity of a publisher survives the link and
  subscribers at every site keep refusing other users' messages for a root.
  It means trusting the other site's broker to check its own users: give
  broker users site-unique names (`pub-<site>-<root>`).
- Announcements must cross at once, but exchange federation forwards only
  what the downstream exchange has bindings for, and a subscriber's binding
  reaches the other broker a moment after its discover request does: the
  answer could come back before it and be dropped. So each linked broker gets
  a standing binding of every announcement (`ALL_ANNOUNCEMENTS`, bound with
  `#` to an exchange that delivers nowhere), and the other side always forwards.
- Unlinking removes the upstream, the policy when no link is left, and the
  queues and exchanges the link left on the other broker, which otherwise
  keep collecting every change for nobody.

Everything goes through `rabbitmqctl` of each broker (`--ctl`), and the
upstream URIs (`amqp://` or `amqps://`) are what each broker uses to reach
the other, with a user made by `cat2bro access federation`.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

from . import topology
from .access import AccessError
from .connection import parameters, redact

POLICY = "cat2-federation"
UPSTREAM_PREFIX = "cat2-"
FEDERATED = (topology.CHANGES_EXCHANGE, topology.ROOTS_EXCHANGE, topology.DISCOVER_EXCHANGE)
PATTERN = "^(" + "|".join(re.escape(name) for name in FEDERATED) + ")$"
PLUGIN = "rabbitmq_federation"
ALL_ANNOUNCEMENTS = "cat2.v2.roots.federated"
"""An exchange bound to the announcements with `#`, so that linked brokers forward all."""


@dataclass(frozen=True)
class Site:
    """One side of a link: its name, how to run rabbitmqctl on its broker, its AMQP URI."""

    name: str
    ctl: tuple[str, ...]
    uri: str  # how the *other* broker reaches this one (a federation user's URL)

    @property
    def vhost(self) -> str:
        path = unquote(urlsplit(self.uri).path.lstrip("/"))
        return path or "/"

    @property
    def upstream(self) -> str:
        """The name of the upstream that points at this site, on the other broker."""
        return UPSTREAM_PREFIX + self.name


def upstream_definition(there: Site) -> dict:
    """The federation upstream a broker gets to take `there`'s news."""
    return {
        "uri": there.uri,
        "trust-user-id": True,
        "max-hops": 1,
        "ack-mode": "on-confirm",
        "reconnect-delay": 1,
    }


def definitions(here_vhost: str, others: Sequence[Site]) -> dict:
    """What `link` sets up at one site, as entries to add to a RabbitMQ definitions document."""
    parameters_ = [
        {
            "vhost": here_vhost,
            "component": "federation-upstream",
            "name": there.upstream,
            "value": upstream_definition(there),
        }
        for there in others
    ]
    policy = {
        "vhost": here_vhost,
        "name": POLICY,
        "pattern": PATTERN,
        "apply-to": "exchanges",
        "priority": 0,
        "definition": {"federation-upstream-set": "all"},
    }
    exchange = {
        "name": ALL_ANNOUNCEMENTS,
        "vhost": here_vhost,
        "type": "fanout",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }
    binding = {
        "source": topology.ROOTS_EXCHANGE,
        "vhost": here_vhost,
        "destination": ALL_ANNOUNCEMENTS,
        "destination_type": "exchange",
        "routing_key": "#",
        "arguments": {},
    }
    return {
        "parameters": parameters_,
        "policies": [policy],
        "exchanges": [exchange],
        "bindings": [binding],
    }


def link_commands(here: Site, there: Site) -> list[list[str]]:
    """`rabbitmqctl` arguments that make `here`'s broker take `there`'s news."""
    return [
        [
            "set_parameter",
            "-p",
            here.vhost,
            "federation-upstream",
            there.upstream,
            json.dumps(upstream_definition(there)),
        ],
        [
            "set_policy",
            "-p",
            here.vhost,
            "--apply-to",
            "exchanges",
            POLICY,
            PATTERN,
            json.dumps({"federation-upstream-set": "all"}),
        ],
    ]


def _ctl(site: Site, *args: str) -> str:
    done = subprocess.run([*site.ctl, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()
        if "federation-upstream not found" in output:
            raise AccessError(
                f"site {site.name}: the federation plugin is not enabled on its broker; "
                f"enable it there with `rabbitmq-plugins enable {PLUGIN}` "
                f"(or add {PLUGIN} to its enabled_plugins file) and run this again"
            )
        raise AccessError(f"site {site.name}: rabbitmqctl {args[0]}: {output}")
    return done.stdout


def _amqp(site: Site, work: Callable[[Any], None], what: str) -> None:
    """Run `work(channel)` on the site's broker as its federation user."""
    # The broker's own TLS options (`?cacertfile=...`) are not pika's: our CA setting applies.
    try:
        conn = pika.BlockingConnection(parameters(site.uri.split("?")[0], "cat2bro-link"))
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise AccessError(f"site {site.name}: cannot connect as {redact(site.uri)}: {exc}") from exc
    try:
        work(conn.channel())
    except pika.exceptions.AMQPError as exc:
        raise AccessError(f"site {site.name}: cannot {what}: {exc}") from exc
    finally:
        if conn.is_open:
            conn.close()


def _bind_all_announcements(channel: Any) -> None:
    channel.exchange_declare(ALL_ANNOUNCEMENTS, exchange_type="fanout", durable=True)
    channel.exchange_bind(ALL_ANNOUNCEMENTS, topology.ROOTS_EXCHANGE, routing_key="#")


def link(a: Site, b: Site) -> None:
    """Federate both ways (idempotent: linking again only updates the upstreams)."""
    for here, there in ((a, b), (b, a)):
        for command in link_commands(here, there):
            _ctl(here, *command)
    for site in (a, b):
        _amqp(site, _bind_all_announcements, "bind every announcement")


def _upstreams(site: Site) -> list[str]:
    listed = json.loads(
        _ctl(site, "list_parameters", "-p", site.vhost, "--formatter", "json") or "[]"
    )
    return [
        p["name"]
        for p in listed
        if p.get("component") == "federation-upstream" and p["name"].startswith(UPSTREAM_PREFIX)
    ]


def cluster_name(site: Site) -> str:
    """The name a broker goes by in the queues its federation links leave upstream."""
    out = _ctl(site, "eval", "rabbit_nodes:cluster_name().").strip()
    match = re.fullmatch(r'<<"(.*)">>', out)
    if match is None:
        raise AccessError(f"site {site.name}: unexpected cluster name {out!r}")
    return match.group(1)


def leftovers(upstream: Site, downstream_cluster: str) -> tuple[list[str], list[str]]:
    """The queues and exchanges a link to `downstream_cluster` keeps on `upstream`'s broker."""
    suffix = f" -> {downstream_cluster}"
    names = [f"federation: {exchange}{suffix}" for exchange in FEDERATED]
    queues = [
        q["name"]
        for q in json.loads(
            _ctl(upstream, "list_queues", "-p", upstream.vhost, "name", "--formatter", "json")
            or "[]"
        )
        if q["name"] in names
    ]
    exchanges = [
        e["name"]
        for e in json.loads(
            _ctl(upstream, "list_exchanges", "-p", upstream.vhost, "name", "--formatter", "json")
            or "[]"
        )
        if any(e["name"].startswith(n) for n in names)
    ]
    return queues, exchanges


def _delete_exchanges(site: Site, exchanges: Sequence[str]) -> None:
    """rabbitmqctl cannot delete exchanges: the federation user of that site can."""
    if exchanges:
        _amqp(site, lambda ch: [ch.exchange_delete(name) for name in exchanges], "delete")


def unlink(a: Site, b: Site) -> list[str]:
    """Undo `link`, and remove what the links left on each broker; return what was removed."""
    removed = []
    for here, there in ((a, b), (b, a)):
        downstream = cluster_name(here)
        if there.upstream in _upstreams(here):
            _ctl(here, "clear_parameter", "-p", here.vhost, "federation-upstream", there.upstream)
            removed.append(f"{here.name}: upstream {there.upstream}")
        if not _upstreams(here):
            _delete_exchanges(here, [ALL_ANNOUNCEMENTS])
            removed.append(f"{here.name}: exchange {ALL_ANNOUNCEMENTS!r}")
            policies = json.loads(
                _ctl(here, "list_policies", "-p", here.vhost, "--formatter", "json") or "[]"
            )
            if any(p["name"] == POLICY for p in policies):
                _ctl(here, "clear_policy", "-p", here.vhost, POLICY)
                removed.append(f"{here.name}: policy {POLICY}")
        queues, exchanges = leftovers(there, downstream)
        for name in queues:
            _ctl(there, "delete_queue", "-p", there.vhost, name)
            removed.append(f"{there.name}: queue {name!r}")
        _delete_exchanges(there, exchanges)
        removed += [f"{there.name}: exchange {name!r}" for name in exchanges]
    return removed


_LINK = re.compile(
    r"\{exchange,<<\"(?P<exchange>[^\"]*)\">>\}.*?\{upstream,<<\"(?P<upstream>[^\"]*)\">>\}"
    r".*?\{status,(?P<status>[a-z_]+|\{)",
    re.S,
)


def link_states(site: Site) -> list[tuple[str, str, str]]:
    """(upstream, exchange, state) of every federation link of a broker."""
    out = _ctl(site, "eval", "rabbit_federation_status:status().")
    return sorted(
        (m["upstream"], m["exchange"], "error" if m["status"] == "{" else m["status"])
        for m in _LINK.finditer(out)
        if m["upstream"].startswith(UPSTREAM_PREFIX)
    )
