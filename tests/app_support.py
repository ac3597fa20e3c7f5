"""A whole subscriber app in-process (falcon.testing) over a real store, with its accounts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import falcon.testing

from caterva2.common.daemon import http_server
from caterva2.subscriber.app import Subscriber, create_subscriber
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings

from .services import free_port

SUPERUSER = ("root@example.com", "rootpass123")
USER = ("user@example.com", "userpass123")


@dataclass
class InProcess:
    """The app, its state, and a test client that logs in as asked."""

    subscriber: Subscriber
    client: falcon.testing.TestClient
    subscriber_settings: SubscriberSettings

    @property
    def store(self):
        return self.subscriber.store

    def login(self, who: tuple[str, str], **headers: str) -> falcon.testing.Result:
        return self.client.simulate_post(
            "/auth/jwt/login",
            body=urlencode({"username": who[0], "password": who[1]}),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )

    def cookie(self, who: tuple[str, str]) -> dict[str, str]:
        """The `Cookie` header of a fresh login of `who`."""
        resp = self.login(who)
        assert resp.status_code == 204, resp.text
        return {"Cookie": f"c2subauth={resp.cookies['c2subauth'].value}"}


def in_process_subscriber(
    statedir: Path, remote_root: str | None = None, **settings: Any
) -> InProcess:
    """A subscriber over `statedir`, with logins unless `login=False` is given.

    `remote_root`: the name of a known remote root whose publisher is down.
    """
    conf = SubscriberSettings(**{"statedir": statedir, "secret": "s3cret", **settings})

    def remote_with(store) -> RemoteRoots:
        if remote_root:
            store.upsert_root(remote_root, f"http://127.0.0.1:{free_port()}", "etag-1", True)
        return RemoteRoots(store, statedir)

    subscriber = create_subscriber(conf, remote_with if remote_root else None)
    if conf.login:
        subscriber.store.add_user(*SUPERUSER, True)
        subscriber.store.add_user(*USER)
    return InProcess(subscriber, falcon.testing.TestClient(subscriber.app), conf)


@contextmanager
def serving(statedir: Path, remote_root: str | None = None, **settings: Any) -> Iterator[str]:
    """`in_process_subscriber(...)` served on 127.0.0.1 by `served`, closed at exit: its URL."""
    app = in_process_subscriber(statedir, remote_root, **settings)
    try:
        with served(app.subscriber.app) as base:
            yield base
    finally:
        app.subscriber.close()


@contextmanager
def served(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve a WSGI app with waitress in a thread of this process; yield its URL.

    Real HTTP on 127.0.0.1, so anything that talks HTTP (the client, the CLI)
    uses it as it would a `cat2sub` process, without the cost of starting one.
    """
    port = free_port()
    server = http_server(app, f"127.0.0.1:{port}", threads, "test-subscriber")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=10)
