"""A table (CTable `.b2z`) in a publisher's root, read and queried through a subscriber.

A real publisher served from a thread serves the table as its column arrays
plus a description; a subscriber following it answers the table's info, rows,
filters and sorts over the column chunks it caches, equal to blosc2 on the same
file, and fetches only the chunks of the columns a query touches.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2.tables import Table, as_records

from .inprocess_publisher import ROOT, FollowedRoot, followed_root
from .table_support import table_values
from .upstream_client import run_driver

NROWS, CHUNK = 1000, 100  # ten chunks per column
TABLE = "tables/t.b2z"


@dataclass
class ChunkedRow:
    """The benchmark's row (`bench.tables.Row`) with small chunks, so a table has several."""

    a: int = blosc2.field(blosc2.int64(), chunks=(CHUNK,), blocks=(50,))
    b: float = blosc2.field(blosc2.float64(), chunks=(CHUNK,), blocks=(50,))
    ok: bool = blosc2.field(blosc2.bool(), chunks=(CHUNK,), blocks=(50,))


def write_chunked_table(path: Path, values: np.ndarray) -> None:
    """A CTable `.b2z` of `values` at `path`, written by blosc2 and swapped in whole."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name("tmp-" + path.name)  # blosc2 writes a zip for a `.b2z` name only
    table = blosc2.CTable(
        ChunkedRow, new_data=values, urlpath=str(tmp), mode="w", expected_size=len(values)
    )
    table.close()
    os.replace(tmp, path)


class Remote(FollowedRoot):
    """A followed root holding the table `TABLE`."""

    def column_transfers(self, column: str) -> set[int]:
        """The chunks of a column of the table the publisher has sent."""
        return self.transfers(f"{TABLE}/_cols/{column}")

    def local(self) -> blosc2.CTable:
        """The table as blosc2 opens it on the publisher's side (the reference answers)."""
        return blosc2.open(str(self.rootdir / TABLE), mode="r")


def remote_table(tmp_path: Path, values: np.ndarray, **settings: Any):
    """A publisher with a chunked table, followed by a subscriber served over HTTP."""
    return followed_root(
        tmp_path, lambda rootdir: write_chunked_table(rootdir / TABLE, values), Remote, **settings
    )


VALUES = table_values(NROWS, seed=4)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Iterator[Remote]:
    with remote_table(tmp_path_factory.mktemp("remote-tables"), VALUES) as found:
        yield found


@pytest.fixture
def table(shared: Remote) -> Iterator[Table]:
    with cat2.Client(shared.url) as client:
        yield client.get(f"{ROOT}/{TABLE}")


def api(url: str, route: str, path: str = TABLE, **params) -> httpx.Response:
    return httpx.get(f"{url}/api/{route}/{ROOT}/{path}", params=params)


def test_a_remote_table_answers_the_info_of_a_local_one(shared):
    info = api(shared.url, "info").json()
    local = shared.local()
    assert info["kind"] == "ctable"
    assert info["nrows"] == NROWS and info["ncols"] == 3
    assert info["columns"] == ["a", "b", "ok"]
    assert info["schema_dict"] == local.schema_dict()
    assert info["size"] == (shared.rootdir / TABLE).stat().st_size
    assert info["mtime"]


def test_a_remote_table_is_listed_as_one_dataset(shared):
    assert api(shared.url, "list", "tables").json() == ["t.b2z"]
    assert f"{TABLE}" in httpx.get(f"{shared.url}/api/list/{ROOT}").json()
    assert api(shared.url, "list").json() == ["t.b2z"]


def test_the_client_gets_a_remote_table_as_a_table(table):
    assert isinstance(table, Table)
    assert table.nrows == NROWS and table.columns == ["a", "b", "ok"]


@pytest.mark.parametrize("rows", [slice(0, 10), slice(95, 105), slice(990, 2000), slice(None)])
def test_row_slices_of_a_remote_table_equal_blosc2s(table, shared, rows):
    want = as_records(shared.local().slice(*rows.indices(NROWS)[:2]))
    np.testing.assert_array_equal(table.slice(rows, as_blosc2=False), want)


