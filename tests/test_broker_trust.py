"""The broker is not a way in: attackers with a broker account, on our own RabbitMQ node.

The node has the least-privilege users `cat2bro access` makes: an admin, one
user per publisher, one per subscriber; plus two attackers: `rogue`, a broker
account with every right on the vhost (a misconfigured or stolen account: only
the subscriber's own checks stand in its way), and `rogue-pub`, a publisher
user that owns a root of its own and runs a lying HTTP server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pika
import pika.exceptions
import pytest

from caterva2.broker import access, topology
from caterva2.broker.cli import main as cat2bro
from caterva2.broker.connection import parameters
from caterva2.broker.consumer import QUEUE_HEADER, REASON_HEADER, SENDER_HEADER
from caterva2.broker.local_node import RabbitMQNode
from caterva2.broker.messages import ChangeMessage, RootAnnouncement, encode

from .broker_support import publish_reply_code
from .services import WAIT, PublisherProcess, SubscriberProcess, wait_for
from .test_pubsub import fetch, listing, remote_shape, write_array

VHOST = "caterva2"
ROOT = "legit"
ROGUE_ROOT = "rogueroot"
SUB_ID = "trusted-sub"
PASSWORD = "pw-" + uuid.uuid4().hex[:8]

TRAVERSALS = [
    "../../public/victim.b2nd",
    "..%2F..%2Fpublic%2Fvictim.b2nd",
    "%2e%2e/%2e%2e/public/victim.b2nd",
    "/etc/passwd",
    "ds.b2nd\x00../../x",
    "..\\..\\public\\victim.b2nd",
    "a/" * 3000 + "x.b2nd",
    "../" * 10 + "outside.txt",
    "dir/../../../public/planted.b2nd",
    "line\nbreak.b2nd",
]


class LyingPublisher(ThreadingHTTPServer):
    """A publisher HTTP API whose listing and info answers name paths out of the root."""

    listed = ["../../public/victim.b2nd", "ok/../../../escape.b2nd", "..\\evil.b2nd", "good.bin"]

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LyingHandler)
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LyingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        if self.path == "/api/list":
            body, status = json.dumps(LyingPublisher.listed).encode(), 200
        elif self.path.startswith("/api/info/"):
            # Metadata that names a file elsewhere, and nonsense geometry.
            meta = {"urlpath": "../../public/victim.b2nd", "shape": "lots", "chunks": None}
            body, status = json.dumps(meta).encode(), 200
        else:
            body, status = b'"no"', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def node():
    """Our own RabbitMQ node with a vhost, per-role users and two attackers."""
    node = RabbitMQNode()
    node.start()
    try:
        ctl = node.ctl_command()
        grants = [
            access.admin_grant("admin"),
            access.publisher_grant("pub-legit", [ROOT]),
            access.subscriber_grant("sub-trusted", SUB_ID),
            access.publisher_grant("rogue-pub", [ROGUE_ROOT]),
        ]
        for i, grant in enumerate(grants):
            access.apply(ctl, access.rabbitmqctl_commands(grant, VHOST, PASSWORD, i == 0))
        node.ctl("add_user", "rogue", PASSWORD)
        node.ctl("set_permissions", "-p", VHOST, "rogue", ".*", ".*", ".*")
        assert cat2bro(["--broker", node.url("admin", PASSWORD, VHOST), "setup"]) == 0
        yield node
    finally:
        node.stop()


def _url(node: RabbitMQNode, user: str) -> str:
    return node.url(user, PASSWORD, VHOST)


def _channel(node: RabbitMQNode, user: str):
    conn = pika.BlockingConnection(parameters(_url(node, user), f"test-{user}"))
    return conn, conn.channel()


def _publish_refused(node: RabbitMQNode, user: str, exchange: str, key: str, **props) -> int:
    return publish_reply_code(_url(node, user), exchange, key, **props)


def _files_outside_cache(statedir: Path) -> dict[str, bytes]:
    """Every file of a subscriber's state that no broker message may touch, with its bytes."""
    kept = {}
    for path in sorted(statedir.rglob("*")):
        rel = path.relative_to(statedir).as_posix()
        if path.is_file() and not rel.startswith(("cache/", "tmp/", "db.sqlite")):
            kept[rel] = path.read_bytes()
    return kept


def test_subscriber_broker_user_cannot_publish_changes_or_announcements(node):
    for exchange in (topology.CHANGES_EXCHANGE, topology.ROOTS_EXCHANGE):
        assert _publish_refused(node, "sub-trusted", exchange, ROOT) == 403, exchange


def test_publisher_broker_user_publishes_only_its_own_roots(node):
    assert _publish_refused(node, "pub-legit", topology.CHANGES_EXCHANGE, ROOT) == 0
    assert _publish_refused(node, "pub-legit", topology.CHANGES_EXCHANGE, ROGUE_ROOT) == 403
    assert _publish_refused(node, "pub-legit", topology.ROOTS_EXCHANGE, ROGUE_ROOT) == 403
    assert _publish_refused(node, "rogue-pub", topology.CHANGES_EXCHANGE, ROOT) == 403


