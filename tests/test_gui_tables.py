"""A table (CTable `.b2z`) in the web GUI: filter box, header sorts and paging, in Chromium.

Debian's headless Chromium through Playwright, on a real subscriber served from
a thread of this process; the rows the page shows are compared with NumPy's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from .app_support import serving
from .gui_support import chromium_tab, shot, wait_until
from .table_support import numpy_query, table_values, write_table

VALUES = table_values(3000, seed=11)
A, B, OK = VALUES["a"], VALUES["b"], VALUES["ok"]
PAGE = 25  # rows a page shows (views.ROWS)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    statedir = tmp_path_factory.mktemp("gui-tables") / "state"
    (statedir / "public").mkdir(parents=True)
    write_table(statedir / "public" / "t.b2z", VALUES)
    with serving(statedir, login=False) as base:
        yield base


@pytest.fixture
def tab(url):
    with chromium_tab(url) as page:
        yield page


def shown_rows(tab) -> np.ndarray:
    """The rows of the page's table, parsed back into the table's dtype."""
    cells = tab.evaluate(
        """() => [...document.querySelectorAll('#data-table tbody tr')].map(
            tr => [...tr.querySelectorAll('td')].map(td => td.innerText))"""
    )
    out = np.empty(len(cells), dtype=VALUES.dtype)
    for i, (a, b, ok) in enumerate(cells):
        out[i] = (int(a), float(b), ok.strip() == "true")
    return out


def assert_shown(tab, want: np.ndarray) -> None:
    """The page shows `want`, row for row (floats as the page prints them: 6 digits)."""
    got = shown_rows(tab)
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["a"], want["a"])
    np.testing.assert_array_equal(got["ok"], want["ok"])
    np.testing.assert_allclose(got["b"], want["b"], rtol=1e-5)


def wait_for_matches(tab, text: str) -> None:
    script = "(t) => (document.querySelector('#matches')?.innerText || '').includes(t)"
    wait_until(tab, script, text, timeout=30)  # a query under a loaded suite can take seconds


def click_header(tab, column: str, text: str) -> None:
    tab.click(f"#data-table thead a[data-column={column}]")
    wait_for_matches(tab, text)


def test_a_table_filters_sorts_by_header_and_pages_as_numpy_does(tab):
    tab.goto("/roots/@public/t.b2z")
    wait_for_matches(tab, f"{len(VALUES)} rows")
    assert_shown(tab, VALUES[:PAGE])

    tab.fill("#filter", "(a > 30) & ok")
    tab.click("#apply-filter")
    kept = (A > 30) & OK
    wait_for_matches(tab, f"{kept.sum()} rows match")
    assert_shown(tab, numpy_query(VALUES, kept, rows=slice(0, PAGE)))

    click_header(tab, "b", "sorted by b;")  # first click: ascending
    want = numpy_query(VALUES, kept, "b", True)
    assert_shown(tab, want[:PAGE])
    assert tab.get_attribute("#data-table thead th[aria-sort]", "aria-sort") == "ascending"

    click_header(tab, "b", "(descending)")  # second click: descending
    want = numpy_query(VALUES, kept, "b", False)
    assert_shown(tab, want[:PAGE])
    shot(tab, "table-filter-sort")

    tab.click("nav.pager >> nth=0 >> a[data-page=row_next]")
    wait_for_matches(tab, f"showing {PAGE}–")
    assert_shown(tab, want[PAGE : 2 * PAGE])
    tab.click("nav.pager >> nth=0 >> a[data-page=row_last]")
    last = (len(want) - 1) // PAGE * PAGE
    wait_for_matches(tab, f"showing {last}–")
    assert_shown(tab, want[last:])

    click_header(tab, "b", f"{kept.sum()} rows match")  # third click: stored order again
    wait_until(tab, "() => !document.querySelector('#data-table thead th[aria-sort]')")
    assert_shown(tab, numpy_query(VALUES, kept, rows=slice(0, PAGE)))


def test_a_bad_filter_is_explained_on_the_page(tab):
    tab.goto("/roots/@public/t.b2z")
    tab.fill("#filter", "nope > 1")
    tab.click("#apply-filter")
    tab.wait_for_selector("#panel-error")
    assert "'nope' is not a field" in tab.inner_text("#panel-error")
