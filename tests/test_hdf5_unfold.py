"""HDF5 files in local roots: listing, info, `/api/unfold` and reading the unfolded datasets."""

from __future__ import annotations

import io

import blosc2
import h5py
import hdf5plugin  # noqa: F401 - Blosc2-filtered datasets decode
import numpy as np
import pytest

from .http_helpers import anonymous, login, unique
from .services import SubscriberProcess
from .test_hdf5_pubsub import SLICES, expected

ATTRS_VLMETA = {
    "_ftype": "hdf5",
    "_dsetname": "attrs",
    "Arr": [[0, 1], [2, 3]],
    "ArrT": [[0, 1], [2, 3]],
    "Bin": "foo",
    "BinT": "foo",
    "Int": 42,
    "IntT": 42,
    "NilBin": "",
    "NilInt": None,
    "Str": "bar",
}


@pytest.fixture(scope="module")
def client(sub):
    http = login(sub.urlbase, *sub.user)
    yield http
    http.close()


def upload(client, path: str, data: bytes) -> str:
    name = path.rsplit("/", 1)[-1]
    resp = client.post(f"/api/upload/{path}", files={"file": (name, io.BytesIO(data))})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def unfolded(client, examples_dir) -> str:
    """`@personal/<folder>/root-example`, unfolded once for the module."""
    folder = f"@personal/{unique('unfold')}"
    data = (examples_dir / "root-example.h5").read_bytes()
    assert upload(client, f"{folder}/root-example.h5", data) == f"{folder}/root-example.h5"
    resp = client.post(f"/api/unfold/{folder}/root-example.h5")
    assert resp.status_code == 200 and resp.json() == "root-example", resp.text
    return f"{folder}/root-example"


