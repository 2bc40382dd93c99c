"""A TTL cache in front of any backend, with concurrent misses coalesced.

Keys are HMAC-SHA-256 of username and password under a per-process secret, so
neither a password nor an offline-guessable hash of one is held in memory. The username
is normalized first (:func:`rero.auth.normalize_username`): every spelling of one
username shares one entry, and the backend is asked for that spelling.
Only successes are cached: a wrong password or an outage is asked again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final

from cachetools import TTLCache

from rero.auth import AuthBackend, User, normalize_username

MAX_ENTRIES: Final = 100_000


class CachedAuth:
    """Remembers successful logins for ``ttl`` seconds; one upstream call per key at a time."""

    def __init__(
        self,
        backend: AuthBackend,
        ttl: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._secret = secrets.token_bytes(32)
        self._cache: TTLCache[bytes, User] | None = (
            TTLCache(maxsize=MAX_ENTRIES, ttl=ttl, timer=timer) if ttl > 0 else None
        )
        self._in_flight: dict[bytes, asyncio.Task[User]] = {}
        self.hits = 0
        self.misses = 0

    def _key(self, username: str, password: str) -> bytes:
        message = username.encode() + b"\0" + password.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    async def authenticate(self, username: str, password: str) -> User:
        """Serve from cache, or join the one upstream call in flight for these credentials.

        The call runs in its own task, so a requester that goes away (a closed
        socket) does not cancel it for the others waiting on it.
        """
        username = normalize_username(username)
        key = self._key(username, password)
        if self._cache is not None and (user := self._cache.get(key)) is not None:
            self.hits += 1
            return user
        self.misses += 1
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._backend.authenticate(username, password))
            self._in_flight[key] = task
            task.add_done_callback(lambda t: self._settle(key, t))
        return await asyncio.shield(task)

    def _settle(self, key: bytes, task: asyncio.Task[User]) -> None:
        del self._in_flight[key]
        if self._cache is not None and not task.cancelled() and task.exception() is None:
            self._cache[key] = task.result()
