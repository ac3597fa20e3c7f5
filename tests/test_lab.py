"""The multi-site lab: the compose file and the process lab describe the same topology."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib

import httpx
import pytest

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
    expected = {"rabbitmq"}
    expected |= {f"pub-{ident}" for ident in LAB_CONF["publisher"]}
    expected |= set(LAB_CONF["subscriber"])
    assert set(compose("--services").split()) == expected
    assert set(compose("--volumes").split()) == {f"{name}-data" for name in expected}


def test_compose_and_process_lab_configure_the_same_roots_and_subscribers():
    for kind in ("publisher", "subscriber"):
        assert set(COMPOSE_CONF[kind]) == set(LAB_CONF[kind])
    for ident, pub in LAB_CONF["publisher"].items():
        assert COMPOSE_CONF["publisher"][ident]["name"] == pub["name"]
        assert COMPOSE_CONF["publisher"][ident]["root"].endswith(pub["root"])
    for ident, sub in LAB_CONF["subscriber"].items():
        assert COMPOSE_CONF["subscriber"][ident]["id"] == sub["id"]


def test_process_lab_starts_serves_both_roots_and_stops(broker_url):
    lab = [sys.executable, str(REPO / "lab" / "lab.py")]
    started = subprocess.run([*lab, "start"], capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        for sub in LAB_CONF["subscriber"].values():
            assert sub["urlbase"] in started.stdout
            for pub in LAB_CONF["publisher"].values():
                deadline_roots = httpx.get(f"{sub['urlbase']}/api/roots", timeout=10).json()
                assert pub["name"] in deadline_roots
        sub_2 = LAB_CONF["subscriber"]["sub-2"]["urlbase"]
        listing = httpx.get(f"{sub_2}/api/list/site-b", timeout=30).json()
        assert listing == ["ds-2d.b2nd", "ds-3d.b2nd"]
    finally:
        stopped = subprocess.run([*lab, "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{sub_2}/api/roots", timeout=2)
