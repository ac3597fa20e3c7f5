"""Least privilege on the broker: the RabbitMQ users and permissions of each role.

Permissions are three regular expressions over resource names (configure,
write, read), plus topic permissions that check a message's routing key when
it is published to a topic exchange. What each role needs, and nothing more:

- a **publisher** publishes changes and announcements only under its own
  roots' routing keys (topic permissions on both topic exchanges), and reads
  discover requests through a server-named queue of its own;
- a **subscriber** declares and reads only its own queue `cat2.sub.<id>` (and a
  server-named announcement queue), binds them to the change and announcement
  exchanges, and may publish only discover requests and dead letters: never a
  change or an announcement;
- the **admin** (who runs `cat2bro setup` and `cat2bro status`) configures the
  `cat2.*` names;
- a **federation** user is what another site's broker connects as to take this
  site's news (see `federation`): it reads the three news exchanges through
  queues and exchanges of its own.

RabbitMQ checks a message's `user_id` against the user that publishes it, so
subscribers can pin a root to its publisher's user (see
`subscriber/remote_roots.py`). `guest` on vhost `/` stays the laptop default.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import topology

SERVER_NAMED = r"amq\.gen-.*"
"""Queues the broker names (`queue_declare("")`): exclusive to their connection."""
DEFAULT_VHOST = "caterva2"


@dataclass(frozen=True)
class Grant:
    """The permissions of one broker user on one vhost."""

    user: str
    configure: str
    write: str
    read: str
    # (exchange, write pattern, read pattern) checked against routing keys.
    topics: tuple[tuple[str, str, str], ...] = ()


def _any_of(*patterns: str) -> str:
    return "^(" + "|".join(patterns) + ")$"


def _name(name: str) -> str:
    return re.escape(name)


def publisher_grant(user: str, roots: Sequence[str]) -> Grant:
    """A publisher that may announce and change only `roots`."""
    if not roots:
        raise ValueError("a publisher user needs at least one root")
    keys = _any_of(*(_name(topology.check_root(r)) for r in roots))
    return Grant(
        user,
        configure=_any_of(SERVER_NAMED),
        write=_any_of(
            SERVER_NAMED, _name(topology.CHANGES_EXCHANGE), _name(topology.ROOTS_EXCHANGE)
        ),
        read=_any_of(SERVER_NAMED, _name(topology.DISCOVER_EXCHANGE)),
        topics=(
            (topology.CHANGES_EXCHANGE, keys, "^$"),
            (topology.ROOTS_EXCHANGE, keys, "^$"),
        ),
    )


def subscriber_grant(user: str, subscriber_id: str) -> Grant:
    """A subscriber that reads its own queue and can publish no change nor announcement."""
    own = _name(topology.subscriber_queue(subscriber_id))
    return Grant(
        user,
        configure=_any_of(own, SERVER_NAMED),
        # Write on a queue is what binding it takes; on cat2.dead, what declaring a queue
        # that dead-letters there and refusing a message with its reason take.
        write=_any_of(
            own,
            SERVER_NAMED,
            _name(topology.DISCOVER_EXCHANGE),
            _name(topology.DEAD_EXCHANGE),
        ),
        read=_any_of(
            own,
            SERVER_NAMED,
            _name(topology.CHANGES_EXCHANGE),
            _name(topology.ROOTS_EXCHANGE),
        ),
        # Belt and braces: no routing key at all on the two exchanges that carry news.
        topics=(
            (topology.CHANGES_EXCHANGE, "^$", ".*"),
            (topology.ROOTS_EXCHANGE, "^$", ".*"),
        ),
    )


def federation_grant(user: str) -> Grant:
    """The user another site's broker connects as to federate this one's news (`federation`)."""
    # The exchanges and queues federation links declare upstream, and the standing
    # binding of all announcements that `cat2bro link` makes (see `federation`).
    links = r"federation: .*"
    standing = _name(topology.ROOTS_EXCHANGE + ".federated")
    return Grant(
        user,
        configure=_any_of(links, standing),
        write=_any_of(links, standing),
        read=_any_of(
            links,
            _name(topology.CHANGES_EXCHANGE),
            _name(topology.ROOTS_EXCHANGE),
            _name(topology.DISCOVER_EXCHANGE),
        ),
    )


def admin_grant(user: str) -> Grant:
    """The operator's user: declares and inspects the `cat2.*` topology."""
    everything = _any_of(r"cat2\..*", SERVER_NAMED)
    return Grant(user, configure=everything, write=everything, read=everything)


