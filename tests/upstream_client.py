"""The newest upstream Caterva2 client, run against our subscriber by a driver script.

The client alone, as its users install it (no server extras), in a venv built
once under `.cache/` (`bench.peers.ensure_venv`); each driver in
`tests/interop/` prints what it saw as JSON on its last line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench import peers

UPSTREAM_VERSION = "2026.9.2"
INTEROP = Path(__file__).resolve().parent / "interop"


def run_driver(driver: str, *args: str) -> dict[str, Any]:
    """What `tests/interop/<driver>` printed, run by the upstream client's Python with `args`."""
    venv = peers.ensure_venv(
        UPSTREAM_VERSION, (f"caterva2[clients]=={UPSTREAM_VERSION}",), "upstream-client"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(INTEROP / driver), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=peers.clean_env(),
        cwd=venv,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        got = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise AssertionError(
            f"{driver} printed no JSON on its last line: stdout {done.stdout[-2000:]!r}, "
            f"stderr {done.stderr[-2000:]!r}"
        ) from None
    assert got["version"].replace(".0", ".") == UPSTREAM_VERSION  # that client, not ours
    return got
