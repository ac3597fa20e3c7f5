"""Container files browsed as folders: TreeStore/DictStore `.b2z` files and HDF5 files.

A real subscriber served from a thread of this process, its @public holding real
files written by blosc2 and h5py; read through our client and through plain
HTTP, and compared with what blosc2 and NumPy read from the same files.
"""

from __future__ import annotations

import io
import pathlib

import blosc2
import h5py
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2.subscriber import hdf5_shells

from .app_support import USER, in_process_subscriber, served
from .container_support import B2Z_LEAVES, B2Z_LISTINGS, BIG, CUBE, SMALL, TREE_LEAVES, write_stores
from .upstream_client import run_driver


def write_files(public) -> None:
    folder = public / "dir"
    write_stores(folder)
    with h5py.File(folder / "data.h5", "w") as f:
        f.create_dataset("grp/big", data=BIG, chunks=(50, 80))
        f.create_dataset("grp/sub/cube", data=CUBE)
        f["top"] = np.arange(7)
        f["grp/big"].attrs["unit"] = "m"
    (folder / "bad.b2z").write_bytes(b"not a zip at all" * 10)
    (folder / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 50)
    blosc2.asarray(SMALL, urlpath=str(public / "plain.b2nd"))
    # A folder named like a container is a folder (a container may sit inside it).
    (public / "results.h5").mkdir()
    blosc2.asarray(SMALL, urlpath=str(public / "results.h5" / "run.b2nd"))
    with blosc2.TreeStore(str(public / "results.h5" / "inner.b2z"), mode="w") as tree:
        tree["/g/v"] = SMALL


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """(base URL, @public directory) of a subscriber serving the files."""
    statedir = tmp_path_factory.mktemp("containers") / "state"
    write_files(statedir / "public")
    app = in_process_subscriber(statedir)  # logins on: expressions are saved in @personal
    try:
        with served(app.subscriber.app) as base:
            yield base, statedir / "public"
    finally:
        app.subscriber.close()
        hdf5_shells.close_pool()


@pytest.fixture
def url(state):
    return state[0]


@pytest.fixture
def public(state):
    return state[1]


def test_listing_the_root_names_container_files_not_their_leaves(url):
    names = httpx.get(f"{url}/api/list/@public").json()
    assert "dir/tree.b2z" in names and "dir/data.h5" in names
    assert not any(name.startswith("dir/tree.b2z/") for name in names)


@pytest.mark.parametrize(
    "path, leaves",
    [
        *B2Z_LISTINGS,
        ("dir/data.h5", ["grp/big", "grp/sub/cube", "top"]),
        ("dir/data.h5/grp", ["big", "sub/cube"]),
    ],
)
def test_listing_a_container_or_group_names_its_leaves(url, path, leaves):
    assert httpx.get(f"{url}/api/list/@public/{path}").json() == leaves


@pytest.mark.parametrize(
    "path, nfiles",
    [("dir/tree.b2z", 4), ("dir/tree.b2z/a", 3), ("dir/dict.b2z", 2), ("dir/data.h5/grp", 2)],
)
def test_containers_and_inner_groups_are_groups_in_their_info(url, path, nfiles):
    meta = httpx.get(f"{url}/api/info/@public/{path}").json()
    assert meta["kind"] == "group"
    assert meta["nfiles"] == nfiles
    assert meta["mtime"]


LEAVES = {
    **B2Z_LEAVES,
    "hdf5 big": ("dir/data.h5/grp/big", BIG),
    "hdf5 nested": ("dir/data.h5/grp/sub/cube", CUBE),
}


@pytest.mark.parametrize("path, values", LEAVES.values(), ids=LEAVES.keys())
def test_a_leaf_is_described_like_an_array(url, path, values):
    meta = httpx.get(f"{url}/api/info/@public/{path}").json()
    assert tuple(meta["shape"]) == values.shape
    assert np.dtype(meta["dtype"]) == values.dtype


@pytest.mark.parametrize("path, values", LEAVES.values(), ids=LEAVES.keys())
def test_our_client_reads_leaves_as_numpy_does(url, path, values):
    with cat2.Client(url) as client:
        dataset = client.get(f"@public/{path}")
        assert isinstance(dataset, cat2.Dataset)
        np.testing.assert_array_equal(dataset[:], values)
        key = tuple(slice(1, n - 1) for n in values.shape)
        np.testing.assert_array_equal(dataset[key], values[key])
        points = ([0, values.shape[0] - 1, 1],) + (slice(None),) * (values.ndim - 1)
        np.testing.assert_array_equal(dataset[points], values[points])


