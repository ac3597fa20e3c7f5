"""Run by `bench/tables.py` with the python of a caterva2 2026.9.2 venv (its own client).

That release's server refuses a filter on a CTable and has no sort: the same
answer is had by fetching every row (one round trip) and filtering and
sorting them here with blosc2.  Prints JSON: the seconds of each rep, the
rows kept, and what the server said to a filter.
"""

from __future__ import annotations

import json
import sys
import time

import caterva2 as cat2


def main(url: str, user: str, password: str, path: str, expr: str, column: str, reps: int) -> None:
    client = cat2.Client(url, (user, password), timeout=600)
    table = client.get(path)
    seconds, kept, first = [], None, []
    for _ in range(reps):
        start = time.perf_counter()
        rows = table.slice(slice(0, table.nrows))  # every row, as a CTable
        result = rows.where(expr).sort_by(column, ascending=False)
        kept = result.nrows
        first = result[column][:10].tolist()  # the answer in hand
        seconds.append(time.perf_counter() - start)
    try:
        table[expr]
        said = "filtered"
    except Exception as exc:  # what that server answers to a filter on a table
        said = f"{type(exc).__name__}: {str(exc)[-200:]}"
    print(json.dumps({"seconds": seconds, "rows": kept, "first": first, "server_filter": said}))


if __name__ == "__main__":
    url, user, password, path, expr, column, reps = sys.argv[1:8]
    main(url, user, password, path, expr, column, int(reps))
