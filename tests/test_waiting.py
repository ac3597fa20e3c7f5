"""The one wait helper (`caterva2.common.waiting`) the tests, bench/ and lab/ share."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from caterva2.common.waiting import WaitTimeout, wait_for, wait_http

from .app_support import served
from .services import free_port


def test_returns_once_the_condition_holds():
    done = threading.Event()
    threading.Thread(target=done.set).start()
    wait_for(done.is_set, "the other thread", timeout=20, interval=0.01)
    assert done.is_set()


def test_names_what_did_not_happen_and_is_a_timeout_error():
    with pytest.raises(WaitTimeout, match="waiting for the impossible") as caught:
        wait_for(lambda: False, "the impossible", timeout=0, interval=0)
    assert isinstance(caught.value, TimeoutError)


def test_tries_once_more_at_the_deadline():
    wait_for(lambda: True, "anything", timeout=0)


def test_ignored_errors_mean_not_yet_and_others_propagate():
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not up yet")
        return True

    wait_for(flaky, "a flaky thing", timeout=20, interval=0, ignore=(ConnectionError,))
    assert len(calls) == 3
    with pytest.raises(ZeroDivisionError):
        wait_for(lambda: 1 / 0, "a broken thing", timeout=20, ignore=(ConnectionError,))


def test_wait_http_returns_once_a_server_answers():
    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    with served(app) as url:
        wait_http(f"{url}/anything", timeout=20)


def test_wait_http_fails_at_once_when_the_server_process_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        wait_http(f"http://127.0.0.1:{free_port()}/", proc, timeout=600)
