"""Watch a directory tree and report each changed path once, when it has settled.

watchdog reports every write; a file copied in 8 MiB pieces makes dozens of
events.  The `Watcher` collects them per path and calls back only after the
path has been quiet for a while *and* its size and mtime did not move between
two looks, so a file being written is reported once, complete.  A file whose
writer closed it (inotify's close-after-write) settles after `quiet`; one still
open, or one whose close we cannot see, after the longer `settle`.
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


@dataclass
class _Pending:
    last_event: float
    writing: bool  # written to, and no close-after-write seen since
    signature: Signature | object = None
    looked: bool = False  # `signature` holds a first look


def _signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_mtime_ns, st.st_size, path.is_dir()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        w = self.watcher
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            # A rename is complete the moment it happens: nothing is writing the new name.
            w.touch(event.src_path, writing=False)
            w.touch(event.dest_path, writing=False)
        elif isinstance(event, FileClosedEvent):
            w.touch(event.src_path, writing=False)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            w.touch(event.src_path, writing=True)
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent | DirCreatedEvent):
            w.touch(event.src_path, writing=False)


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
        quiet: float = 0.2,
        settle: float = 1.0,
    ) -> None:
        """Prepare to watch `rootdir` (call `start`); paths for which `ignore` is true are not."""
        self.rootdir = Path(rootdir).resolve()
        self.on_change = on_change
        self.ignore = ignore
        self.quiet = quiet
        self.settle = max(settle, quiet)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer: Observer | None = None
        self._thread = threading.Thread(target=self._run, name="cat2pub-watcher", daemon=True)

    def start(self) -> None:
        """Start watching (events before this call are not seen)."""
        self._observer = Observer()
        self._observer.schedule(
            _Handler(self), str(self.rootdir), recursive=True, event_filter=EVENTS
        )
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; changes not settled yet are dropped (a rescan finds them)."""
        self._stop.set()
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

    def touch(self, path: str | bytes, writing: bool) -> None:
        """Note an event on an absolute path (also usable to inject one)."""
        relpath = self._relpath(path)
        if relpath is None or self.ignore(relpath):
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(relpath)
            if entry is None:
                self._pending[relpath] = _Pending(now, writing)
            else:
                entry.last_event = now
                entry.writing = writing
                entry.looked = False

    def _relpath(self, path: str | bytes) -> str | None:
        if not path:
            return None
        try:
            rel = Path(os.fsdecode(path)).relative_to(self.rootdir).as_posix()
        except ValueError:
            return None
        return None if rel == "." else rel

    def _run(self) -> None:
        tick = min(0.05, self.quiet / 2)
        while not self._stop.wait(tick):
            try:
                for relpath in self._settled():
                    self._report(relpath)
            except Exception:  # never let one bad path stop the watching
                log.exception("watcher failed; continuing")

    def _settled(self) -> list[str]:
        """Paths quiet long enough whose signature held still between two looks."""
        now = time.monotonic()
        with self._lock:
            due = [
                (rel, e)
                for rel, e in self._pending.items()
                if now - e.last_event >= (self.settle if e.writing else self.quiet)
            ]
        ready = []
        for relpath, entry in due:
            signature = _signature(self.rootdir / relpath)  # outside the lock: it hits the disk
            with self._lock:
                if self._pending.get(relpath) is not entry or entry.last_event > now:
                    continue  # a new event came in meanwhile
                if entry.looked and signature == entry.signature:
                    del self._pending[relpath]
                    ready.append(relpath)
                else:
                    # First look, or it moved without an event (mmap, a missed event):
                    # look again after another quiet period.
                    entry.signature = signature
                    entry.looked = True
                    entry.last_event = now
                    entry.writing = False
        return ready

    def _report(self, relpath: str) -> None:
        path = self.rootdir / relpath
        if path.is_dir():
            # A directory that appeared (made or moved in): its files settle one by one,
            # and may still be in the middle of being written.
            for dirpath, dirnames, filenames in os.walk(path):
                base = Path(dirpath)
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not self.ignore((base / d).relative_to(self.rootdir).as_posix())
                ]
                for name in filenames:
                    self.touch(str(base / name), writing=False)
            # The directory itself too: it may have replaced one whose files are gone.
        try:
            self.on_change(relpath)
        except Exception:
            log.exception("handling a change of %s failed", relpath)
