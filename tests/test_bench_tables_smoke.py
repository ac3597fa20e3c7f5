"""`bench/tables.py` runs end to end at a tiny size and says every way answered NumPy's rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_tables_benchmark_runs_and_checks_its_answers():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.tables", "--rows", "3000", "--reps", "1", "--no-upstream"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["rows"] == 3000 and out["rows_kept"] > 0
    for way in ("local", "ours"):
        assert out[way]["same"] and out[way]["rows"] == out["rows_kept"]
        assert len(out[way]["seconds"]) == 1