def test_a_filter_on_a_remote_table_equals_blosc2s(table, shared):
    got = as_records(table.where("(a > 40) & (b < 0.5)"))
    np.testing.assert_array_equal(got, as_records(shared.local().where("(a > 40) & (b < 0.5)")))
    assert len(got) > 10


@pytest.mark.parametrize("ascending", [True, False])
def test_a_sort_of_a_remote_table_equals_blosc2s(table, shared, ascending):
    got = as_records(table.sort_by(["a", "b"], ascending=ascending))
    want = shared.local().sort_by(["a", "b"], ascending=ascending, view=True)
    np.testing.assert_array_equal(got, as_records(want))


@pytest.mark.parametrize("ascending", [True, False])
def test_a_filter_sort_and_slice_of_a_remote_table_equal_blosc2s(table, shared, ascending):
    got = table.where("(a * 2 >= 60) | ok", sort_by="a", ascending=ascending, rows=slice(5, 25))
    local = shared.local().where("(a * 2 >= 60) | ok")
    want = local.sort_by(["a"], ascending=ascending, view=True).slice(5, 25)
    np.testing.assert_array_equal(as_records(got), as_records(want))


def test_a_bad_query_on_a_remote_table_is_a_clear_400(shared):
    for params in ({"filter": "zz > 1"}, {"sort_by": "zz"}, {"filter": "__import__('os')"}):
        answer = api(shared.url, "fetch", **params)
        assert answer.status_code == 400, params
        assert answer.json()["detail"]


def test_a_row_slice_fetches_one_chunk_per_column(tmp_path):
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        got = client.get(f"{ROOT}/{TABLE}").slice(slice(310, 320), as_blosc2=False)
        np.testing.assert_array_equal(got, VALUES[310:320])
        assert {col: found.column_transfers(col) for col in ("a", "b", "ok")} == {
            "a": {3},
            "b": {3},
            "ok": {3},
        }
        assert not found.publisher.stats.files  # the table file never travels


