"""A RabbitMQ node of our own on this machine, for the lab and for tests.

A machine's shared broker is never reconfigured by the lab or by tests: they
start this node instead (its own name, ports, data and log folders, no
plugins), configure it with `rabbitmqctl -n NODE` (see `access`) and stop it
at the end. It needs the `rabbitmq-server` package installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RabbitMQNode:
    """One RabbitMQ node run from the installed `rabbitmq-server` (free ports by default)."""

    def __init__(
        self,
        name: str | None = None,
        port: int | None = None,
        dist_port: int | None = None,
        basedir: Path | None = None,
        config: str = "",
        plugins: tuple[str, ...] = (),
    ) -> None:
        """A node to start; `config` lines are added to its rabbitmq.conf."""
        # Not under a private folder of root's: rabbitmq-server runs as the rabbitmq
        # user when started by root, and must reach its data folders.
        if basedir is None:
            basedir = Path(tempfile.mkdtemp(prefix="cat2-rabbitmq-"))
        basedir.mkdir(parents=True, exist_ok=True)
        basedir.chmod(0o755)
        self.basedir = basedir
        self.name = name or f"cat2test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.config = config
        self.plugins = plugins
        self.proc: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        """URL of the node's own `guest` (an administrator on `/`)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def url(self, user: str, password: str, vhost: str = "") -> str:
        """An AMQP URL for `user` on this node (`vhost` '' is `/`)."""
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def ctl_command(self) -> list[str]:
        """The `rabbitmqctl` command line that talks to this node."""
        return ["rabbitmqctl", "-q", "-n", self.name]

    def ctl(self, *args: str) -> str:
        """Run `rabbitmqctl` against this node and return what it printed."""
        done = subprocess.run(
            [*self.ctl_command(), *args], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self, timeout: float = 90.0) -> RabbitMQNode:
        """Start the node and wait until it serves; raise RuntimeError if it does not."""
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        for sub in ("mnesia", "log"):
            (self.basedir / sub).mkdir(parents=True, exist_ok=True)
        (self.basedir / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        # Our own (empty but for this line) config: the system one names port 5672.
        (self.basedir / "rabbitmq.conf").write_text(f"loopback_users = none\n{self.config}\n")
        # rabbitmq-server drops to the rabbitmq user when started by root.
        if os.geteuid() == 0:
            shutil.chown(self.basedir, "rabbitmq", "rabbitmq")
            for path in self.basedir.rglob("*"):
                shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.basedir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.basedir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.basedir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.basedir / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(self.basedir / "node.pid"),
        }
        self.proc = subprocess.Popen(
            ["rabbitmq-server"],
            env=env,
            stdout=open(self.basedir / "server.out", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            waited = subprocess.run(
                [*self.ctl_command(), "await_startup", "--timeout", "5"],
                capture_output=True,
                timeout=30,
            )
            if waited.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.basedir / "server.out").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{log}")
            time.sleep(0.5)

    def _processes(self) -> list[int]:
        """Pids of this node's processes, found by the data folder in their environment.

        rabbitmq-server hands the Erlang VM to the rabbitmq user in a session of its
        own, so the Popen child is not the VM; the environment is what they share.
        """
        mark = f"RABBITMQ_MNESIA_BASE={self.basedir / 'mnesia'}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    if mark in (proc / "environ").read_bytes().split(b"\0"):
                        pids.append(int(proc.name))
                except OSError:
                    pass
        return pids

    def kill(self) -> None:
        """SIGKILL the node, as a crash would; `start()` brings it back with its data."""
        for pid in self._processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait()
            self.proc = None
        deadline = time.monotonic() + 10
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the node (a node this object did not start too) and remove its folder."""
        subprocess.run([*self.ctl_command(), "stop"], capture_output=True, timeout=60)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.basedir, ignore_errors=True)
