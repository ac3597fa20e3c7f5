"""cat2import and cat2export: HDF5 → a tree of Blosc2 files → HDF5, value for value."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys

import blosc2
import h5py
import hdf5plugin  # noqa: F401 - Blosc2-filtered datasets decode
import numpy as np

from caterva2 import hdf5_tools
from caterva2.common import hdf5_attrs, hdf5_base

from .hdf5_support import assert_same_h5, make_all_types


def run_tool(command: str, *args) -> subprocess.CompletedProcess:
    """A tool as its own process (`python -m caterva2.hdf5_tools import|export ...`)."""
    return subprocess.run(
        [sys.executable, "-m", "caterva2.hdf5_tools", command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_round_trip_of_every_supported_type_is_identical(tmp_path):
    source = make_all_types(tmp_path / "all.h5")
    assert hdf5_tools.import_main([str(source), str(tmp_path / "tree"), "-q"]) == 0
    assert hdf5_tools.export_main([str(tmp_path / "tree"), str(tmp_path / "back.h5"), "-q"]) == 0
    assert_same_h5(source, tmp_path / "back.h5")
    with h5py.File(tmp_path / "back.h5", "r") as f:
        filters = f["numbers/float-f8"].id.get_create_plist().get_filter(0)
        assert filters[0] == hdf5_base.BLOSC2_FILTER_ID  # written back with Blosc2


def test_import_writes_groups_as_folders_and_attributes_as_vlmeta(tmp_path):
    source = make_all_types(tmp_path / "all.h5")
    tree = tmp_path / "tree"
    assert hdf5_tools.import_main([str(source), str(tree), "-q"]) == 0
    assert (tree / "empty-group" / "!_attrs_.json.b2").is_file()
    holder = blosc2.open(str(tree / "attrs" / "holder.b2nd"))
    assert holder.vlmeta["int"] == 42 and holder.vlmeta["str"] == "text"
    assert holder.vlmeta["list"] == [[1, 2], [3, 4]] and holder.vlmeta["empty-int"] is None
    cube = blosc2.open(str(tree / "blosc2" / "cube.b2nd"))
    with h5py.File(source, "r") as f:
        np.testing.assert_array_equal(cube[()], f["blosc2/cube"][()])
        raw = f["blosc2/cube"].id.read_direct_chunk((8, 0, 16))[1]
        stored = blosc2.schunk_from_cframe(raw, copy=True).get_chunk(0)
    assert cube.chunks == (8, 30, 16)
    assert cube.schunk.get_chunk(1 * 3 + 1) == stored  # copied as stored, not recompressed
    plain, _typed, links = hdf5_attrs.read_group_file(tree / "links" / "!_attrs_.json.b2")
    assert plain == {} and links == {"to-int": "/numbers/int-i1", "dangling": "/nowhere"}
    root_attrs = (tree / "!_attrs_.json.b2").read_bytes()
    assert blosc2.schunk_from_cframe(root_attrs)[:].startswith(b"{")


def test_examples_round_trip_and_unsupported_datasets_are_reported(tmp_path, examples_dir):
    for name in ("ex-noattr.h5", "root-example.h5"):
        tree = tmp_path / name.removesuffix(".h5")
        result = run_tool("import", examples_dir / name, tree)
        back = tmp_path / f"back-{name}"
        assert run_tool("export", tree, back).returncode == 0
        if name == "ex-noattr.h5":
            assert result.returncode == 0, result.stderr
            assert_same_h5(examples_dir / name, back)
            continue
        assert result.returncode == 1
        assert "cat2import: error: /unsupported/vlstring: variable-length strings" in result.stderr
        assert "/unsupported/too-many-dimensions: 23 dimensions" in result.stderr
        assert "Traceback" not in result.stderr
        supported = tmp_path / "supported.h5"
        shutil.copyfile(examples_dir / name, supported)
        with h5py.File(supported, "a") as f:
            del f["unsupported/vlstring"], f["unsupported/too-many-dimensions"]
        assert_same_h5(supported, back)


def test_corrupt_truncated_and_missing_inputs_give_clear_errors(tmp_path, examples_dir):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5 at all" * 10)
    result = run_tool("import", garbage, tmp_path / "out")
    assert result.returncode == 1 and "garbage.h5 is not a readable HDF5 file" in result.stderr
    data = (examples_dir / "root-example.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    result = run_tool("import", cut, tmp_path / "out2")
    assert result.returncode == 1 and "cut.h5" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_tool("import", tmp_path / "missing.h5", tmp_path / "out3")
    assert result.returncode == 1 and "no such file" in result.stderr
    result = run_tool("export", tmp_path / "missing-dir", tmp_path / "x.h5")
    assert result.returncode == 1 and "is not a directory" in result.stderr


def test_external_links_are_errors_and_the_rest_is_imported(tmp_path):
    source = tmp_path / "ext.h5"
    with h5py.File(source, "w") as f:
        f["data"] = np.arange(6)
        f["elsewhere"] = h5py.ExternalLink("other.h5", "/data")
    result = run_tool("import", source, tmp_path / "tree")
    assert result.returncode == 1
    assert "/elsewhere: external link to other.h5:/data points outside the file" in result.stderr
    np.testing.assert_array_equal(
        blosc2.open(str(tmp_path / "tree" / "data.b2nd"))[:], np.arange(6)
    )


def test_export_of_foreign_blosc2_trees(tmp_path, examples_dir):
    tree = tmp_path / "tree"
    shutil.copytree(examples_dir, tree, ignore=shutil.ignore_patterns("*.py", "*.h5"))
    result = run_tool("export", tree, tmp_path / "out.h5")
    assert result.returncode == 1
    assert "ds-sc-attr.b2nd: cannot be exported: <U6 (Unicode) has no HDF5 type" in result.stderr
    assert "README.md: not a Blosc2 array, left out" in result.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["dir1/ds-2d"][()], np.arange(200).reshape(10, 20))
        assert f["ds-1d-fields"].dtype.names == ("a", "b", "c", "d")
        assert "ds-sc-attr" not in f


def test_progress_counts_every_byte_both_ways(tmp_path, monkeypatch):
    source = tmp_path / "p.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("a", data=np.arange(100_000), chunks=(10_000,))
        f.create_dataset("b", data=np.ones((300, 70), dtype="f4"), compression="gzip")
    counted: list[list[int]] = []

    @contextlib.contextmanager
    def spy(total, desc, quiet):
        counted.append([total])
        yield counted[-1].append

    monkeypatch.setattr(hdf5_tools, "progress_bar", spy)
    assert hdf5_tools.import_main([str(source), str(tmp_path / "tree")]) == 0
    assert hdf5_tools.export_main([str(tmp_path / "tree"), str(tmp_path / "back.h5")]) == 0
    expected = 100_000 * 8 + 300 * 70 * 4
    assert [(c[0], sum(c[1:])) for c in counted] == [(expected, expected)] * 2
