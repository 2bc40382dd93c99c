"""Failed-login throttling per username and per client address, in a sliding window.

The failures live in the database, so every worker sees the same counts. Checking
happens before the cache and the upstream, so a locked-out client learns nothing,
not even whether a password it tries is right.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rero.errors import TooManyAttempts
from rero.storage import Storage


class Throttle:
    """Refuses attempts after ``per_user`` / ``per_address`` failures within ``window`` s."""

    def __init__(
        self,
        storage: Storage,
        per_user: int,
        per_address: int,
        window: float,
        timer: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._limits = {"user": per_user, "address": per_address}
        self._window = window
        self._timer = timer

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, str]:
        return {"user": f"user:{username}", "address": f"address:{address}"}

    async def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyAttempts` while either key is over its limit."""
        now = self._timer()
        keys = self._keys(username, address)
        limits = {key: self._limits[kind] for kind, key in keys.items()}
        locked = await self._storage.locked_since(limits, now - self._window)
        if locked:
            raise TooManyAttempts(max(1, math.ceil(max(locked.values()) + self._window - now)))

    async def failed(self, username: str, address: str) -> None:
        now = self._timer()
        keys = list(self._keys(username, address).values())
        await self._storage.add_failures(keys, now, now - self._window)

    async def succeeded(self, username: str) -> None:
        """A success forgives the username (not the address: one host may try many)."""
        await self._storage.clear_failures(self._keys(username, "")["user"])
