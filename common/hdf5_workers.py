"""Worker processes for HDF5 work, so servers never call h5py themselves.

h5py runs every call under one process-wide lock, and a corrupt file can
crash the HDF5 library outright.  Servers therefore hand HDF5 reads to a pool
of spawned processes: a slow read holds up only its own worker, and a worker
that dies is replaced while the server carries on with a clear error.
Task functions must be top-level functions of an importable module; they
find open files through `h5file`, which keeps a few open per worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .hdf5_base import HDF5Error, file_signature, open_h5

T = TypeVar("T")
MAX_OPEN_FILES = 8


class WorkerCrashed(HDF5Error):
    """A worker process died in the middle of a task (a corrupt file can do that)."""


class FileChanged(HDF5Error):
    """The HDF5 file is not the version the caller described (it was rewritten)."""


def default_workers() -> int:
    """How many worker processes to run when not told: up to 4, one per CPU."""
    return max(1, min(4, os.cpu_count() or 1))


def _init_worker() -> None:
    # Ctrl-C is the parent's business: it shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import blosc2

    blosc2.set_nthreads(1)  # parallelism comes from the processes; keep each one lean


class _Lane:
    """One process pool, replaced when a worker dies."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise HDF5Error("the HDF5 worker pool is closed")
            if self._executor is None:
                # Spawned, never forked: forking a process that runs threads is unsafe.
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                )
            return self._executor

    @property
    def started(self) -> bool:
        return self._executor is not None

    def discard(self, executor: ProcessPoolExecutor) -> None:
        """Drop a broken executor (once, even if several tasks saw it break)."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        for _ in range(2):
            executor = self._pool()
            try:
                future = executor.submit(fn, *args)
            except BrokenProcessPool:
                self.discard(executor)
                continue
            future.lane = (self, executor)  # type: ignore[attr-defined]
            return future
        raise WorkerCrashed("the HDF5 worker processes cannot be started")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class WorkerPool:
    """Worker processes for HDF5 tasks, surviving crashed workers (`workers=0`: run inline).

    Two lanes, so that quick tasks (a stored chunk, a small conversion) never
    queue behind bulk ones (converting big chunks, scanning a whole file):
    `workers` processes for bulk work and one more for quick work.
    """

    def __init__(self, workers: int | None = None) -> None:
        """Prepare the pool; processes start on the first task."""
        self.workers = default_workers() if workers is None else workers
        self._bulk = _Lane(self.workers)
        self._quick = _Lane(1)

    @property
    def started(self) -> bool:
        """Whether any worker process was started."""
        return self._bulk.started or self._quick.started

    def submit(self, fn: Callable[..., T], *args: Any, quick: bool = False) -> Future[T]:
        """Start `fn(*args)` in a worker of the quick or the bulk lane."""
        if self.workers == 0:
            future: Future[T] = Future()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)
            return future
        return (self._quick if quick else self._bulk).submit(fn, *args)

    def result(self, future: Future[T], timeout: float | None = None) -> T:
        """The result of a submitted task; a crashed worker becomes `WorkerCrashed`."""
        try:
            return future.result(timeout)
        except BrokenProcessPool:
            lane = getattr(future, "lane", None)
            if lane is not None:
                lane[0].discard(lane[1])
            raise WorkerCrashed(
                "an HDF5 worker process died while reading (is the file corrupt?)"
            ) from None

    def run(
        self, fn: Callable[..., T], *args: Any, quick: bool = False, timeout: float | None = None
    ) -> T:
        """Run `fn(*args)` in a worker and wait for its result."""
        return self.result(self.submit(fn, *args, quick=quick), timeout)

    def close(self) -> None:
        """Stop the workers (tasks not started are cancelled)."""
        self._quick.close()
        self._bulk.close()


# -- inside a worker ------------------------------------------------------------

_open_files: OrderedDict[str, tuple[tuple, Any]] = OrderedDict()


def h5file(path: str, expect: tuple | list | None = None) -> Any:
    """The open h5py file at `path` (reopened when it changes); `expect` = required signature."""
    signature = file_signature(path)
    if expect is not None and tuple(expect) != signature:
        raise FileChanged(f"{os.path.basename(path)} changed")
    cached = _open_files.get(path)
    if cached is not None and cached[0] == signature:
        _open_files.move_to_end(path)
        return cached[1]
    if cached is not None:
        _close(path)
    f = open_h5(path)
    _open_files[path] = (signature, f)
    while len(_open_files) > MAX_OPEN_FILES:
        _close(next(iter(_open_files)))
    return f


def _close(path: str) -> None:
    _signature, f = _open_files.pop(path)
    try:
        f.close()
    except Exception:  # a file that went bad cannot always be closed cleanly
        pass


def check_unchanged(path: str, expect: tuple | list | None) -> None:
    """Raise `FileChanged` if the file moved on while we read it."""
    if expect is not None and file_signature(path) != tuple(expect):
        if path in _open_files:
            _close(path)
        raise FileChanged(f"{os.path.basename(path)} changed while it was read")
