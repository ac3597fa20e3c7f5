"""The Data tab of a table (a CTable `.b2z`): a window of rows, filtered and sorted by the server.

Only the window shown is read into the page: the filter, the sort and the
row range go to the table in one query (`ctables`), so paging through
millions of rows costs one window each.  A column header cycles its sort:
ascending, descending, then the stored order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...common.errors import BadRequest
from ..root_interface import TableQuery
from ..root_registry import RootRegistry
from ..store import User
from .views import MAX_ROWS, ROWS, fmt_value


@dataclass
class Header:
    """A column header: its name, its sort now and the query its link asks for."""

    name: str
    sort: str | None  # "ascending" | "descending" | None
    link: dict[str, Any]


@dataclass
class RowsPage:
    """One window of a table's rows, as formatted cells, with what selected it."""

    headers: list[Header]
    rows: list[tuple[str, list[str]]]  # (row number in the result, cells)
    start: int
    stop: int
    matches: int
    filter: str = ""
    sort: str = ""
    desc: bool = False
    pages: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def _window(params: dict[str, Any]) -> tuple[int, int]:
    """`start` and `rows` (page size) from the query; bad ones are a 400."""
    try:
        start = int(params.get("start") or 0)
        size = int(params.get("rows") or ROWS)
    except ValueError:
        raise BadRequest("start and rows are whole numbers of rows") from None
    if start < 0 or not 0 < size <= MAX_ROWS:
        raise BadRequest(f"start is 0 or more, rows between 1 and {MAX_ROWS}")
    return start, size


def rows_page(
    registry: RootRegistry, path: str, user: User | None, columns: list[str], params: dict
) -> RowsPage:
    """The window of rows the query `params` asks for (filter, sort, desc, start, rows)."""
    filter_ = str(params.get("filter") or "").strip()
    sort = str(params.get("sort") or "").strip()
    desc = bool(sort) and str(params.get("desc") or "") in ("1", "true", "on")
    start, size = _window(params)
    query = TableQuery(filter=filter_ or None, sort_by=(sort,) if sort else (), ascending=not desc)
    dataset = registry.dataset(path, user)
    values, matches = dataset.table_window(start, start + size, query)
    if start and start >= matches:  # past the end (the filter changed): the last page
        start = max(0, (matches - 1) // size * size)
        values, matches = dataset.table_window(start, start + size, query)
    kept = {"view": "data", "filter": filter_, "rows": size if size != ROWS else None}
    sorted_ = {"sort": sort, "desc": "1" if desc else None}
    headers = []
    for name in columns:
        if name != sort:
            now, after = None, {"sort": name}
        elif not desc:
            now, after = "ascending", {"sort": name, "desc": "1"}
        else:
            now, after = "descending", {}  # back to the stored order
        headers.append(Header(name, now, {**kept, **after}))
    rows = [
        (str(start + i), [fmt_value(record[name]) for name in columns])
        for i, record in enumerate(values)
    ]

    def page(at: int) -> dict[str, Any]:
        return {**kept, **sorted_, "start": at or None}

    last = max(0, (matches - 1) // size * size)
    more = start + size < matches
    return RowsPage(
        headers,
        rows,
        start,
        start + len(values),
        matches,
        filter=filter_,
        sort=sort,
        desc=desc,
        pages={
            "first": page(0) if start else None,
            "prev": page(max(0, start - size)) if start else None,
            "next": page(start + size) if more else None,
            "last": page(last) if more else None,
        },
    )