def rabbitmqctl_commands(
    grant: Grant, vhost: str, password: str | None, new_vhost: bool = True
) -> list[list[str]]:
    """The `rabbitmqctl` arguments that create the vhost and user and set the grant."""
    if password is not None and password.startswith("-"):
        raise ValueError("a broker password must not start with '-' (rabbitmqctl reads an option)")
    commands: list[list[str]] = []
    if new_vhost:
        commands.append(["add_vhost", vhost])
    if password is not None:
        commands.append(["add_user", grant.user, password])
    commands.append(
        ["set_permissions", "-p", vhost, grant.user, grant.configure, grant.write, grant.read]
    )
    for exchange, write, read in grant.topics:
        commands.append(["set_topic_permissions", "-p", vhost, grant.user, exchange, write, read])
    return commands


def shell_lines(ctl: Sequence[str], commands: Iterable[Sequence[str]]) -> list[str]:
    """The commands as shell lines an operator can paste."""
    return [shlex.join([*ctl, *command]) for command in commands]


def new_password() -> str:
    """A random password for a new broker user (never starting with `-`, which
    rabbitmqctl would take for an option)."""
    return "p" + secrets.token_urlsafe(18)


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256` hash of a password (for definitions)."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(grants: Sequence[tuple[Grant, str]], vhost: str) -> dict:
    """A RabbitMQ definitions document (`load_definitions`) with users, grants and topology.

    `grants` pairs each grant with its user's password. A broker started with it
    needs neither `cat2bro setup` nor `cat2bro access`.
    """
    users, permissions, topic_permissions = [], [], []
    for grant, password in grants:
        users.append(
            {
                "name": grant.user,
                "password_hash": password_hash(password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        permissions.append(
            {
                "user": grant.user,
                "vhost": vhost,
                "configure": grant.configure,
                "write": grant.write,
                "read": grant.read,
            }
        )
        for exchange, write, read in grant.topics:
            topic_permissions.append(
                {
                    "user": grant.user,
                    "vhost": vhost,
                    "exchange": exchange,
                    "write": write,
                    "read": read,
                }
            )
    exchanges = [
        {
            "name": name,
            "vhost": vhost,
            "type": kind,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for name, kind in topology.EXCHANGES
    ]
    queue = {
        "name": topology.DEAD_LETTERS_QUEUE,
        "vhost": vhost,
        "durable": True,
        "auto_delete": False,
        "arguments": topology.DEAD_LETTERS_QUEUE_ARGS,
    }
    binding = {
        "source": topology.DEAD_EXCHANGE,
        "vhost": vhost,
        "destination": topology.DEAD_LETTERS_QUEUE,
        "destination_type": "queue",
        "routing_key": "",
        "arguments": {},
    }
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": exchanges,
        "queues": [queue],
        "bindings": [binding],
    }


class AccessError(Exception):
    """rabbitmqctl refused a command (its message says why)."""


def apply(ctl: Sequence[str], commands: Iterable[Sequence[str]]) -> None:
    """Run the commands with `ctl` (e.g. `rabbitmqctl -n rabbit@host`), idempotently.

    An existing vhost is kept; an existing user gets the new password instead.
    """
    for command in commands:
        done = subprocess.run([*ctl, *command], capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            continue
        output = (done.stderr + done.stdout).strip()
        if command[0] == "add_vhost" and "already exists" in output:
            continue
        if command[0] == "add_user" and "already exists" in output:
            _run(ctl, ["change_password", command[1], command[2]])
            continue
        raise AccessError(f"{shlex.join(command[:2])}: {output}")


def _run(ctl: Sequence[str], command: Sequence[str]) -> None:
    done = subprocess.run([*ctl, *command], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AccessError(f"{shlex.join(command[:2])}: {(done.stderr + done.stdout).strip()}")
