"""The real caterva2 2026.9.2 client lays out, fills and publishes an array on our subscriber."""

from __future__ import annotations

import numpy as np

from .app_support import USER, in_process_subscriber, served
from .upstream_client import run_driver

SHAPE = (50, 20)  # as the driver lays it out, in chunks of (10, 20)


def test_the_newest_upstream_client_fills_and_publishes_an_array_on_us(tmp_path):
    app = in_process_subscriber(tmp_path / "state")
    try:
        with served(app.subscriber.app) as base:
            got = run_driver("ingest_2026.py", base, *USER)
    finally:
        app.subscriber.close()
    assert got["first"] == {"nchunk": 0, "written": 1, "nchunks": 5, "state": "filling"}
    assert got["last"] == {"nchunk": 4, "written": 5, "nchunks": 5, "state": "complete"}
    assert got["duplicate"] == "raised ChunkAlreadyWritten"
    assert got["midway"] == [True, True, True, True, False]
    assert got["published"] == "@public/upstream.b2nd" and got["listed"]
    source = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    np.testing.assert_array_equal(got["values"], source)
