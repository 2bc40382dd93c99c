"""A student's notification settings, once for both stores: the address and choices, the
verification code (its hash only, with expiry and tries left, decremented before it is
compared so concurrent guesses cannot exceed them), and turning everything off by an
unsubscribe token's hash. Each function is a program for ``Storage.perform``."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rero.storage import Query, Rows

#: The messages a student may turn on or off, in the order the API lists them.
EVENTS: Final = ("confirmation", "reminder", "cancellation", "waitlist", "no_show", "suspension")
_COLUMNS: Final = (
    "email, verified_at, reminder_minutes, events, code_hash, code_expires_at, code_tries,"
    " code_sent_at, codes_since, codes_sent"
)


@dataclass(frozen=True)
class Choice:
    """A student's stored settings (never the code: only whether one is waiting)."""

    srn: str
    email: str
    verified: bool
    reminder_minutes: int
    events: dict[str, bool]
    code_hash: str | None = None
    code_expires_at: str | None = None
    code_tries: int = 0
    code_sent_at: str | None = None
    codes_since: str | None = None
    codes_sent: int = 0


def _choice(srn: str, row: Any) -> Choice:
    email, verified, minutes, events, code, expires, tries, sent, since, count = row
    stored = json.loads(str(events))
    return Choice(
        srn, str(email), verified is not None, int(minutes),
        {e: bool(stored.get(e, True)) for e in EVENTS}, code, expires, int(tries), sent, since,
        int(count),
    )  # fmt: skip


def read(srn: str) -> Generator[Query, Rows, Choice | None]:
    rows = yield (f"SELECT {_COLUMNS} FROM notification_settings WHERE srn = :srn", {"srn": srn})
    return _choice(srn, rows[0]) if rows else None


@dataclass(frozen=True)
class Code:
    """A new code's hash, when it expires, and the sending window it counts in."""

    hash: str
    expires_at: str
    tries: int
    since: str
    sent: int


def save(
    srn: str, email: str, minutes: int, events: Mapping[str, bool], at: str,
    decide: Callable[[Choice | None], Code | None],
) -> Generator[Query, Rows, tuple[Choice, bool]]:  # fmt: skip
    """Store the settings; ``decide`` (given what was stored) says whether a new code goes
    out (a changed address is unverified until its code is entered). Whether one did.
    The student's row is written (so locked, on PostgreSQL) before it is read: two
    changes at once take turns, and the second sees the first's code."""
    params: dict[str, Any] = {
        "srn": srn, "email": email, "minutes": minutes, "at": at,
        "events": json.dumps(dict(events), separators=(",", ":")),
    }  # fmt: skip
    new = yield (
        "INSERT INTO notification_settings (srn, email, reminder_minutes, events,"
        " updated_at) VALUES (:srn, :email, :minutes, :events, :at) ON CONFLICT DO NOTHING"
        " RETURNING srn",
        params,
    )
    before = None
    if not new:
        yield ("UPDATE notification_settings SET srn = srn WHERE srn = :srn", params)
        before = yield from read(srn)
    code = decide(before)
    kept = before is not None and before.email == email
    verified = "verified_at" if kept else "NULL"
    unsubscribe = "unsubscribe_hash" if kept else "NULL"
    sets = "email = :email, reminder_minutes = :minutes, events = :events, updated_at = :at"
    sets += f", verified_at = {verified}, unsubscribe_hash = {unsubscribe}"
    if code is not None:
        sets += (
            ", code_hash = :code, code_expires_at = :expires, code_tries = :tries,"
            " code_sent_at = :at, codes_since = :since, codes_sent = :sent"
        )
        params.update(
            code=code.hash, expires=code.expires_at, tries=code.tries, since=code.since,
            sent=code.sent,
        )  # fmt: skip
    elif not kept:
        sets += ", code_hash = NULL, code_tries = 0"
    yield (f"UPDATE notification_settings SET {sets} WHERE srn = :srn", params)
    after = yield from read(srn)
    assert after is not None
    return after, code is not None


def unsent(srn: str, code_hash: str) -> Generator[Query, Rows, None]:
    """The code could not be mailed: it is no code, and does not count against sending."""
    yield (
        "UPDATE notification_settings SET code_hash = NULL, code_tries = 0, code_sent_at = NULL,"
        " codes_sent = codes_sent - 1 WHERE srn = :srn AND code_hash = :code",
        {"srn": srn, "code": code_hash},
    )


@dataclass(frozen=True)
class Verified:
    """What entering a code came to: ``outcome`` one of verified, wrong, expired, none
    (no code waiting or no tries left), already, unknown (no address); tries left."""

    outcome: str
    tries: int = 0


def verify(
    srn: str, code_hash: str, at: str, unsubscribe_hash: str
) -> Generator[Query, Rows, Verified]:
    """Spend one try of the waiting code, then compare; a right one verifies the address
    (and stores the hash of its unsubscribe token)."""
    params = {"srn": srn, "at": at, "unsub": unsubscribe_hash}
    rows = yield (
        "UPDATE notification_settings SET code_tries = code_tries - 1 WHERE srn = :srn"
        " AND verified_at IS NULL AND code_hash IS NOT NULL AND code_tries > 0"
        " RETURNING code_hash, code_expires_at, code_tries",
        params,
    )
    if not rows:
        found = yield from read(srn)
        if found is None:
            return Verified("unknown")
        return Verified("already" if found.verified else "none")
    stored, expires, tries = rows[0]
    if str(expires) <= at:
        yield ("UPDATE notification_settings SET code_hash = NULL WHERE srn = :srn", params)
        return Verified("expired")
    if not hmac.compare_digest(str(stored), code_hash):
        if int(tries) == 0:
            yield ("UPDATE notification_settings SET code_hash = NULL WHERE srn = :srn", params)
        return Verified("wrong", int(tries))
    yield (
        "UPDATE notification_settings SET verified_at = :at, code_hash = NULL, code_tries = 0,"
        " unsubscribe_hash = :unsub, updated_at = :at WHERE srn = :srn",
        params,
    )
    return Verified("verified")


def unsubscribe(token_hash: str, at: str) -> Generator[Query, Rows, str | None]:
    """Turn every message off for the address whose token this is; its SRN, or None."""
    off = json.dumps(dict.fromkeys(EVENTS, False), separators=(",", ":"))
    rows = yield (
        "UPDATE notification_settings SET events = :off, updated_at = :at"
        " WHERE unsubscribe_hash = :hash AND verified_at IS NOT NULL RETURNING srn",
        {"off": off, "at": at, "hash": token_hash},
    )
    return str(rows[0][0]) if rows else None


def key(candidate: str) -> Generator[Query, Rows, str]:
    """The unsubscribe links' key, made once (``candidate``) and shared by every process."""
    yield (
        "INSERT INTO mail_state (name, value) VALUES ('unsubscribe_key', :key)"
        " ON CONFLICT DO NOTHING",
        {"key": candidate},
    )
    ((value,),) = yield ("SELECT value FROM mail_state WHERE name = 'unsubscribe_key'", {})
    return str(value)
