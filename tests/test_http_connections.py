"""Idle and half-sent connections never lock a fresh client out (a real cat2sub process)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from .services import SubscriberProcess, wait_for

HALF_SENT = b"GET /api/roots HTTP/1.1\r\nHost: x\r\n"  # no blank line: the request never ends


def server(tmp_path, **conf) -> SubscriberProcess:
    statedir = tmp_path / "state"
    statedir.mkdir()
    return SubscriberProcess(statedir, conf={"login": False, **conf}).start()


@pytest.fixture
def idle(request) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def open_idle(port: int, count: int, source: str, opened: list[socket.socket]) -> None:
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(HALF_SENT)
        opened.append(sock)


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError:
        return True


def fresh_answer(urlbase: str) -> httpx.Response:
    return httpx.get(f"{urlbase}/api/roots", timeout=1.0)


def test_a_new_client_is_served_beside_200_idle_connections(tmp_path, idle):
    sub = server(tmp_path, max_connections_per_client=0)
    try:
        open_idle(sub.port, 200, "127.0.0.1", idle)
        assert fresh_answer(sub.urlbase).status_code == 200
        assert not any(closed_by_server(s) for s in idle)  # all 200 kept: none over a limit
    finally:
        sub.stop()


def test_one_address_holds_a_limited_number_of_connections(tmp_path, idle):
    sub = server(tmp_path, max_connections_per_client=50, idle_timeout=2)
    try:
        open_idle(sub.port, 200, "127.0.0.2", idle)
        wait_for(lambda: sum(map(closed_by_server, idle)) >= 150, "the connections over 50")
        assert fresh_answer(sub.urlbase).status_code == 200  # from 127.0.0.1

        # Half-sent requests are dropped once idle for `idle_timeout` seconds.
        wait_for(lambda: all(map(closed_by_server, idle)), "the idle connections to close")
        assert fresh_answer(sub.urlbase).status_code == 200
    finally:
        sub.stop()
