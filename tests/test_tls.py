"""TLS between sites: amqps:// to a RabbitMQ node with a TLS listener, https:// publishers."""

from __future__ import annotations

import shutil
import ssl
import uuid

import numpy as np
import pika
import pika.exceptions
import pytest

from caterva2.broker import federation
from caterva2.broker.cli import main as cat2bro
from caterva2.broker.connection import CA_ENV, parameters
from caterva2.broker.consumer import Consumer
from caterva2.broker.local_node import RabbitMQNode, free_port
from caterva2.broker.messages import ChangeMessage
from caterva2.broker.publisher import ConfirmedPublisher
from caterva2.common.errors import ServiceUnavailable
from caterva2.subscriber.publisher_client import PublisherPool

from .services import PublisherProcess, SubscriberProcess, wait_for
from .test_broker import Inbox
from .test_pubsub import RUN, delete_queue, fetch, follow, write_array
from .tls_support import TlsProxy, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_node(certs):
    """Our own RabbitMQ node that also listens with TLS (its certificate from our CA)."""
    node = RabbitMQNode(plugins=("rabbitmq_federation",))
    for path in (certs.ca, certs.cert, certs.key):
        (node.basedir / path.name).write_bytes(path.read_bytes())
    node.tls_port = free_port()
    node.config = "\n".join(
        [
            f"listeners.ssl.default = {node.tls_port}",
            f"ssl_options.cacertfile = {node.basedir / certs.ca.name}",
            f"ssl_options.certfile = {node.basedir / certs.cert.name}",
            f"ssl_options.keyfile = {node.basedir / certs.key.name}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]
    )
    node.start()
    yield node
    node.stop()


def test_publisher_and_consumer_work_over_amqps_with_the_configured_ca(
    tls_node, certs, monkeypatch
):
    monkeypatch.setenv(CA_ENV, str(certs.ca))
    url = f"amqps://guest:guest@127.0.0.1:{tls_node.tls_port}/"
    sub, root = f"tls-{uuid.uuid4().hex[:6]}", f"tls-root-{uuid.uuid4().hex[:6]}"
    inbox = Inbox()
    with Consumer(url, sub, inbox, roots=[root], discover_on_connect=False) as con:
        assert con.wait_connected(20)
        with ConfirmedPublisher(url) as pub:
            assert pub.wait_connected(20)
            pub.publish(ChangeMessage(root, "over-tls.b2nd", "created")).result(20)
        inbox.wait(lambda: inbox.paths(root) == {"over-tls.b2nd"})


def test_amqps_refuses_a_broker_whose_certificate_no_trusted_ca_signed(tls_node, monkeypatch):
    monkeypatch.delenv(CA_ENV, raising=False)  # the system's CAs do not know ours
    url = f"amqps://guest:guest@127.0.0.1:{tls_node.tls_port}/"
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        pika.BlockingConnection(parameters(url, "test-untrusted"))


def test_amqps_checks_the_host_name_in_the_certificate(tls_node, certs, tmp_path, monkeypatch):
    monkeypatch.setenv(CA_ENV, str(certs.ca))
    # 127.0.0.2 reaches the same node, but the certificate names 127.0.0.1 and localhost.
    url = f"amqps://guest:guest@127.0.0.2:{tls_node.tls_port}/"
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        pika.BlockingConnection(parameters(url, "test-wrong-host"))


def test_subscriber_reads_a_root_whose_publisher_is_behind_https(tmp_path, broker_url, certs):
    name = f"tls-{RUN}-{uuid.uuid4().hex[:4]}"
    rootdir = tmp_path / name
    rootdir.mkdir()
    write_array(rootdir / "ds.b2nd", np.arange(30).reshape(5, 6), chunks=(2, 3))
    http_port = free_port()
    pub = PublisherProcess(name, rootdir, tmp_path / "pub", broker_url, heartbeat=1.0)
    pub.port = http_port
    https = TlsProxy("127.0.0.1", http_port, certs)
    pub.extra_args = ["--url", f"https://127.0.0.1:{https.port}"]
    statedir = tmp_path / "sub"
    statedir.mkdir()
    sub_id = f"test-{RUN}-{uuid.uuid4().hex[:6]}"
    sub = SubscriberProcess(
        statedir,
        conf={"login": False, "id": sub_id, "publisher_ca_file": str(certs.ca)},
        broker_url=broker_url,
    )
    try:
        pub.start()
        sub.start()
        follow(sub, name)
        wait_for(lambda: fetch(sub, f"{name}/ds.b2nd") is not None, "a read through https")
        assert fetch(sub, f"{name}/ds.b2nd").tolist() == np.arange(30).reshape(5, 6).tolist()
        assert https.accepted >= 1  # it did go through TLS
        # Without our CA, the same publisher is untrusted: a clear 503, no data.
        pool = PublisherPool()
        try:
            with pytest.raises(ServiceUnavailable, match="unreachable"):
                pool.client(name, f"https://127.0.0.1:{https.port}").list()
        finally:
            pool.close()
    finally:
        sub.stop()
        pub.stop()
        https.close()
        delete_queue(broker_url, sub_id)


def test_sites_link_over_amqps_with_the_upstream_certificate_checked(tls_node, certs, monkeypatch):
    """`cat2bro link` passes the broker's own TLS options through; news crosses encrypted."""
    monkeypatch.setenv(CA_ENV, str(certs.ca))  # cat2bro itself talks amqps to the TLS node too
    other = RabbitMQNode(plugins=("rabbitmq_federation",))
    shutil.copy(certs.ca, other.basedir / "ca.pem")  # where its rabbitmq user can read it
    other.start()
    try:
        for node in (tls_node, other):
            node.ctl("add_vhost", "tls")
            node.ctl("set_permissions", "-p", "tls", "guest", ".*", ".*", ".*")
            assert cat2bro(["--broker", f"{node.admin_url}tls", "setup"]) == 0
        # How `other` reaches the TLS node: amqps, its certificate checked against our CA.
        tls_uri = (
            f"amqps://guest:guest@localhost:{tls_node.tls_port}/tls?cacertfile="
            f"{other.basedir / 'ca.pem'}&verify=verify_peer&server_name_indication=localhost"
        )
        plain_uri = f"{other.admin_url}tls"
        sites = ["--site", "tls", " ".join(tls_node.ctl_command()), tls_uri]
        sites += ["--site", "plain", " ".join(other.ctl_command()), plain_uri]
        assert cat2bro(["link", *sites]) == 0
        here = federation.Site("plain", tuple(other.ctl_command()), plain_uri)
        wait_for(
            lambda: {s for _u, _e, s in federation.link_states(here)} == {"running"},
            "the amqps link running",
        )
        inbox = Inbox()
        root = f"tls-fed-{uuid.uuid4().hex[:6]}"
        with Consumer(plain_uri, f"tls-fed-{uuid.uuid4().hex[:6]}", inbox, roots=[root]) as con:
            assert con.wait_connected(20)
            with ConfirmedPublisher(f"{tls_node.admin_url}tls") as pub:
                wait_for(lambda: _sent(pub, root, inbox), "a change across the amqps link")
        assert cat2bro(["unlink", *sites]) == 0
    finally:
        other.stop()


def _sent(pub: ConfirmedPublisher, root: str, inbox: Inbox) -> bool:
    """Publish once more (the link binds a moment after the consumer); whether one arrived."""
    pub.publish(ChangeMessage(root, "x.b2nd", "created")).result(20)
    return bool(inbox.paths(root))
