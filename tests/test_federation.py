"""Two sites, each with its own RabbitMQ node, linked by `cat2bro link`.

Site A's broker reaches site B's directly; site B's reaches site A's through a
TCP proxy, so that the test can cut that link. Every daemon runs as its own
least-privilege broker user (`cat2bro access`).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pika
import pytest

from caterva2.broker import access, topology
from caterva2.broker.cli import main as cat2bro
from caterva2.broker.local_node import RabbitMQNode
from caterva2.broker.messages import ChangeMessage, encode

from .broker_support import TcpProxy
from .services import PublisherProcess, SubscriberProcess, wait_for
from .test_pubsub import listing, remote_shape, write_array

VHOST = "caterva2"
PASSWORD = "pw-" + uuid.uuid4().hex[:8]
HEARTBEAT = 600.0  # so long that anything learnt in the test came another way


class Site:
    """One site: its broker node, its users' URLs, and what runs there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.root = f"root-{name}"
        self.sub_id = f"sub-{name}-{uuid.uuid4().hex[:6]}"
        self.node = RabbitMQNode(plugins=("rabbitmq_federation",))
        self.proxy: TcpProxy | None = None

    def start(self) -> None:
        self.node.start()
        ctl = self.node.ctl_command()
        grants = [
            access.admin_grant("admin"),
            access.federation_grant("federation"),
            access.publisher_grant(f"pub-{self.name}", [self.root]),
            access.subscriber_grant(f"sub-{self.name}", self.sub_id),
        ]
        for i, grant in enumerate(grants):
            access.apply(ctl, access.rabbitmqctl_commands(grant, VHOST, PASSWORD, i == 0))
        self.node.ctl("add_user", "rogue", PASSWORD)
        self.node.ctl("set_permissions", "-p", VHOST, "rogue", ".*", ".*", ".*")
        assert cat2bro(["--broker", self.url("admin"), "setup"]) == 0

    def url(self, user: str) -> str:
        return self.node.url(user, PASSWORD, VHOST)

    def link_uri(self) -> str:
        """How the other site's broker reaches this one (through the proxy, if any)."""
        port = self.proxy.port if self.proxy else self.node.port
        return f"amqp://federation:{PASSWORD}@127.0.0.1:{port}/{VHOST}"

    def site_args(self) -> list[str]:
        return ["--site", self.name, " ".join(self.node.ctl_command()), self.link_uri()]

    def queues(self) -> list[str]:
        out = self.node.ctl("list_queues", "-p", VHOST, "name", "--formatter", "json")
        return [q["name"] for q in json.loads(out or "[]")]

    def exchanges(self) -> list[str]:
        out = self.node.ctl("list_exchanges", "-p", VHOST, "name", "--formatter", "json")
        return [e["name"] for e in json.loads(out or "[]")]


@pytest.fixture(scope="module")
def sites():
    a, b = Site("a"), Site("b")
    proxy = None
    try:
        # Both nodes boot at once: each takes most of its time waiting on itself.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Site.start, (a, b)))
        proxy = a.proxy = TcpProxy("127.0.0.1", a.node.port)
        yield a, b
    finally:
        if proxy is not None:
            proxy.close()
        a.node.stop()
        b.node.stop()


def _roots(sub: SubscriberProcess) -> dict:
    return httpx.get(f"{sub.urlbase}/api/roots", timeout=10).json()


