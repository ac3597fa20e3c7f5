"""The multi-site lab: the compose file and the process lab describe the same topology."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from urllib.parse import urlsplit

import httpx
import pytest

from caterva2.broker import topology
from caterva2.broker.local_node import RabbitMQNode

from .broker_support import publish_reply_code
from .services import REPO

LAB_CONF = tomllib.loads((REPO / "lab" / "caterva2.toml").read_text())
COMPOSE_CONF = tomllib.loads((REPO / "lab" / "compose.toml").read_text())


def compose(*args: str) -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: `apt-get install -y docker-compose`")
    proc = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_compose_file_is_valid():
    compose("-q")


def test_compose_runs_the_lab_topology_with_a_volume_each():
    expected = {f"rabbitmq-{site}" for site in LAB_CONF["site"]}
    expected |= {f"pub-{ident}" for ident in LAB_CONF["publisher"]}
    expected |= set(LAB_CONF["subscriber"])
    assert set(compose("--services").split()) == expected
    assert set(compose("--volumes").split()) == {f"{name}-data" for name in expected}


def test_compose_and_process_lab_configure_the_same_roots_and_subscribers():
    for kind in ("publisher", "subscriber"):
        assert set(COMPOSE_CONF[kind]) == set(LAB_CONF[kind])
    for name, site in LAB_CONF["site"].items():
        for kind in ("publishers", "subscribers"):
            assert COMPOSE_CONF["site"][name][kind] == site[kind]
    for ident, pub in LAB_CONF["publisher"].items():
        assert COMPOSE_CONF["publisher"][ident]["name"] == pub["name"]
        assert COMPOSE_CONF["publisher"][ident]["root"].endswith(pub["root"])
    for ident, sub in LAB_CONF["subscriber"].items():
        assert COMPOSE_CONF["subscriber"][ident]["id"] == sub["id"]


def _lab_script():
    sys.path.insert(0, str(REPO / "lab"))
    try:
        import lab as lab_script
    finally:
        sys.path.pop(0)
    return lab_script


@pytest.mark.parametrize("site", sorted(COMPOSE_CONF["site"]))
def test_compose_broker_definitions_give_each_daemon_its_own_least_privilege_user(site):
    """Load a site's definitions into a real node, as its compose broker does."""
    lab_script = _lab_script()
    path = lab_script.compose_definitions_path(site)
    definitions = json.loads(path.read_text())
    grants = {g.user: g for g in lab_script.site_grants(COMPOSE_CONF, site)}
    assert {p["user"]: p["write"] for p in definitions["permissions"]} == {
        user: g.write for user, g in grants.items()
    }, f"{path.name} is stale: python lab/lab.py compose-definitions"
    others = {f"cat2-{other}" for other in COMPOSE_CONF["site"] if other != site}
    assert {p["name"] for p in definitions["parameters"]} == others
    host = COMPOSE_CONF["site"][site]["host"]
    mine = {
        name: env
        for name, env in yaml_services().items()
        if f"@{host}:5672/" in env["CATERVA2_BROKER_URL"]
    }
    ids = COMPOSE_CONF["site"][site]
    assert set(mine) == {f"pub-{i}" for i in ids["publishers"]} | set(ids["subscribers"])
    node = RabbitMQNode(plugins=("rabbitmq_federation",))  # in a folder rabbitmq may read
    loaded = node.basedir / "definitions.json"
    shutil.copy(path, loaded)
    node.config = f"load_definitions = {loaded}"
    node.start()
    try:
        for service, env in mine.items():
            url = env["CATERVA2_BROKER_URL"]
            user = urlsplit(url).username
            assert user in grants and user != "guest", service
            local = url.replace(f"@{host}:5672/", f"@127.0.0.1:{node.port}/")
            if service.startswith("pub-"):
                root = COMPOSE_CONF["publisher"][service.removeprefix("pub-")]["name"]
                assert publish_reply_code(local, topology.CHANGES_EXCHANGE, root) == 0
                assert publish_reply_code(local, topology.CHANGES_EXCHANGE, "elsewhere") == 403
            else:
                assert publish_reply_code(local, topology.CHANGES_EXCHANGE, "site-a") == 403
    finally:
        node.stop()


def yaml_services() -> dict[str, dict]:
    """Each Caterva2 service of docker-compose.yml with its environment, as compose sees it.

    Read from `docker-compose config`'s normalised output (two spaces per level),
    since PyYAML is no dependency of ours.
    """
    services: dict[str, dict] = {}
    section = service = None
    for line in compose().splitlines():
        if not line.startswith(" "):
            section = line.rstrip(":")
        elif section == "services" and line.startswith("  ") and line[2] != " ":
            service = line.strip().rstrip(":")
            services[service] = {}
        elif section == "services" and line.startswith("      ") and line[6] != " ":
            key, _, value = line.strip().partition(": ")
            if key.startswith("CATERVA2_"):
                services[service][key] = value
    return {name: env for name, env in services.items() if not name.startswith("rabbitmq")}


def test_process_lab_starts_serves_both_roots_and_stops():
    lab = [sys.executable, str(REPO / "lab" / "lab.py")]
    started = subprocess.run([*lab, "start"], capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # Every daemon runs as its own broker user at its site's broker, none as guest.
        users = json.loads((REPO / "_caterva2" / "lab" / "broker-users.json").read_text())
        assert set(users) == set(LAB_CONF["site"])
        for name, site in LAB_CONF["site"].items():
            expected = {"lab-admin", "federation"} | {f"pub-{i}" for i in site["publishers"]}
            assert set(users[name]) == expected | {f"sub-{i}" for i in site["subscribers"]}
            # A vhost of the lab's own: other users' roots on the broker stay out of sight.
            assert {urlsplit(url).path for url in users[name].values()} == {"/caterva2"}
            for ident in site["subscribers"]:
                for exchange in (topology.CHANGES_EXCHANGE, topology.ROOTS_EXCHANGE):
                    assert publish_reply_code(users[name][f"sub-{ident}"], exchange, "x") == 403
        pub_a = users["a"]["pub-site-a"]
        assert publish_reply_code(pub_a, topology.CHANGES_EXCHANGE, "site-b") == 403
        assert publish_reply_code(pub_a, topology.CHANGES_EXCHANGE, "site-a") == 0
        # Each subscriber hears both sites' roots: the brokers are linked.
        for sub in LAB_CONF["subscriber"].values():
            assert sub["urlbase"] in started.stdout
            for pub in LAB_CONF["publisher"].values():
                deadline_roots = httpx.get(f"{sub['urlbase']}/api/roots", timeout=10).json()
                assert pub["name"] in deadline_roots
        sub_1 = LAB_CONF["subscriber"]["sub-1"]["urlbase"]  # at site a
        sub_2 = LAB_CONF["subscriber"]["sub-2"]["urlbase"]  # at site b
        for sub in (sub_1, sub_2):
            listing = httpx.get(f"{sub}/api/list/site-b", timeout=30).json()
            assert listing == ["ds-2d.b2nd", "ds-3d.b2nd"]
    finally:
        stopped = subprocess.run([*lab, "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{sub_2}/api/roots", timeout=2)
