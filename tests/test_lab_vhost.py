"""The lab keeps to a vhost of its own, so it never sees (or shows) other users' roots.

Checked on what the lab hands its brokers and daemons, without starting any:
the compose brokers' definitions (regenerated, and compared with the committed
files) and the broker URLs in every lab file. The process lab (`make lab`) is
checked running, in tests/test_lab.py: its daemons' URLs name the vhost.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from urllib.parse import urlsplit

import pytest

from .services import REPO

LAB_FILES = [
    REPO / "docker-compose.yml",
    REPO / "lab" / "caterva2.toml",
    REPO / "lab" / "compose.toml",
]


@pytest.fixture(scope="module")
def lab():
    sys.path.insert(0, str(REPO / "lab"))
    try:
        import lab as lab_script
    finally:
        sys.path.pop(0)
    return lab_script


def test_the_lab_vhost_is_not_the_default_one(lab):
    assert lab.VHOST == "caterva2"


def vhost_entries(document: dict):
    for key, entries in document.items():
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict) and "vhost" in entry:
                yield key, entry


@pytest.mark.parametrize("site", ["a", "b"])
def test_compose_brokers_define_everything_in_the_lab_vhost(lab, site, tmp_path, monkeypatch):
    committed = json.loads(lab.compose_definitions_path(site).read_text())
    monkeypatch.setattr(lab, "COMPOSE_BROKER_DIR", tmp_path)
    lab.write_compose_definitions()
    fresh = json.loads(lab.compose_definitions_path(site).read_text())
    assert committed["vhosts"] == fresh["vhosts"] == [{"name": lab.VHOST}]
    entries = list(vhost_entries(committed))
    assert {key for key, _ in entries} >= {"permissions", "exchanges"}
    assert all(entry["vhost"] == lab.VHOST for _, entry in entries), entries
    # Same users, grants and topology as the generator makes now (passwords are salted anew).
    for key in ("permissions", "topic_permissions", "exchanges", "queues", "bindings"):
        assert committed.get(key) == fresh.get(key), f"definitions-{site}.json: {key} is stale"
    assert "guest" not in {p["user"] for p in committed["permissions"]}


def test_every_broker_url_of_the_lab_names_the_lab_vhost(lab):
    urls = []
    for path in LAB_FILES:
        urls += [(path.name, u) for u in re.findall(r"amqps?://[^\s\"']+", path.read_text())]
    assert len(urls) >= 5
    for name, url in urls:
        assert urlsplit(url).path == f"/{lab.VHOST}", (name, url)
    assert tomllib.loads(LAB_FILES[1].read_text())["broker"]["url"].endswith(f"/{lab.VHOST}")
