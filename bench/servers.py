"""The servers a benchmark run needs, started on 127.0.0.1, and their memory as Linux counts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from caterva2.common import waiting

SECRET = "bench-secret-not-for-production"
USER = ("bench@example.com", "benchpass123")
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until `url` answers below 500; fail early if the process died."""
    waiting.wait_http(url, proc, timeout)


def terminate(proc: subprocess.Popen | None, grace: float = 20.0) -> None:
    """SIGTERM a server process, then SIGKILL after `grace` seconds (if it still runs)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Server:
    """A server process of ours, logging to a file."""

    name: str
    logdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = self.port or free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = open(self.logdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class Subscriber(Server):
    """`cat2sub` (waitress) or the same app under gunicorn."""

    statedir: Path = Path()
    login: bool = True
    broker_url: str | None = None
    sub_id: str | None = None
    threads: int = 8
    server: str = "waitress"
    env: dict[str, str] = field(default_factory=dict)

    def write_conf(self) -> Path:
        """The `caterva2.toml` of this subscriber."""
        lines = [
            "[subscriber]",
            f'statedir = "{self.statedir}"',
            f'http = "127.0.0.1:{self.port}"',
            f'urlbase = "http://127.0.0.1:{self.port}"',
            f"login = {str(self.login).lower()}",
            f"threads = {self.threads}",
            'loglevel = "warning"',
        ]
        if self.sub_id:
            lines.append(f'id = "{self.sub_id}"')
        if self.broker_url:
            lines += ["[broker]", f'url = "{self.broker_url}"']
        path = self.logdir / f"{self.name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def add_user(self, email: str, password: str) -> None:
        """Create an account straight in the store (no server needed)."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "caterva2.subscriber.adduser",
                email,
                password,
                "--statedir",
                str(self.statedir),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "CATERVA2_SECRET": SECRET},
        )

    def start(self) -> Subscriber:
        """Start and wait until `/api/roots` answers."""
        self.port = self.port or free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        conf = self.write_conf()
        env = {"CATERVA2_SECRET": SECRET, **self.env}
        if self.server == "gunicorn":
            env["CATERVA2_CONF"] = str(conf)
            module = os.environ.get("BENCH_WSGI_APP", "caterva2.subscriber.wsgi:app")
            args = [
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                str(self.threads),
                "--keep-alive",
                "30",
                "--timeout",
                "300",
                module,
            ]
        else:
            args = ["caterva2.subscriber.server", "--conf", str(conf)]
        self._spawn(args, env)
        wait_http(f"{self.url}/api/roots", self.proc)
        return self


@dataclass
class Publisher(Server):
    """`cat2pub` publishing a directory as a root."""

    root: str = ""
    rootdir: Path = Path()
    statedir: Path = Path()
    broker_url: str = DEFAULT_BROKER
    heartbeat: float = 1.0

    def start(self) -> Publisher:
        """Start and wait until `/api/list` answers."""
        self.port = self.port or free_port()
        self._spawn(
            [
                "caterva2.publisher.server",
                self.root,
                str(self.rootdir),
                "--http",
                f"127.0.0.1:{self.port}",
                "--statedir",
                str(self.statedir),
                "--broker",
                self.broker_url,
                "--heartbeat",
                str(self.heartbeat),
            ]
        )
        wait_http(f"{self.url}/api/list", self.proc)
        return self


# --- RabbitMQ -------------------------------------------------------------------------


def broker_problem(url: str) -> str | None:
    """None when a broker answers at `url`, else why not."""
    try:
        import pika

        from caterva2.broker.connection import parameters
    except ImportError as exc:
        return f"the broker client is not installed ({exc})"
    params = parameters(url, "caterva2-bench-probe")
    params.socket_timeout = 2
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
    except Exception as exc:
        return f"no RabbitMQ answers at {url} ({exc.__class__.__name__})"
    return None


def delete_queue(url: str, sub_id: str) -> None:
    """Remove the durable queue a benchmark subscriber left on the broker."""
    import pika

    from caterva2.broker import topology
    from caterva2.broker.connection import parameters

    conn = pika.BlockingConnection(parameters(url, "caterva2-bench-cleanup"))
    try:
        conn.channel().queue_delete(topology.subscriber_queue(sub_id))
    finally:
        conn.close()


# --- memory ---------------------------------------------------------------------------


def status_bytes(pid: int, key: str) -> int:
    """A `kB` line of `/proc/<pid>/status` (VmRSS, VmHWM, ...) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of a process; False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples a process's RSS in a thread; `peak` is the highest value seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, status_bytes(self.pid, "VmRSS"))
                self.count += 1
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
