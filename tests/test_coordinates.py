"""Coordinates (NumPy integer-array indexing) fetched in one round trip, as NumPy answers them.

A real subscriber served from a thread of this process, its @public holding real
Blosc2 files; reads through our client and through plain HTTP (`indices`, as the
newest upstream client sends it, and the same parameters POSTed as JSON).
"""

from __future__ import annotations

import json

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2.common.coordinates import encode_indices
from caterva2.subscriber.api_data import FetchResource
from caterva2.subscriber.coordinate_gather import gather
from caterva2.subscriber.root_registry import RootRegistry

from .app_support import in_process_subscriber, serving
from .inprocess_publisher import ROOT, followed_root
from .upstream_client import run_driver

VALUES = np.arange(7 * 11 * 13, dtype=np.float64).reshape(7, 11, 13)
WIDE = np.arange(200 * 300 * 3, dtype=np.int32).reshape(200, 300, 3)
"""Chunks of 10 x 20 x 3: points far apart touch few of the 300 chunks their box spans."""


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("coordinates") / "state"
    public = statedir / "public"
    public.mkdir(parents=True)
    blosc2.asarray(VALUES, urlpath=str(public / "cube.b2nd"), chunks=(3, 4, 5), blocks=(2, 2, 3))
    blosc2.asarray(VALUES[0, 0], urlpath=str(public / "line.b2nd"), chunks=(4,))
    blosc2.asarray(WIDE, urlpath=str(public / "wide.b2nd"), chunks=(10, 20, 3), blocks=(5, 10, 3))
    blosc2.SChunk(data=b"bytes, not an array" * 10, urlpath=str(public / "raw.b2frame"))
    with serving(statedir, login=False) as base:
        yield base


KEYS = {
    "two points": ([0, 6], [1, 10]),
    "points in 3-D": ([0, 6, 3], [1, 10, 4], [12, 0, 5]),
    "repeated, unsorted, negative": ([3, 1, 3, -1],),
    "list then slice": ([4, 0, 2], slice(2, 5)),
    "slice then list": (slice(1, 3), [0, -1]),
    "list and integer": ([0, 2], 1),
    "lists apart (axes move first)": ([0, 1], slice(None), [2, 3]),
    "boolean mask": (np.array([True, False, True, False, False, False, True]),),
    "empty list": ([],),
    "broadcast scalar list": ([5], [1, 2, 3]),
}


SPARSE = {
    "two far points": ([0, 199], [0, 299]),
    "far points, then a slice": ([3, 150, 3, 199], [7, 250, 8, 0], slice(1, 3)),
    "points apart (axes move first)": ([0, 190, 45], slice(100, 290), [2, 0, 1]),
    "an integer between lists": ([5, 180], 7, [2, 0]),
    "one list, repeated and unsorted": ([199, 0, 100, 0],),
    "list after a slice": (slice(0, 2), [0, 299, 150]),
    "many scattered points": (
        np.random.default_rng(5).integers(0, 200, 500),
        np.random.default_rng(6).integers(0, 300, 500),
    ),
}


CASES = [("cube.b2nd", VALUES, key) for key in KEYS.values()]
CASES += [("wide.b2nd", WIDE, key) for key in SPARSE.values()]  # sparse: read chunk by chunk


@pytest.mark.parametrize("name,values,key", CASES, ids=[*KEYS, *(f"sparse: {k}" for k in SPARSE)])
def test_coordinates_answer_what_numpy_answers(url, name, values, key):
    with cat2.Client(url) as client:
        got = client.get(f"@public/{name}")[key]
    want = values[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def boxes_read(tmp_path, indices: list) -> tuple[np.ndarray, list]:
    """The values `indices` gathers from a local `wide.b2nd`, and the boxes read for them."""
    public = tmp_path / "public"
    public.mkdir()
    blosc2.asarray(WIDE, urlpath=str(public / "wide.b2nd"), chunks=(10, 20, 3))
    app = in_process_subscriber(tmp_path, login=False)
    try:
        dataset = RootRegistry(app.subscriber.roots).dataset("@public/wide.b2nd", None)
        boxes = []
        fetch = dataset.fetch  # the real read, recorded on its way
        dataset.fetch = lambda key, *rest: boxes.append(key) or fetch(key, *rest)
        return gather(dataset, json.dumps(indices)).values, boxes
    finally:
        app.subscriber.close()


def test_sparse_coordinates_read_the_boxes_of_their_chunks_only(tmp_path):
    got, boxes = boxes_read(tmp_path, [[0, 199, 5], [0, 299, 1]])
    np.testing.assert_array_equal(got, WIDE[[0, 199, 5], [0, 299, 1]])
    assert sorted(boxes, key=str) == [
        (slice(0, 6), slice(0, 2)),
        (slice(199, 200), slice(299, 300)),
    ]


def test_dense_coordinates_read_their_box_once(tmp_path):
    rows = list(range(0, 30, 2))
    got, boxes = boxes_read(tmp_path, [rows])
    np.testing.assert_array_equal(got, WIDE[rows])
    assert boxes == [(slice(0, 29),)]


def test_coordinate_lists_that_do_not_broadcast_are_a_400(url):
    resp = httpx.get(
        f"{url}/api/fetch/@public/wide.b2nd", params={"indices": "[[0, 1], [0, 1, 2]]"}
    )
    assert resp.status_code == 400 and "do not broadcast" in resp.json()["detail"]


def test_one_axis_coordinates_on_a_1d_array(url):
    with cat2.Client(url) as client:
        np.testing.assert_array_equal(client.fetch("@public/line.b2nd", [12, 0, 7]), [12, 0, 7])


def test_plain_http_takes_the_upstream_spelling_and_a_post_body(url):
    indices = json.dumps([[0, 6], "1:4", None])
    got = httpx.get(f"{url}/api/fetch/@public/cube.b2nd", params={"indices": indices})
    assert got.status_code == 200
    np.testing.assert_array_equal(blosc2.ndarray_from_cframe(got.content)[:], VALUES[[0, 6], 1:4])
    posted = httpx.post(f"{url}/api/fetch/@public/cube.b2nd", json={"indices": indices})
    assert posted.status_code == 200 and posted.content == got.content


def test_many_coordinates_go_in_a_post_body(url):
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 7, 3000), rng.integers(0, 11, 3000)
    assert len(encode_indices((rows, cols))) > 4000  # too long for a URL: POSTed
    with cat2.Client(url) as client:
        got = client.get("@public/cube.b2nd")[rows, cols]
    np.testing.assert_array_equal(got, VALUES[rows, cols])