def test_a_filter_reads_its_columns_whole_and_only_the_rows_returned_of_the_others(tmp_path):
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        table = client.get(f"{ROOT}/{TABLE}")
        got = as_records(table.where("b < 0.05", rows=slice(0, 3)))
        want = as_records(found.local().where("b < 0.05").slice(0, 3))
        np.testing.assert_array_equal(got, want)
        assert found.column_transfers("b") == set(range(NROWS // CHUNK))
        # The other columns: only the chunks holding the three rows returned.
        rows = np.flatnonzero(VALUES["b"] < 0.05)[:3]
        assert found.column_transfers("a") == found.column_transfers("ok") == set(rows // CHUNK)
        assert len(found.column_transfers("a")) < NROWS // CHUNK


def test_a_replaced_remote_table_answers_its_new_rows(tmp_path):
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        np.testing.assert_array_equal(
            client.get(f"{ROOT}/{TABLE}").slice(slice(0, 5), as_blosc2=False), VALUES[:5]
        )
        newer = table_values(300, seed=9)
        write_chunked_table(found.rootdir / TABLE, newer)
        found.remote.sync(ROOT)
        table = client.get(f"{ROOT}/{TABLE}")
        assert table.nrows == 300
        np.testing.assert_array_equal(table.slice(slice(0, 5), as_blosc2=False), newer[:5])
        got = as_records(table.sort_by("b", ascending=False))
        np.testing.assert_array_equal(got, newer[np.argsort(newer["b"])[::-1]])


def test_a_removed_remote_table_is_gone(tmp_path):
    with remote_table(tmp_path, VALUES) as found:
        assert api(found.url, "info").json()["kind"] == "ctable"
        (found.rootdir / TABLE).unlink()
        found.remote.sync(ROOT)
        assert api(found.url, "info").status_code == 404
        assert api(found.url, "fetch", sort_by="a").status_code == 404
        assert "t.b2z" not in httpx.get(f"{found.url}/api/list/{ROOT}").json()


def as_lists(values: np.ndarray) -> dict:
    return {name: values[name].tolist() for name in values.dtype.names}


def test_the_newest_upstream_client_reads_a_remote_table_from_us(shared):
    got = run_driver("tables_2026.py", shared.url, TABLE, ROOT)
    assert got["type"] == "Table"
    assert (got["nrows"], got["ncols"], got["columns"]) == (NROWS, 3, ["a", "b", "ok"])
    assert got["head"] == [list(row) for row in VALUES[:4].tolist()]
    assert got["rows"] == [list(row) for row in VALUES[10:13].tolist()]
    assert got["slice"] == as_lists(VALUES[100:110])
    assert got["getitem"] == as_lists(VALUES[20:23])
    assert got["filter"] == as_lists(VALUES[(VALUES["a"] > 40) & (VALUES["b"] < 0.5)])


def corrupt(description: dict, how: str) -> object:
    """The description a publisher sent, spoilt in one way."""
    spoilt = json.loads(json.dumps(description))
    if how == "not-an-object":
        return ["nrows", 3]
    if how == "columns-unlike-schema":
        spoilt["columns"] = ["a", "b"]
    elif how == "member-outside":
        spoilt["members"]["a"] = "../../a.b2nd"
    elif how == "member-not-announced":
        spoilt["members"]["a"] = "_cols/zz"
    elif how == "negative-rows":
        spoilt["nrows"] = -1
    elif how == "kind-unlike-array":
        spoilt["schema_dict"]["columns"][0]["kind"] = "float64"
    return spoilt


@pytest.mark.parametrize(
    "how",
    [
        "not-an-object",
        "columns-unlike-schema",
        "member-outside",
        "member-not-announced",
        "negative-rows",
        "kind-unlike-array",
    ],
)
def test_a_publisher_describing_its_table_wrongly_gets_a_clear_400(tmp_path, how):
    with remote_table(tmp_path, VALUES) as found:
        mask = f"{TABLE}/_valid_rows"
        etag, meta = found.remote.store.dataset(ROOT, mask)
        found.remote.store.put_dataset(
            ROOT, mask, etag, {**meta, "table": corrupt(meta["table"], how)}
        )
        answers = [api(found.url, "fetch", sort_by="a")]
        if how != "kind-unlike-array":  # the description itself is wrong: even its info
            answers.append(api(found.url, "info"))
        for answer in answers:
            assert answer.status_code == 400, (how, answer.text)
            assert "table" in answer.json()["detail"] or "Invalid path" in answer.json()["detail"]
        # A column is still readable as the array it is, whole.
        with cat2.Client(found.url) as client:
            np.testing.assert_array_equal(client.get(f"{ROOT}/{TABLE}/_cols/a")[:], VALUES["a"])


def test_the_web_table_view_filters_and_sorts_a_remote_table(shared):
    params = {"view": "data", "filter": "a > 40", "sort": "b", "desc": "1", "rows": "5"}
    page = httpx.get(f"{shared.url}/roots/{ROOT}/{TABLE}", params=params).text
    cells = re.findall(r"<tr><th scope=\"row\">\d+</th><td>(\d+)</td><td>([\d.]+)</td>", page)
    kept = VALUES[VALUES["a"] > 40]
    want = kept[np.argsort(kept["b"], kind="stable")[::-1]][:5]
    assert [int(a) for a, _ in cells] == want["a"].tolist()
    np.testing.assert_allclose([float(b) for _, b in cells], want["b"], atol=1e-3)
    assert f"{len(kept)} rows match" in page


def test_the_web_folder_of_a_remote_table_shows_it_as_one_file(shared):
    page = httpx.get(f"{shared.url}/roots/{ROOT}/tables").text
    assert f'href="/roots/{ROOT}/{TABLE}"' in page
    assert "_valid_rows" not in page and "_cols" not in page


def test_a_remote_result_over_the_size_limit_is_refused_before_its_rows_are_fetched(tmp_path):
    with remote_table(tmp_path, VALUES, compute_max_size=5_000) as found:
        whole = api(found.url, "fetch", sort_by="b")
        assert whole.status_code == 400
        assert "compute_max_size" in whole.json()["detail"]
        assert (
            found.column_transfers("a") == found.column_transfers("ok") == set()
        )  # no row was gathered
        small = api(found.url, "fetch", filter="a < 5", sort_by="b")
        assert small.status_code == 200
        want = found.local().where("a < 5").sort_by(["b"], view=True)
        np.testing.assert_array_equal(
            as_records(blosc2.ctable_from_cframe(small.content)), as_records(want)
        )


@dataclass
class NamedRow:
    """A row with a fixed-width string column (stored as a plain `<U8` array)."""

    n: int = blosc2.field(blosc2.int64())
    name: str = blosc2.field(blosc2.string(max_length=8))


def test_a_remote_table_with_a_string_column_filters_and_sorts_as_blosc2(tmp_path):
    rng = np.random.default_rng(5)
    values = np.empty(200, dtype=[("n", "<i8"), ("name", "<U8")])
    values["n"] = np.arange(200)
    values["name"] = rng.choice(["ann", "bob", "cy", "dee"], 200)
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        path = found.rootdir / "tables" / "names.b2z"
        blosc2.CTable(NamedRow, new_data=values, urlpath=str(path), mode="w").close()
        found.remote.sync(ROOT)
        table = client.get(f"{ROOT}/tables/names.b2z")
        local = blosc2.open(str(path), mode="r")
        got = as_records(table.where("name == 'bob'", sort_by="n", ascending=False))
        want = local.where("name == 'bob'").sort_by(["n"], ascending=False, view=True)
        np.testing.assert_array_equal(got, as_records(want))
        got = as_records(table.sort_by(["name", "n"], rows=slice(0, 30)))
        want = local.sort_by(["name", "n"], view=True).slice(0, 30)
        np.testing.assert_array_equal(got, as_records(want))


@dataclass
class TextRow:
    """A row with a variable-length text column (no plain array: the table stays a file)."""

    a: int = blosc2.field(blosc2.int64())
    text: str = blosc2.field(blosc2.utf8())


def test_a_remote_table_with_a_text_column_stays_a_file_and_refuses_a_sort_clearly(tmp_path):
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        path = found.rootdir / "tables" / "texts.b2z"
        rows = [(1, "one"), (2, "two, longer")]
        blosc2.CTable(TextRow, new_data=rows, urlpath=str(path), mode="w").close()
        found.remote.sync(ROOT)
        assert "texts.b2z" in api(found.url, "list", "tables").json()
        local = client.download(f"{ROOT}/tables/texts.b2z", tmp_path / "copy.b2z")
        assert blosc2.open(str(local), mode="r")["text"][:].tolist() == ["one", "two, longer"]
        refused = api(found.url, "fetch", "tables/texts.b2z", sort_by="a")
        assert refused.status_code == 400
        assert "serves as a file only" in refused.json()["detail"]


def test_a_remote_table_with_deleted_rows_answers_its_live_rows_as_blosc2(tmp_path):
    with remote_table(tmp_path, VALUES) as found, cat2.Client(found.url) as client:
        path = found.rootdir / TABLE
        edited = blosc2.open(str(path), mode="a")
        edited.delete(list(range(0, NROWS, 7)))  # a row in seven is gone, its slot kept
        edited.close()
        found.remote.sync(ROOT)
        local = blosc2.open(str(path), mode="r")
        table = client.get(f"{ROOT}/{TABLE}")
        assert table.nrows == local.nrows < NROWS
        np.testing.assert_array_equal(
            table.slice(slice(140, 160), as_blosc2=False), as_records(local.slice(140, 160))
        )
        got = as_records(table.where("a < 30", sort_by="b", ascending=False))
        want = local.where("a < 30").sort_by(["b"], ascending=False, view=True)
        np.testing.assert_array_equal(got, as_records(want))


def test_a_column_not_as_long_as_the_mask_is_a_clear_400(tmp_path):
    with remote_table(tmp_path, VALUES) as found:
        column = f"{TABLE}/_cols/b"
        etag, meta = found.remote.store.dataset(ROOT, column)
        found.remote.store.put_dataset(ROOT, column, etag, {**meta, "shape": [NROWS - 1]})
        answer = api(found.url, "fetch", sort_by="a")
        assert answer.status_code == 400
        assert "no array as long as its mask" in answer.json()["detail"]
