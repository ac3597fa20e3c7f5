"""Telling a CTable `.b2z` from a TreeStore or DictStore one, on files blosc2 wrote."""

from __future__ import annotations

from dataclasses import dataclass

import blosc2
import numpy as np
import pytest

from caterva2.common.b2z_files import b2z_kind, table_at, zip_members
from caterva2.common.errors import BadRequest


@dataclass
class Row:
    a: int = blosc2.field(blosc2.int64())
    b: float = blosc2.field(blosc2.float64())


def test_a_ctable_file_is_a_table_and_stores_are_groups(tmp_path):
    table = blosc2.CTable(
        Row, new_data=[(i, i / 2) for i in range(10)], urlpath=str(tmp_path / "t.b2z"), mode="w"
    )
    table.close()
    with blosc2.TreeStore(str(tmp_path / "tree.b2z"), mode="w") as tree:
        tree["/a/x"] = np.arange(10)
    with blosc2.DictStore(str(tmp_path / "dict.b2z"), mode="w") as store:
        store["x"] = np.arange(5)
    assert b2z_kind(tmp_path / "t.b2z") == "ctable"
    assert b2z_kind(tmp_path / "tree.b2z") == "group"
    assert b2z_kind(tmp_path / "dict.b2z") == "group"


def test_a_table_nested_in_a_tree_is_found_by_its_prefix(tmp_path):
    table = blosc2.CTable(Row, new_data=[(1, 2.0)], urlpath=str(tmp_path / "t.b2z"), mode="w")
    table.close()
    members = zip_members(tmp_path / "t.b2z")
    nested = {f"dir/tbl/{name}" for name in members}
    assert table_at(nested, "dir/tbl/") and not table_at(nested)


def test_a_file_that_is_not_a_zip_is_a_bad_request(tmp_path):
    (tmp_path / "fake.b2z").write_bytes(b"not a zip at all")
    with pytest.raises(BadRequest, match="not a readable .b2z"):
        b2z_kind(tmp_path / "fake.b2z")


def test_a_file_replaced_by_another_kind_is_told_anew(tmp_path):
    path = tmp_path / "x.b2z"
    with blosc2.TreeStore(str(path), mode="w") as tree:
        tree["/a"] = np.arange(3)
    assert b2z_kind(path) == "group"
    table = blosc2.CTable(Row, new_data=[(1, 2.0)], urlpath=str(tmp_path / "t.b2z"), mode="w")
    table.close()
    (tmp_path / "t.b2z").replace(path)  # another inode: another version
    assert b2z_kind(path) == "ctable"