def test_plain_http_slices_a_b2z_leaf_as_blosc2_does(url, public):
    r = httpx.get(f"{url}/api/fetch/@public/dir/tree.b2z/a/big", params={"slice_": "5:9,10:300:7"})
    assert r.status_code == 200
    tree = blosc2.TreeStore(str(public / "dir" / "tree.b2z"), mode="r")
    want = tree["/a/big"][5:9, 10:300:7]
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(r.content)[()], want)


def test_plain_http_gathers_coordinates_in_an_hdf5_leaf(url):
    r = httpx.get(
        f"{url}/api/fetch/@public/dir/data.h5/grp/big",
        params={"indices": "[[3, 0, 299], [5, 399, 0]]"},
        headers={"Accept": "application/x-npy"},
    )
    assert r.status_code == 200
    got = np.load(io.BytesIO(r.content))
    np.testing.assert_array_equal(got, BIG[[3, 0, 299], [5, 399, 0]])


def test_chunks_of_a_b2z_leaf_rebuild_it(url):
    with cat2.Client(url) as client:
        meta = client.get_info("@public/dir/tree.b2z/a/big")
    array = blosc2.uninit(BIG.shape, BIG.dtype, chunks=meta["chunks"], blocks=meta["blocks"])
    for nchunk in range(array.schunk.nchunks):
        r = httpx.get(f"{url}/api/chunk/@public/dir/tree.b2z/a/big", params={"nchunk": nchunk})
        assert r.status_code == 200
        array.schunk.update_chunk(nchunk, r.content)
    np.testing.assert_array_equal(array[()], BIG)


@pytest.mark.parametrize("path, values", LEAVES.values(), ids=LEAVES.keys())
def test_a_leaf_downloads_as_a_b2nd_of_its_own(url, path, values):
    r = httpx.get(f"{url}/api/download/@public/{path}")
    assert r.status_code == 200
    assert path.rsplit("/", 1)[-1] + ".b2nd" in r.headers["content-disposition"]
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(r.content)[()], values)


def test_the_hdf5_attributes_of_a_leaf_are_its_vlmeta(url):
    meta = httpx.get(f"{url}/api/info/@public/dir/data.h5/grp/big").json()
    assert meta["schunk"]["vlmeta"]["unit"] == "m"


def test_our_client_gives_groups_that_iterate_and_index(url):
    with cat2.Client(url) as client:
        tree = client.get("@public/dir/tree.b2z")
        assert isinstance(tree, cat2.Group)
        assert list(tree) == TREE_LEAVES and len(tree) == 4
        assert "a/small" in tree and "nope" not in tree
        inner = tree["a"]
        assert isinstance(inner, cat2.Group) and list(inner) == ["b/cube", "big", "small"]
        np.testing.assert_array_equal(tree["a/b/cube"][1], CUBE[1])
        np.testing.assert_array_equal(inner["b"]["cube"][2:, 1], CUBE[2:, 1])
        h5 = client.get("@public").__getitem__("dir/data.h5")
        assert isinstance(h5, cat2.Group) and list(h5["grp"]) == ["big", "sub/cube"]


def test_a_container_file_still_downloads_as_it_is_stored(url, public):
    r = httpx.get(f"{url}/api/download/@public/dir/tree.b2z")
    assert r.status_code == 200
    assert r.content == (public / "dir" / "tree.b2z").read_bytes()


@pytest.mark.parametrize(
    "path",
    ["dir/tree.b2z/a/nope", "dir/tree.b2z/zz/top", "dir/data.h5/grp/nope"],
)
def test_a_missing_member_is_404(url, path):
    for route in ("info", "fetch", "list"):
        r = httpx.get(f"{url}/api/{route}/@public/{path}")
        assert r.status_code == 404, (route, r.text)
        assert r.json()["detail"]


@pytest.mark.parametrize("route", ["fetch", "chunk", "download"])
def test_a_group_is_not_fetched_but_told_why(url, route):
    r = httpx.get(f"{url}/api/{route}/@public/dir/tree.b2z/a", params={"nchunk": 0})
    assert r.status_code == 400
    assert "is a group" in r.json()["detail"]


