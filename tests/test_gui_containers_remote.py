"""Containers of a publisher's root in the web GUI, in Debian's headless Chromium."""

from __future__ import annotations

import httpx
import pytest

from .container_support import BIG
from .gui_support import chromium_tab, table_cell
from .inprocess_publisher import ROOT
from .test_containers_remote import remote_root


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with remote_root(tmp_path_factory.mktemp("gui-remote-containers")) as found:
        yield found.url


@pytest.fixture
def tab(url):
    with chromium_tab(url) as page:
        yield page


def test_a_remote_container_shows_its_tree_and_a_leaf_its_values(tab):
    tab.goto(f"/roots/{ROOT}/dir")
    tree = f"details[data-container='{ROOT}/dir/tree.b2z']"
    assert tab.locator(tree).count() == 1
    big = f"a[data-path='{ROOT}/dir/tree.b2z/a/big']"
    assert tab.locator(big).count() == 1 and tab.locator(f"{tree} {big}").count() == 1
    tab.click(f"{tree} > summary > .toggle")
    tab.click(f"{tree} li.tree-group > details > summary > .toggle")  # open the group a/
    assert tab.locator(f"a[data-path='{ROOT}/dir/tree.b2z/a/b/cube']").count() == 1
    tab.click(f"a[data-path='{ROOT}/dir/tree.b2z/a/big']")
    tab.wait_for_selector("#data-table")
    assert table_cell(tab, 0, 1) == str(int(BIG[0, 1])) and table_cell(tab, 2, 0) == str(
        int(BIG[2, 0])
    )


def test_a_remote_container_page_is_a_read_only_group(url):
    page = httpx.get(f"{url}/roots/{ROOT}/dir/dict.b2z").text
    assert "Blosc2 container" in page and "2 datasets" in page
    assert f"/api/download/{ROOT}/dir/dict.b2z" not in page  # the file itself never travels
