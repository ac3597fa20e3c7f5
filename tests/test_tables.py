"""Tables (Blosc2 CTable `.b2z`): info, row slices, filters and sorts evaluated by the subscriber.

A real subscriber served from a thread of this process, its @public holding a
real CTable written by blosc2; every answer is compared with NumPy's on the
same values, through our client, `cat2cli` and plain HTTP.
"""

from __future__ import annotations

import os

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2 import cli
from caterva2.tables import as_records

from .app_support import USER, in_process_subscriber, served, serving
from .table_support import numpy_query, table_values, write_table

NROWS = 5000
VALUES = table_values(NROWS)
A, B, OK = VALUES["a"], VALUES["b"], VALUES["ok"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("tables") / "state"
    public = statedir / "public"
    (public / "dir").mkdir(parents=True)
    write_table(public / "dir" / "t.b2z", VALUES)
    blosc2.asarray(np.arange(10), urlpath=str(public / "line.b2nd"))
    with serving(statedir, login=False) as base:
        yield base


@pytest.fixture
def table(url):
    with cat2.Client(url) as client:
        yield client.get("@public/dir/t.b2z")


def fetch(url: str, **params: str) -> httpx.Response:
    return httpx.get(f"{url}/api/fetch/@public/dir/t.b2z", params=params)


def rows_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return as_records(blosc2.ctable_from_cframe(response.content))


def test_info_describes_the_table_as_upstream_does(url):
    info = httpx.get(f"{url}/api/info/@public/dir/t.b2z").json()
    assert info["kind"] == "ctable"
    assert info["nrows"] == NROWS
    assert info["ncols"] == 3
    assert info["columns"] == ["a", "b", "ok"]
    assert [c["kind"] for c in info["schema_dict"]["columns"]] == ["int64", "float64", "bool"]
    for key in ("chunks", "blocks", "nbytes", "cbytes", "cratio", "vlmeta", "mtime", "size"):
        assert key in info


def test_a_table_is_listed_as_one_dataset(url):
    assert httpx.get(f"{url}/api/list/@public/dir").json() == ["t.b2z"]


def test_the_client_gets_a_table_with_its_shape(table):
    assert isinstance(table, cat2.Table)
    assert (table.nrows, table.ncols, table.columns) == (NROWS, 3, ["a", "b", "ok"])
    assert table.schema["columns"][1] == {"name": "b", "kind": "float64"}


@pytest.mark.parametrize(
    "key", [slice(0, 7), slice(4990, None), slice(-3, None), slice(100, 100), 42, -1]
)
def test_row_slices_equal_numpy(table, key):
    want = VALUES[key] if isinstance(key, slice) else VALUES[key : key + 1 or None]
    got = table.slice(key, as_blosc2=False)
    np.testing.assert_array_equal(got, want)
    assert isinstance(table[key], blosc2.CTable)


def test_rows_and_head_are_tuples(table):
    assert table.head(3) == [tuple(row) for row in VALUES[:3].tolist()]
    assert table.rows(10, 13) == [tuple(row) for row in VALUES[10:13].tolist()]


def test_a_filter_keeps_the_rows_numpy_keeps(table):
    got = as_records(table.where("(a > 40) & (b < 0.5)"))
    np.testing.assert_array_equal(got, numpy_query(VALUES, (A > 40) & (B < 0.5)))
    np.testing.assert_array_equal(as_records(table["ok"]), VALUES[OK])


@pytest.mark.parametrize("ascending", [True, False], ids=["ascending", "descending"])
def test_a_sort_orders_the_rows_as_numpy(table, ascending):
    got = as_records(table.sort_by("b", ascending=ascending))
    np.testing.assert_array_equal(got, numpy_query(VALUES, sort_by="b", ascending=ascending))


@pytest.mark.parametrize("ascending", [True, False], ids=["ascending", "descending"])
def test_filter_sort_and_rows_in_one_request(table, ascending):
    got = table.where("(a * 2 >= 60) | ok", sort_by="b", ascending=ascending, rows=slice(5, 25))
    want = numpy_query(VALUES, (A * 2 >= 60) | OK, "b", ascending, slice(5, 25))
    np.testing.assert_array_equal(as_records(got), want)


def test_plain_http_filters_sorts_and_slices(url):
    got = rows_of(fetch(url, filter="a < 10", sort_by="b", ascending="false", slice_="0:4"))
    np.testing.assert_array_equal(got, numpy_query(VALUES, A < 10, "b", False, slice(0, 4)))
    got = rows_of(fetch(url, slice_="10:12"))
    np.testing.assert_array_equal(got, VALUES[10:12])


def test_a_post_body_takes_the_same_parameters(url):
    body = {"filter": "a == 7", "sort_by": "b", "ascending": "true"}
    got = rows_of(httpx.post(f"{url}/api/fetch/@public/dir/t.b2z", json=body))
    np.testing.assert_array_equal(got, numpy_query(VALUES, A == 7, "b"))


def test_a_filter_no_row_passes_answers_an_empty_table(table):
    got = table.where("a > 1000", sort_by="b")
    assert got.nrows == 0
    assert as_records(got).dtype == VALUES.dtype


@pytest.mark.parametrize(
    "params, message",
    [
        ({"filter": "zz > 3"}, "'zz' is not a field"),
        ({"filter": "a >"}, "Invalid filter"),
        ({"filter": "__import__('os').getcwd()"}, "is not allowed"),
        ({"filter": "a.real > 3"}, "Attribute is not allowed"),
        ({"filter": "b"}, "not boolean"),
        ({"filter": "a + 1"}, "Invalid filter"),
        ({"sort_by": "zz"}, "'zz' is not a column"),
        ({"sort_by": "a,"}, "empty column name"),
        ({"sort_by": "a", "ascending": "sideways"}, "Invalid ascending"),
        ({"slice_": "0:10:2"}, "step 1 only"),
        ({"slice_": "0:2,1"}, "one dimension"),
        ({"slice_": "99999"}, "out of range"),
        ({"field": "a"}, "columns, not fields"),
        ({"sort_by": "a", "indices": "[1]"}, "indices cannot go with"),
    ],
)
def test_bad_queries_are_refused_with_400_and_a_message(url, params, message):
    answer = fetch(url, **params)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]