@pytest.mark.parametrize("path", ["dir/bad.b2z/x", "dir/bad.h5/x"])
def test_a_corrupt_container_fails_only_its_own_request(url, path):
    for route in ("info", "fetch", "list"):
        r = httpx.get(f"{url}/api/{route}/@public/{path}")
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text)
        assert r.json()["detail"]
    # The subscriber, its HDF5 workers included, carries on.
    r = httpx.get(f"{url}/api/fetch/@public/dir/data.h5/top")
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(r.content)[()], np.arange(7))


def test_a_corrupt_container_is_described_and_listed_as_a_plain_file(url):
    assert httpx.get(f"{url}/api/list/@public/dir/bad.h5").json() == ["bad.h5"]
    meta = httpx.get(f"{url}/api/info/@public/dir/bad.h5").json()
    assert "kind" not in meta and meta["size"] > 0


def test_the_newest_upstream_client_browses_our_containers(url):
    got = run_driver("containers_2026.py", url)
    assert got["tree_type"] == got["inner_type"] == got["h5_type"] == "Group"
    assert got["tree_leaves"] == TREE_LEAVES and got["tree_len"] == 4 and got["has_small"]
    assert got["inner_leaves"] == ["b/cube", "big", "small"]
    assert got["h5_leaves"] == ["grp/big", "grp/sub/cube", "top"]
    np.testing.assert_array_equal(got["small"], SMALL)
    np.testing.assert_array_equal(got["big_box"], BIG[5:9, 10:20])
    np.testing.assert_array_equal(got["cube_row"], CUBE[1])
    np.testing.assert_array_equal(got["h5_big_box"], BIG[100:103, 7:11])
    np.testing.assert_array_equal(got["h5_cube"], CUBE)


def test_leaves_are_operands_of_expressions(url):
    with cat2.Client(url, USER) as client:
        operands = {
            "t": "@public/dir/tree.b2z/a/big",
            "h": "@public/dir/data.h5/grp/big",
            "d": "@public/dir/dict.b2z/q/r",
        }
        path = client.lazyexpr("from-containers", "t + h * 2 - d", operands)
        got = client.get(path)[10:20, 30:40]
        np.testing.assert_array_equal(got, (BIG + BIG * 2 - BIG)[10:20, 30:40])
        computed = client.lazyexpr("sum-computed", "t + h", operands, compute=True)
        np.testing.assert_array_equal(client.get(computed)[:], BIG * 2)


@pytest.mark.parametrize(
    "operand, words",
    [
        ("@public/dir/tree.b2z/a", "not an array"),
        ("@public/dir/bad.b2z/x", "not a readable"),
        ("@public/dir/tree.b2z/a/nope", "not found"),
    ],
)
def test_a_group_or_broken_container_is_refused_as_operand(url, operand, words):
    with cat2.Client(url, USER) as client:
        with pytest.raises(cat2.APIError) as caught:
            client.lazyexpr("bad-operand", "x + 1", {"x": operand})
    assert caught.value.status_code == 400
    assert words in caught.value.detail


def test_a_container_group_still_downloads_as_its_file(url, public, tmp_path):
    with cat2.Client(url) as client:
        tree = client.get("@public/dir/tree.b2z")
        local = tree.download(tmp_path / "copy.b2z")
        assert pathlib.Path(local).read_bytes() == (public / "dir" / "tree.b2z").read_bytes()
        with pytest.raises(AttributeError):
            tree.no_such_operation  # noqa: B018 - the lookup is what is tested


def test_a_whole_container_is_fetched_as_stored_and_a_slice_of_it_refused(url, public):
    r = httpx.get(f"{url}/api/fetch/@public/dir/dict.b2z")
    assert r.status_code == 200
    assert r.content == (public / "dir" / "dict.b2z").read_bytes()
    r = httpx.get(f"{url}/api/fetch/@public/dir/dict.b2z", params={"slice_": "0:2"})
    assert r.status_code == 400 and "is a group" in r.json()["detail"]


def test_a_folder_named_like_a_container_stays_a_folder(url):
    assert httpx.get(f"{url}/api/list/@public/results.h5").json() == ["inner.b2z", "run.b2nd"]
    with cat2.Client(url) as client:
        np.testing.assert_array_equal(client.get("@public/results.h5/run.b2nd")[:], SMALL)
        assert list(client.get("@public/results.h5/inner.b2z")) == ["g/v"]
        leaf = client.get("@public/results.h5/inner.b2z/g/v")
        np.testing.assert_array_equal(leaf[2:4], SMALL[2:4])
