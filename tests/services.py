"""Real server processes for the tests: start, wait until they answer, stop."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from caterva2.broker.local_node import free_port
from caterva2.common import b2files, waiting
from caterva2.common.waiting import wait_http  # noqa: F401 - the tests import it from here

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "root-example"
SECRET = "test-secret-not-for-production"
# `/api/list/@public` of a subscriber serving the examples (reference 3.2).
EXPECTED_PUBLIC = [
    "README.md",
    "dir1/ds-2d.b2nd",
    "dir1/ds-3d.b2nd",
    "dir2/ds-4d.b2nd",
    "ds-1d-b.b2nd",
    "ds-1d-fields.b2nd",
    "ds-1d.b2nd",
    "ds-2d-fields.b2nd",
    "ds-hello.b2frame",
    "ds-sc-attr.b2nd",
    "ex-noattr.h5",
    "root-example.h5",
]


WAIT = 20.0  # seconds a change may take to show up (the contract says "within seconds")


def wait_for(predicate, what: str, timeout: float = WAIT, interval: float = 0.1) -> None:
    """`common.waiting.wait_for` with the tests' default, a server not answering yet
    counting as "not yet"."""
    waiting.wait_for(predicate, what, timeout, interval, ignore=(httpx.HTTPError,))


def populate_from_examples(rootdir: Path) -> None:
    """Put the example files into a root folder as the subscriber stores them."""
    b2files.store_tree(EXAMPLES, rootdir)


def stop_process(proc: subprocess.Popen | None, timeout: float = 20) -> int | None:
    """SIGTERM a server and wait for its exit status (killed if it hangs); None if never run."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_cli(*args: str, env: dict | None = None, check: bool = True, **kw):
    """Run one of our console programs as `python -m module`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=check,
        **kw,
    )


@dataclass
class SubscriberProcess:
    """A `cat2sub` running in its own process on 127.0.0.1."""

    statedir: Path
    conf: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    broker_url: str | None = None
    superuser: tuple[str, str] = ("super@example.com", "superpass123")
    user: tuple[str, str] = ("user@example.com", "userpass123")
    other: tuple[str, str] = ("other@example.com", "otherpass123")

    @property
    def urlbase(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_conf(self) -> Path:
        lines = ["[subscriber]"]
        for key, value in self.conf.items():
            lines.append(
                f"{key} = {value!r}"
                if isinstance(value, str)
                else f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
            )
        path = self.statedir.parent / f"{self.statedir.name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> SubscriberProcess:
        self.port = self.port or free_port()
        conf = self.write_conf()
        log = open(self.statedir.parent / f"{self.statedir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caterva2.subscriber.server",
                "--conf",
                str(conf),
                "--statedir",
                str(self.statedir),
                "--http",
                f"127.0.0.1:{self.port}",
                *(["--broker", self.broker_url] if self.broker_url else []),
            ],
            env={**os.environ, "CATERVA2_SECRET": SECRET, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.urlbase}/api/roots", self.proc)
        return self

    def stop(self) -> int | None:
        return stop_process(self.proc)

    def add_user(self, email: str, password: str, superuser: bool = False) -> None:
        args = ["caterva2.subscriber.adduser", email, password, "--statedir", str(self.statedir)]
        run_cli(*args, *(["--superuser"] if superuser else []))


@dataclass
class PublisherProcess:
    """A `cat2pub` process publishing `rootdir` as `name` on 127.0.0.1."""

    name: str
    rootdir: Path
    statedir: Path
    broker_url: str
    heartbeat: float = 10.0
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PublisherProcess:
        self.port = self.port or free_port()
        log = open(self.statedir.parent / f"{self.statedir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caterva2.publisher.server",
                self.name,
                str(self.rootdir),
                "--http",
                f"127.0.0.1:{self.port}",
                "--statedir",
                str(self.statedir),
                "--broker",
                self.broker_url,
                "--heartbeat",
                str(self.heartbeat),
                "--loglevel",
                "info",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/api/list", self.proc)
        return self

    def stop(self) -> int | None:
        return stop_process(self.proc)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kw)

    def outbox_size(self) -> int:
        with sqlite3.connect(self.statedir / "state.sqlite") as conn:
            return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def chunk_transfers(self, path: str) -> dict[int, int]:
        """How many times each chunk of `path` was served, from the publisher's own count."""
        stats = httpx.get(f"{self.url}/api/stats").json()
        return {int(n): count for n, count in stats["chunks"].get(path, {}).items()}
