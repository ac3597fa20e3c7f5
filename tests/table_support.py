"""CTable `.b2z` files for the table tests (built as the benchmark does), and NumPy's answers."""

from __future__ import annotations

import numpy as np

from bench.tables import ROW_DTYPE, table_values, write_table

__all__ = ["ROW_DTYPE", "numpy_query", "table_values", "write_table"]


def numpy_query(
    values: np.ndarray,
    where: np.ndarray | None = None,
    sort_by: str | None = None,
    ascending: bool = True,
    rows: slice = slice(None),
) -> np.ndarray:
    """What a table query answers, computed by NumPy: filter, stable sort, then rows."""
    kept = values if where is None else values[where]
    if sort_by is not None:
        order = np.argsort(kept[sort_by], kind="stable")
        kept = kept[order if ascending else order[::-1]]
    return kept[rows]
