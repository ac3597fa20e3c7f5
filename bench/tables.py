"""`python -m bench.tables`: a filter plus a sort on a big table (CTable `.b2z`), three ways.

- `local`: blosc2 on the file itself (the floor): open, `where`, `sort_by`, the rows in hand;
- `ours`: our client against our subscriber (`cat2sub`): one `/api/fetch` with
  `filter`, `sort_by` and `ascending`, evaluated by the server;
- `upstream-2026.9.2`: its own client against its own server.  That release
  refuses a filter on a CTable and has no sort parameter, so its column is
  every row fetched in one round trip, then filtered and sorted by the client
  (`bench/table_driver.py`); what its server answers to the filter is reported.

Every way's sorted column is checked against NumPy's.  Run by hand; prints
JSON (seconds: median and all reps).  `--rows` sets the table size (10M default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

from . import peers
from .servers import USER

EXPR = "(a < 10) & (b < 0.5)"


def expr_of(rep: int) -> str:
    """The query of one rep: the same rows kept (`b` is a multiple of 1/rows), another text.

    The subscriber keeps the views of the last queries it ran (so a GUI pages
    fast); a new text each rep makes every rep compute, as a first query does.
    """
    return f"(a < 10) & (b < {0.5 + rep * 1e-12!r})"


COLUMN = "b"
ROW_DTYPE = np.dtype([("a", "<i8"), ("b", "<f8"), ("ok", "?")])


@dataclass
class Row:
    """The table's schema (blosc2 CTables are declared as dataclasses)."""

    a: int = blosc2.field(blosc2.int64())
    b: float = blosc2.field(blosc2.float64())
    ok: bool = blosc2.field(blosc2.bool())


def table_values(nrows: int, seed: int = 0) -> np.ndarray:
    """Rows with few distinct `a` and distinct `b` (so every sort by `b` has one answer)."""
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


def time_local(path: Path, reps: int) -> tuple[list[float], np.ndarray]:
    seconds, kept = [], np.empty(0)
    for rep in range(reps):
        start = time.perf_counter()
        table = blosc2.open(str(path), mode="r")
        rows = table.where(expr_of(rep)).sort_by(COLUMN, ascending=False, view=True)
        kept = rows.slice(0, rows.nrows)[COLUMN][:]
        seconds.append(time.perf_counter() - start)
    return seconds, kept


def time_ours(url: str, reps: int) -> tuple[list[float], np.ndarray]:
    import caterva2 as cat2

    seconds, kept = [], np.empty(0)
    with cat2.Client(url, USER, timeout=600) as client:
        table = client.get("@public/big.b2z")
        for rep in range(reps):
            start = time.perf_counter()
            kept = table.where(expr_of(rep), sort_by=COLUMN, ascending=False)[COLUMN][:]
            seconds.append(time.perf_counter() - start)
    return seconds, kept


def time_upstream(url: str, reps: int) -> dict:
    python = str(peers.ensure_venv("2026.9.2") / "bin" / "python")
    driver = Path(__file__).resolve().parent / "table_driver.py"
    args = [python, str(driver), url, *USER, "@public/big.b2z", EXPR, COLUMN, str(reps)]
    done = subprocess.run(args, capture_output=True, text=True, env=peers.clean_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"upstream driver failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same(got: np.ndarray, want: np.ndarray) -> bool:
    """Whether a way answered NumPy's sorted column."""
    return got.shape == want.shape and bool(np.array_equal(got, want))


def figures(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="table size (10M)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-upstream", action="store_true", help="skip the 2026.9.2 server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
        run = Path(tmp)
        (run / "logs").mkdir()
        values = table_values(args.rows)
        path = write_table(run / "big.b2z", values)
        mask = (values["a"] < 10) & (values["b"] < 0.5)
        want_column = np.sort(values["b"][mask])[::-1]  # what every way must answer
        want = len(want_column)
        out: dict = {
            "rows": args.rows,
            "query": {"filter": EXPR, "sort_by": COLUMN, "ascending": False},
            "rows_kept": want,
            "file_bytes": path.stat().st_size,
        }
        seconds, got = time_local(path, args.reps)
        out["local"] = {**figures(seconds), "rows": len(got), "same": same(got, want_column)}
        ours = peers.start_ours(run, {"big.b2z": path})
        try:
            seconds, got = time_ours(ours.url, args.reps)
            out["ours"] = {**figures(seconds), "rows": len(got), "same": same(got, want_column)}
        finally:
            ours.stop()
        if not args.no_upstream:
            upstream = peers.start_upstream("2026.9.2", run, {"big.b2z": path})
            try:
                got = time_upstream(upstream.url, args.reps)
            finally:
                upstream.stop()
            out["upstream-2026.9.2"] = {
                **figures(got["seconds"]),
                "rows": got["rows"],
                "same": same(np.asarray(got["first"]), want_column[:10]),
                "how": "every row fetched, then filtered and sorted by the client",
                "server_filter": got["server_filter"],
            }
        for name in ("local", "ours", "upstream-2026.9.2"):
            if name in out and (out[name]["rows"] != want or not out[name]["same"]):
                out[name]["error"] = f"kept {out[name]['rows']} rows, NumPy keeps {want}"
        if "ours" in out:
            out["ours_to_local"] = out["ours"]["median_s"] / out["local"]["median_s"]
        if "upstream-2026.9.2" in out:
            out["upstream_to_ours"] = out["upstream-2026.9.2"]["median_s"] / out["ours"]["median_s"]
    print(json.dumps(out, indent=2))
    return 0 if all("error" not in v for v in out.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
