"""A student's email notifications: the address and which messages, verified by a code
mailed to it before anything else is sent there; and turning them off from a link.

The code is six digits from :mod:`secrets`, stored only as an HMAC (keyed by the key kept
in the database, so a copy of the settings alone does not reveal live codes) bound to
the SRN and the address, good for :data:`CODE_MINUTES` and :data:`TRIES` tries (spent
before the comparison, in the database). A code goes out for a new or changed address,
or for the same unverified address when none is waiting (spent, expired, or never
mailed); other changes send none. Codes are rationed per student: one a minute, ten a
day, so guessing stays hopeless and rero is no way to mail strangers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Final

from rero.clock import Clock, stamp
from rero.errors import Conflict, NotFound, RequestInvalid, ReroError, TooManyAttempts
from rero.identity import Identity, IdentityService
from rero.mail_render import CODE_MINUTES, mask
from rero.mailer import Mailer, digest
from rero.storage import Programs
from rero.storage.notify_programs import EVENTS, Choice, Code, read, save, unsent, verify
from rero.storage.notify_programs import unsubscribe as unsubscribe_program

log: Final = logging.getLogger(__name__)

TRIES: Final = 5
DEFAULT_REMINDER: Final = 60
#: Codes per student: at most one per ``CODE_GAP``, ``CODES_PER_DAY`` a day.
CODE_GAP: Final = timedelta(minutes=1)
CODES_PER_DAY: Final = 10
DAY: Final = timedelta(days=1)


class TooManyCodes(TooManyAttempts):
    """Codes are rationed: the student waits (``Retry-After``)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        ReroError.__init__(self, detail)
        self.retry_after = retry_after


class MailUnavailable(ReroError):
    """The SMTP server did not take the code's message; nothing was mailed."""

    status: ClassVar[int] = 503


class MailNotConfigured(MailUnavailable):
    """No ``smtp_host``: a code could never reach the student, so no address is taken."""


class WrongCode(ReroError):
    """A code that is not the one mailed (the try is spent)."""

    status: ClassVar[int] = 400


@dataclass(frozen=True)
class Settings:
    """What ``GET /me/notifications`` shows."""

    email: str | None
    verified: bool
    reminder_minutes: int
    events: dict[str, bool]

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email, "verified": self.verified,
            "reminder_minutes": self.reminder_minutes, "events": dict(self.events),
        }  # fmt: skip


def _shown(choice: Choice | None) -> Settings:
    if choice is None:
        return Settings(None, False, DEFAULT_REMINDER, dict.fromkeys(EVENTS, True))
    return Settings(choice.email, choice.verified, choice.reminder_minutes, choice.events)


def code_hash(key: str, srn: str, email: str, code: str) -> str:
    """The stored form of a code: an HMAC, so the table alone does not tell it."""
    message = f"code\0{srn}\0{email}\0{code}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def normal(email: str) -> str:
    """The address as compared and stored: its domain in lower case (the part before
    the ``@`` is the receiving server's to interpret, so it is kept as given)."""
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def _waiting(choice: Choice, now: datetime) -> bool:
    """Whether a code mailed to the stored address can still be entered."""
    expires = choice.code_expires_at
    live = expires is not None and datetime.fromisoformat(expires) > now
    return choice.code_hash is not None and choice.code_tries > 0 and live


