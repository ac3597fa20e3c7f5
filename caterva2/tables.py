"""The client's view of a table (a Blosc2 CTable `.b2z`): rows read, filtered and sorted remotely.

Every read is one `/api/fetch` round trip; the server filters, sorts and cuts
the row range, and answers a CTable cframe (`blosc2.ctable_from_cframe`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np

from caterva2 import api_utils
from caterva2.client import File

if TYPE_CHECKING:
    from caterva2.client import Client


def row_key(key: Any) -> str | None:
    """A row selection (an int, a slice of step 1, None) as the `slice_` parameter."""
    if key is None:
        return None
    if isinstance(key, tuple):
        if len(key) != 1:
            raise IndexError("A table's rows have one dimension")
        key = key[0]
    if isinstance(key, int | np.integer) or isinstance(key, slice):
        return api_utils.slice_to_string(key) or None
    raise TypeError(f"Rows are selected by an int or a slice, not {type(key).__name__}")


def query_rows(
    client: Client,
    path: str,
    rows: Any = None,
    where: str | None = None,
    sort_by: str | list[str] | tuple[str, ...] | None = None,
    ascending: bool = True,
) -> blosc2.CTable:
    """One fetch of a table's rows: those `where` keeps, sorted by `sort_by`, then `rows`."""
    if isinstance(sort_by, list | tuple):
        sort_by = ",".join(sort_by)
    params = {"slice_": row_key(rows), "filter": where or None, "sort_by": sort_by or None}
    if sort_by:
        params["ascending"] = "true" if ascending else "false"
    response = api_utils.request(
        "GET",
        api_utils.api_url(client.urlbase, "fetch", path),
        params={k: v for k, v in params.items() if v is not None},
        auth_cookie=client.cookie,
        timeout=client._transfer_timeout(),  # a big result may take long to come
        client=client.http,
    )
    return blosc2.ctable_from_cframe(response.content)


def as_records(table: blosc2.CTable) -> np.ndarray:
    """The rows of a (fetched) CTable as a NumPy structured array."""
    dtype = np.dtype(table._structured_array_dtype())
    out = np.empty(table.nrows, dtype=dtype)
    if table.nrows:
        for name in dtype.names:
            out[name] = table[name][:]
    return out


class TableMixin:
    """What a `Table` adds to a `File`: a table's shape and its queries."""

    meta: dict
    path: Any
    client: Client

    @property
    def nrows(self) -> int:
        """Number of rows."""
        return self.meta["nrows"]

    @property
    def ncols(self) -> int:
        """Number of columns."""
        return len(self.meta["columns"])

    @property
    def columns(self) -> list[str]:
        """Column names, in order."""
        return self.meta["columns"]

    @property
    def schema(self) -> dict:
        """The table's schema, as blosc2's `CTable.schema_dict()` gives it."""
        return self.meta["schema_dict"]

    def slice(self, key: Any, as_blosc2: bool = True) -> blosc2.CTable | np.ndarray:
        """Rows `key` (an int or a slice) as a CTable (or a NumPy structured array)."""
        table = query_rows(self.client, str(self.path), key)
        return table if as_blosc2 else as_records(table)

    def __getitem__(self, key: Any) -> blosc2.CTable:
        """Rows by int or slice, or the rows a filter (a string) keeps, as a CTable."""
        if isinstance(key, str):
            return self.where(key)
        return self.slice(key)

    def where(
        self,
        expr: str | None = None,
        sort_by: str | list[str] | None = None,
        ascending: bool = True,
        rows: int | slice | None = None,
    ) -> blosc2.CTable:
        """The rows where `expr` holds (all without one), sorted by `sort_by`, then `rows`.

        One round trip; the server filters, sorts and cuts, e.g.
        ``table.where("(a > 3) & (b < 10)", sort_by="b", ascending=False, rows=slice(0, 10))``.
        """
        return query_rows(self.client, str(self.path), rows, expr, sort_by, ascending)

    def sort_by(
        self, columns: str | list[str], ascending: bool = True, rows: int | slice | None = None
    ) -> blosc2.CTable:
        """All rows sorted by `columns` (the primary key first), then `rows`."""
        return self.where(None, columns, ascending, rows)

    def rows(self, start: int = 0, stop: int = 50) -> list[tuple]:
        """Rows [start, stop) as tuples (a bounded window by default: the first 50)."""
        return [tuple(row) for row in as_records(self.slice(slice(start, stop))).tolist()]

    def head(self, n: int = 5) -> list[tuple]:
        """The first `n` rows as tuples."""
        return self.rows(0, n)


class Table(TableMixin, File):
    """A table (a Blosc2 CTable ``.b2z``): rows sliced, filtered and sorted by the server."""

    label = "Table"
