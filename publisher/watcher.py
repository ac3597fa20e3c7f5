"""Watch a directory tree and report each changed path once, when it has settled.

watchdog reports every write; a file copied in 8 MiB pieces makes dozens of
events.  The `Watcher` collects them per path and calls back once the path has
been quiet for long enough, which depends on what the last event says:

- a rename, a deletion or a new directory is complete the moment it happens:
  reported after `quiet` (a few milliseconds, to gather its sibling events);
- a close-after-write ends a writer's work: reported after `closed`, a little
  longer in case the writer opens the file again at once; but once the same
  writer has closed and reopened the path (Blosc2 does so for every piece it
  writes), a close may be one more pause: after `reopened`, or longer if its
  pauses were longer;
- a write with no close seen yet (a file still open, or written through a
  mapping or a filesystem whose closes we cannot see): after `settle`, and only
  once its size and mtime held still between two looks.

When the kernel's event queue overflows, events are lost: watchdog only logs
it, so the watcher listens to that log record and calls `on_overflow` (the
publisher rescans the root).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = logging.getLogger(__name__)

# watchdog reports a kernel queue overflow only as a warning on this logger.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"

# Opened/closed-without-writing events are left out: our own reads make them.
EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

Signature = tuple[int, int, bool] | None  # (mtime_ns, size, is_dir), None = gone

# What the last event on a pending path says about it.
DONE = "done"  # renamed, deleted, a directory: complete now
CLOSED = "closed"  # its writer closed it after writing
WRITING = "writing"  # written to, and no close-after-write seen since

# A writer that reopens a file may pause this many times its longest pause so far.
PAUSE_FACTOR = 4.0


@dataclass
class _Pending:
    last_event: float
    state: str
    closes: int = 0  # close-after-write events seen while pending
    closed_at: float | None = None  # the last close, while no write followed it
    longest_pause: float = 0.0  # longest time from a close to the next write
    signature: Signature | object = None
    looked: bool = False  # `signature` holds a first look


def _signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_mtime_ns, st.st_size, path.is_dir()


class _OverflowListener(logging.Handler):
    """Calls back when watchdog logs that the kernel dropped events."""

    def __init__(self, callback: Callable[[], object]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            try:
                self.callback()
            except Exception:
                log.exception("reacting to an event queue overflow failed")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        w = self.watcher
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            # A rename is complete the moment it happens: nothing is writing the new name.
            w.touch(event.src_path, DONE)
            w.touch(event.dest_path, DONE)
        elif isinstance(event, FileClosedEvent):
            w.touch(event.src_path, CLOSED)
        elif event.is_synthetic:
            # watchdog listing a directory moved in: its files are complete.
            w.touch(event.src_path, DONE, listed=True)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            w.touch(event.src_path, WRITING)
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent | DirCreatedEvent):
            w.touch(event.src_path, DONE)


class Watcher:
    """Report settled changes below `rootdir` as relative POSIX paths to `on_change`.

    A reported path may be a file (created, modified or deleted) or a directory
    (whatever was known below it may be gone).  A directory that appears is also
    expanded into its files, each of which settles and is reported on its own.
    """

    def __init__(
        self,
        rootdir: str | os.PathLike,
        on_change: Callable[[str], object],
        *,
        ignore: Callable[[str], bool] = lambda relpath: False,
        on_overflow: Callable[[], object] | None = None,
        quiet: float = 0.01,
        closed: float = 0.02,
        reopened: float = 0.2,
        settle: float = 1.0,
    ) -> None:
        """Prepare to watch `rootdir` (call `start`); paths for which `ignore` is true are not.

        `on_overflow()` is called when events were lost (the kernel's queue overflowed).
        """
        self.rootdir = Path(rootdir).resolve()
        self._overflow = _OverflowListener(on_overflow) if on_overflow is not None else None
        self.on_change = on_change
        self.ignore = ignore
        self.quiet = quiet
        self.closed = max(closed, quiet)
        self.reopened = max(reopened, self.closed)
        self.settle = max(settle, self.reopened)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when a path becomes pending
        self._observer: Observer | None = None
        self._thread = threading.Thread(target=self._run, name="cat2pub-watcher", daemon=True)

    def start(self) -> None:
        """Start watching (events before this call are not seen)."""
        if self._overflow is not None:
            logging.getLogger(OVERFLOW_LOGGER).addHandler(self._overflow)
        self._observer = Observer()
        self._observer.schedule(
            _Handler(self), str(self.rootdir), recursive=True, event_filter=EVENTS
        )
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; changes not settled yet are dropped (a rescan finds them)."""
        self._stop.set()
        self._wake.set()
        if self._overflow is not None:
            logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._overflow)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def pending(self) -> int:
        """How many paths are waiting to settle."""
        with self._lock:
            return len(self._pending)

    def touch(self, path: str | bytes, state: str = DONE, *, listed: bool = False) -> None:
        """Note an event (`DONE`, `CLOSED` or `WRITING`) on an absolute path.

        `listed`: found by listing a directory, not by an event of its own; a path
        whose writer closed it keeps waiting (the writer may reopen it).
        """
        relpath = self._relpath(path)
        if relpath is None or self.ignore(relpath):
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(relpath)
            if entry is not None and listed and entry.state == CLOSED:
                return
            if entry is None:
                entry = self._pending[relpath] = _Pending(now, state)
            else:
                if state == WRITING and entry.closed_at is not None:
                    # Reopened after a close: remember how long its writer paused.
                    entry.longest_pause = max(entry.longest_pause, now - entry.closed_at)
                entry.last_event = now
                entry.state = state
                entry.looked = False
            if state == CLOSED:
                entry.closes += 1
                entry.closed_at = now
            elif state == WRITING:
                entry.closed_at = None
        self._wake.set()

    def _wait(self, entry: _Pending) -> float:
        """How long `entry` must stay quiet before it is looked at (again)."""
        if entry.looked:
            return self.reopened  # the second look at a path written without a close
        if entry.state == DONE:
            return self.quiet
        if entry.state == CLOSED:
            if entry.closes <= 1:
                return self.closed
            # Its writer closes and reopens it (Blosc2 does for every piece): this close
            # may be one more pause, so wait for longer than its pauses have been.
            return min(self.settle, max(self.reopened, PAUSE_FACTOR * entry.longest_pause))
        return self.settle

    def _relpath(self, path: str | bytes) -> str | None:
        if not path:
            return None
        try:
            rel = Path(os.fsdecode(path)).relative_to(self.rootdir).as_posix()
        except ValueError:
            return None
        return None if rel == "." else rel

    def _run(self) -> None:
        # A fine tick while something is pending (a rename is reported within `quiet`
        # plus at most one tick); none while nothing is.
        tick = min(0.005, self.quiet / 3)
        idle = True
        while True:
            self._wake.wait(None if idle else tick)
            self._wake.clear()  # before looking: a later event sets it again
            if self._stop.is_set():
                return
            try:
                for relpath in self._settled():
                    self._report(relpath)
            except Exception:  # never let one bad path stop the watching
                log.exception("watcher failed; continuing")
            idle = self.pending == 0

    def _settled(self) -> list[str]:
        """Paths quiet long enough; those never closed also held still between two looks."""
        now = time.monotonic()
        ready = []
        with self._lock:
            due = []
            for relpath, entry in list(self._pending.items()):
                if now - entry.last_event < self._wait(entry):
                    continue
                if entry.state == WRITING or entry.looked:
                    due.append((relpath, entry))
                else:
                    # Renamed, deleted or closed: nothing is writing it any more.
                    del self._pending[relpath]
                    ready.append(relpath)
        for relpath, entry in due:
            signature = _signature(self.rootdir / relpath)  # outside the lock: it hits the disk
            with self._lock:
                if self._pending.get(relpath) is not entry or entry.last_event > now:
                    continue  # a new event came in meanwhile
                if entry.looked and signature == entry.signature:
                    del self._pending[relpath]
                    ready.append(relpath)
                else:
                    # Written without a close we could see (still open, mmap, a missed
                    # event): look again after another quiet period.
                    entry.signature = signature
                    entry.looked = True
                    entry.last_event = now
        return ready

    def _report(self, relpath: str) -> None:
        path = self.rootdir / relpath
        if path.is_dir():
            # A directory that appeared (made or moved in): its files settle one by one.
            # Those created before watchdog watched the directory had their writes
            # unseen, so wait no longer for them than for a rename.
            for dirpath, dirnames, filenames in os.walk(path):
                base = Path(dirpath)
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not self.ignore((base / d).relative_to(self.rootdir).as_posix())
                ]
                for name in filenames:
                    self.touch(str(base / name), DONE, listed=True)
            # The directory itself too: it may have replaced one whose files are gone.
        try:
            self.on_change(relpath)
        except Exception:
            log.exception("handling a change of %s failed", relpath)
