"""The real caterva2 2026.9.2 client reads a table (CTable `.b2z`) from our subscriber.

Its `Table` (nrows, columns, schema, head, rows, slice, a filter) gets what
blosc2 and NumPy answer on the same values.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import peers

from .app_support import in_process_subscriber, served
from .table_support import table_values, write_table

UPSTREAM_VERSION = "2026.9.2"
DRIVER = Path(__file__).resolve().parent / "interop" / "tables_2026.py"
VALUES = table_values(2000, seed=5)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("tables-interop") / "state"
    (statedir / "public" / "dir").mkdir(parents=True)
    write_table(statedir / "public" / "dir" / "t.b2z", VALUES)
    app = in_process_subscriber(statedir, login=False)
    try:
        with served(app.subscriber.app) as base:
            yield base
    finally:
        app.subscriber.close()


def as_lists(values: np.ndarray) -> dict:
    return {name: values[name].tolist() for name in values.dtype.names}


def test_the_newest_upstream_client_reads_a_table_from_us(url):
    venv = peers.ensure_venv(
        UPSTREAM_VERSION, (f"caterva2[clients]=={UPSTREAM_VERSION}",), "upstream-client"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(DRIVER), url, "dir/t.b2z"],
        capture_output=True,
        text=True,
        timeout=300,
        env=peers.clean_env(),
        cwd=venv,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["type"] == "Table"
    assert (got["nrows"], got["ncols"], got["columns"]) == (len(VALUES), 3, ["a", "b", "ok"])
    assert [c["kind"] for c in got["schema"]["columns"]] == ["int64", "float64", "bool"]
    assert got["head"] == [list(row) for row in VALUES[:4].tolist()]
    assert got["rows"] == [list(row) for row in VALUES[10:13].tolist()]
    assert got["slice"] == as_lists(VALUES[100:110])
    assert got["getitem"] == as_lists(VALUES[20:23])
    kept = VALUES[(VALUES["a"] > 40) & (VALUES["b"] < 0.5)]
    assert got["filter"] == as_lists(kept)
