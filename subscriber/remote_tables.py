"""Tables (CTable `.b2z`) in remote roots: described, then queried over cached column chunks.

A publisher announces such a table as its member arrays, `t.b2z/_cols/<c>` and
`t.b2z/_valid_rows`, the mask's metadata carrying the table's description
(`publisher.b2z_tables`).  Here the table is one dataset again: its info is the
local shape (`kind: "ctable"`), and a query reads only what it needs through
the chunk cache: the mask, the columns a filter names and the sort keys
(whole), then, of every column, the chunks holding the rows returned.

The filter and the sort run in blosc2, as on local roots (`ctables.query_view`),
over an in-memory table of just the columns they name plus the physical row
number of each row; so a query keeps the same rows in the same order as the
local path (the same `where` and `sort_by` code, ties included), and the row
numbers it yields pick the rows to gather.  The answer is a CTable cframe
built by blosc2 from those rows, as locally.  All of it runs in the computing
pool, within its time limit, and a result over the size limit is refused
before any row is gathered.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np
from blosc2.ctable_storage import EmbedStoreTableStorage, _column_name_to_relpath
from blosc2.schema_compiler import schema_from_dict

from ..common.b2meta import str_to_dtype
from ..common.b2z_files import TABLE_DESCRIPTION, TABLE_VALID_ROWS
from ..common.errors import BadRequest, PreconditionFailed, ServiceUnavailable
from ..common.paths import check_remote_path, join_logical
from ..common.slices import Key
from . import ctables, field_filters
from .compute_budget import DEFAULT_MAX_BYTES, Budget, Runner, check_result_size
from .root_interface import Download, TableQuery

if TYPE_CHECKING:
    from .remote_roots import RemoteRoots

INFO_FIELDS = {
    "nrows": int,
    "ncols": int,
    "chunks": list,
    "blocks": list,
    "schema_dict": dict,
    "columns": list,
    "nbytes": int,
    "cbytes": int,
    "cratio": (int, float),
    "vlmeta": dict,
    "size": int,
}
"""What a table's info answers besides kind and mtime, with the type each must have."""


def _wrong(relpath: str, why: str) -> BadRequest:
    return BadRequest(f"The publisher describes the table {relpath} wrongly: {why}")


def checked_description(relpath: str, found: Any, announced: Callable[[str], bool]) -> dict:
    """A table description from a publisher, checked (it is untrusted input); 400 if bad.

    `announced(path)`: whether the publisher announced a dataset at `path`.
    """
    if not isinstance(found, dict):
        raise _wrong(relpath, "not an object")
    for key, kind in INFO_FIELDS.items():
        if not isinstance(found.get(key), kind) or isinstance(found.get(key), bool):
            raise _wrong(relpath, f"{key} is missing or not a {kind}")
    columns = found["columns"]
    schema_columns = found["schema_dict"].get("columns")
    if (
        not columns
        or not all(isinstance(name, str) and name for name in columns)
        or len(set(columns)) != len(columns)
        or not isinstance(schema_columns, list)
        or [c.get("name") if isinstance(c, dict) else None for c in schema_columns] != columns
    ):
        raise _wrong(relpath, "its columns do not match its schema")
    members = found.get("members")
    if not isinstance(members, dict) or set(members) != set(columns):
        raise _wrong(relpath, "members must name one array per column")
    for member in members.values():
        if not isinstance(member, str) or member == TABLE_VALID_ROWS:
            raise _wrong(relpath, f"bad member {member!r}")
        check_remote_path(f"{relpath}/{member}")
        if not announced(f"{relpath}/{member}"):
            raise _wrong(relpath, f"its member {member!r} is not announced")
    if found["nrows"] < 0:
        raise _wrong(relpath, "a negative row count")
    return found


def announced_table(store: Any, root: str, relpath: str) -> bool:
    """Whether a publisher announced a table at `relpath` (its mask carries a description)."""
    if not relpath.lower().endswith(".b2z"):
        return False
    found = store.dataset(root, f"{relpath}/{TABLE_VALID_ROWS}")
    return found is not None and TABLE_DESCRIPTION in found[1]


