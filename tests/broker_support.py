"""A real RabbitMQ for the tests: how it is found, fixtures around it, and a TCP proxy to cut."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest

from caterva2.broker import topology
from caterva2.broker.connection import parameters
from caterva2.broker.messages import ChangeMessage, encode

LOCAL_URL = "amqp://guest:guest@127.0.0.1:5672/"
RUN = uuid.uuid4().hex[:8]  # keeps names of concurrent runs on one broker apart


def _answers(url: str) -> str | None:
    """Return None if a broker answers at url, else why not."""
    params = parameters(url, "caterva2-tests-probe")
    params.socket_timeout = 2
    try:
        pika.BlockingConnection(params).close()
    except Exception as exc:
        return repr(exc)
    return None


def _docker_rabbitmq():
    """Start a throwaway RabbitMQ with testcontainers if it is installed and Docker answers."""
    if importlib.util.find_spec("testcontainers") is None:
        return None
    try:
        subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    from testcontainers.rabbitmq import RabbitMqContainer

    return RabbitMqContainer("rabbitmq:3-management").start()


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a live broker: $CATERVA2_BROKER_URL, else Docker (testcontainers), else local."""
    url = os.environ.get("CATERVA2_BROKER_URL")
    container = None if url else _docker_rabbitmq()
    if container is not None:
        params = container.get_connection_params()
        url = f"amqp://guest:guest@{params.host}:{params.port}/"
    url = url or LOCAL_URL
    why = _answers(url)
    if why is not None:
        pytest.fail(
            f"no RabbitMQ answers at {url} ({why}). Start one with `rabbitmq-server -detached` "
            "(or set CATERVA2_BROKER_URL to a running broker); broker tests never skip.",
            pytrace=False,
        )
    conn = pika.BlockingConnection(parameters(url, "caterva2-tests-setup"))
    topology.declare_topology(conn.channel())
    conn.close()
    yield url
    _remove_our_dead_letters(url)
    if container is not None:
        container.stop()


def _remove_our_dead_letters(url: str) -> None:
    """Ack this run's messages in the shared cat2.dead.letters; leave everyone else's there."""
    conn = pika.BlockingConnection(parameters(url, "caterva2-tests-cleanup"))
    channel = conn.channel()
    ours = topology.subscriber_queue(f"test-{RUN}-")
    # Unacked messages are not redelivered while we hold them: stop when none come.
    for method, props, _body in channel.consume(
        topology.DEAD_LETTERS_QUEUE, inactivity_timeout=0.5
    ):
        if method is None:
            break
        deaths = (props.headers or {}).get("x-death", [])
        if any(str(d.get("queue", "")).startswith(ours) for d in deaths):
            channel.basic_ack(method.delivery_tag)
    conn.close()  # what we did not ack goes back to the queue


@pytest.fixture
def channel(broker_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A blocking channel for declaring, peeking and cleaning up from the test thread."""
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests"))
    yield conn.channel()
    conn.close()


@pytest.fixture
def new_id(broker_url: str) -> Iterator[Callable[[str], str]]:
    """Make unique subscriber ids / root names; delete the test's subscriber queues after."""
    made: list[str] = []

    def make(label: str) -> str:
        name = f"test-{RUN}-{label}-{uuid.uuid4().hex[:6]}"
        made.append(name)
        return name

    yield make
    conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-cleanup"))
    ch = conn.channel()
    for name in made:
        ch.queue_delete(topology.subscriber_queue(name))
    conn.close()


def publish_reply_code(url: str, exchange: str, routing_key: str, **properties) -> int:
    """Publish a change with confirms; the broker's reply code (0: accepted, 403: refused)."""
    conn = pika.BlockingConnection(parameters(url, "caterva2-tests-publish"))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        body = encode(ChangeMessage(routing_key, "x.b2nd", "deleted"))
        channel.basic_publish(
            exchange, routing_key, body, properties=pika.BasicProperties(**properties)
        )
        return 0
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code
    finally:
        if conn.is_open:
            conn.close()


class TcpProxy:
    """A TCP forwarder whose live connections the test can cut at once."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._refuse_until = 0.0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                client.close()  # the "broker" is down: hang up at once
                continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        """Connect to the target and pump bytes both ways."""
        upstream = socket.create_connection(self._target)
        with self._lock:
            self.accepted += 1
            self._socks += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, refuse_for: float = float("inf")) -> None:
        """Drop every live connection, and hang up on new ones for refuse_for seconds."""
        self._refuse_until = time.monotonic() + refuse_for
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        """Accept connections again after a `cut()`."""
        self._refuse_until = 0.0

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