BAD = {
    "not JSON": ("[0, 1", "not JSON"),
    "not a list": ('{"a": 1}', "JSON list"),
    "too many axes": ("[0, 0, 0, 0]", "4 entries for a dataset of 3 dimensions"),
    "out of range": ("[[0, 7]]", "7 is out of range on axis 0 (size 7)"),
    "negative out of range": ("[null, [-12]]", "-12 is out of range on axis 1 (size 11)"),
    "floats": ("[[0.5]]", "must be integers"),
    "nested lists": ("[[[0]]]", "must be integers"),
    "bad range": ('["1:2:3"]', "is not start:stop"),
    "boolean": ("[true]", "Invalid indices"),
}


@pytest.mark.parametrize("indices,said", BAD.values(), ids=BAD.keys())
def test_bad_coordinates_are_a_400_saying_why(url, indices, said):
    resp = httpx.get(f"{url}/api/fetch/@public/cube.b2nd", params={"indices": indices})
    assert resp.status_code == 400 and said in resp.json()["detail"], resp.text


def test_coordinates_go_alone_and_in_arrays_only(url):
    both = {"indices": "[[0]]", "slice_": "0:1"}
    resp = httpx.get(f"{url}/api/fetch/@public/cube.b2nd", params=both)
    assert resp.status_code == 400 and "cannot go with slice_" in resp.json()["detail"]
    resp = httpx.get(f"{url}/api/fetch/@public/raw.b2frame", params={"indices": "[[0]]"})
    assert resp.status_code == 400 and "arrays of one dimension or more" in resp.json()["detail"]
    resp = httpx.post(f"{url}/api/fetch/@public/cube.b2nd", json={"indices": [[0]]})
    assert resp.status_code == 422  # the body's values are the query's strings


def test_the_client_refuses_what_has_no_spelling():
    with pytest.raises(IndexError, match="flat list of integers"):
        encode_indices(([[0, 1], [1, 2]],))
    with pytest.raises(IndexError, match="step 1"):
        encode_indices(([0, 1], slice(0, 4, 2)))
    assert encode_indices((slice(1, 3), 2)) is None  # no list: an ordinary slice_


def test_coordinates_on_a_remote_root_read_only_the_chunks_they_touch(tmp_path):
    rows, cols = [20, 17, 20, 23], [5, 32767, 0, 1000]
    with followed_root(tmp_path, lambda _rootdir: None) as found:
        with cat2.Client(found.url) as client:
            got = client.get(f"{ROOT}/a.b2nd")[rows, cols]
        np.testing.assert_array_equal(got, found.publisher.data[rows, cols])
        # One chunk a row: the rows of the points only.
        assert found.transfers("a.b2nd") == {17, 20, 23}


def test_the_newest_upstream_client_gathers_coordinates_from_us(url):
    # The client alone, as its users install it (no server extras: a lighter build).
    got = run_driver("coordinates_2026.py", url)
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 7, 3000), rng.integers(0, 11, 3000)
    np.testing.assert_array_equal(got["points"], VALUES[[0, 6], [1, 10]])
    np.testing.assert_array_equal(got["mixed"], VALUES[[4, 0, 2], 2:5])
    np.testing.assert_array_equal(got["mask"], VALUES[[0, 2, 6]])
    np.testing.assert_array_equal(got["many"], VALUES[rows, cols])


def test_a_fetch_body_too_big_is_refused_sent_whole_or_chunked(url, monkeypatch):
    big = json.dumps({"indices": json.dumps([list(range(7))])}).encode()
    monkeypatch.setattr(FetchResource, "MAX_BODY", len(big) - 1)
    resp = httpx.post(f"{url}/api/fetch/@public/cube.b2nd", content=big)
    assert resp.status_code == 413 and "at most" in resp.json()["detail"]

    def chunked():  # no Content-Length: waitress counts the body as it arrives
        yield big[:10]
        yield big[10:]

    resp = httpx.post(f"{url}/api/fetch/@public/cube.b2nd", content=chunked())
    assert resp.status_code == 413 and "at most" in resp.json()["detail"]