def description_of(remote: RemoteRoots, root: str, relpath: str) -> dict | None:
    """The checked description of the remote table at `relpath`; None when it is no table."""
    found = remote.store.dataset(root, f"{relpath}/{TABLE_VALID_ROWS}")
    if found is None or TABLE_DESCRIPTION not in found[1]:
        return None
    # One lookup a member (not a set of the root's every path, at every request).
    description = checked_description(
        relpath,
        found[1][TABLE_DESCRIPTION],
        lambda path: remote.store.dataset(root, path) is not None,
    )
    return {**description, "mtime": found[1].get("mtime")}


def described_dtypes(relpath: str, schema: dict) -> dict[str, np.dtype]:
    """Column name -> the dtype blosc2 gives it under `schema` (400 for a schema it refuses)."""
    try:
        compiled = schema_from_dict(schema)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _wrong(relpath, f"blosc2 refuses its schema: {exc}") from None
    return {column.name: np.dtype(column.dtype) for column in compiled.columns}


def filter_names(text: str) -> set[str]:
    """The column names a (checked) filter text reads."""
    tree = ast.parse(text, mode="eval")
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def hidden_name(columns: list[str]) -> str:
    """A column name none of `columns` has: where the physical row numbers go."""
    name = "_row"
    while name in columns:
        name += "_"
    return name


def in_memory_table(schema: dict, valid: np.ndarray, columns: dict[str, np.ndarray]) -> Any:
    """A blosc2 CTable in memory: `columns` (physical rows, as stored) under `schema`.

    The schema comes from a publisher: one blosc2 refuses (or that does not fit the
    columns' own types) is a 400 naming the table's description, never a 500.
    """
    store = blosc2.EmbedStore(urlpath=None, mode="w")
    meta = blosc2.SChunk()
    meta.vlmeta["kind"] = "ctable"  # the manifest blosc2 writes for a table (`to_cframe`)
    meta.vlmeta["version"] = 1
    try:
        meta.vlmeta["schema"] = json.dumps(schema)
        store["/_meta"] = meta
        store["/" + TABLE_VALID_ROWS] = blosc2.asarray(valid)
        for name, values in columns.items():
            store["/_cols/" + _column_name_to_relpath(name)] = blosc2.asarray(values)
        table = blosc2.CTable._open_from_storage(EmbedStoreTableStorage(store))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadRequest(f"The table's description does not fit its columns: {exc}") from None
    return table


