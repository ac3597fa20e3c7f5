"""The real caterva2 2026.9.2 client lays out, fills and publishes an array on our subscriber."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from bench import peers

from .app_support import USER, in_process_subscriber, served

UPSTREAM_VERSION = "2026.9.2"
DRIVER = Path(__file__).resolve().parent / "interop" / "ingest_2026.py"
SHAPE = (50, 20)  # as the driver lays it out, in chunks of (10, 20)


def test_the_newest_upstream_client_fills_and_publishes_an_array_on_us(tmp_path):
    venv = peers.ensure_venv(
        UPSTREAM_VERSION, (f"caterva2[clients]=={UPSTREAM_VERSION}",), "upstream-client"
    )
    app = in_process_subscriber(tmp_path / "state")
    try:
        with served(app.subscriber.app) as base:
            done = subprocess.run(
                [str(venv / "bin" / "python"), str(DRIVER), base, *USER],
                capture_output=True,
                text=True,
                timeout=300,
                env=peers.clean_env(),
                cwd=venv,
                check=False,
            )
    finally:
        app.subscriber.close()
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["version"].replace(".0", ".") == UPSTREAM_VERSION
    assert got["first"] == {"nchunk": 0, "written": 1, "nchunks": 5, "state": "filling"}
    assert got["last"] == {"nchunk": 4, "written": 5, "nchunks": 5, "state": "complete"}
    assert got["duplicate"] == "raised ChunkAlreadyWritten"
    assert got["midway"] == [True, True, True, True, False]
    assert got["published"] == "@public/upstream.b2nd" and got["listed"]
    source = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    np.testing.assert_array_equal(got["values"], source)
