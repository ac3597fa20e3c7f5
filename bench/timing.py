"""Timing helpers and the local floors every figure compares with."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from caterva2.api_utils import slice_to_string

from .report import Figure

COPY_BLOCK = 1 << 20


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int) -> dict[str, list]:
    """Time each function `reps` times, one of each per round, after `warmup` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for n in range(warmup + reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if n >= warmup:
                samples[name].append(elapsed)
    return samples


def local_read(path: Path, key: Any) -> np.ndarray:
    """The floor: open the file with Blosc2 and read `key`, as a local program would."""
    array = blosc2.open(str(path), mode="r")
    return array[key] if key != () else array[()]


def copy_file(src: Path, dst: Path) -> None:
    """The floor of transfers: read and write the file through user space, 1 MiB at a time."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(COPY_BLOCK):
            fout.write(block)


def key_text(key: Any) -> str:
    """An index as printed in titles: `[25:75, :, :]`."""
    return f"[{slice_to_string(key) or ':'}]"


def result_nbytes(shape: tuple[int, ...], key: Any) -> int:
    """Bytes of the float64 result of `key` on an array of `shape`."""
    return int(np.empty(shape, dtype=np.uint8)[key if key != () else ...].size) * 8


def check_equal(ctx: Any, name: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Record whether a served result equals the local one; fail loudly when not."""
    same = got.shape == expected.shape and bool(np.array_equal(got, expected))
    ctx.checks[name] = same
    if not same:
        raise AssertionError(f"{name}: the served data differ from the local read")


def need_remote(ctx: Any, name: str, title: str, kind: str) -> Figure | None:
    """A skipped figure when the publisher side is not running, else None."""
    if ctx.remote is None:
        return Figure(name, title, kind, [], skipped=ctx.remote_problem or "no publisher")
    return None