class RemoteTable(ctables.TableReads):
    """A CTable `.b2z` of a remote root, queried here over its cached column chunks."""

    def __init__(
        self, remote: RemoteRoots, root: str, relpath: str, description: dict, runner: Runner | None
    ) -> None:
        self.remote = remote
        self.root = root
        self.relpath = relpath
        self.logical = join_logical(root, relpath)
        self.description = description
        self.runner = runner

    def info(self) -> tuple[dict, str | None]:
        described = self.description
        info = {"kind": "ctable", **{key: described[key] for key in INFO_FIELDS}}
        info["mtime"] = described.get("mtime")
        return info, None

    @property
    def columns(self) -> list[str]:
        return list(self.description["columns"])

    @property
    def max_bytes(self) -> int:
        return self.runner.limits.max_bytes if self.runner is not None else DEFAULT_MAX_BYTES

    def _member_meta(self, member: str) -> dict:
        return self.remote.dataset(self.root, f"{self.relpath}/{member}")[1]

    def _row_dtype(self) -> np.dtype:
        """The columns as one structured dtype, from the members' own metadata (checked)."""
        fields = []
        described = described_dtypes(self.relpath, self.description["schema_dict"])
        mask = self._member_meta(TABLE_VALID_ROWS)
        if mask.get("dtype") != "bool" or len(mask.get("shape", [])) != 1:
            raise _wrong(self.relpath, "its live-row mask is no 1-D boolean array")
        for name in self.columns:
            meta = self._member_meta(self.description["members"][name])
            dtype = str_to_dtype(meta.get("dtype", ""))
            if dtype.fields is not None or dtype.hasobject or meta.get("shape") != mask["shape"]:
                raise _wrong(self.relpath, f"column {name!r} is no array as long as its mask")
            if described.get(name) != dtype:
                raise _wrong(
                    self.relpath,
                    f"column {name!r} is {described.get(name)} in its schema, {dtype} in its array",
                )
            fields.append((name, dtype))
        return np.dtype(fields)

    def _read(self, member: str, key: Key, etag: str) -> np.ndarray:
        """A selection of a member, of the table's version `etag` only (never two versions)."""
        try:
            return self.remote.values(self.root, f"{self.relpath}/{member}", key, etag)
        except PreconditionFailed:
            raise ServiceUnavailable(f"{self.logical} changed while read; try again") from None

    def _gather(self, member: str, rows: np.ndarray, dtype: np.dtype, etag: str) -> np.ndarray:
        """The values of a column at physical `rows`, reading only the chunks holding them."""
        chunk_len = max(1, int(self._member_meta(member)["chunks"][0]))
        out = np.empty(len(rows), dtype=dtype)
        which = rows // chunk_len
        for nchunk in np.unique(which):
            start = int(nchunk) * chunk_len
            values = self._read(member, (slice(start, start + chunk_len),), etag)
            here = which == nchunk
            out[here] = values[rows[here] - start]
        return out

    def _kept_rows(self, query: TableQuery, etag: str, budget: Budget | None) -> np.ndarray:
        """Physical row numbers of the rows `query` keeps, in order."""
        dtype = self._row_dtype()
        for name in query.sort_by:
            if name not in self.columns:
                raise BadRequest(f"Invalid sort_by: {name!r} is not a column ({self.columns})")
        text = None
        if query.filter and query.filter.strip():
            text = field_filters.check_filter(query.filter, dtype)
        valid = self._read(TABLE_VALID_ROWS, (), etag)
        if text is None and not query.sort_by:
            return np.flatnonzero(valid)
        named = set(query.sort_by) | (filter_names(text) if text else set())
        names = [name for name in self.columns if name in named]
        row = hidden_name(self.columns)
        schema = dict(self.description["schema_dict"])
        schema["columns"] = [c for c in schema["columns"] if c["name"] in named]
        schema["columns"].append({"name": row, "kind": "int64"})
        members = self.description["members"]
        columns = {name: self._read(members[name], (), etag) for name in names}
        columns[row] = np.arange(len(valid), dtype=np.int64)
        table = in_memory_table(schema, valid, columns)
        view = ctables.query_view(table, query, budget)
        return np.asarray(view[row][:], dtype=np.int64)

    def _rows(self, key: Key, query: TableQuery, budget: Budget | None) -> np.ndarray:
        """The rows of the answer as a structured array (checked against the size limit)."""
        etag = self.remote.dataset(self.root, f"{self.relpath}/{TABLE_VALID_ROWS}")[0]
        kept = self._kept_rows(query, etag, budget)
        start, stop = ctables.row_range(key, len(kept))
        return self._values_at(kept[start:stop], etag, budget)

    def _values_at(self, rows: np.ndarray, etag: str, budget: Budget | None) -> np.ndarray:
        dtype = self._row_dtype()
        check_result_size((len(rows),), dtype.itemsize, self.max_bytes, "The table rows")
        out = np.empty(len(rows), dtype=dtype)
        for name in self.columns:
            member = self.description["members"][name]
            out[name] = self._gather(member, rows, dtype[name], etag)
            if budget is not None:
                budget.check()
        return out

    def _run(self, work: Any) -> Any:
        return work(None) if self.runner is None else self.runner.run(work)

    def query_table(self, key: Key, query: TableQuery) -> bytes:
        """The rows `query` keeps within the row range `key`, as a CTable cframe."""

        def work(budget: Budget | None) -> bytes:
            rows = self._rows(key, query, budget)
            valid = np.ones(len(rows), dtype=bool)
            columns = {name: rows[name] for name in self.columns}
            return in_memory_table(self.description["schema_dict"], valid, columns).to_cframe()

        return self._run(work)

    def table_window(self, start: int, stop: int, query: TableQuery) -> tuple[np.ndarray, int]:
        """Rows [start, stop) of what `query` keeps, as values, and how many rows it keeps."""

        def work(budget: Budget | None) -> tuple[np.ndarray, int]:
            etag = self.remote.dataset(self.root, f"{self.relpath}/{TABLE_VALID_ROWS}")[0]
            kept = self._kept_rows(query, etag, budget)
            stop_ = min(stop, len(kept))
            return self._values_at(kept[min(start, stop_) : stop_], etag, budget), len(kept)

        return self._run(work)

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        raise BadRequest(
            f"{self.logical} is a table (a set of columns), not one chunked array: "
            "fetch its rows instead"
        )

    def download(self) -> Download:
        raise BadRequest(
            f"{self.logical} is a table in a remote root, served as its columns: "
            "fetch its rows (a CTable frame) instead of the file"
        )
