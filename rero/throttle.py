"""The login throttle: failed password checks counted per (username, address), per
address, and per username across addresses, in the database so every worker sees the
same counts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Final

from rero.auth import normalize_username
from rero.errors import TooManyAttempts
from rero.storage import LoginFailureStore

#: Bounds of a username's lock past its ceiling (seconds): see :func:`backoff`.
BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 60.0
#: Keys remembered as seen before the memo is emptied.
MAX_REMEMBERED: Final = 100_000


class Throttle:
    """Refuses password checks after too many failures within ``window`` seconds, counted
    three ways (usernames as :func:`normalize_username` spells them):

    - ``per_pair`` failures of one username from one address lock that pair for the
      window, so guessing from elsewhere never locks the owner out from their own network;
    - ``per_address`` failures from one address, whatever the usernames, lock the address;
    - ``ceiling`` failures of one username from every address together make it back off
      (:func:`backoff`) rather than walling it off for the window.

    The failures live in the database, so every worker sees the same counts (another
    worker's new failures count here once the change feed has seen its commit). Checking
    happens before the cache and the upstream, so a locked-out client learns nothing,
    not even whether a password it tries is right.
    """

    def __init__(
        self,
        store: LoginFailureStore,
        *,
        per_pair: int,
        per_address: int,
        ceiling: int,
        window: float,
        timer: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._limits = {"pair": per_pair, "address": per_address, "user": ceiling}
        self._window = window
        self._timer = timer
        #: key -> store generation at which it was seen unlocked. A key only becomes
        #: locked through a new failure, which bumps the generation, so while it is
        #: unchanged the database need not be asked again.
        self._unlocked: dict[str, int] = {}
        #: pair key -> store generation at which its failures were cleared. No failure
        #: can have been written since while the generation is unchanged, so a success
        #: need not write to the database (it runs on every password check).
        self._cleared: dict[str, int] = {}

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, str]:
        name = normalize_username(username)
        # An address has no space, so the pair key cannot be read two ways.
        return {"pair": f"pair:{address} {name}", "address": f"address:{address}",
                "user": f"user:{name}"}  # fmt: skip

    async def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyAttempts` while any of the three keys is locked."""
        keys = self._keys(username, address)
        generation = self._store.generation
        if all(self._unlocked.get(key) == generation for key in keys.values()):
            return
        now = self._timer()
        since = now - self._window
        limits = {key: self._limits[kind] for kind, key in keys.items()}
        at_limit = await self._store.locked_since(limits, since)
        ceiling_at = at_limit.pop(keys["user"], None)
        until = [at + self._window for at in at_limit.values()]
        if ceiling_at is not None:  # rare: a username guessed at from many addresses
            newest = await self._store.locked_since({keys["user"]: 1}, since)
            latest = newest.get(keys["user"], ceiling_at)
            until.append(latest + backoff(latest - ceiling_at))
        wait = max(until, default=now) - now
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))
        _remember(self._unlocked, keys.values(), generation)

    async def failed(self, username: str, address: str) -> None:
        now = self._timer()
        keys = list(self._keys(username, address).values())
        await self._store.add_failures(keys, now, now - self._window)

    async def succeeded(self, username: str, address: str) -> None:
        """A success forgives the pair only: not the address (one host may try many
        usernames), nor the username elsewhere (the owner knowing the password does not
        make the guesses made from other addresses fewer)."""
        key = self._keys(username, address)["pair"]
        generation = self._store.generation
        if self._cleared.get(key) == generation:
            return
        await self._store.clear_failures(key)
        _remember(self._cleared, [key], generation)


def backoff(span: float) -> float:
    """How long a username past its ceiling stays locked after its newest failure: as
    long as its last ``ceiling`` failures took (``span``), between BACKOFF_MIN and
    BACKOFF_MAX seconds.

    A burst reaches the ceiling at once and pays BACKOFF_MIN. Each lock an attacker
    waits out becomes part of the span that sets the next, so the locks of one who goes
    on double (1, 1, 2, 4, ... s) up to BACKOFF_MAX, and a slow trickle pays BACKOFF_MAX
    from the start. Guesses stay near ``ceiling`` a window (at most about ``ceiling`` +
    window / BACKOFF_MAX + 6; a fixed wall: ``ceiling``), but a refused owner is told to
    come back within BACKOFF_MAX, not when a steady trickle lets the window run out.
    """
    return min(BACKOFF_MAX, max(BACKOFF_MIN, span))


def _remember(memo: dict[str, int], keys: Iterable[str], generation: int) -> None:
    """Note ``keys`` as seen at ``generation``, forgetting everything past a bound."""
    if len(memo) > MAX_REMEMBERED:
        memo.clear()
    memo.update(dict.fromkeys(keys, generation))
