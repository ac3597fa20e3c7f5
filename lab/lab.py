"""The multi-site lab on one machine: `python lab/lab.py start|stop|status`.

Two sites (`[site.*]` of `lab/caterva2.toml`), each with a RabbitMQ node of its
own (never the machine's shared broker, which it would have to reconfigure),
linked both ways by federation (`cat2bro link`). Each node gets a vhost and one
least-privilege broker user per daemon of its site (`cat2bro access`: each
publisher may publish only its own root, each subscriber may only read its own
queue). Then the publishers and subscribers of the configuration start on
their 127.0.0.x addresses, each with its own broker user; `start` prints their
URLs and `stop` stops them all. The broker users and their URLs are in
`_caterva2/lab/broker-users.json` (by site).
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

from caterva2.broker import access, federation
from caterva2.broker.cli import main as cat2bro
from caterva2.broker.local_node import RabbitMQNode
from caterva2.common.waiting import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "lab" / "caterva2.toml"
COMPOSE_CONF = REPO / "lab" / "compose.toml"
COMPOSE_BROKER_DIR = REPO / "lab" / "rabbitmq"
WORKDIR = REPO / "_caterva2" / "lab"
PIDS = WORKDIR / "pids.json"
BROKER_USERS = WORKDIR / "broker-users.json"
LAB_USER = ("lab@example.com", "labpass123")
VHOST = "caterva2"


def site_node(name: str, site: dict) -> RabbitMQNode:
    """A site's own RabbitMQ node (its port away from the default 5672)."""
    port = int(site["port"])
    return RabbitMQNode(
        f"cat2lab-{name}@localhost",
        port,
        port + 20000,
        Path(f"/tmp/caterva2-lab-rabbitmq-{name}"),
        plugins=(federation.PLUGIN,),
    )


def site_of(conf: dict, kind: str, ident: str) -> str:
    """The site a publisher or subscriber of the configuration belongs to."""
    for name, site in conf["site"].items():
        if ident in site[f"{kind}s"]:
            return name
    raise SystemExit(f"lab: [{kind}.{ident}] belongs to no [site.*]")


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check, what: str, timeout: float = 60.0) -> None:
    try:
        wait_for(check, f"{what} to come up", timeout, 0.2)
    except WaitTimeout as exc:
        raise SystemExit(f"lab: {exc}") from None


def site_grants(conf: dict, name: str) -> list[access.Grant]:
    """One broker user per daemon of a site, its admin, and what the other site links with."""
    site = conf["site"][name]
    grants = [access.admin_grant("lab-admin"), access.federation_grant("federation")]
    for ident in site["publishers"]:
        grants.append(access.publisher_grant(f"pub-{ident}", [conf["publisher"][ident]["name"]]))
    for ident in site["subscribers"]:
        grants.append(access.subscriber_grant(f"sub-{ident}", conf["subscriber"][ident]["id"]))
    return grants


def compose_password(user: str) -> str:
    """The fixed password of a broker user of the compose lab (a lab: change it for real use)."""
    return f"lab-{user}"


def compose_definitions_path(site: str) -> Path:
    return COMPOSE_BROKER_DIR / f"definitions-{site}.json"


def write_compose_definitions() -> list[Path]:
    """Write each compose site's RabbitMQ definitions (users, grants, topology, federation)."""
    conf = tomllib.loads(COMPOSE_CONF.read_text())
    written = []
    for name in conf["site"]:
        grants = [(g, compose_password(g.user)) for g in site_grants(conf, name)]
        document = access.definitions(grants, VHOST)
        for user in document["users"]:
            if user["name"] == "lab-admin":
                user["tags"] = ["administrator"]  # the management UI
        others = [
            federation.Site(
                other,
                (),
                f"amqp://federation:{compose_password('federation')}@{s['host']}:5672/{VHOST}",
            )
            for other, s in conf["site"].items()
            if other != name
        ]
        for key, entries in federation.definitions(VHOST, others).items():
            document.setdefault(key, []).extend(entries)
        path = compose_definitions_path(name)
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written


def broker_users(grants: list[access.Grant], node: RabbitMQNode) -> dict[str, str]:
    """Create a site's vhost and its broker users; return their broker URLs."""
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
    urls: dict[str, dict[str, str]] = {}
    sites = []
    for name, site in conf["site"].items():
        node = site_node(name, site)
        try:
            node.start()
        except RuntimeError as exc:
            raise SystemExit(f"lab: {exc}") from None
        pids[f"rabbitmq-{name}"] = node.proc.pid
        PIDS.write_text(json.dumps(pids))  # `make lab-stop` stops the nodes even if we fail now
        urls[name] = broker_users(site_grants(conf, name), node)
        if cat2bro(["--broker", urls[name]["lab-admin"], "setup"]) != 0:
            raise SystemExit(f"lab: cat2bro setup failed at site {name}")
        sites.append(federation.Site(name, tuple(node.ctl_command()), urls[name]["federation"]))
    BROKER_USERS.write_text(json.dumps(urls, indent=2))
    BROKER_USERS.chmod(0o600)
    for i, here in enumerate(sites):
        for there in sites[i + 1 :]:
            federation.link(here, there)
    env = {
        **os.environ,
        "CATERVA2_SECRET": os.environ.get("CATERVA2_SECRET", "lab-secret-not-for-production"),
    }
    env.pop("CATERVA2_BROKER_URL", None)  # each daemon gets its own user's URL
    for ident in conf["publisher"]:
        url = urls[site_of(conf, "publisher", ident)][f"pub-{ident}"]
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
        url = urls[site_of(conf, "subscriber", ident)][f"sub-{ident}"]
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
    for name, site in conf["site"].items():
        print(f"lab: site {name}: broker 127.0.0.1:{site['port']} vhost {VHOST}")
    print(f"lab: sites linked by federation; broker users in {BROKER_USERS}")
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
        if name.startswith("rabbitmq"):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for name, pid in pids.items():
        if not name.startswith("rabbitmq"):
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
    conf = tomllib.loads(CONF.read_text())
    for name, site in conf["site"].items():
        if f"rabbitmq-{name}" in pids:
            site_node(name, site).stop()
    PIDS.unlink()
    BROKER_USERS.unlink(missing_ok=True)
    print("lab: stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["start", "stop", "compose-definitions"],
        help="compose-definitions: rewrite lab/rabbitmq/definitions-*.json from lab/compose.toml",
    )
    args = parser.parse_args()
    if args.command == "compose-definitions":
        for path in write_compose_definitions():
            print(f"lab: wrote {path}")
        return 0
    return start() if args.command == "start" else stop()


if __name__ == "__main__":
    sys.exit(main())
