"""`cat2sub` and `cat2adduser` as programs: start-up checks, prefixes, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

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
