"""CTable `.b2z` files of a directory root, served as their member arrays plus a description.

A table `dir/t.b2z` whose columns are all plain 1-D arrays is announced as its
members, as a group container is (`b2z_groups`): each column `dir/t.b2z/_cols/<c>`
and the live-row mask `dir/t.b2z/_valid_rows`, read in place from the zip, never
recompressed.  The mask's metadata also carries the table's description
(`TABLE_KEY`): what a local root answers as the table's info (schema, row count,
column order...) and which member holds each column, so a subscriber can
describe the table and query it over the chunks it caches.  A table with other
columns (strings, lists, nullable ones) has no description and stays a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2

from ..common import b2meta
from ..common.b2z_files import TABLE_VALID_ROWS as VALID_ROWS
from ..common.errors import BadRequest
from ..common.paths import check_remote_path

COLUMNS_DIR = "_cols/"


def column_member(name: str) -> str:
    """The member holding a column (blosc2's own layout: `_cols/<encoded name>`)."""
    from blosc2.ctable_storage import _column_name_to_relpath  # blosc2's mapping, not ours

    return COLUMNS_DIR + _column_name_to_relpath(name)


def _plain_members(store: Any, names: list[str]) -> dict[str, str] | None:
    """Column name -> member, when every column is one plain 1-D array as long as the mask."""
    keys = {key.strip("/") for key in store.keys()}
    members = {name: column_member(name) for name in names}
    stored_columns = {key for key in keys if key.startswith(COLUMNS_DIR)}
    # A sidecar (null mask, string data, dictionary) means a column that is no plain array.
    if VALID_ROWS not in keys or stored_columns != set(members.values()):
        return None
    valid = store["/" + VALID_ROWS]
    if not isinstance(valid, blosc2.NDArray) or valid.ndim != 1:
        return None
    for member in [VALID_ROWS, *members.values()]:
        try:
            check_remote_path(member)  # a name subscribers would refuse: not served this way
        except BadRequest:
            return None
        array = store["/" + member]
        if not isinstance(array, blosc2.NDArray) or tuple(array.shape) != tuple(valid.shape):
            return None
    return members


def describe(path: Path, store: Any) -> dict | None:
    """The description of the table in `path` (open as `store`), or None to serve it as a file."""
    try:
        table = blosc2.open(str(path), mode="r")
    except Exception:  # blosc2 raises several kinds for a damaged table
        return None
    if not isinstance(table, blosc2.CTable):
        return None
    meta = b2meta.ctable_meta(table)
    members = _plain_members(store, meta["columns"])
    if members is None:
        return None
    return {**meta, "size": path.stat().st_size, "members": members, "valid_rows": VALID_ROWS}
