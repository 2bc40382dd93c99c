"""Failed-login throttling per username and per client address, in a sliding window.

The failures live in the database, so every worker sees the same counts (another
worker's new failures count here once the change feed has seen its commit, within
one poll interval). Checking
happens before the cache and the upstream, so a locked-out client learns nothing,
not even whether a password it tries is right.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from rero.errors import TooManyAttempts
from rero.storage import Storage

MAX_REMEMBERED = 100_000


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
        #: key -> storage generation at which it was seen unlocked. A key only becomes
        #: locked through a new failure, which bumps the generation, so while it is
        #: unchanged the database need not be asked again.
        self._unlocked: dict[str, int] = {}
        #: username key -> storage generation at which its failures were cleared. No
        #: failure can have been written since while the generation is unchanged, so a
        #: success need not write to the database (it runs on every password check).
        self._cleared: dict[str, int] = {}

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, str]:
        return {"user": f"user:{username}", "address": f"address:{address}"}

    async def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyAttempts` while either key is over its limit."""
        keys = self._keys(username, address)
        generation = self._storage.generation
        if all(self._unlocked.get(key) == generation for key in keys.values()):
            return
        now = self._timer()
        limits = {key: self._limits[kind] for kind, key in keys.items()}
        locked = await self._storage.locked_since(limits, now - self._window)
        if locked:
            raise TooManyAttempts(max(1, math.ceil(max(locked.values()) + self._window - now)))
        _remember(self._unlocked, keys.values(), generation)

    async def failed(self, username: str, address: str) -> None:
        now = self._timer()
        keys = list(self._keys(username, address).values())
        await self._storage.add_failures(keys, now, now - self._window)

    async def succeeded(self, username: str) -> None:
        """A success forgives the username (not the address: one host may try many)."""
        key = self._keys(username, "")["user"]
        generation = self._storage.generation
        if self._cleared.get(key) == generation:
            return
        await self._storage.clear_failures(key)
        _remember(self._cleared, [key], generation)


def _remember(memo: dict[str, int], keys: Iterable[str], generation: int) -> None:
    """Note ``keys`` as seen at ``generation``, forgetting everything past a bound."""
    if len(memo) > MAX_REMEMBERED:
        memo.clear()
    memo.update(dict.fromkeys(keys, generation))
