"""Real CTable `.b2z` files for the table tests and the benchmark, and NumPy's answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

ROW_DTYPE = np.dtype([("a", "<i8"), ("b", "<f8"), ("ok", "?")])


@dataclass
class Row:
    a: int = blosc2.field(blosc2.int64())
    b: float = blosc2.field(blosc2.float64())
    ok: bool = blosc2.field(blosc2.bool())


def table_values(nrows: int, seed: int = 0) -> np.ndarray:
    """Rows with few distinct `a`, distinct `b` (so every sort by `b` has one answer)."""
    rng = np.random.default_rng(seed)
    values = np.empty(nrows, dtype=ROW_DTYPE)
    values["a"] = rng.integers(0, 100, nrows)
    values["b"] = rng.permutation(nrows) / max(nrows, 1)
    values["ok"] = rng.random(nrows) > 0.5
    return values


def write_table(path: Path, values: np.ndarray) -> Path:
    """A CTable `.b2z` at `path` holding `values`, written by blosc2."""
    table = blosc2.CTable(Row, new_data=values, urlpath=str(path), mode="w")
    table.close()
    return path


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
