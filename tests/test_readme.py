"""The README's quick start and Python example, run as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import numpy as np

from .services import REPO, free_port, wait_http

README = (REPO / "README.md").read_text()


def code_block(after_heading: str, lang: str) -> str:
    """The first fenced block of `lang` under a README heading."""
    section = README.split(after_heading, 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_quick_start_commands_answer_as_the_original(tmp_path):
    port = free_port()
    # Only the address differs from a new user's machine, so a running `make run` is left alone.
    (tmp_path / "caterva2.toml").write_text(
        f'[subscriber]\nhttp = "127.0.0.1:{port}"\nurl = "http://127.0.0.1:{port}"\n'
    )
    (tmp_path / "root-example").symlink_to(REPO / "root-example")
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    env.pop("CATERVA2_SECRET", None)
    lines = [line.split("#")[0].strip() for line in code_block("## Quick start", "sh").splitlines()]
    lines = [line for line in lines if line]
    assert lines[1] == "cat2sub &"
    outputs = []
    server = None
    try:
        for line in lines:
            if line == "cat2sub &":
                server = subprocess.Popen(
                    ["bash", "-c", f"{lines[0]}; exec cat2sub"],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wait_http(f"http://127.0.0.1:{port}/api/roots", server)
                continue
            proc = subprocess.run(
                ["bash", "-c", f"{lines[0]}; {line}"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, f"{line}: {proc.stderr}"
            outputs.append(proc.stdout)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)
    adduser, roots, upload, listing, info = outputs[1:]
    assert adduser.strip() == "Password: foobar11"
    assert roots.split() == ["@public", "@personal", "@shared"]
    assert upload.strip() == "Dataset stored in @personal/ds-1d.b2nd"
    assert listing.split() == ["ds-1d.b2nd"]
    assert info.startswith("Getting info for @personal/ds-1d.b2nd")
    assert "'shape': [1000]" in info and "'chunks': [100]" in info


def test_python_example_runs_against_a_subscriber(sub, tmp_path, monkeypatch):
    code = code_block("## Python API", "python")
    code = code.replace("http://localhost:8000", sub.urlbase)
    code = code.replace('("user@example.com", "foobar11")', repr(sub.user))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root-example").symlink_to(REPO / "root-example")
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    ds = names["ds"]
    assert (ds.shape, ds.dtype, ds.chunks) == ((10, 20), "uint16", (5, 5))
    np.testing.assert_array_equal(ds[1, 2:7], np.arange(22, 27))
    assert (tmp_path / "@public" / "README.md").read_bytes() == (
        REPO / "root-example" / "README.md"
    ).read_bytes()
    assert httpx.get(f"{sub.urlbase}/api/roots").status_code == 200
