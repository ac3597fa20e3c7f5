"""A table (CTable `.b2z`) in a publisher's root, over a real RabbitMQ to a subscriber.

Real `cat2pub` and `cat2sub` processes: the table is announced as its columns
when it appears, queried through the subscriber like a local table, announced
again (new rows seen) when it is replaced, and gone with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import blosc2
import httpx
import numpy as np

from bench.tables import Row

from .services import wait_for
from .table_support import table_values
from .test_pubsub import follow, lab, listing

__all__ = ["lab"]  # the fixture, used by the tests below


def write_table_aside(path: Path, values: np.ndarray) -> None:
    """A table written under a hidden name (never announced), then renamed into place."""
    tmp = path.with_name(f".tmp-{path.name}")  # ends in .b2z: blosc2 writes a zip
    blosc2.CTable(Row, new_data=values, urlpath=str(tmp), mode="w").close()
    os.replace(tmp, path)


def remote_rows(base: str, path: str, **params) -> np.ndarray | None:
    answer = httpx.get(f"{base}/api/fetch/{path}", params=params, timeout=10)
    if answer.status_code != 200:
        return None
    table = blosc2.ctable_from_cframe(answer.content)
    out = np.empty(table.nrows, dtype=[(n, table[n].dtype) for n in table.col_names])
    for name in table.col_names:
        out[name] = table[name][:]
    return out


def test_a_table_is_announced_queried_replaced_and_removed(lab):
    pub = lab.publisher("tables")
    sub = lab.subscriber()
    follow(sub, pub.name)
    values = table_values(500, seed=6)
    write_table_aside(pub.rootdir / "t.b2z", values)
    wait_for(lambda: listing(sub, pub.name) == ["t.b2z"], "the table's announcement")
    path = f"{pub.name}/t.b2z"
    info = httpx.get(f"{sub.urlbase}/api/info/{path}").json()
    assert info["kind"] == "ctable" and info["nrows"] == 500
    got = remote_rows(sub.urlbase, path, filter="a < 20", sort_by="b", ascending="false")
    kept = values[values["a"] < 20]
    np.testing.assert_array_equal(got, kept[np.argsort(kept["b"], kind="stable")[::-1]])

    newer = table_values(120, seed=7)
    write_table_aside(pub.rootdir / "t.b2z", newer)
    wait_for(
        lambda: np.array_equal(
            remote_rows(sub.urlbase, path, sort_by="b"), newer[np.argsort(newer["b"])]
        ),
        "the new rows",
    )

    (pub.rootdir / "t.b2z").unlink()
    wait_for(lambda: listing(sub, pub.name) == [], "the table's removal")
    assert httpx.get(f"{sub.urlbase}/api/info/{path}").status_code == 404
