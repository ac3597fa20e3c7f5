"""The real caterva2 2026.9.2 client reads a table (CTable `.b2z`) from our subscriber.

Its `Table` (nrows, columns, schema, head, rows, slice, a filter) gets what
blosc2 and NumPy answer on the same values.
"""

from __future__ import annotations

import numpy as np
import pytest

from .app_support import serving
from .table_support import table_values, write_table
from .upstream_client import run_driver

VALUES = table_values(2000, seed=5)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("tables-interop") / "state"
    (statedir / "public" / "dir").mkdir(parents=True)
    write_table(statedir / "public" / "dir" / "t.b2z", VALUES)
    with serving(statedir, login=False) as base:
        yield base


def as_lists(values: np.ndarray) -> dict:
    return {name: values[name].tolist() for name in values.dtype.names}


def test_the_newest_upstream_client_reads_a_table_from_us(url):
    got = run_driver("tables_2026.py", url, "dir/t.b2z")
    assert got["type"] == "Table"
    assert (got["nrows"], got["ncols"], got["columns"]) == (len(VALUES), 3, ["a", "b", "ok"])
    assert [c["kind"] for c in got["schema"]["columns"]] == ["int64", "float64", "bool"]
    assert got["head"] == [list(row) for row in VALUES[:4].tolist()]
    assert got["rows"] == [list(row) for row in VALUES[10:13].tolist()]
    assert got["slice"] == as_lists(VALUES[100:110])
    assert got["getitem"] == as_lists(VALUES[20:23])
    kept = VALUES[(VALUES["a"] > 40) & (VALUES["b"] < 0.5)]
    assert got["filter"] == as_lists(kept)