def test_linked_sites_share_news_both_ways_and_unlink_leaves_nothing(sites, tmp_path, capsys):
    a, b = sites
    assert cat2bro(["link", *a.site_args(), *b.site_args()]) == 0
    assert cat2bro(["link", *a.site_args(), *b.site_args()]) == 0  # idempotent
    capsys.readouterr()
    processes = []

    def publisher(site: Site) -> PublisherProcess:
        rootdir = tmp_path / site.root
        rootdir.mkdir()
        write_array(rootdir / "ds.b2nd", np.arange(10))
        pub = PublisherProcess(
            site.root, rootdir, tmp_path / f"pub-{site.name}", site.url(f"pub-{site.name}"),
            heartbeat=HEARTBEAT,
        )  # fmt: skip
        processes.append(pub)
        return pub.start()

    def subscriber(site: Site) -> SubscriberProcess:
        statedir = tmp_path / f"sub-{site.name}"
        statedir.mkdir()
        sub = SubscriberProcess(
            statedir,
            # No polling of silent publishers over HTTP: what crosses the link is tested.
            conf={"login": False, "id": site.sub_id, "loglevel": "info", "silent_after": 3600},
            broker_url=site.url(f"sub-{site.name}"),
        )
        processes.append(sub)
        return sub.start()

    try:
        pub_a, pub_b = publisher(a), publisher(b)
        # Subscribers that start after the publishers' start-up announcements: with
        # heartbeats 10 minutes apart, they learn the other site's root only through
        # their discover request crossing the link, and its answer crossing back.
        started = time.monotonic()
        sub_b = subscriber(b)
        up = time.monotonic()
        wait_for(lambda: a.root in _roots(sub_b), "site A's root discovered at site B", 10)
        print(f"discovered across the link {time.monotonic() - up:.2f} s after start-up")
        sub_a = subscriber(a)
        wait_for(lambda: b.root in _roots(sub_a), "site B's root discovered at site A", 10)
        assert time.monotonic() - started < HEARTBEAT / 10
        assert _roots(sub_b)[a.root]["owner"] == f"pub-{a.name}"  # identity kept across

        for pub, sub, root in ((pub_a, sub_b, a.root), (pub_b, sub_a, b.root)):
            path = f"{root}/new.b2nd"
            # A file written just before its publisher started is announced once settled.
            wait_for(lambda s=sub, r=root: listing(s, r) == ["ds.b2nd"], f"{root} listed")
            write_array(pub.rootdir / "new.b2nd", np.arange(4))
            wait_for(lambda s=sub, p=path: remote_shape(s, p) == (4,), f"{path} created")
            write_array(pub.rootdir / "new.b2nd", np.arange(6))
            wait_for(lambda s=sub, p=path: remote_shape(s, p) == (6,), f"{path} modified")
            (pub.rootdir / "new.b2nd").unlink()
            wait_for(lambda s=sub, r=root: listing(s, r) == ["ds.b2nd"], f"{path} deleted")

        # A message forged at site B for site A's root is refused at B.
        conn = pika.BlockingConnection(pika.URLParameters(b.url("rogue")))
        forger = conn.channel()
        forger.confirm_delivery()  # unconfirmed, a quorum queue may lose it at close
        forger.basic_publish(
            topology.CHANGES_EXCHANGE,
            a.root,
            encode(ChangeMessage(a.root, "ds.b2nd", "deleted")),
            properties=pika.BasicProperties(user_id="rogue"),
        )
        conn.close()
        log = sub_b.statedir.parent / f"{sub_b.statedir.name}.log"
        wait_for(lambda: "belongs to 'pub-a'" in log.read_text(), "the forgery refused at B")
        assert listing(sub_b, a.root) == ["ds.b2nd"]

        # Cut site B's link to site A for 30 s; changes made meanwhile arrive after.
        a.proxy.cut()
        write_array(pub_a.rootdir / "during-cut.b2nd", np.arange(3))
        time.sleep(30)  # the cut itself is what is tested: it must last
        assert "during-cut.b2nd" not in listing(sub_b, a.root)
        a.proxy.restore()
        wait_for(
            lambda: remote_shape(sub_b, f"{a.root}/during-cut.b2nd") == (3,),
            "the change made during the cut",
            60,
        )

        ctl_b = " ".join(b.node.ctl_command())
        assert cat2bro(["--broker", b.url("admin"), "status", "--wait", "0.1", "--ctl", ctl_b]) == 0
        out = capsys.readouterr().out
        assert f"cat2-{a.name}" in out and "running" in out
    finally:
        for proc in reversed(processes):
            proc.stop()

    # Unlink while site B's link to A is cut: B's broker cannot clean up at A itself,
    # so the queue its link left there would collect changes for nobody, forever.
    a.proxy.cut()
    assert any(q.startswith("federation: ") for q in a.queues())
    a.proxy = None  # the other broker's way in no longer matters: A's own port serves
    assert cat2bro(["unlink", *a.site_args(), *b.site_args()]) == 0
    for site in (a, b):
        assert not [q for q in site.queues() if q.startswith("federation: ")], site.name
        assert not [e for e in site.exchanges() if e.startswith("federation: ")], site.name
        policies = site.node.ctl("list_policies", "-p", VHOST, "--formatter", "json")
        assert "cat2-federation" not in policies


def test_link_says_how_to_enable_the_plugin_when_a_broker_lacks_it(tmp_path, capsys):
    plain = RabbitMQNode()  # no federation plugin
    plain.start()
    try:
        plain.ctl("add_vhost", VHOST)
        ctl = " ".join(plain.ctl_command())
        uri = f"amqp://u:p@127.0.0.1:{plain.port}/{VHOST}"
        code = cat2bro(["link", "--site", "x", ctl, uri, "--site", "y", ctl, uri])
        assert code == 1
        err = capsys.readouterr().err
        assert "rabbitmq-plugins enable rabbitmq_federation" in err
    finally:
        plain.stop()


def test_link_prints_the_commands_for_brokers_it_cannot_reach(capsys):
    uri_a, uri_b = "amqps://fed:pw@a.example.org:5671/caterva2", "amqp://fed:pw@b/caterva2"
    args = [
        "link",
        "--print",
        "--site",
        "a",
        "rabbitmqctl",
        uri_a,
        "--site",
        "b",
        "ssh b rabbitmqctl",
        uri_b,
    ]
    assert cat2bro(args) == 0
    out = capsys.readouterr().out
    assert "rabbitmqctl set_parameter -p caterva2 federation-upstream cat2-b" in out
    assert "ssh b rabbitmqctl set_parameter -p caterva2 federation-upstream cat2-a" in out
    assert '"trust-user-id": true' in out and uri_a in out  # TLS URIs pass through
    assert cat2bro(["link", "--site", "a", "rabbitmqctl", uri_a]) == 1
