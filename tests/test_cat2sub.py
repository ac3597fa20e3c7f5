"""`cat2sub` and `cat2adduser` as programs: start-up checks, prefixes, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx

import caterva2 as cat2

from .services import SECRET, SubscriberProcess, free_port, run_cli, wait_http


def test_refuses_to_start_with_login_and_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CATERVA2_SECRET"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "caterva2.subscriber.server",
            "--statedir",
            str(tmp_path / "s"),
            "--http",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "CATERVA2_SECRET" in proc.stderr


def test_secret_from_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text(f"CATERVA2_SECRET={SECRET}\n")
    env = {k: v for k, v in os.environ.items() if k != "CATERVA2_SECRET"}
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "caterva2.subscriber.server",
            "--statedir",
            "state",
            "--http",
            f"127.0.0.1:{port}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/roots", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0 and "stopped" in out


def test_sigint_stops_cleanly(tmp_path):
    server = SubscriberProcess(tmp_path / "state", conf={"login": False}).start()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=15) == 0


def test_urlbase_path_becomes_the_mount_prefix(tmp_path):
    port = free_port()
    urlbase = f"http://127.0.0.1:{port}/demo"
    server = SubscriberProcess(tmp_path / "state", conf={"login": False, "urlbase": urlbase})
    server.port = port
    server.start()
    try:
        assert httpx.get(f"{urlbase}/api/roots").json()["@public"]["name"] == "@public"
        assert httpx.get(f"{urlbase}/api/list/@public").json() == []
    finally:
        server.stop()


def test_bad_config_value_is_reported(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[subscriber]\nquota = "lots"\n')
    proc = run_cli("caterva2.subscriber.server", "--conf", str(conf), check=False)
    assert proc.returncode != 0 and "invalid size" in proc.stderr


def test_adduser_works_without_server_and_generates_password(tmp_path):
    proc = run_cli("caterva2.subscriber.adduser", "new@example.com", "--statedir", str(tmp_path))
    password = proc.stdout.strip().removeprefix("Password: ")
    assert len(password) == 8 and password.isalpha()
    server = SubscriberProcess(tmp_path, conf={"login": True}).start()
    try:
        resp = httpx.post(
            f"{server.urlbase}/auth/jwt/login",
            data={"username": "new@example.com", "password": password},
        )
        assert resp.status_code == 204
    finally:
        server.stop()


def test_adduser_rejects_bad_email_on_stderr(tmp_path):
    proc = run_cli(
        "caterva2.subscriber.adduser",
        "bad-email",
        "longpassword",
        "--statedir",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode == 1 and "not a valid email" in proc.stderr


def test_adduser_leaves_existing_user_untouched(tmp_path):
    run_cli(
        "caterva2.subscriber.adduser", "u@example.com", "firstpass1", "--statedir", str(tmp_path)
    )
    proc = run_cli(
        "caterva2.subscriber.adduser", "u@example.com", "secondpass", "--statedir", str(tmp_path)
    )
    assert proc.returncode == 0 and "already exists" in proc.stderr


def test_loglevel_info_logs_every_request(tmp_path):
    """One access-log line a request: address, user, method, path, status, bytes, time."""
    statedir = tmp_path / "state"
    run_cli(
        "caterva2.subscriber.adduser", "log@example.com", "logpass123", "--statedir", str(statedir)
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "cat2sub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caterva2.subscriber.server",
                "--statedir",
                str(statedir),
                "--http",
                f"127.0.0.1:{port}",
                "--loglevel",
                "info",
            ],
            env={**os.environ, "CATERVA2_SECRET": SECRET},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"{url}/api/roots", proc)
        roots = httpx.get(f"{url}/api/roots")
        assert httpx.get(f"{url}/api/info/@public/nope.b2nd?x=secret-query").status_code == 404
        with cat2.Client(url, ("log@example.com", "logpass123")) as client:
            client.get_list("@personal")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    lines = [line for line in log.read_text().splitlines() if " caterva2.access: " in line]
    entry = r'127\.0\.0\.1 {user} "{method} {path}" {status} {size} B \d+\.\d ms$'
    expected = [
        entry.format(user="-", method="GET", path="/api/roots", status=200, size=r"\d+"),
        entry.format(
            user="-", method="GET", path="/api/roots", status=200, size=len(roots.content)
        ),
        entry.format(
            user="-", method="GET", path="/api/info/@public/nope.b2nd", status=404, size=r"\d+"
        ),
        entry.format(user="-", method="POST", path="/auth/jwt/login", status=204, size=0),
        entry.format(
            user="log@example.com", method="GET", path="/api/list/@personal", status=200, size=2
        ),
    ]
    # wait_http may have asked more than once before the server answered.
    while len(lines) > len(expected) and re.search(expected[0], lines[1]):
        lines.pop(0)
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (line, pattern)
    assert "secret-query" not in log.read_text()  # query strings may carry tokens
