"""What a Blosc2 `.b2z` file holds, read off its zip index without opening a member.

A `.b2z` is a zip of Blosc2 files written by one of three blosc2 classes:
a `CTable` (a table: `_meta.b2f`, one `_cols/<name>.b2nd` per column,
`_valid_rows.b2nd`, indexes), a `TreeStore` or a `DictStore` (containers: one
`<key>.b2nd` per big leaf, small leaves packed in `embed.b2e`).  A TreeStore may
nest a CTable under a key (`dir/tbl/_meta.b2f`).  The zip index is at the end of
the file and costs one read, so telling the kinds apart never decompresses data.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path
from typing import Literal

from .errors import BadRequest
from .stored_chunks import Identity, file_identity

B2Z_SUFFIX = ".b2z"
TABLE_MARKER = "_meta.b2f"
"""The member every CTable has at its top (blosc2 4.x): its schema and row count."""

TABLE_VALID_ROWS = "_valid_rows"
"""A CTable's live-row mask member: a boolean array as long as every column."""
TABLE_DESCRIPTION = "table"
"""Where a publisher's metadata of a table's `TABLE_VALID_ROWS` member describes the table."""

B2zKind = Literal["ctable", "group"]


def zip_members(path: str | Path) -> list[str]:
    """The member names of a `.b2z`; a file that is not a zip is a 400."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadRequest(f"{Path(path).name} is not a readable .b2z file: {exc}") from exc


def table_at(members: list[str] | set[str], prefix: str = "") -> bool:
    """Whether a CTable sits at `prefix` (`""` for the whole file, else `"dir/tbl/"`)."""
    return f"{prefix}{TABLE_MARKER}" in members


def b2z_kind(path: str | Path) -> B2zKind:
    """`"ctable"` for a table file, `"group"` for a TreeStore or DictStore container.

    Asked at every request for a `.b2z` (and several times for one leaf chunk on a
    publisher), so each version of a file has its zip index read once.
    """
    try:
        identity = file_identity(os.stat(path))
    except OSError:
        return _kind_of(os.fspath(path), None)  # zip_members says what is wrong
    return _kind_of(os.fspath(path), identity)


@functools.lru_cache(maxsize=4096)
def _kind_of(path: str, identity: Identity | None) -> B2zKind:
    # A file that is no readable zip raises: not cached, read again when asked again.
    return "ctable" if table_at(zip_members(path)) else "group"