def test_the_client_raises_the_servers_message(table):
    with pytest.raises(cat2.APIError, match="'zz' is not a column"):
        table.sort_by("zz")


def test_sorting_what_is_not_a_table_is_refused(url):
    answer = httpx.get(f"{url}/api/fetch/@public/line.b2nd", params={"sort_by": "a"})
    assert answer.status_code == 400
    assert "not a table" in answer.json()["detail"]


def test_a_table_downloads_as_its_stored_file(url, tmp_path):
    with cat2.Client(url) as client:
        local = client.download("@public/dir/t.b2z", tmp_path / "copy.b2z")
    np.testing.assert_array_equal(as_records(blosc2.open(str(local), mode="r")), VALUES)


def test_cat2cli_show_prints_the_first_rows_and_a_sorted_filter(url, capsys):
    cli.main(["--subscriber", url, "show", "@public/dir/t.b2z"])
    out = capsys.readouterr().out
    assert f"({NROWS} rows" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == cli.TABLE_HEAD
    args = ["--subscriber", url, "show", "@public/dir/t.b2z[a == 3]", "--sort-by", "b"]
    cli.main([*args, "--descending"])
    out = capsys.readouterr().out
    want = numpy_query(VALUES, A == 3, "b", False)
    assert f"{want['b'][0]:.6f}" in out.splitlines()[1]


def test_a_sort_by_two_columns_breaks_ties_by_the_second(table):
    got = as_records(table.sort_by(["a", "b"], ascending=False, rows=slice(0, 50)))
    order = np.lexsort((B, A))[::-1]  # the last key is NumPy's primary one
    np.testing.assert_array_equal(got, VALUES[order][:50])


def test_a_result_over_the_size_limit_is_refused_and_a_smaller_one_passes(tmp_path):
    statedir = tmp_path / "state"
    (statedir / "public").mkdir(parents=True)
    write_table(statedir / "public" / "t.b2z", VALUES)
    app = in_process_subscriber(statedir, login=False, compute_max_size=20_000)
    try:
        with served(app.subscriber.app) as base:
            whole = httpx.get(f"{base}/api/fetch/@public/t.b2z", params={"sort_by": "b"})
            assert whole.status_code == 400
            assert "compute_max_size" in whole.json()["detail"]
            params = {"filter": "a < 5", "sort_by": "b"}
            small = httpx.get(f"{base}/api/fetch/@public/t.b2z", params=params)
            np.testing.assert_array_equal(rows_of(small), numpy_query(VALUES, A < 5, "b"))
    finally:
        app.subscriber.close()


def test_an_uploaded_table_is_queried_in_personal(tmp_path):
    local = write_table(tmp_path / "mine.b2z", VALUES[:100])
    app = in_process_subscriber(tmp_path / "state")
    try:
        with served(app.subscriber.app) as base, cat2.Client(base, USER) as client:
            client.upload(local, "@personal/tables/mine.b2z")
            table = client.get("@personal/tables/mine.b2z")
            got = as_records(table.where("a > 50", sort_by="b", ascending=False))
            anonymous = httpx.get(f"{base}/api/info/@personal/tables/mine.b2z")
        np.testing.assert_array_equal(got, numpy_query(VALUES[:100], A[:100] > 50, "b", False))
        assert anonymous.status_code == 401
    finally:
        app.subscriber.close()


def test_a_rewritten_table_answers_its_new_rows_to_a_query_asked_before(tmp_path):
    statedir = tmp_path / "state"
    (statedir / "public").mkdir(parents=True)
    path = statedir / "public" / "t.b2z"
    app = in_process_subscriber(statedir, login=False)
    try:
        with served(app.subscriber.app) as base:
            params = {"filter": "a < 50", "sort_by": "b", "ascending": "false", "slice_": "0:10"}
            for seed in (1, 2):  # the same query, before and after the file is replaced
                values = table_values(400, seed=seed)
                tmp = write_table(tmp_path / f"new-{seed}.b2z", values)
                os.replace(tmp, path)
                answer = httpx.get(f"{base}/api/fetch/@public/t.b2z", params=params)
                want = numpy_query(values, values["a"] < 50, "b", False, slice(0, 10))
                np.testing.assert_array_equal(rows_of(answer), want)
    finally:
        app.subscriber.close()
