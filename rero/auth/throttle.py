"""Failed-login throttling per username and per client address, in a sliding window.

Counts live in this process (see docs for several workers). Checking happens
before the cache and the upstream, so a locked-out client learns nothing, not even
whether a password it tries is right.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from rero.errors import TooManyAttempts


class Throttle:
    """Refuses attempts after ``per_user`` / ``per_address`` failures within ``window`` s."""

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": per_user, "address": per_address}
        self._window = window
        self._timer = timer
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyAttempts` while either key is over its limit."""
        now = self._timer()
        waits = []
        for key in (("user", username), ("address", address)):
            times = self._recent(key, now)
            limit = self._limits[key[0]]
            if len(times) >= limit:
                waits.append(times[-limit] + self._window - now)
        if waits:
            raise TooManyAttempts(max(1, math.ceil(max(waits))))

    def failed(self, username: str, address: str) -> None:
        now = self._timer()
        for key in (("user", username), ("address", address)):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        """A success forgives the username (not the address: one host may try many)."""
        self._failures.pop(("user", username), None)
