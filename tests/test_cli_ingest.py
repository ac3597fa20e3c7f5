"""`cat2cli lay-out`, `fill-chunk`, `written` and `publish` against a real subscriber."""

from __future__ import annotations

import json

import caterva2 as cat2

from .app_support import USER
from .test_chunked_ingestion import NCHUNKS, SOURCE, chunk_of, server  # noqa: F401
from .test_cli import failed, ok, run  # noqa: F401


def test_the_cli_lays_out_fills_and_publishes_an_array(server, run, tmp_path):  # noqa: F811
    base, _statedir = server

    def cli(*args: str):
        return run(*args, url=base, auth=USER)

    said = ok(
        cli("lay-out", "@public/run.b2nd", "40,30", "int32", "--chunks", "10,10", "--blocks", "5,5")
    )
    assert said.strip() == (
        f"Laid out @public/run.b2nd: shape (40, 30), chunks (10, 10), blocks (5, 5), "
        f"{NCHUNKS} chunks to fill"
    )
    for n in range(NCHUNKS - 1):
        (tmp_path / f"{n}.chunk").write_bytes(chunk_of(SOURCE, n))
        said = ok(cli("fill-chunk", "@public/run.b2nd", str(n), str(tmp_path / f"{n}.chunk")))
    assert said.strip() == f"Chunk {NCHUNKS - 2} written: {NCHUNKS - 1}/{NCHUNKS} chunks, filling"
    line = failed(cli("fill-chunk", "@public/run.b2nd", "0", str(tmp_path / "0.chunk")))
    assert "Chunk 0 of @public/run.b2nd was already written (HTTP 409)" in line
    assert ok(cli("written", "@public/run.b2nd")).strip() == (
        f"{NCHUNKS - 1}/{NCHUNKS} chunks written: {'1' * (NCHUNKS - 1)}0"
    )
    assert json.loads(ok(cli("written", "--json", "@public/run.b2nd")))[-1] is False
    refused = failed(cli("publish", "@public/run.b2nd"))
    assert "1 of its 12 chunks still unwritten" in refused and refused.endswith("(HTTP 400)")
    last = tmp_path / "last.chunk"
    last.write_bytes(chunk_of(SOURCE, NCHUNKS - 1))
    ok(cli("fill-chunk", "@public/run.b2nd", str(NCHUNKS - 1), str(last)))
    assert ok(cli("publish", "@public/run.b2nd")).strip() == "Published @public/run.b2nd"
    with cat2.Client(base) as reader:
        assert (reader.fetch("@public/run.b2nd") == SOURCE).all()


def test_the_cli_says_what_is_wrong_with_a_lay_out(server, run):  # noqa: F811
    base, _statedir = server
    bad_dtype = failed(run("lay-out", "@public/x.b2nd", "10", "nonsense", url=base, auth=USER))
    assert "'nonsense' is not a NumPy dtype" in bad_dtype
    bad_shape = failed(run("lay-out", "@public/x.b2nd", "10,a", "int8", url=base, auth=USER))
    assert "SHAPE must be integers separated by commas" in bad_shape
    anonymous = failed(run("lay-out", "@public/x.b2nd", "10", "int8", url=base))
    assert "(HTTP 401)" in anonymous
