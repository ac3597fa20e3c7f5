"""The multi-site lab on one machine: `python lab/lab.py start|stop|status`.

Starts a RabbitMQ node of its own (never the machine's shared broker, which it
would have to reconfigure) with a vhost and one least-privilege broker user per
daemon (`cat2bro access`: each publisher may publish only its own root, each
subscriber may only read its own queue), then the publishers and subscribers
of `lab/caterva2.toml` on their 127.0.0.x addresses, each with its own broker
user; prints their URLs, and stops them all with `stop`. The broker users and
their URLs are in `_caterva2/lab/broker-users.json`.
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

from caterva2.broker import access
from caterva2.broker.cli import main as cat2bro
from caterva2.broker.local_node import RabbitMQNode

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "lab" / "caterva2.toml"
COMPOSE_CONF = REPO / "lab" / "compose.toml"
COMPOSE_DEFINITIONS = REPO / "lab" / "rabbitmq" / "definitions.json"
WORKDIR = REPO / "_caterva2" / "lab"
PIDS = WORKDIR / "pids.json"
BROKER_USERS = WORKDIR / "broker-users.json"
LAB_USER = ("lab@example.com", "labpass123")
VHOST = "caterva2"
# Our own RabbitMQ node: ports away from the default 5672/25672.
NODE_NAME, NODE_PORT, NODE_DIST_PORT = "cat2lab@localhost", 5682, 25682
NODE_DIR = Path("/tmp/caterva2-lab-rabbitmq")


def lab_node() -> RabbitMQNode:
    return RabbitMQNode(NODE_NAME, NODE_PORT, NODE_DIST_PORT, NODE_DIR)


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


def lab_grants(conf: dict) -> list[access.Grant]:
    """One broker user per daemon of a lab configuration, and the admin."""
    grants = [access.admin_grant("lab-admin")]
    for ident, pub in conf["publisher"].items():
        grants.append(access.publisher_grant(f"pub-{ident}", [pub["name"]]))
    for ident, sub in conf["subscriber"].items():
        grants.append(access.subscriber_grant(f"sub-{ident}", sub["id"]))
    return grants


def compose_password(user: str) -> str:
    """The fixed password of a broker user of the compose lab (a lab: change it for real use)."""
    return f"lab-{user}"


def write_compose_definitions() -> Path:
    """Write the compose lab's RabbitMQ definitions (users, grants, topology)."""
    conf = tomllib.loads(COMPOSE_CONF.read_text())
    grants = [(g, compose_password(g.user)) for g in lab_grants(conf)]
    document = access.definitions(grants, VHOST)
    for user in document["users"]:
        if user["name"] == "lab-admin":
            user["tags"] = ["administrator"]  # the management UI
    COMPOSE_DEFINITIONS.write_text(json.dumps(document, indent=2) + "\n")
    return COMPOSE_DEFINITIONS


def broker_users(conf: dict, node: RabbitMQNode) -> dict[str, str]:
    """Create the lab's vhost and one broker user per daemon; return their broker URLs."""
    grants = lab_grants(conf)
    urls = {}
    for i, grant in enumerate(grants):
        password = access.new_password()
        access.apply(
            node.ctl_command(), access.rabbitmqctl_commands(grant, VHOST, password, i == 0)
        )
        urls[grant.user] = node.url(grant.user, password, VHOST)
    return urls


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
    node = lab_node()
    try:
        node.start()
    except RuntimeError as exc:
        raise SystemExit(f"lab: {exc}") from None
    pids["rabbitmq"] = node.proc.pid
    PIDS.write_text(json.dumps(pids))  # `make lab-stop` stops the node even if we fail now
    urls = broker_users(conf, node)
    BROKER_USERS.write_text(json.dumps(urls, indent=2))
    BROKER_USERS.chmod(0o600)
    if cat2bro(["--broker", urls["lab-admin"], "setup"]) != 0:
        raise SystemExit("lab: cat2bro setup failed")
    env = {
        **os.environ,
        "CATERVA2_SECRET": os.environ.get("CATERVA2_SECRET", "lab-secret-not-for-production"),
    }
    env.pop("CATERVA2_BROKER_URL", None)  # each daemon gets its own user's URL
    for ident in conf["publisher"]:
        url = urls[f"pub-{ident}"]
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
        url = urls[f"sub-{ident}"]
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
    print(f"lab: broker 127.0.0.1:{NODE_PORT} vhost {VHOST} (users: {BROKER_USERS})")
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
        lab_node().stop()
    PIDS.unlink()
    BROKER_USERS.unlink(missing_ok=True)
    print("lab: stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["start", "stop", "compose-definitions"],
        help="compose-definitions: rewrite lab/rabbitmq/definitions.json from lab/compose.toml",
    )
    args = parser.parse_args()
    if args.command == "compose-definitions":
        print(f"lab: wrote {write_compose_definitions()}")
        return 0
    return start() if args.command == "start" else stop()


if __name__ == "__main__":
    sys.exit(main())
