"""The mirror loop: fetches every chunk of mirrored roots, then sleeps until one changes."""

from __future__ import annotations

import logging
import threading

from .remote_roots import RemoteRoots

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0
"""Seconds before another pass over a root whose mirroring failed (publisher away...)."""


class MirrorLoop:
    """A thread keeping mirrored roots whole at `rate` chunks and `bandwidth` bytes per
    second at most (0: no limit)."""

    def __init__(self, remote: RemoteRoots, rate: float, bandwidth: float = 0.0) -> None:
        self.remote = remote
        self.rate = rate
        self.bandwidth = bandwidth
        self.sleeping = threading.Event()
        """Set while it waits with nothing left to fetch (only a change wakes it)."""
        self.passes = 0
        """Mirror passes made over a root, for tests and curiosity."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cat2sub-mirror", daemon=True)

    def start(self) -> MirrorLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        wanted = self.remote.mirror_wanted
        while not self._stop.is_set():
            wanted.clear()  # before the pass: a change during it makes another one
            pending = False
            for root, mirrored in self.remote.store.subscriptions().items():
                if self._stop.is_set():
                    return
                if not mirrored or self.remote.mirror_complete(root):
                    continue
                self.passes += 1
                try:
                    pending |= not self.remote.mirror(root, self._stop, self.rate, self.bandwidth)
                except Exception:
                    log.exception("mirroring %s failed; will retry", root)
                    pending = True
            if pending:
                wanted.wait(RETRY_AFTER)
                continue
            # Nothing left to fetch: only a change (or closing) wakes it.
            self.sleeping.set()
            wanted.wait()
            self.sleeping.clear()

    def close(self) -> None:
        self._stop.set()
        self.remote.mirror_wanted.set()
        self._thread.join(timeout=10)
