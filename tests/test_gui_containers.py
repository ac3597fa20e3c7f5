"""Containers in the web GUI, in Debian's headless Chromium: a `.b2z` and an `.h5` as folders."""

from __future__ import annotations

import blosc2
import h5py
import httpx
import numpy as np
import pytest

from .app_support import serving
from .gui_support import chromium_tab, shot, table_cell

GRID = np.arange(6 * 8, dtype=np.int32).reshape(6, 8) * 10


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("gui-containers") / "state"
    folder = statedir / "public" / "dir"
    folder.mkdir(parents=True)
    with blosc2.TreeStore(str(folder / "tree.b2z"), mode="w", threshold=1000) as tree:
        tree["/a/grid"] = GRID
        tree["/a/b/ones"] = np.ones(4)
        tree["/top"] = np.arange(3)
    with h5py.File(folder / "data.h5", "w") as f:
        f["grp/grid"] = GRID + 1
    with serving(statedir, login=False) as base:
        yield base


@pytest.fixture
def tab(url):
    with chromium_tab(url) as page:
        yield page


def test_a_container_shows_its_tree_and_a_leaf_its_values(tab):
    tab.goto("/roots/@public/dir")
    container = tab.locator("details[data-container='@public/dir/tree.b2z']")
    assert container.count() == 1
    tab.click("details[data-container='@public/dir/tree.b2z'] > summary > .toggle")
    inner = "details[data-container='@public/dir/tree.b2z'] li.tree-group"
    tab.click(f"{inner} > details > summary > .toggle")  # open the group a/
    assert tab.locator("a[data-path='@public/dir/tree.b2z/a/b/ones']").count() == 1
    tab.click("a[data-path='@public/dir/tree.b2z/a/grid']")
    tab.wait_for_selector("#data-table")
    assert table_cell(tab, 0, 1) == "10" and table_cell(tab, 2, 0) == "160"
    shot(tab, "container-leaf")
    # The path list now shows the group the leaf is in, the leaf marked.
    current = "#path-list a[aria-current][data-path='@public/dir/tree.b2z/a/grid']"
    assert tab.locator(current).count() == 1


def test_an_hdf5_file_is_a_folder_whose_datasets_open_like_arrays(tab):
    tab.goto("/roots/@public/dir/data.h5")
    assert "HDF5 file" in tab.inner_text("#container-kind")
    assert tab.locator("section.panel a[download]").get_attribute("href").endswith("data.h5")
    tab.click("#path-list a[data-path='@public/dir/data.h5/grp/grid']")
    tab.wait_for_selector("#data-table")
    assert table_cell(tab, 0, 0) == "1" and table_cell(tab, 1, 0) == "81"


def test_a_leaf_page_watches_its_container_file(url):
    def stamp(path):
        return httpx.get(f"{url}/web/changes", params={"path": path}).json()["stamp"]

    leaf = stamp("@public/dir/tree.b2z/a/grid")
    assert leaf == stamp("@public/dir/tree.b2z") and leaf != "missing"
