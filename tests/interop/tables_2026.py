"""Run by tests/test_tables_interop.py with the python of a caterva2 2026.9.2 venv.

Reads a table (a CTable `.b2z`) through that release's own client and prints
what it got as JSON; it imports only that venv's packages, never this
repository's code.
"""

from __future__ import annotations

import json
import sys

import caterva2 as cat2


def columns_of(table) -> dict:
    """A fetched CTable's columns as lists."""
    return {name: table[name][:].tolist() for name in table.col_names}


def plain(rows: list) -> list:
    return [[value.item() if hasattr(value, "item") else value for value in row] for row in rows]


def main(url: str, path: str, root: str = "@public") -> None:
    client = cat2.Client(url)
    table = client.get(root)[path]
    got = {
        "version": cat2.__version__,
        "type": type(table).__name__,
        "nrows": table.nrows,
        "ncols": table.ncols,
        "columns": table.columns,
        "schema": table.schema,
        "head": plain(table.head(4)),
        "rows": plain(table.rows(10, 13)),
        "slice": columns_of(table.slice(slice(100, 110))),
        "getitem": columns_of(table[20:23]),
        "filter": columns_of(table["(a > 40) & (b < 0.5)"]),
    }
    print(json.dumps(got))


if __name__ == "__main__":
    main(*sys.argv[1:4])  # url, path in the root, and the root (@public unless given)
