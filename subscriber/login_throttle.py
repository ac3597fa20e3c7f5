"""Login throttling: failed attempts counted per account and per client, 429 past a limit.

A guesser gets a few tries per account (and a few more per client address, over
every account) in a sliding window; after that every attempt, right or wrong, is
answered 429 with `Retry-After` until the oldest failure leaves the window, so
the right password found by guessing is not told apart from a wrong one.
A successful login clears its account's count.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..common.errors import TooManyRequests

if TYPE_CHECKING:  # the settings import this module: it must not load the store
    from .store import Store, User

# Keys not seen for a window are dropped once the table grows past this.
MAX_TRACKED = 10000


@dataclass(frozen=True)
class ThrottleLimits:
    """Failed logins allowed per account and per client address within `window` seconds."""

    per_account: int = 10
    per_client: int = 50
    window: float = 900.0


class LoginThrottle:
    """Counts failed logins by key (`account:...`, `client:...`) in a sliding window."""

    def __init__(self, limits: ThrottleLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.limits.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait_needed(self, account: str, client: str) -> float:
        """Seconds before `account` may try again from `client` (0: now)."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._keys(account, client):
                times = self._recent(key, now)
                if limit > 0 and len(times) >= limit:
                    # Free once enough failures leave the window to drop below the limit.
                    wait = max(wait, times[len(times) - limit] + self.limits.window - now)
        return wait

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > MAX_TRACKED:
                for key in list(self._failures):
                    self._recent(key, now)
            for key, _limit in self._keys(account, client):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(f"account:{account.lower()}", None)

    def _keys(self, account: str, client: str) -> tuple[tuple[str, int], ...]:
        return (
            (f"account:{account.lower()}", self.limits.per_account),
            (f"client:{client}", self.limits.per_client),
        )


class ThrottledLogins:
    """`Store.authenticate` behind a `LoginThrottle`: what the API and the login page call."""

    def __init__(self, store: Store, limits: ThrottleLimits) -> None:
        self.store = store
        self.throttle = LoginThrottle(limits)

    def authenticate(self, email: str, password: str, client: str) -> User | None:
        """The user with these credentials, None when wrong, 429 while throttled."""
        wait = self.throttle.wait_needed(email, client)
        if wait > 0:
            raise TooManyRequests(
                "Too many failed logins: try again later", retry_after=max(1, math.ceil(wait))
            )
        user = self.store.authenticate(email, password)
        if user is None:
            self.throttle.failed(email, client)
        else:
            self.throttle.succeeded(email)
        return user
