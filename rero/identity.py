"""Who is asking: credentials, session tokens, the login throttle and the role checks.

``auth/`` only checks a credential against PESU or the fake users; everything that
remembers (sessions, failed logins) lives here, over the store's narrow protocols.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cachetools import TTLCache

from rero.auth import AuthBackend, User
from rero.clock import Clock, stamp
from rero.errors import (
    InvalidCredentials,
    InvalidSession,
    TooManyLogins,
)
from rero.outcomes import Outcomes
from rero.roles import ADMIN, ASSISTANT, Roles
from rero.settings import Settings
from rero.storage import LoginFailureStore, SessionLimits, SessionStore
from rero.throttle import Throttle

log: Final = logging.getLogger(__name__)

LOGIN_WINDOW: Final = timedelta(minutes=1)
#: How long a worker trusts a session it has read (or opened) without asking the store
#: again; a revocation anywhere reaches every worker sooner, through the change feed.
SESSION_MEMORY_SECONDS: Final = 5.0
SESSIONS_REMEMBERED: Final = 100_000  # about 400 bytes each
#: What a session keeps of the profile: what the rules (campus) and grants (name) need.
SESSION_PROFILE: Final = ("name", "srn", "campus")


@dataclass(frozen=True)
class Credentials:
    """A username and password as a client sent them; never stored or logged."""

    username: str
    password: str = ""
    address: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class Token:
    """A session token from ``Authorization: Bearer`` or a WebSocket message."""

    value: str

    def __repr__(self) -> str:
        return "Token(***)"

    @property
    def digest(self) -> str:
        """What the database holds instead of the token."""
        return hashlib.sha256(self.value.encode()).hexdigest()


#: Who a request says it is: credentials, a session token, or an already-known user.
Identity = Credentials | Token | User

#: Told the digests of sessions that ended.
RevocationListener = Callable[[list[str]], None]


@dataclass(frozen=True)
class Session:
    """A session just opened: the only time its token is seen in clear."""

    user: User
    token: str
    expires_at: str


class IdentityService:
    """Turns what a request says about itself into a :class:`User`, or a domain error."""

    def __init__(
        self,
        auth: AuthBackend,
        sessions: SessionStore,
        failures: LoginFailureStore,
        settings: Settings,
        clock: Clock,
        outcomes: Outcomes,
    ) -> None:
        self._auth = auth
        self._sessions = sessions
        self._session_length = timedelta(minutes=settings.session_minutes)
        #: Who may do what beyond booking (the wiring gives it the store).
        self.roles = Roles(settings)
        self._logins_per_window = settings.max_logins_per_user_per_minute
        self._sessions_kept = settings.max_sessions_per_user
        self._clock = clock
        self._outcomes = outcomes
        self._revocation_listeners: list[RevocationListener] = []
        #: Sessions read lately, with their expiry: a booking rush reads each token once.
        self._seen: TTLCache[str, tuple[User, str]] = TTLCache(
            SESSIONS_REMEMBERED, SESSION_MEMORY_SECONDS, timer=lambda: clock().timestamp()
        )
        self._revocations_seen = 0
        self._throttle = Throttle(
            failures,
            per_pair=settings.max_failed_logins_per_user,
            per_address=settings.max_failed_logins_per_address,
            ceiling=settings.max_failed_logins_per_user_across_addresses,
            window=settings.failed_login_window_minutes * 60,
            timer=lambda: clock().timestamp(),  # wall time: shared by every worker
        )

    async def authenticate(self, identity: Identity) -> User:
        """A user from credentials (throttled), a live session token, or as given."""
        if isinstance(identity, User):
            return identity
        if isinstance(identity, Token):
            now = stamp(self._clock)
            seen = self._seen.get(identity.digest)
            if seen is not None and seen[1] > now:
                return seen[0]
            found = await self._sessions.session(identity.digest, now)
            if found is None:
                raise InvalidSession()
            user = User(**json.loads(found[0]))
            self._seen[identity.digest] = (user, found[1])
            return user
        with self._outcomes.counted("login"):
            return await self._check_password(identity)

    async def _check_password(self, credentials: Credentials) -> User:
        await self._throttle.check(credentials.username, credentials.address)
        try:
            user = await self._auth.authenticate(credentials.username, credentials.password)
        except InvalidCredentials:
            await self._throttle.failed(credentials.username, credentials.address)
            log.warning(
                "login failed",
                extra={"username": credentials.username, "address": credentials.address},
            )
            raise
        await self._throttle.succeeded(credentials.username, credentials.address)
        return user

    async def login(self, credentials: Credentials) -> Session:
        """Check credentials and open a session: only the token's hash is stored.

        A student may open ``max_logins_per_user_per_minute`` sessions a minute (each is a
        durable write) and keep ``max_sessions_per_user``; the oldest beyond are revoked.
        """
        user = await self.authenticate(credentials)
        token = Token(secrets.token_urlsafe(32))
        now = self._clock()
        expires_at = (now + self._session_length).isoformat(timespec="seconds")
        limits = SessionLimits(
            window_start=(now - LOGIN_WINDOW).isoformat(timespec="seconds"),
            per_window=self._logins_per_window,
            keep=self._sessions_kept,
            purge_before=(now - self._session_length).isoformat(timespec="seconds"),
        )
        opened = await self._sessions.create_session(
            token.digest,
            user.srn,
            expires_at,
            now.isoformat(timespec="seconds"),
            limits,
            json.dumps(profile := {key: getattr(user, key) for key in SESSION_PROFILE}),
        )
        if not opened.opened:
            first = datetime.fromisoformat(opened.first_in_window or limits.window_start)
            wait = (first + LOGIN_WINDOW - now).total_seconds()
            raise TooManyLogins(max(1, math.ceil(wait)))
        self._revoked(list(opened.revoked))
        self._seen[token.digest] = (User(**profile), expires_at)
        return Session(user, token.value, expires_at)

    async def logout(self, token: Token) -> None:
        """Revoke the session of ``token``; the sockets signed in with it end too."""
        now, purge_before = self._revocation_times()
        if not await self._sessions.delete_session(token.digest, now, purge_before):
            raise InvalidSession()
        self._revoked([token.digest])

    async def logout_all(self, identity: Identity) -> int:
        """Revoke every session of the caller (a stolen token among them); how many."""
        user = await self.authenticate(identity)
        now, purge_before = self._revocation_times()
        digests = await self._sessions.delete_sessions(user.srn, now, purge_before)
        self._revoked(digests)
        return len(digests)

    def on_revoked(self, listener: RevocationListener) -> None:
        """Call ``listener(digests)`` whenever sessions end, here or in another process."""
        self._revocation_listeners.append(listener)

    async def follow_revocations(self) -> None:
        """Start reading the revocation log from its newest entry (at start-up)."""
        self._revocations_seen, _ = await self._sessions.revocations(-1)

    async def sync_revocations(self) -> None:
        """Another process may have committed: hand on the sessions it revoked."""
        self._revocations_seen, digests = await self._sessions.revocations(self._revocations_seen)
        if digests:
            self._revoked(digests)

    def _revocation_times(self) -> tuple[str, str]:
        """Now, and the age past which a revocation no longer matters (its session would
        have expired anyway)."""
        now = self._clock()
        cutoff = now - self._session_length
        return now.isoformat(timespec="seconds"), cutoff.isoformat(timespec="seconds")

    def _revoked(self, digests: list[str]) -> None:
        for digest in digests:
            self._seen.pop(digest, None)
        for listener in self._revocation_listeners:
            try:
                listener(digests)
            except Exception:  # a broken listener must not undo a revocation
                log.exception("revocation listener failed")

    def is_admin(self, user: User) -> bool:
        return self.roles.at_least(user.srn, ADMIN)

    def is_staff(self, user: User) -> bool:
        return self.roles.at_least(user.srn, ASSISTANT)

    async def require_admin(self, identity: Identity) -> User:
        return self.roles.require(await self.authenticate(identity), ADMIN)

    async def require_staff(self, identity: Identity) -> User:
        return self.roles.require(await self.authenticate(identity), ASSISTANT)

    async def set_role(self, identity: Identity, srn: str, role: str) -> None:
        """Admins: give ``srn`` a role at run time (a configured role is fixed: 409)."""
        admin = await self.require_admin(identity)
        await self.roles.set(admin, srn, role, stamp(self._clock))

    async def staff(self, identity: Identity) -> list[tuple[str, str, str]]:
        """Staff: every student with a role above ``student``, and where it comes from."""
        await self.require_staff(identity)
        return self.roles.everyone()
