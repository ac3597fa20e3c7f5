"""Bounded work for computing requests: a time budget, a size limit, and chunk-wise pieces.

Every request that evaluates an expression or rewrites arrays runs in a small
thread pool. The request waits at most `timeout` seconds and then answers 503;
the work itself checks a `Budget` between pieces (a few chunks each), and work
that runs in one long library call (a reduction) is interrupted in its thread
(`Task`), so it stops soon after its request gave up instead of running on
unseen. Resolving operands outside the pool uses the same limit (`deadline`).
Results held in memory are refused beforehand when larger than `max_bytes`.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..common.errors import BadRequest, ServiceUnavailable

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 1024**3
# Pieces of about this size keep per-call overheads small and memory flat.
PIECE_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


class OverBudget(Exception):
    """Raised inside the work when its request has given up (time is over)."""


class Interrupted(BaseException):
    """Raised into a work's thread after its request gave up.

    Not an `Exception`: libraries that catch every error and try another way
    (Blosc2 does) must not swallow it.
    """


@dataclass(frozen=True)
class Limits:
    """What one computing request may use."""

    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    workers: int = 4


class Budget:
    """The time left to one piece of work; `check()` between pieces."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set() or time.monotonic() > self.deadline:
            raise OverBudget


def format_bytes(size: int) -> str:
    """`1073741824` → `1 GiB` (for messages)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:g} {unit}" if unit == "bytes" else f"{size:.4g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def check_result_size(shape: tuple[int, ...], itemsize: int, max_bytes: int, what: str) -> None:
    """400 when a result of `shape` would not fit in the per-request size limit."""
    nbytes = math.prod(shape) * itemsize
    if nbytes > max_bytes:
        raise BadRequest(
            f"{what} would take {format_bytes(nbytes)}, more than the limit of "
            f"{format_bytes(max_bytes)} per request (compute_max_size); ask for a smaller slice"
        )


class Task:
    """One piece of work on a pool thread, which can be stopped from another thread.

    The work checks its `Budget` between pieces, but one Blosc2 call (a reduction
    over a whole array, a subscript) may run for long: `interrupt` raises
    `Interrupted` in the work's thread at its next Python instruction (Blosc2 loops
    over chunks in Python), so the worker is free again soon after the 503.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: int | None = None
        self._interrupted = False

    def started(self) -> None:
        with self._lock:
            self._thread = threading.get_ident()

    def interrupt(self) -> None:
        with self._lock:
            if self._thread is not None:
                _raise_in_thread(self._thread, Interrupted)
                self._interrupted = True

    def finished(self) -> None:
        with self._lock:
            if self._interrupted and self._thread is not None:
                # Not delivered yet: it must not hit the next work of this pool thread.
                _raise_in_thread(self._thread, None)
            self._thread = None


def _raise_in_thread(thread: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` asynchronously in a thread (None: withdraw one not raised yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None
    )


class Runner:
    """Runs computing work in a bounded pool and gives up after the time limit."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pool = ThreadPoolExecutor(max(1, limits.workers), thread_name_prefix="cat2-compute")
        self._running: set[Task] = set()
        self._guard = threading.Lock()

    def running(self) -> int:
        """How many pieces of work are running now (in the pool)."""
        with self._guard:
            return len(self._running)

    def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(budget, *args)`, or 503 when it does not finish in time (and the work stops)."""
        budget = Budget(self.limits.timeout)
        task = Task()

        def body() -> T:
            with self._guard:
                self._running.add(task)
            task.started()
            try:
                return work(budget, *args)
            finally:
                try:
                    task.finished()  # where an interruption sent late may still land
                finally:
                    with self._guard:
                        self._running.discard(task)

        future = self.pool.submit(body)
        try:
            return future.result(timeout=self.limits.timeout)
        except (FuturesTimeout, OverBudget):
            budget.cancel()
            future.cancel()
            task.interrupt()
            raise self.too_late() from None

    def too_late(self) -> ServiceUnavailable:
        """The 503 of a request that ran out of time."""
        return ServiceUnavailable(
            f"The request did not finish within the limit of {self.limits.timeout:g} s "
            "(compute_timeout); ask for a smaller slice, or try again later"
        )

    @contextmanager
    def deadline(self) -> Iterator[Budget]:
        """A budget for work done outside the pool (resolving operands), 503 when over."""
        try:
            yield Budget(self.limits.timeout)
        except OverBudget:
            raise self.too_late() from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def piece_shape(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Whole chunks grouped into pieces of about PIECE_BYTES, growing the last axes first."""
    piece = [max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True)]
    for axis in reversed(range(len(piece))):
        size = math.prod(piece) * itemsize
        factor = max(1, PIECE_BYTES // max(1, size))
        piece[axis] = min(max(shape[axis], 1), piece[axis] * factor)
        if piece[axis] < shape[axis]:
            break
    return tuple(piece)


def pieces(
    region: tuple[slice, ...], piece: tuple[int, ...]
) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """(slice of the array, slice relative to `region`) for every piece grid cell in `region`.

    Pieces are aligned to the grid of `piece` from the origin, so they cover
    whole chunks except at the region's edges.
    """
    ranges = []
    for sl, size in zip(region, piece, strict=True):
        first = (sl.start // size) * size
        ranges.append(range(first, sl.stop, size))
    for starts in itertools.product(*ranges):
        absolute, relative = [], []
        for start, sl, size in zip(starts, region, piece, strict=True):
            lo, hi = max(start, sl.start), min(start + size, sl.stop)
            absolute.append(slice(lo, hi))
            relative.append(slice(lo - sl.start, hi - sl.start))
        yield tuple(absolute), tuple(relative)


def region_of(
    items: tuple, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[int, ...]] | None:
    """A key as step-1 slices over every axis plus the axes indexed by integers.

    None when a slice has a step other than 1 (the caller evaluates it at once).
    """
    region, dropped = [], []
    for axis, size in enumerate(shape):
        item = items[axis] if axis < len(items) else slice(None)
        if isinstance(item, int):
            index = item % size
            region.append(slice(index, index + 1))
            dropped.append(axis)
            continue
        start, stop, step = item.indices(size)
        if step != 1:
            return None
        region.append(slice(start, max(start, stop)))
    return tuple(region), tuple(dropped)


def empty_like_region(region: tuple[slice, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(tuple(s.stop - s.start for s in region), dtype=dtype)
