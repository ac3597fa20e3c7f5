"""Tests of caterva2.broker against a real RabbitMQ (see `broker_url` for how it is found)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import msgpack
import pytest

from caterva2.broker import cli, topology
from caterva2.broker.connection import Backoff, BrokerConfigError, parameters, resolve_url
from caterva2.broker.consumer import QUEUE_HEADER, REASON_HEADER, Consumer
from caterva2.broker.messages import (
    VERSION,
    ChangeMessage,
    DiscoverRequest,
    MessageError,
    RootAnnouncement,
    decode,
    encode,
)
from caterva2.broker.publisher import ConfirmedPublisher, PublisherClosed

from .broker_support import LOCAL_URL, TcpProxy
from .services import wait_for

FAST = dict(initial=0.05, maximum=0.5)  # reconnect quickly in tests


class Inbox:
    """A handler that records messages and lets the test wait for them."""

    def __init__(self, fail: Callable[[object], bool] = lambda m: False) -> None:
        self.messages: list[object] = []
        self.calls: list[object] = []
        self._fail = fail
        self._cond = threading.Condition()

    def __call__(self, message: object) -> None:
        with self._cond:
            self.calls.append(message)
            if isinstance(message, ChangeMessage) and self._fail(message):
                raise RuntimeError(f"handler refuses {message!r}")
            self.messages.append(message)
            self._cond.notify_all()

    def changes(self, root: str) -> list[ChangeMessage]:
        with self._cond:
            return [m for m in self.messages if isinstance(m, ChangeMessage) and m.root == root]

    def paths(self, root: str) -> set[str]:
        return {m.path for m in self.changes(root)}

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; got {len(self.messages)} message(s)"
                self._cond.wait(min(left, 0.1))


def _dead_letter_spy(channel) -> str:
    """Bind a private queue to cat2.dead so the test sees dead letters without stealing any."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, topology.DEAD_EXCHANGE)
    return queue


def _dead_letters_from(
    channel, spy: str, queue: str, count: int, timeout: float = 10.0, reasons: list | None = None
):
    """Wait for count dead letters that died in queue; return their bodies.

    Refused messages carry the consumer's reason (appended to `reasons`); messages the
    broker dead-lettered by itself (delivery limit) carry `x-death` instead.
    """
    bodies: list[bytes] = []

    def all_dead() -> bool:
        while len(bodies) < count:
            method, props, body = channel.basic_get(spy, auto_ack=True)
            if method is None:
                return False
            headers = props.headers or {}
            deaths = headers.get("x-death", [])
            if headers.get(QUEUE_HEADER) == queue or any(d.get("queue") == queue for d in deaths):
                bodies.append(body)
                if reasons is not None:
                    reasons.append(headers.get(REASON_HEADER))
        return True

    wait_for(all_dead, f"{count} dead letters from {queue}", timeout, interval=0.05)
    return bodies


