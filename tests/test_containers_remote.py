"""Containers (TreeStore/DictStore `.b2z`) in a publisher's root, browsed through a subscriber.

A real publisher served from a thread holds real files written by blosc2; a
subscriber follows its root (`sync` stands for the resync a heartbeat starts)
and is served from another thread.  Read through our client and plain HTTP, and
compared with what blosc2 reads from the same files; the publisher's transfer
counters prove only the chunks a read touches travel.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2 import cli
from caterva2.publisher.root_adapters import DirectoryRoot

from .container_support import (
    B2Z_LEAVES,
    B2Z_LISTINGS,
    BIG,
    CUBE,
    SMALL,
    TREE_LEAVES,
    write_stores,
    write_tree,
)
from .inprocess_publisher import ROOT, FollowedRoot, followed_root
from .table_support import table_values, write_table
from .upstream_client import run_driver

BIG_LEAF = "dir/tree.b2z/a/big"
TABLE_MEMBERS = ["_cols/a", "_cols/b", "_cols/ok", "_valid_rows"]  # a table of `table_values`


def write_files(rootdir: Path) -> None:
    folder = rootdir / "dir"
    write_stores(folder)
    write_table(folder / "table.b2z", table_values(50, seed=1))
    (folder / "bad.b2z").write_bytes(b"not a zip at all" * 10)
    (rootdir / "runs.h5").mkdir()  # a folder named like a container, an array in it
    blosc2.asarray(SMALL, urlpath=str(rootdir / "runs.h5" / "run.b2nd"))


Remote = FollowedRoot


def remote_root(tmp_path: Path):
    """A publisher of containers, followed by a subscriber served over HTTP."""
    return followed_root(tmp_path, write_files)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Iterator[Remote]:
    with remote_root(tmp_path_factory.mktemp("remote-containers")) as found:
        yield found


@pytest.fixture
def url(shared: Remote) -> str:
    return shared.url


def get(url: str, route: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{url}/api/{route}/{ROOT}/{path}", params=params)


# -- the publisher ---------------------------------------------------------------


def test_the_publisher_serves_a_group_container_as_its_leaves_and_a_table_as_its_columns(tmp_path):
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    write_files(rootdir)
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    expected = [f"dir/tree.b2z/{leaf}" for leaf in TREE_LEAVES]
    expected += ["dir/bad.b2z", "dir/dict.b2z/p", "dir/dict.b2z/q/r"]
    expected += [f"dir/table.b2z/{member}" for member in TABLE_MEMBERS]
    expected += ["runs.h5/run.b2nd"]
    assert adapter.datasets() == sorted(expected)
    assert adapter.scan()[0] == sorted(expected)
    assert adapter.stat("dir/tree.b2z") is None  # the container is its leaves only
    assert adapter.stat("dir/tree.b2z/a") is None  # a group is no dataset
    assert adapter.stat("dir/tree.b2z/nope") is None


def test_a_leaf_chunk_is_served_as_the_container_stores_it(tmp_path):
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    write_files(rootdir)
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    tree = blosc2.open(str(rootdir / "dir" / "tree.b2z"), mode="r")
    for inner in ("a/big", "a/small"):
        stat, chunk = adapter.chunk(f"dir/tree.b2z/{inner}", 0)
        assert chunk == tree["/" + inner].schunk.get_chunk(0)  # never recompressed
        assert stat == adapter.stat(f"dir/tree.b2z/{inner}")


def test_concurrent_chunk_reads_of_one_container_each_get_their_own_chunk(tmp_path):
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    write_files(rootdir)
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    tree = blosc2.open(str(rootdir / "dir" / "tree.b2z"), mode="r")
    expected = [tree["/a/big"].schunk.get_chunk(n) for n in range(12)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda n: adapter.chunk(BIG_LEAF, n % 12)[1], range(96)))
    assert got == [expected[n % 12] for n in range(96)]


def test_a_container_change_concerns_its_old_and_new_leaves(tmp_path):
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    write_files(rootdir)
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    known = ["dir/tree.b2z/gone", "dir/tree.b2z/a/big", "other.b2nd"]
    affected = adapter.affected("dir/tree.b2z", known)
    assert affected == {"dir/tree.b2z", "dir/tree.b2z/gone"} | {
        f"dir/tree.b2z/{leaf}" for leaf in TREE_LEAVES
    }


def test_leaf_names_a_subscriber_could_not_keep_apart_or_would_hide_are_not_served(tmp_path):
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    with blosc2.TreeStore(str(rootdir / "odd.b2z"), mode="w") as tree:
        tree["/v"] = SMALL
        tree["/v.b2"] = SMALL  # a subscriber caches `v` as `v.b2`
        tree["/.hidden/w"] = SMALL
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    assert adapter.datasets() == ["odd.b2z/v"]
    assert adapter.stat("odd.b2z/v.b2") is None and adapter.stat("odd.b2z/.hidden/w") is None


def test_a_container_linked_from_outside_the_root_is_not_served(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_tree(outside / "secret.b2z", BIG)
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    (rootdir / "link.b2z").symlink_to(outside / "secret.b2z")
    adapter = DirectoryRoot(rootdir, tmp_path / "cache")
    assert adapter.datasets() == []
    assert adapter.stat("link.b2z/a/big") is None


# -- through the subscriber ------------------------------------------------------


def test_listing_the_remote_root_names_container_files_not_their_leaves(url):
    names = httpx.get(f"{url}/api/list/{ROOT}").json()
    assert {"dir/tree.b2z", "dir/dict.b2z", "dir/table.b2z", "a.b2nd"} <= set(names)
    assert not any("tree.b2z/" in name or "dict.b2z/" in name for name in names)
    assert get(url, "list", "dir").json() == ["bad.b2z", "dict.b2z", "table.b2z", "tree.b2z"]


@pytest.mark.parametrize("path, leaves", B2Z_LISTINGS)
def test_listing_a_remote_container_or_group_names_its_leaves(url, path, leaves):
    assert get(url, "list", path).json() == leaves


@pytest.mark.parametrize(
    "path, nfiles", [("dir/tree.b2z", 4), ("dir/tree.b2z/a", 3), ("dir/dict.b2z", 2)]
)
def test_remote_containers_and_inner_groups_are_groups_in_their_info(url, path, nfiles):
    meta = get(url, "info", path).json()
    assert meta["kind"] == "group"
    assert meta["nfiles"] == nfiles
    assert meta["mtime"]


LEAVES = B2Z_LEAVES


@pytest.mark.parametrize("path, values", LEAVES.values(), ids=LEAVES.keys())
def test_our_client_reads_remote_leaves_as_numpy_does(url, path, values):
    with cat2.Client(url) as client:
        dataset = client.get(f"{ROOT}/{path}")
        assert isinstance(dataset, cat2.Dataset)
        assert tuple(dataset.shape) == values.shape
        np.testing.assert_array_equal(dataset[:], values)
        key = tuple(slice(1, n - 1) for n in values.shape)
        np.testing.assert_array_equal(dataset[key], values[key])


@pytest.mark.parametrize("path, values", LEAVES.values(), ids=LEAVES.keys())
def test_a_remote_leaf_downloads_as_a_b2nd_of_its_own(url, path, values):
    r = get(url, "download", path)
    assert r.status_code == 200
    assert path.rsplit("/", 1)[-1] + ".b2nd" in r.headers["content-disposition"]
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(r.content)[()], values)


def test_our_client_gives_remote_groups_that_iterate_and_index(url):
    with cat2.Client(url) as client:
        tree = client.get(f"{ROOT}/dir/tree.b2z")
        assert isinstance(tree, cat2.Group)
        assert list(tree) == TREE_LEAVES
        inner = tree["a"]
        assert isinstance(inner, cat2.Group) and list(inner) == ["b/cube", "big", "small"]
        np.testing.assert_array_equal(inner["b"]["cube"][2:, 1], CUBE[2:, 1])


@pytest.mark.parametrize("route", ["fetch", "chunk", "download"])
def test_a_remote_group_is_not_fetched_but_told_why(url, route):
    r = get(url, route, "dir/tree.b2z/a", nchunk=0)
    assert r.status_code == 400
    assert "is a group" in r.json()["detail"]


@pytest.mark.parametrize("path", ["dir/tree.b2z/a/nope", "dir/tree.b2z/zz/top"])
def test_a_missing_remote_member_is_404(url, path):
    for route in ("info", "fetch", "list"):
        r = get(url, route, path)
        assert r.status_code == 404, (route, r.text)
        assert r.json()["detail"]


def test_cat2cli_tree_draws_a_remote_container_expanded(url, capsys):
    cli.main(["--subscriber", url, "tree", f"{ROOT}/dir/dict.b2z"])
    assert capsys.readouterr().out == (
        f"{ROOT}/dir/dict.b2z\n├── p\n└── q\n    └── r\n\n1 group, 2 datasets\n"
    )


def test_a_broken_b2z_stays_a_plain_remote_file(url):
    meta = get(url, "info", "dir/bad.b2z").json()
    assert meta.get("kind") != "group"
    assert get(url, "download", "dir/bad.b2z").content == b"not a zip at all" * 10


def test_an_array_in_a_remote_folder_named_like_a_container_keeps_its_name(url):
    run = get(url, "download", "runs.h5/run.b2nd")
    assert 'filename="run.b2nd"' in run.headers["content-disposition"]
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(run.content)[()], SMALL)


def test_a_slice_of_a_remote_leaf_fetches_only_the_chunks_it_touches(tmp_path):
    with remote_root(tmp_path) as found, cat2.Client(found.url) as client:
        got = client.get(f"{ROOT}/{BIG_LEAF}")[0:50, 150:250]
        np.testing.assert_array_equal(got, BIG[0:50, 150:250])
        # Chunks of 100x100 over 300x400: the slice lies in chunks 1 and 2 of row 0.
        assert found.transfers(BIG_LEAF) == {1, 2}
        got = client.get(f"{ROOT}/{BIG_LEAF}")[250:260, 0:10]
        np.testing.assert_array_equal(got, BIG[250:260, 0:10])
        assert found.transfers(BIG_LEAF) == {1, 2, 8}
        assert not found.publisher.stats.files  # no whole file travelled


def test_a_changed_remote_container_shows_its_new_values(tmp_path):
    with remote_root(tmp_path) as found, cat2.Client(found.url) as client:
        np.testing.assert_array_equal(client.get(f"{ROOT}/{BIG_LEAF}")[0:5, 0:5], BIG[0:5, 0:5])
        write_tree(found.rootdir / "dir" / "tree.b2z", -BIG)
        found.remote.sync(ROOT)
        np.testing.assert_array_equal(client.get(f"{ROOT}/{BIG_LEAF}")[0:5, 0:5], -BIG[0:5, 0:5])


def test_a_removed_remote_container_is_gone(tmp_path):
    with remote_root(tmp_path) as found:
        assert get(found.url, "info", "dir/dict.b2z").json()["kind"] == "group"
        (found.rootdir / "dir" / "dict.b2z").unlink()
        found.remote.sync(ROOT)
        assert "dict.b2z" not in get(found.url, "list", "dir").json()
        assert get(found.url, "info", "dir/dict.b2z").status_code == 404
        assert get(found.url, "info", "dir/dict.b2z/p").status_code == 404


def test_the_newest_upstream_client_browses_remote_containers(url):
    got = run_driver("remote_containers_2026.py", url, ROOT)
    assert got["tree_type"] == got["inner_type"] == got["dict_type"] == "Group"
    assert got["tree_leaves"] == TREE_LEAVES and got["dict_leaves"] == ["p", "q/r"]
    assert got["inner_leaves"] == ["b/cube", "big", "small"]
    np.testing.assert_array_equal(got["small"], SMALL)
    np.testing.assert_array_equal(got["big_box"], BIG[5:9, 10:20])
    np.testing.assert_array_equal(got["cube_row"], CUBE[1])
    np.testing.assert_array_equal(got["dict_big_box"], BIG[140:160, 3:5])
