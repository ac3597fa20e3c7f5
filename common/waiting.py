"""Waiting for a condition, the one way: poll it until it holds or time is up.

Tests, benchmarks and the lab wait for things that happen elsewhere (a change
announced, a server up, a queue drained). They all use this helper rather than
sleeping and hoping; it lives in `common` (the standard library and httpx,
which every install has) so that `bench/` and `lab/`, which do not import the
test suite, share it with `tests/`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


class WaitTimeout(TimeoutError):
    """The condition did not hold in time; the message says which one."""


def wait_for(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 20.0,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll `predicate()` every `interval` s until it is true; raise `WaitTimeout` after
    `timeout` s, naming `what`. Exceptions of the `ignore` types (say, a server not up
    yet) count as "not yet". The predicate is always tried once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        late = time.monotonic() >= deadline
        try:
            if predicate():
                return
        except ignore:
            pass
        if late:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Wait until `url` answers below 500; fail at once if `proc` (the server) exited."""

    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        return httpx.get(url, timeout=1).status_code < 500

    wait_for(answers, f"{url} to answer", timeout, ignore=(httpx.HTTPError,))
