"""Who is asking: credentials, session tokens, the login throttle and the admin check.

``auth/`` only checks a credential against PESU or the fake users; everything that
remembers (sessions, failed logins) lives here, over the store's narrow protocols.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cachetools import TTLCache

from rero.auth import AuthBackend, User, normalize_username
from rero.clock import Clock, stamp
from rero.errors import (
    AdminRequired,
    InvalidCredentials,
    InvalidSession,
    TooManyAttempts,
    TooManyLogins,
)
from rero.outcomes import Outcomes
from rero.settings import Settings
from rero.storage import LoginFailureStore, SessionLimits, SessionStore

log: Final = logging.getLogger(__name__)

MAX_REMEMBERED: Final = 100_000
LOGIN_WINDOW: Final = timedelta(minutes=1)
#: How long a worker trusts a session it has read (or opened) without asking the store
#: again; a revocation anywhere reaches every worker sooner, through the change feed.
SESSION_MEMORY_SECONDS: Final = 5.0
SESSIONS_REMEMBERED: Final = 100_000  # about 400 bytes each
#: What a session keeps of the profile: what the rules (campus) and grants (name) need.
SESSION_PROFILE: Final = ("name", "srn", "campus")
#: Bounds of a username's lock past its ceiling (seconds): see :func:`backoff`.
BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 60.0


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
        self._admins = frozenset(settings.admins)
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
        return user.srn in self._admins

    async def require_admin(self, identity: Identity) -> User:
        user = await self.authenticate(identity)
        if not self.is_admin(user):
            raise AdminRequired()
        return user
