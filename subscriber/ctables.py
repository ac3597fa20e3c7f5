"""Blosc2 CTables (`.b2z` tables) in local roots: their info, and row queries on them.

A query is a filter (a `where` over columns, checked by `field_filters`
first: only column names, numbers, strings, arithmetic and comparisons), then
a sort by one or more columns, then a row range, all evaluated here; the
answer is a CTable cframe of the rows kept, which the upstream client reads
with `blosc2.ctable_from_cframe`.  The work runs in the computing pool
(`compute_budget`): a time limit, and a result larger than the size limit is
refused before it is built.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import blosc2
import numpy as np

from ..common import b2meta
from ..common.errors import BadRequest, NotFound
from ..common.slices import Key
from ..common.stored_chunks import file_identity
from . import field_filters
from .compute_budget import DEFAULT_MAX_BYTES, Budget, Runner, check_result_size
from .datasets import CONTAINERS, damaged_data, download_name, file_blocks, require_file
from .local_roots import Location
from .root_interface import Dataset, Download, TableQuery


def parse_sort_by(text: str | None) -> tuple[str, ...]:
    """`"b"` or `"b,a"` (primary key first) as column names; empty means no sort."""
    if text is None or not text.strip():
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if any(not name for name in names):
        raise BadRequest(f"Invalid sort_by {text!r}: an empty column name")
    return names


def parse_ascending(text: str | None) -> bool:
    """`ascending=true|false` (also 1/0, yes/no); absent means ascending."""
    if text is None or not text.strip():
        return True
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest(f"Invalid ascending {text!r}: say true or false")


def row_range(key: Key, nrows: int) -> tuple[int, int]:
    """The [start, stop) rows a key selects, clamped like upstream; steps are refused."""
    if isinstance(key, tuple):
        if len(key) > 1:
            raise BadRequest("Invalid slice: a table's rows have one dimension")
        key = key[0] if key else None
    if key is None:
        return 0, nrows
    if isinstance(key, int):
        if not -nrows <= key < nrows:
            raise BadRequest(f"Invalid slice: row {key} out of range ({nrows} rows)")
        start = key % nrows
        return start, start + 1
    if key.step not in (None, 1):
        raise BadRequest("Invalid slice: table rows are read with step 1 only")
    start, stop, _ = key.indices(nrows)
    return start, max(start, stop)


def row_dtype(table: blosc2.CTable) -> np.dtype:
    """The columns of a table as one structured dtype (what filters are checked against)."""
    return np.dtype(table._structured_array_dtype())


def table_info(table: blosc2.CTable, mtime: float, size: int) -> dict:
    """The `/api/info` object of a table: upstream's `CTableMetadata` plus the file's size."""
    return {
        "kind": "ctable",
        **b2meta.ctable_meta(table),
        "mtime": b2meta.iso_mtime(mtime),
        "size": size,
    }


def check_query(table: blosc2.CTable, query: TableQuery) -> str | None:
    """400 for a bad filter or an unknown sort column; returns the filter text to evaluate."""
    names = list(table.col_names)
    for name in query.sort_by:
        if name not in names:
            raise BadRequest(f"Invalid sort_by: {name!r} is not a column ({names})")
    if not query.filter or not query.filter.strip():
        return None
    return field_filters.check_filter(query.filter, row_dtype(table))


def query_view(
    table: blosc2.CTable, query: TableQuery, budget: Budget | None = None
) -> blosc2.CTable:
    """Every row a query keeps, in order, as a view of `table` (no column data copied)."""
    text = check_query(table, query)
    view = table
    if text is not None:
        try:
            view = table.where(text)
        except (ValueError, TypeError, KeyError, SyntaxError, NameError) as exc:
            raise BadRequest(f"Invalid filter {query.filter!r}: {exc}") from None
    if budget is not None:
        budget.check()
    if query.sort_by:
        try:
            view = view.sort_by(list(query.sort_by), ascending=query.ascending, view=True)
        except (TypeError, ValueError, KeyError) as exc:
            raise BadRequest(f"Cannot sort by {list(query.sort_by)}: {exc}") from None
    if budget is not None:
        budget.check()
    return view


def select_rows(
    table: blosc2.CTable, query: TableQuery, key: Key, budget: Budget | None = None
) -> blosc2.CTable:
    """The rows a query keeps, in order, then the row range `key`, as a view of `table`."""
    view = query_view(table, query, budget)
    start, stop = row_range(key, view.nrows)
    return view.slice(start, stop)


VIEW_BYTES_PER_ROW = 16  # a sorted view of 10M rows held 163 MB (positions and sort keys)
VIEWS_BUDGET = 256 * 1024 * 1024


class QueryViews:
    """The last few query views (filtered or sorted) of stored tables, so pages come fast.

    A filter or a sort over millions of rows takes seconds; paging through its
    result asks the same query again for every page.  Views are keyed by the
    stored file and its identity (a rewritten file is another key, and each
    user's @personal is another file) and held within `VIEWS_BUDGET`, as
    `VIEW_BYTES_PER_ROW` per row of their table.  Views only read their
    table, which threads may share (see `datasets.OpenContainers`).
    """

    def __init__(self, budget: int = VIEWS_BUDGET) -> None:
        self.budget = budget
        self._views: OrderedDict[tuple, tuple[blosc2.CTable, int]] = OrderedDict()
        self._lock = threading.Lock()

    def view(
        self, path: Path, table: blosc2.CTable, query: TableQuery, budget: Budget | None
    ) -> blosc2.CTable:
        """The view of `query` on the table stored at `path` (opened as `table`)."""
        if not query.filter and not query.sort_by:
            return table
        key = (os.fspath(path), file_identity(os.stat(path)), query)
        with self._lock:
            kept = self._views.get(key)
            if kept is not None:
                self._views.move_to_end(key)
                return kept[0]
        view = query_view(table, query, budget)
        cost = VIEW_BYTES_PER_ROW * int(table.nrows)
        if cost <= self.budget:
            with self._lock:
                self._views[key] = (view, cost)
                while sum(c for _, c in self._views.values()) > self.budget:
                    self._views.popitem(last=False)
        return view


QUERY_VIEWS = QueryViews()


def query_frame(
    table: blosc2.CTable, query: TableQuery, key: Key, max_bytes: int, budget: Budget | None = None
) -> bytes:
    """The rows a query keeps as a new CTable cframe; 400 when larger than `max_bytes`."""
    rows = select_rows(table, query, key, budget)
    check_result_size((rows.nrows,), row_dtype(table).itemsize, max_bytes, "The table rows")
    return rows.to_cframe()


def as_array(rows: blosc2.CTable) -> np.ndarray:
    """A table's rows as a NumPy structured array, one column at a time."""
    dtype = row_dtype(rows)
    out = np.empty(rows.nrows, dtype=dtype)
    if rows.nrows:
        for name in dtype.names:
            out[name] = rows[name][:]
    return out


def open_table(path: Path, found: os.stat_result | None = None) -> blosc2.CTable:
    """The (shared, read-only) CTable stored at `path`; 400 when it is not a readable one."""
    try:
        obj = CONTAINERS.get(path, found).obj
    except FileNotFoundError:
        raise NotFound("Not Found") from None
    except Exception as exc:
        raise BadRequest(f"{path.name} is not a readable table: {exc}") from None
    if not isinstance(obj, blosc2.CTable):
        raise BadRequest(f"{path.name} is not a table")
    return obj


class TableReads(Dataset):
    """What every table answers a plain fetch with: its rows, through `query_table`."""

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> bytes:
        if field:
            raise BadRequest("A table has columns, not fields: use filter or a row slice")
        return self.query_table(key, TableQuery(filter=filter_))


class TableDataset(TableReads):
    """A CTable `.b2z` file of a local root: rows fetched, filtered and sorted here."""

    def __init__(self, loc: Location, runner: Runner | None) -> None:
        self.loc = loc
        self.logical = loc.logical
        self.runner = runner

    def table(self) -> blosc2.CTable:
        return open_table(require_file(self.loc), self.loc.found)

    def info(self) -> tuple[dict, str | None]:
        path = require_file(self.loc)
        table = open_table(path, self.loc.found)
        st = path.stat()
        return table_info(table, st.st_mtime, st.st_size), None

    def query_table(self, key: Key, query: TableQuery) -> bytes:
        """The rows `query` keeps within the row range `key`, as a CTable cframe."""
        path = require_file(self.loc)

        def work(budget: Budget | None) -> bytes:
            table = open_table(path)  # opened in the worker's thread: containers are per thread
            with damaged_data(self.logical):
                view = QUERY_VIEWS.view(path, table, query, budget)
                return query_frame(view, TableQuery(), key, self.max_bytes, budget)

        if self.runner is None:
            return work(None)
        return self.runner.run(work)

    def table_window(self, start: int, stop: int, query: TableQuery) -> tuple[np.ndarray, int]:
        """Rows [start, stop) of what `query` keeps, as values, and how many rows it keeps."""
        path = require_file(self.loc)

        def work(budget: Budget | None) -> tuple[np.ndarray, int]:
            table = open_table(path)
            with damaged_data(self.logical):
                kept = QUERY_VIEWS.view(path, table, query, budget)
                stop_ = min(stop, kept.nrows)
                window = kept.slice(min(start, stop_), stop_)
                return as_array(window), int(kept.nrows)

        if self.runner is None:
            return work(None)
        return self.runner.run(work)

    @property
    def max_bytes(self) -> int:
        return self.runner.limits.max_bytes if self.runner is not None else DEFAULT_MAX_BYTES

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        self.table()
        raise BadRequest(
            f"{self.logical} is a table (a set of columns), not one chunked array: "
            "fetch its rows instead"
        )

    def download(self) -> Download:
        path = require_file(self.loc)
        filename, ctype = download_name(self.loc)
        return Download(filename, ctype, file_blocks(path), path.stat().st_size)