class NotificationService:
    """Reads and changes the caller's notification settings; mails codes."""

    def __init__(
        self, identity: IdentityService, store: Programs, mailer: Mailer, clock: Clock
    ) -> None:
        self._identity = identity
        self._store = store
        self._mailer = mailer
        self._clock = clock

    def _hash(self, srn: str, email: str, code: str) -> str:
        return code_hash(self._mailer.key, srn, email, code)

    async def mine(self, identity: Identity) -> Settings:
        user = await self._identity.authenticate(identity)
        return _shown(await self._store.perform(read(user.srn)))

    async def change(
        self, identity: Identity, email: str, minutes: int | None, events: Mapping[str, bool]
    ) -> tuple[Settings, bool]:
        """Store the settings (missing messages on); a new or changed address, or an
        unverified one with no code waiting, gets a code. The settings, and whether a code
        was mailed. 503 when mail is not configured: no address could be verified."""
        user = await self._identity.authenticate(identity)
        if not self._mailer.transport.configured:
            raise MailNotConfigured("Mail is not configured on this server")
        email = normal(email)
        now = self._clock()
        made: list[tuple[str, str]] = []

        def decide(before: Choice | None) -> Code | None:
            same = before is not None and before.email == email
            if same and before is not None and (before.verified or _waiting(before, now)):
                return None
            _ration(before, now)
            code = f"{secrets.randbelow(10**6):06d}"
            since = before.codes_since if before and before.codes_since else None
            if since is None or datetime.fromisoformat(since) + DAY <= now:
                since, count = now.isoformat(timespec="seconds"), 0
            else:
                count = before.codes_sent if before else 0
            hashed = self._hash(user.srn, email, code)
            made.append((code, hashed))
            expires = (now + timedelta(minutes=CODE_MINUTES)).isoformat(timespec="seconds")
            return Code(hashed, expires, TRIES, since, count + 1)

        on = {e: bool(events.get(e, True)) for e in EVENTS}
        choice, coded = await self._store.perform(
            save(user.srn, email, minutes or DEFAULT_REMINDER, on, stamp(self._clock), decide)
        )
        if coded:
            code, hashed = made[-1]
            token = self._mailer.token(user.srn, email)
            outcome = await self._mailer.send_code(email, code, token, secrets.token_hex(8))
            if outcome != "sent":
                await self._store.perform(unsent(user.srn, hashed))
            if outcome == "refused":
                raise RequestInvalid({"email": ["The mail server refuses this address"]})
            if outcome != "sent":
                raise MailUnavailable("The code could not be mailed, try again later")
            log.info("verification code mailed", extra={"srn": user.srn, "to": mask(email)})
        return _shown(choice), coded

    async def verify(self, identity: Identity, code: str) -> Settings:
        user = await self._identity.authenticate(identity)
        found = await self._store.perform(read(user.srn))
        email = found.email if found is not None else ""
        token_hash = digest(self._mailer.token(user.srn, email))
        done = await self._store.perform(
            verify(user.srn, self._hash(user.srn, email, code), stamp(self._clock), token_hash)
        )
        again = "ask for a new one with PUT /me/notifications"
        if done.outcome == "unknown":
            raise NotFound("No notification address: add one with PUT /me/notifications")
        if done.outcome == "already":
            raise Conflict("The address is verified already")
        if done.outcome == "none":
            raise Conflict(f"No code is waiting: {again}")
        if done.outcome == "expired":
            raise Conflict(f"The code has expired: {again}")
        if done.outcome == "wrong":
            left = f"{done.tries} tries left" if done.tries else f"no tries left: {again}"
            raise WrongCode(f"Wrong code, {left}")
        log.info("notification address verified", extra={"srn": user.srn, "to": mask(email)})
        return _shown(await self._store.perform(read(user.srn)))

    async def unsubscribe(self, token: str) -> None:
        """Turn every message off for the address the token was made for; 404 if none."""
        srn = None
        if 20 <= len(token) <= 100 and token.isalpha() and token.isascii():
            srn = await self._store.perform(unsubscribe_program(digest(token), stamp(self._clock)))
        if srn is None:
            raise NotFound("No such unsubscribe link")
        log.info("notifications turned off by link", extra={"srn": srn})


def _ration(before: Choice | None, now: datetime) -> None:
    """429 if this student had a code less than a minute ago, or ten within the day."""
    if before is None:
        return
    if before.code_sent_at is not None:
        _wait(before.code_sent_at, CODE_GAP, now, "A code was mailed less than a minute ago")
    if before.codes_since is not None and before.codes_sent >= CODES_PER_DAY:
        _wait(before.codes_since, DAY, now, f"{CODES_PER_DAY} codes were mailed today")


def _wait(since: str, span: timedelta, now: datetime, why: str) -> None:
    left = (datetime.fromisoformat(since) + span - now).total_seconds()
    if left > 0:
        seconds = math.ceil(left)
        raise TooManyCodes(f"{why}, try again in {seconds} seconds", seconds)
