"""Fake backend: local users for offline development and tests, never production."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import Final

from rero.auth import User, normalize_username
from rero.errors import InvalidCredentials
from rero.setting_checks import FakeUser

log: Final = logging.getLogger(__name__)


class FakeAuth:
    """Checks credentials against a fixed list of users."""

    def __init__(self, users: Iterable[FakeUser]) -> None:
        # Keyed as the cache and the throttle spell usernames, which is how they arrive.
        self._users = {normalize_username(u.username): u for u in users}
        log.warning("authentication is FAKE: %d local users, no PESU check", len(self._users))

    async def authenticate(self, username: str, password: str) -> User:
        """Constant-time compare, so the fake leaks no more than the real thing."""
        user = self._users.get(normalize_username(username))
        expected = user.password if user else "\0"
        if not hmac.compare_digest(expected.encode(), password.encode()) or user is None:
            raise InvalidCredentials()
        return User(user.name, user.srn, user.prn, user.program, user.branch, user.campus)