# -- messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        ChangeMessage("foo", "dir/ds.b2nd", "modified", "etag-1", 1723.5, {"shape": [10, 20]}),
        ChangeMessage("foo", "gone.b2nd", "deleted"),
        RootAnnouncement("foo", "http://localhost:8001/", "etag-r", online=False),
        DiscoverRequest("sub-1"),
    ],
)
def test_encode_decode_round_trip_keeps_every_field(message: object) -> None:
    data = encode(message)
    assert decode(data) == message
    assert msgpack.unpackb(data)["v"] == VERSION


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xc1", "not msgpack"),
        (b"", "not msgpack"),
        (msgpack.packb([1, 2]), "expected a msgpack map"),
        (msgpack.packb({"type": "change", "root": "r"}), "missing field 'v'"),
        (msgpack.packb({"type": "change", "v": 2, "root": "r"}), "unknown message version 2"),
        (msgpack.packb({"type": "change", "v": "1"}), "must be an integer"),
        (msgpack.packb({"type": "nope", "v": 1}), "unknown message type"),
        (msgpack.packb({"type": "change", "v": 1, "root": "r"}), "missing field(s): path, kind"),
        (
            msgpack.packb({"type": "change", "v": 1, "root": "r", "path": "p", "kind": "zap"}),
            "kind must be one of",
        ),
        (
            msgpack.packb({"type": "root", "v": 1, "root": "r", "url": "u", "online": "yes"}),
            "online must be a boolean",
        ),
    ],
)
def test_decode_raises_message_error_on_bad_input(data: bytes, error: str) -> None:
    with pytest.raises(MessageError, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode(data)


def test_decode_ignores_unknown_fields_of_the_same_version() -> None:
    data = msgpack.packb({**msgpack.unpackb(encode(DiscoverRequest("s"))), "extra": 1})
    assert decode(data) == DiscoverRequest("s")


def test_invalid_message_cannot_be_built() -> None:
    with pytest.raises(MessageError):
        ChangeMessage("", "p", "created")
    with pytest.raises(MessageError):
        ChangeMessage("r", "p", "created", mtime=float("nan"))
    with pytest.raises(TypeError):
        encode({"v": 1})


# -- topology, connection, URL --------------------------------------------------


def test_subscriber_queue_names_are_validated() -> None:
    assert topology.subscriber_queue("site-b.1") == "cat2.sub.site-b.1"
    for bad in ("", "a b", "../x", "x" * 201, ".x"):
        with pytest.raises(ValueError):
            topology.subscriber_queue(bad)


def test_broker_url_comes_from_flag_then_env_then_config_then_default(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CATERVA2_BROKER_URL", raising=False)
    assert resolve_url() == LOCAL_URL
    (tmp_path / "caterva2.toml").write_text('[broker]\nurl = "amqp://cfg/"\n')
    assert resolve_url() == "amqp://cfg/"
    with pytest.raises(BrokerConfigError):
        resolve_url(config=tmp_path / "missing.toml")
    monkeypatch.setenv("CATERVA2_BROKER_URL", "amqp://env/")
    assert resolve_url() == "amqp://env/"
    assert resolve_url("amqp://flag/") == "amqp://flag/"


def test_parameters_turn_heartbeats_on_and_reject_non_amqp_urls() -> None:
    assert parameters(LOCAL_URL).heartbeat == 30
    assert parameters(LOCAL_URL + "?heartbeat=5").heartbeat == 5
    with pytest.raises(BrokerConfigError):
        parameters("http://127.0.0.1/")


def test_backoff_grows_exponentially_up_to_its_cap_and_resets() -> None:
    b = Backoff(initial=1, maximum=4)
    delays = [b.next() for _ in range(5)]
    for got, want in zip(delays, [1, 2, 4, 4, 4], strict=True):
        assert 0.8 * want <= got <= 1.2 * want
    b.reset()
    assert b.next() <= 1.2


# -- publishing and consuming ---------------------------------------------------


def test_confirmed_publish_reaches_a_bound_queue_as_persistent(channel, broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    queue = topology.declare_subscriber_queue(channel, sub)
    topology.follow(channel, sub, root)
    confirmed = threading.Event()
    message = ChangeMessage(root, "a.b2nd", "created", "e1", 1.0)
    with ConfirmedPublisher(broker_url) as pub:
        pub.publish(message, on_confirmed=confirmed.set).result(timeout=10)
        assert confirmed.is_set() and pub.pending == 0
    # basic.get is refused on single-active-consumer queues: consume instead.
    method, props, body = next(channel.consume(queue, auto_ack=True, inactivity_timeout=10))
    channel.cancel()
    assert decode(body) == message
    assert props.delivery_mode == 2


def test_follow_gets_that_roots_changes_only_and_unfollow_stops_them(broker_url, new_id):
    sub, root_a, root_b = new_id("sub"), new_id("a"), new_id("b")
    inbox = Inbox()
    with (
        ConfirmedPublisher(broker_url) as pub,
        Consumer(broker_url, sub, inbox, discover_on_connect=False) as con,
    ):
        con.follow(root_a).result(timeout=10)
        pub.publish(ChangeMessage(root_b, "b1", "created"))
        pub.publish(ChangeMessage(root_a, "a1", "created"))
        inbox.wait(lambda: inbox.paths(root_a) == {"a1"})
        con.follow(root_b).result(timeout=10)
        con.unfollow(root_a).result(timeout=10)
        pub.publish(ChangeMessage(root_a, "a2", "created"))
        pub.publish(ChangeMessage(root_b, "b2", "created"))  # queue order: a2 would come first
        inbox.wait(lambda: inbox.paths(root_b) == {"b2"})
        assert pub.flush(10)
    assert inbox.paths(root_a) == {"a1"}
    assert inbox.paths(root_b) == {"b2"}


def test_two_subscribers_both_get_every_change(broker_url, new_id):
    root = new_id("root")
    inboxes = [Inbox(), Inbox()]
    consumers = [
        Consumer(broker_url, new_id(f"sub{i}"), inbox, roots=[root], discover_on_connect=False)
        for i, inbox in enumerate(inboxes)
    ]
    try:
        assert all(c.wait_connected(10) for c in consumers)
        paths = {f"ds{i}.b2nd" for i in range(20)}
        with ConfirmedPublisher(broker_url) as pub:
            for p in sorted(paths):
                pub.publish(ChangeMessage(root, p, "modified"))
        for inbox in inboxes:
            inbox.wait(lambda inbox=inbox: inbox.paths(root) == paths)
    finally:
        for c in consumers:
            c.close()


def test_subscriber_that_was_down_catches_up_from_its_durable_queue(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    first = Inbox()
    with Consumer(broker_url, sub, first, discover_on_connect=False) as con:
        con.follow(root).result(timeout=10)
    with ConfirmedPublisher(broker_url) as pub:  # published while the subscriber is down
        for i in range(10):
            pub.publish(ChangeMessage(root, f"p{i}", "created"))
    later = Inbox()
    with Consumer(broker_url, sub, later, discover_on_connect=False):
        later.wait(lambda: len(later.changes(root)) == 10)
    assert [m.path for m in later.changes(root)] == [f"p{i}" for i in range(10)]  # in order
    assert first.messages == []


def test_second_consumer_with_the_same_id_stands_by_until_the_first_stops(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    active, standby = Inbox(), Inbox()
    with ConfirmedPublisher(broker_url) as pub:
        first = Consumer(broker_url, sub, active, roots=[root], discover_on_connect=False)
        assert first.wait_connected(10)  # registered first, so it is the active one
        second = Consumer(broker_url, sub, standby, roots=[root], discover_on_connect=False)
        try:
            assert second.wait_connected(10)
            pub.publish(ChangeMessage(root, "one", "created"))
            active.wait(lambda: active.paths(root) == {"one"})
            first.close()
            pub.publish(ChangeMessage(root, "two", "created"))
            standby.wait(lambda: standby.paths(root) == {"two"})
        finally:
            first.close()
            second.close()
    assert active.paths(root) == {"one"}


def test_change_in_the_handler_when_the_consumer_stops_is_delivered_again(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    started, release = threading.Event(), threading.Event()

    def slow(message) -> None:
        if isinstance(message, ChangeMessage):
            started.set()
            release.wait(10)

    con = Consumer(broker_url, sub, slow, roots=[root], discover_on_connect=False)
    with ConfirmedPublisher(broker_url) as pub:
        con.wait_connected(10)
        pub.publish(ChangeMessage(root, "half-applied", "modified"))
    assert started.wait(10)
    closer = threading.Thread(target=con.close)
    closer.start()
    # The connection goes before the handler returns: a crash.
    wait_for(lambda: not con.connected, "the connection to go", timeout=10, interval=0.01)
    release.set()
    closer.join(10)
    later = Inbox()
    with Consumer(broker_url, sub, later, discover_on_connect=False):
        later.wait(lambda: later.paths(root) == {"half-applied"})


def test_slow_handler_does_not_starve_heartbeats(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    inbox = Inbox()

    def slow(message) -> None:
        if getattr(message, "path", None) == "slow":
            time.sleep(3)  # three heartbeat intervals: the broker would drop a silent peer
        inbox(message)

    url = broker_url + ("&" if "?" in broker_url else "?") + "heartbeat=1"
    with Consumer(url, sub, slow, roots=[root], discover_on_connect=False) as con:
        con.wait_connected(10)
        with ConfirmedPublisher(broker_url) as pub:
            pub.publish(ChangeMessage(root, "slow", "modified"))
            pub.publish(ChangeMessage(root, "next", "modified"))
        inbox.wait(lambda: inbox.paths(root) == {"slow", "next"})
        assert con.connected
    assert [m.path for m in inbox.changes(root)] == ["slow", "next"]  # no redelivery


def test_undecodable_messages_are_dead_lettered_and_consumer_keeps_going(
    channel, broker_url, new_id
):
    sub, root = new_id("sub"), new_id("root")
    spy = _dead_letter_spy(channel)
    unknown_version = msgpack.packb({**msgpack.unpackb(encode(DiscoverRequest("x"))), "v": 99})
    wrong_type = encode(RootAnnouncement(root, "http://x/"))  # an announcement in a change queue
    inbox = Inbox()
    with Consumer(broker_url, sub, inbox, roots=[root], discover_on_connect=False) as con:
        assert con.wait_connected(10)
        for body in (b"\xc1garbage", unknown_version, wrong_type):
            channel.basic_publish(topology.CHANGES_EXCHANGE, root, body)
        with ConfirmedPublisher(broker_url) as pub:
            pub.publish(ChangeMessage(root, "after.b2nd", "created"))
        inbox.wait(lambda: inbox.paths(root) == {"after.b2nd"})
        reasons: list = []
        dead = _dead_letters_from(channel, spy, con.queue, 3, reasons=reasons)
        assert con.refused == 3
    assert sorted(dead) == sorted([b"\xc1garbage", unknown_version, wrong_type])
    assert sorted(reasons) == [
        "invalid message: not msgpack: FormatError()",
        "invalid message: unexpected root message",
        "invalid message: unknown message version 99 (this code speaks 1)",
    ]
    # The handler never saw the bad ones.
    assert [m for m in inbox.calls if isinstance(m, ChangeMessage)] == inbox.changes(root)


def test_failing_handler_is_retried_then_poison_message_is_dead_lettered(
    channel, broker_url, new_id
):
    sub, root = new_id("sub"), new_id("root")
    spy = _dead_letter_spy(channel)
    flaky_failures = []

    def fail(message) -> bool:
        if message.path == "flaky":  # fails once, then works: a retry must fix it
            flaky_failures.append(1)
            return len(flaky_failures) == 1
        return message.path == "poison"

    inbox = Inbox(fail)
    with Consumer(
        broker_url, sub, inbox, roots=[root], discover_on_connect=False, nack_delay=0
    ) as con:
        assert con.wait_connected(10)
        with ConfirmedPublisher(broker_url) as pub:
            for path in ("flaky", "poison", "fine"):
                pub.publish(ChangeMessage(root, path, "modified"))
        inbox.wait(lambda: inbox.paths(root) == {"flaky", "fine"})
        (dead,) = _dead_letters_from(channel, spy, con.queue, 1)
    assert decode(dead).path == "poison"
    poison_calls = [m for m in inbox.calls if getattr(m, "path", None) == "poison"]
    assert len(poison_calls) > topology.DELIVERY_LIMIT - 1


def test_discover_request_makes_publishers_announce_to_subscribers(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    announcement = RootAnnouncement(root, "http://127.0.0.1:9/", "etag-7")
    box: list[ConfirmedPublisher] = []
    requests: list[DiscoverRequest] = []

    def on_discover(request: DiscoverRequest) -> None:
        requests.append(request)
        box[0].publish(announcement)

    inbox = Inbox()
    with ConfirmedPublisher(broker_url, on_discover=on_discover) as pub:
        box.append(pub)
        assert pub.wait_connected(10)
        with Consumer(broker_url, sub, inbox) as con:  # asks on connect by default
            inbox.wait(lambda: announcement in inbox.messages)
            n = inbox.messages.count(announcement)
            con.discover().result(timeout=10)
            inbox.wait(lambda: inbox.messages.count(announcement) > n)
    assert DiscoverRequest(sub) in requests


def test_connection_cut_mid_publish_loses_nothing_confirmed_and_all_arrive(broker_url, new_id):
    sub, root = new_id("sub"), new_id("root")
    params = parameters(broker_url)
    proxy = TcpProxy(params.host, params.port)
    via_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    inbox = Inbox()
    total = 3000
    confirmed: set[str] = set()
    try:
        with (
            Consumer(
                via_proxy,
                sub,
                inbox,
                roots=[root],
                discover_on_connect=False,
                backoff=Backoff(**FAST),
            ) as con,
            ConfirmedPublisher(via_proxy, backoff=Backoff(**FAST)) as pub,
        ):
            assert con.wait_connected(10) and pub.wait_connected(10)
            futures = []

            def publish(numbers: range) -> None:
                for i in numbers:
                    path = f"p{i:05d}"
                    message = ChangeMessage(root, path, "created")
                    futures.append(
                        pub.publish(message, on_confirmed=lambda p=path: confirmed.add(p))
                    )

            publish(range(0, total // 3))
            inbox.wait(lambda: len(inbox.messages) > 100)  # the consumer is mid-stream too
            publish(range(total // 3, 2 * total // 3))
            in_flight = pub.pending
            proxy.cut(refuse_for=0.3)  # and the broker stays unreachable for a moment
            publish(range(2 * total // 3, total))
            assert in_flight > 0, "cut came too late to catch unconfirmed messages"
            assert pub.flush(30), f"{pub.pending} never confirmed"
            assert all(f.exception() is None for f in futures)
            assert len(confirmed) == total
            inbox.wait(lambda: len(inbox.paths(root)) == total, timeout=30)
        assert proxy.accepted >= 4  # both clients reconnected through the proxy
    finally:
        proxy.close()


def test_publish_after_close_raises_and_pending_futures_fail():
    pub = ConfirmedPublisher("amqp://guest:guest@127.0.0.1:1/", backoff=Backoff(**FAST))
    future = pub.publish(DiscoverRequest("nobody"))
    pub.close(timeout=0.2)
    assert isinstance(future.exception(timeout=1), PublisherClosed)
    with pytest.raises(PublisherClosed):
        pub.publish(DiscoverRequest("nobody"))


# -- cat2bro --------------------------------------------------------------------


def test_cat2bro_setup_declares_topology_and_exits_zero(broker_url, capsys):
    assert cli.main(["--broker", broker_url, "setup"]) == 0
    assert topology.DEAD_LETTERS_QUEUE in capsys.readouterr().out


def test_cat2bro_status_shows_announced_roots_and_queue_depths(broker_url, new_id, channel):
    sub, root = new_id("sub"), new_id("root")
    topology.declare_subscriber_queue(channel, sub)
    box: list[ConfirmedPublisher] = []
    with ConfirmedPublisher(
        broker_url,
        on_discover=lambda _r: box[0].publish(RootAnnouncement(root, "http://h:8/", "e9")),
    ) as pub:
        box.append(pub)
        assert pub.wait_connected(10)
        env = {**os.environ, "CATERVA2_BROKER_URL": broker_url}
        result = subprocess.run(
            [sys.executable, "-m", "caterva2.broker.cli", "status", "--wait", "1", "-s", sub],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(root in line and "online" in line and "http://h:8/" in line for line in lines)
    assert any(line.split()[:2] == [topology.subscriber_queue(sub), "0"] for line in lines)


def test_cat2bro_status_lists_cat2_queues_from_the_management_api(broker_url, capsys):
    import http.server
    import json

    class FakeManagement(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path.startswith("/api/queues/%2F")
            body = json.dumps(
                [
                    {"name": "cat2.sub.elsewhere", "messages": 7, "consumers": 1},
                    {"name": "not-ours", "messages": 1, "consumers": 0},
                ]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), FakeManagement)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        management = f"http://127.0.0.1:{server.server_port}"
        argv = ["--broker", broker_url, "status", "--wait", "0.1", "--management", management]
        assert cli.main(argv) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert "cat2.sub.elsewhere  7" in out and "not-ours" not in out
    assert topology.DEAD_LETTERS_QUEUE in out  # known names are still checked directly


def test_cat2bro_unreachable_broker_prints_one_line_and_exits_nonzero(capsys):
    assert cli.main(["--broker", "amqp://guest:guest@127.0.0.1:1/", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cat2bro: cannot connect to broker amqp://guest:***@127.0.0.1:1/")
    assert err.count("\n") == 1