def test_broker_refuses_a_user_id_that_is_not_the_senders(node):
    code = _publish_refused(node, "rogue", topology.CHANGES_EXCHANGE, ROOT, user_id="pub-legit")
    assert code == 406  # PRECONDITION_FAILED: user_id is the broker's word, not the sender's


def test_subscriber_user_cannot_read_another_subscribers_queue(node):
    conn, channel = _channel(node, "sub-trusted")
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare(topology.subscriber_queue("someone-else"), durable=True)
        assert refused.value.reply_code == 403
    finally:
        if conn.is_open:
            conn.close()


def test_forged_messages_from_other_broker_users_change_nothing(node, tmp_path, capsys):
    # The legitimate publisher and a subscriber, each with its own least-privilege user.
    rootdir = tmp_path / ROOT
    rootdir.mkdir()
    write_array(rootdir / "ds.b2nd", np.arange(20, dtype="i4"), chunks=(10,))
    pub = PublisherProcess(
        ROOT, rootdir, tmp_path / "pub", _url(node, "pub-legit"), heartbeat=1.0
    ).start()
    statedir = tmp_path / "sub"
    statedir.mkdir()
    sub = SubscriberProcess(
        statedir,
        conf={"login": False, "id": SUB_ID, "loglevel": "info"},
        broker_url=_url(node, "sub-trusted"),
    )
    lying = LyingPublisher()
    # Dead letters, seen through a queue of the admin's, with the reasons the subscriber gave.
    spy_conn, spy = _channel(node, "admin")
    spy_queue = spy.queue_declare("", exclusive=True).method.queue
    spy.queue_bind(spy_queue, topology.DEAD_EXCHANGE)
    try:
        sub.start()
        wait_for(lambda: listing(sub, ROOT) == ["ds.b2nd"], "the legitimate root followed")
        # Files no message may touch: a user's dataset, and one outside the state directory.
        (statedir / "public").mkdir(exist_ok=True)
        write_array(statedir / "public" / "victim.b2nd", np.ones(5))
        outside = tmp_path / "outside.txt"
        outside.write_text("secret")
        before = _files_outside_cache(statedir)

        rogue_conn, rogue = _channel(node, "rogue")
        # Confirmed: a quorum queue may drop what an unconfirmed channel sent just before it closed.
        rogue.confirm_delivery()
        sent = 0
        for path in TRAVERSALS:
            for kind in ("deleted", "created"):
                body = msgpack.packb(
                    {"type": "change", "v": 1, "root": ROOT, "path": path, "kind": kind,
                     "etag": "x", "meta": {"shape": [5], "chunks": [5], "blocks": [5]}}
                )  # fmt: skip
                rogue.basic_publish(topology.CHANGES_EXCHANGE, ROOT, body)
                sent += 1
        # Valid paths, but not the owner: a delete of the real dataset, a planted one.
        rogue.basic_publish(
            topology.CHANGES_EXCHANGE, ROOT, encode(ChangeMessage(ROOT, "ds.b2nd", "deleted"))
        )
        rogue.basic_publish(
            topology.CHANGES_EXCHANGE,
            ROOT,
            encode(ChangeMessage(ROOT, "planted.b2nd", "created", "e", None, {"shape": [3]})),
        )
        # A re-announcement of the owned root, pointing at the liar.
        rogue.basic_publish(
            topology.ROOTS_EXCHANGE, ROOT, encode(RootAnnouncement(ROOT, lying.url, "zz"))
        )
        # The same two, now saying truly who sends them: a broker user that does not own ROOT.
        as_rogue = pika.BasicProperties(user_id="rogue")
        rogue.basic_publish(
            topology.CHANGES_EXCHANGE,
            ROOT,
            encode(ChangeMessage(ROOT, "ds.b2nd", "deleted")),
            properties=as_rogue,
        )
        rogue.basic_publish(
            topology.ROOTS_EXCHANGE,
            ROOT,
            encode(RootAnnouncement(ROOT, lying.url, "zz")),
            properties=as_rogue,
        )
        sent += 5
        rogue_conn.close()

        # The lying publisher announces its own root (it may), and the subscriber follows it.
        liar_conn, liar = _channel(node, "rogue-pub")
        liar.confirm_delivery()
        liar.basic_publish(
            topology.ROOTS_EXCHANGE,
            ROGUE_ROOT,
            encode(RootAnnouncement(ROGUE_ROOT, lying.url, "r1")),
            properties=pika.BasicProperties(user_id="rogue-pub"),
        )
        liar_conn.close()
        wait_for(
            lambda: ROGUE_ROOT in httpx.get(f"{sub.urlbase}/api/roots").json(), "the rogue root"
        )
        httpx.post(f"{sub.urlbase}/api/subscribe/{ROGUE_ROOT}", timeout=20)
        wait_for(lambda: "/api/list" in lying.requests, "the rogue root's listing read")

        # The legitimate publisher's changes keep flowing meanwhile.
        write_array(rootdir / "after.b2nd", np.arange(7))
        wait_for(lambda: remote_shape(sub, f"{ROOT}/after.b2nd") == (7,), "a later change")

        reasons = []
        deadline = time.monotonic() + WAIT
        while len(reasons) < sent:
            assert time.monotonic() < deadline, f"{len(reasons)} of {sent} dead letters: {reasons}"
            method, props, _body = spy.basic_get(spy_queue, auto_ack=True)
            if method is None:
                spy_conn.process_data_events(time_limit=0.1)
                continue
            headers = props.headers or {}
            assert headers.get(QUEUE_HEADER) == topology.subscriber_queue(SUB_ID)
            reasons.append((headers[SENDER_HEADER], headers[REASON_HEADER]))
        assert sum("invalid message" in r for _s, r in reasons) == 2 * len(TRAVERSALS)
        assert sum("without a validated sender" in r for _s, r in reasons) == 3
        not_owner = [r for s, r in reasons if s == "rogue"]
        assert len(not_owner) == 2
        assert all("belongs to 'pub-legit'" in r for r in not_owner)

        roots = httpx.get(f"{sub.urlbase}/api/roots").json()
        assert roots[ROOT]["http"] == pub.url  # never moved to the liar
        assert roots[ROOT]["owner"] == "pub-legit"
        assert roots[ROGUE_ROOT]["owner"] == "rogue-pub"
        assert roots[ROGUE_ROOT]["refused"] >= len(LyingPublisher.listed) - 1
        assert sorted(listing(sub, ROOT)) == ["after.b2nd", "ds.b2nd"]
        assert fetch(sub, f"{ROOT}/ds.b2nd").tolist() == list(range(20))
        # Of the liar's listing, only the one valid name is known, and it holds nothing.
        assert listing(sub, ROGUE_ROOT) == []
        assert _files_outside_cache(statedir) == before
        assert outside.read_text() == "secret"
        assert not any(p.name == "planted.b2nd" for p in tmp_path.rglob("*"))
        assert not any("escape" in p.name or "evil" in p.name for p in tmp_path.rglob("*"))

        # The operator sees the refusals, who sent them and why.
        assert cat2bro(["--broker", _url(node, "admin"), "status", "--wait", "0.5"]) == 0
        out = capsys.readouterr().out
        assert "refused messages" in out
        rows = [line.strip() for line in out.splitlines() if line.strip().startswith(f"{ROOT} ")]
        assert any(
            " rogue " in r and "announcement for root 'legit' from 'rogue'" in r for r in rows
        ), out
        assert any(" pub-legit " in r and "online" in r for r in rows), out  # the publisher's own
    finally:
        spy_conn.close()
        lying.shutdown()
        sub.stop()
        pub.stop()


