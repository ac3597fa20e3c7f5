"""The multi-site lab on one machine: `python lab/lab.py start|stop|status`.

Starts RabbitMQ (the local one if it answers, else a throwaway node of our
own), the publishers and subscribers of `lab/caterva2.toml` on their
127.0.0.x addresses, prints their URLs, and stops them all with `stop`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "lab" / "caterva2.toml"
WORKDIR = REPO / "_caterva2" / "lab"
PIDS = WORKDIR / "pids.json"
LAB_USER = ("lab@example.com", "labpass123")
# Our own RabbitMQ node when none answers: ports away from the default 5672/25672.
OWN_NODE = {
    "RABBITMQ_NODENAME": "cat2lab@localhost",
    "RABBITMQ_NODE_PORT": "5682",
    "RABBITMQ_DIST_PORT": "25682",
}


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"lab: {what} did not come up within {timeout:.0f} s")


def start_own_rabbitmq() -> tuple[str, int]:
    """A throwaway RabbitMQ node under _caterva2/lab/rabbitmq; returns (url, pid)."""
    base = WORKDIR / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    (base / "enabled_plugins").write_text("[].\n")
    env = {
        **os.environ,
        **OWN_NODE,
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
    }
    proc = subprocess.Popen(
        ["rabbitmq-server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = int(OWN_NODE["RABBITMQ_NODE_PORT"])
    wait_until(lambda: answers("127.0.0.1", port), "our RabbitMQ node", timeout=90)
    return f"amqp://guest:guest@127.0.0.1:{port}/", proc.pid


def spawn(args: list[str], log: Path, env: dict) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def start() -> int:
    if PIDS.exists():
        print("lab: already running (make lab-stop first)", file=sys.stderr)
        return 1
    conf = tomllib.loads(CONF.read_text())
    WORKDIR.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    url = conf["broker"]["url"]
    parts = urlsplit(url)
    if not answers(parts.hostname, parts.port or 5672):
        print("lab: no RabbitMQ answers at", url, "- starting a throwaway node")
        url, pids["rabbitmq"] = start_own_rabbitmq()
    env = {
        **os.environ,
        "CATERVA2_BROKER_URL": url,
        "CATERVA2_SECRET": os.environ.get("CATERVA2_SECRET", "lab-secret-not-for-production"),
    }
    for ident in conf["publisher"]:
        pids[f"pub-{ident}"] = spawn(
            ["caterva2.publisher.server", "--conf", str(CONF), "--id", ident, "--broker", url],
            WORKDIR / f"pub-{ident}.log",
            env,
        )
    for ident, sub in conf["subscriber"].items():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "caterva2.subscriber.adduser",
                *LAB_USER,
                "--statedir",
                str(REPO / sub["statedir"]),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        pids[ident] = spawn(
            ["caterva2.subscriber.server", "--conf", str(CONF), "--id", ident, "--broker", url],
            WORKDIR / f"{ident}.log",
            env,
        )
    PIDS.write_text(json.dumps(pids))
    for section in ("publisher", "subscriber"):
        for ident, item in conf[section].items():
            host, port = item["http"].rsplit(":", 1)
            wait_until(lambda h=host, p=int(port): answers(h, p), f"{section} {ident}")
    print(f"lab: broker {url}")
    for ident, pub in conf["publisher"].items():
        print(f"lab: publisher {ident:8} root {pub['name']!r:10} {pub['url']}  ({pub['root']})")
    for ident, sub in conf["subscriber"].items():
        print(f"lab: subscriber {ident:7} {sub['urlbase']}")
    print(
        f"lab: log in as {LAB_USER[0]} / {LAB_USER[1]}; logs in {WORKDIR}; stop with make lab-stop"
    )
    return 0


def stop() -> int:
    if not PIDS.exists():
        print("lab: not running")
        return 0
    pids = json.loads(PIDS.read_text())
    for name, pid in pids.items():
        if name == "rabbitmq":
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for name, pid in pids.items():
        if name != "rabbitmq":
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
    if "rabbitmq" in pids:
        subprocess.run(
            ["rabbitmqctl", "-n", OWN_NODE["RABBITMQ_NODENAME"], "stop"], capture_output=True
        )
    PIDS.unlink()
    print("lab: stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop"])
    args = parser.parse_args()
    return start() if args.command == "start" else stop()


if __name__ == "__main__":
    sys.exit(main())