def frame(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return blosc2.ndarray_from_cframe(resp.content)[()]


def test_uploaded_hdf5_is_listed_and_has_info(client, unfolded):
    folder = unfolded.rsplit("/", 1)[0]
    assert "root-example.h5" in client.get(f"/api/list/{folder}").json()
    info = client.get(f"/api/info/{folder}/root-example.h5").json()
    # Browsable as a folder of its datasets; the older contract's keys stay as they were.
    assert {"mtime", "size"} <= set(info) and isinstance(info["mtime"], float)
    assert info["kind"] == "group" and info["nfiles"] > 0


def test_unfold_mirrors_groups_and_datasets(client, unfolded):
    names = set(client.get(f"/api/list/{unfolded}").json())
    datasets = {p for p in SLICES} | {"arrays/empty.b2nd"}
    groups = {"!_attrs_.json", "arrays/!_attrs_.json", "unsupported/!_attrs_.json"}
    assert names == datasets | groups
    attrs = client.get(f"/api/download/{unfolded}/!_attrs_.json")
    assert attrs.status_code == 200 and attrs.content.strip() == b"{}"


def test_unfolded_info_is_the_shell_with_hdf5_attributes(client, unfolded):
    info = client.get(f"/api/info/{unfolded}/attrs.b2nd").json()
    assert info["shape"] == [] and info["dtype"] == "int64"
    assert info["schunk"]["vlmeta"] == ATTRS_VLMETA
    assert info["schunk"]["cbytes"] == 0 and info["schunk"]["cratio"] == 0.0
    cube = client.get(f"/api/info/{unfolded}/arrays/3d-blosc2.b2nd").json()
    assert cube["chunks"] == [4, 10, 10] and cube["blocks"] == [4, 10, 10]
    assert cube["schunk"]["cparams"]["codec"] == 1 and cube["schunk"]["cparams"]["clevel"] == 7
    assert cube["schunk"]["cparams"]["filters"][-1] == 2  # BITSHUFFLE, as in the file
    assert cube["schunk"]["vlmeta"] == {"_ftype": "hdf5", "_dsetname": "arrays/3d-blosc2"}


def test_unfolded_slices_equal_h5py(client, unfolded, examples_dir):
    with h5py.File(examples_dir / "root-example.h5", "r") as f:
        for relpath, slices in SLICES.items():
            for slice_ in slices:
                params = {"slice_": slice_} if slice_ else {}
                got = frame(client.get(f"/api/fetch/{unfolded}/{relpath}", params=params))
                want = expected(f, relpath, slice_)
                assert np.asarray(got).dtype == np.asarray(want).dtype, (relpath, slice_)
                np.testing.assert_array_equal(got, want, err_msg=f"{relpath}[{slice_}]")
        whole = blosc2.ndarray_from_cframe(
            client.get(f"/api/download/{unfolded}/arrays/2d-gzip.b2nd").content
        )
        np.testing.assert_array_equal(whole[()], f["arrays/2d-gzip"][()])
        assert "_ftype" not in whole.schunk.vlmeta


def test_unfolded_blosc2_chunks_are_the_stored_ones(client, unfolded, examples_dir):
    with h5py.File(examples_dir / "root-example.h5", "r") as f:
        dset = f["arrays/3d-blosc2"]
        for nchunk in range(3):
            raw = dset.id.read_direct_chunk((4 * nchunk, 0, 0))[1]
            stored = blosc2.schunk_from_cframe(raw, copy=True).get_chunk(0)
            resp = client.get(
                f"/api/chunk/{unfolded}/arrays/3d-blosc2.b2nd", params={"nchunk": nchunk}
            )
            assert resp.content == stored
    out_of_range = client.get(f"/api/chunk/{unfolded}/arrays/3d-blosc2.b2nd", params={"nchunk": 3})
    assert out_of_range.status_code == 400


def test_fields_and_filters_of_an_unfolded_table(client, examples_dir):
    folder = f"@personal/{unique('table')}"
    upload(client, f"{folder}/ex-noattr.h5", (examples_dir / "ex-noattr.h5").read_bytes())
    assert client.post(f"/api/unfold/{folder}/ex-noattr.h5").json() == "ex-noattr"
    path = f"{folder}/ex-noattr/detector/table.b2nd"
    with h5py.File(examples_dir / "ex-noattr.h5", "r") as f:
        table = f["detector/table"][()]
        title = f["columns/TDC"].attrs["TITLE"].decode()
    names = frame(client.get(f"/api/fetch/{path}", params={"field": "name", "slice_": "2:6"}))
    np.testing.assert_array_equal(names, table["name"][2:6])
    rows = frame(client.get(f"/api/fetch/{path}", params={"filter": "grid_i < 5"}))
    np.testing.assert_array_equal(rows, table[table["grid_i"] < 5])
    info = client.get(f"/api/info/{folder}/ex-noattr/columns/TDC.b2nd").json()
    assert info["schunk"]["vlmeta"]["TITLE"] == title


def test_unfold_errors_are_clear_and_harmless(sub, client, examples_dir):
    folder = f"@personal/{unique('bad')}"
    missing = client.post(f"/api/unfold/{folder}/nope.h5")
    assert missing.status_code == 400
    assert missing.json()["detail"] == "Target file does not exist or is not a file"
    upload(client, f"{folder}/a.b2nd", blosc2.asarray(np.arange(3)).to_cframe())
    not_h5 = client.post(f"/api/unfold/{folder}/a.b2nd")
    assert not_h5.json()["detail"] == "Target file must be a zip, tar or hdf5 container"
    assert anonymous(sub.urlbase).post("/api/unfold/@public/root-example.h5").status_code == 401
    upload(client, f"{folder}/corrupt.h5", b"\x89HDF\r\n\x1a\n" + bytes(4000))
    corrupt = client.post(f"/api/unfold/{folder}/corrupt.h5")
    assert corrupt.status_code == 400 and "not a readable HDF5 file" in corrupt.json()["detail"]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("only/groups").attrs["x"] = 1
    upload(client, f"{folder}/nodata.h5", buf.getvalue())
    nodata = client.post(f"/api/unfold/{folder}/nodata.h5")
    assert nodata.json()["detail"] == "No arrays found in HDF5 file"
    assert client.get("/api/roots").status_code == 200  # still up


def test_truncated_file_and_external_links(client, examples_dir, tmp_path):
    folder = f"@personal/{unique('links')}"
    source = tmp_path / "linked.h5"
    with h5py.File(source, "w") as f:
        f["local"] = np.arange(10)
        f["outside"] = h5py.ExternalLink("/etc/other.h5", "/data")
    upload(client, f"{folder}/linked.h5", source.read_bytes())
    assert client.post(f"/api/unfold/{folder}/linked.h5").json() == "linked"
    assert client.get(f"/api/list/{folder}/linked").json() == ["!_attrs_.json", "local.b2nd"]
    np.testing.assert_array_equal(
        frame(client.get(f"/api/fetch/{folder}/linked/local.b2nd")), np.arange(10)
    )
    data = (examples_dir / "root-example.h5").read_bytes()
    upload(client, f"{folder}/cut.h5", data[: len(data) // 2])
    cut = client.post(f"/api/unfold/{folder}/cut.h5")
    assert cut.status_code == 400 and "cut.h5" in cut.json()["detail"]


def test_reads_after_the_hdf5_file_is_gone_or_outside(client, examples_dir):
    folder = f"@personal/{unique('gone')}"
    upload(client, f"{folder}/root-example.h5", (examples_dir / "root-example.h5").read_bytes())
    client.post(f"/api/unfold/{folder}/root-example.h5")
    client.post(f"/api/remove/{folder}/root-example.h5")
    gone = client.get(f"/api/fetch/{folder}/root-example/scalar.b2nd")
    assert gone.status_code == 404 and "missing" in gone.json()["detail"]
    assert client.get(f"/api/info/{folder}/root-example/scalar.b2nd").status_code == 200
    shell = blosc2.zeros((3,), dtype=np.int64)
    shell.vlmeta["_ftype"] = "hdf5"
    shell.vlmeta["_dsetname"] = "a/b/c/d/e/f/g"
    upload(client, f"{folder}/sneaky.b2nd", shell.to_cframe())
    sneaky = client.get(f"/api/fetch/{folder}/sneaky.b2nd")
    assert sneaky.status_code == 400 and "outside its root" in sneaky.json()["detail"]


def test_unfold_over_quota_is_refused_and_cleaned(tmp_path, examples_dir):
    statedir = tmp_path / "state"
    statedir.mkdir()
    # The file (~118 KB) fits in the quota; its unfolded tree (~100 KB more) does not.
    server = SubscriberProcess(statedir, conf={"login": True, "quota": "170K"})
    server.add_user(*server.user)
    server.start()
    try:
        http = login(server.urlbase, *server.user)
        big = io.BytesIO()
        with h5py.File(big, "w") as f:
            for i in range(300):  # many small shells: the tree outgrows the quota
                f.create_dataset(f"d{i}", data=np.arange(3))
        upload(http, "@personal/many.h5", big.getvalue())
        resp = http.post("/api/unfold/@personal/many.h5")
        assert resp.status_code == 400
        assert resp.json()["detail"] == "Unfold failed because quota limit has been exceeded."
        assert http.get("/api/list/@personal").json() == ["many.h5"]
    finally:
        server.stop()