def test_a_root_announced_by_its_owner_with_a_configured_owner_elsewhere_is_refused(node, tmp_path):
    """`[root_owners]` wins over whoever announces first."""
    statedir = tmp_path / "sub"
    statedir.mkdir()
    conf = tmp_path / "owners.toml"
    conf.write_text(
        f'[subscriber]\nlogin = false\nid = "{SUB_ID}-2"\n[root_owners]\n{ROOT} = "someone"\n'
    )
    sub = SubscriberProcess(statedir, broker_url=_url(node, "rogue"))
    sub.write_conf = lambda: conf  # the owners table is not a [subscriber] key
    try:
        sub.start()
        conn, channel = _channel(node, "rogue")
        channel.confirm_delivery()
        channel.basic_publish(
            topology.ROOTS_EXCHANGE,
            ROOT,
            encode(RootAnnouncement(ROOT, "http://127.0.0.1:9/", "e")),
            properties=pika.BasicProperties(user_id="rogue"),
        )
        conn.close()
        log = statedir.parent / f"{statedir.name}.log"
        wait_for(lambda: "belongs to 'someone'" in log.read_text(), "the refusal logged")
        assert ROOT not in httpx.get(f"{sub.urlbase}/api/roots").json()
    finally:
        sub.stop()
        conn, channel = _channel(node, "admin")
        channel.queue_delete(topology.subscriber_queue(f"{SUB_ID}-2"))
        conn.close()


def test_access_prints_least_privilege_commands_and_refuses_passwords_read_as_options(capsys):
    assert cat2bro(["access", "subscriber", "sub-x", "--id", "x", "--password", "pw"]) == 0
    out = capsys.readouterr().out
    assert "set_permissions -p caterva2 sub-x '^(cat2\\.sub\\.x|amq\\.gen-.*)$'" in out
    assert cat2bro(["access", "publisher", "p", "--root", "r", "--password=-rf"]) == 1
    assert "must not start with '-'" in capsys.readouterr().err
    assert cat2bro(["access", "publisher", "p"]) == 1  # a publisher needs its roots
    assert not access.new_password().startswith("-")
