"""Session fixtures: real subscriber processes over real SQLite files and example data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import caterva2 as cat2

from .services import EXAMPLES, SubscriberProcess, populate_from_examples


@pytest.fixture(autouse=True)
def _no_stray_log_handlers():
    """Programs run in-process (their `main()`) point the root logger at the stderr this
    test captures; drop that handler after the test, or a later background thread
    logs to a closed stream ("--- Logging error ---" in the output)."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


def _start_subscriber(tmp_path_factory, name: str, **conf) -> SubscriberProcess:
    statedir = tmp_path_factory.mktemp(name) / "state"
    statedir.mkdir()
    server = SubscriberProcess(statedir, conf=conf)
    if conf.get("login", True):
        server.add_user(*server.superuser, superuser=True)
        server.add_user(*server.user)
        server.add_user(*server.other)
    populate_from_examples(statedir / "public")
    return server.start()


@pytest.fixture(scope="session")
def sub(tmp_path_factory):
    """A subscriber with logins; @public holds the example files."""
    server = _start_subscriber(tmp_path_factory, "sub", login=True)
    yield server
    server.stop()


# Python clients of `sub` (the CLI tests have their own `anon`, `user`, `superuser`).
@pytest.fixture(scope="module")
def anon(sub):
    with cat2.Client(sub.urlbase) as client:
        yield client


@pytest.fixture(scope="module")
def user(sub):
    with cat2.Client(sub.urlbase, sub.user) as client:
        yield client


@pytest.fixture(scope="module")
def superuser(sub):
    with cat2.Client(sub.urlbase, cat2.BasicAuth(*sub.superuser)) as client:
        yield client


@pytest.fixture(scope="session")
def sub_nologin(tmp_path_factory):
    """A subscriber without logins (every write is refused)."""
    server = _start_subscriber(tmp_path_factory, "sub-nologin", login=False)
    yield server
    server.stop()


# RabbitMQ: found as DEVELOPERS' guide says; the broker tests fail (never skip) without one.
from .broker_support import broker_url, channel, new_id  # noqa: E402, F401
