"""The mail queue, once for both stores. The dispatcher takes the outbox rows not yet
mailed (``mailed_at`` NULL; on PostgreSQL locked, skipping those another dispatcher holds)
and, in the transaction that marks them mailed, turns each event into the messages its
student asked for (one row per message, once per event, kind and address), so a crash
after the commit and before the send loses nothing, and a row committed late (after rows
with higher ids) is mailed all the same. A cancelled booking
cancels its pending reminder. The sender leases due rows, checks each is still wanted
(the address verified and unchanged, the message turned on, a reminder's booking still
booked and not started), and settles them: sent, retried later, or dead.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from rero.storage import Query, Rows
from rero.storage.notify_programs import read
from rero.storage.rows import MAILED

#: The setting each message answers to.
SETTING: Final = {
    "confirmation": "confirmation", "reminder": "reminder", "cancellation": "cancellation",
    "waitlist": "waitlist", "no_show": "no_show", "suspension": "suspension",
}  # fmt: skip
_DUE: Final = (
    "state = 'pending' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)"
    # in order: not while an earlier message to the same address is out with another sender
    " AND NOT EXISTS (SELECT 1 FROM mail_queue AS ahead WHERE ahead.recipient ="
    " mail_queue.recipient AND ahead.state = 'pending' AND ahead.id < mail_queue.id"
    " AND ahead.lease_until > :now)"
)
_QUEUE: Final = (
    "INSERT INTO mail_queue (event_id, kind, srn, recipient, booking_id, context, state,"
    " next_attempt_at, created_at) VALUES (:event, :kind, :srn, :to, :booking, :context,"
    " 'pending', :due, :now) ON CONFLICT DO NOTHING"
)
_CANCELS: Final = "action IN ('cancelled', 'admin_cancelled', 'reset')"


def dispatch(now: str, limit: int, skip_locked: bool = False) -> Generator[Query, Rows, int]:
    """Queue the messages of up to ``limit`` unmailed outbox rows and mark them mailed, in
    one transaction; how many were marked. ``skip_locked`` (PostgreSQL only) locks the
    rows read (``FOR UPDATE``): dispatchers in other processes wait, then pass them."""
    # One dispatcher at a time (a row lock on both stores): each student's events are
    # queued in the order they were written. Rows a webhook sender is leasing are waited
    # for, never skipped (skipping one would queue a later event first).
    # An idle poll writes nothing (on SQLite a write would be a commit every second).
    if not (yield ("SELECT 1 FROM outbox WHERE mailed_at IS NULL LIMIT 1", {})):
        return 0
    yield ("UPDATE mail_state SET value = value WHERE name = 'dispatcher'", {})
    rows = yield (
        "SELECT id, kind, srn, booking_id, payload FROM outbox WHERE mailed_at IS NULL"
        f" ORDER BY id LIMIT :n{' FOR UPDATE' if skip_locked else ''}",
        {"n": limit},
    )
    for _, kind, srn, booking_id, payload in rows:
        if kind in MAILED and srn:
            event = json.loads(str(payload))
            yield from _queue(str(kind), str(srn), booking_id, event, now)
    if rows:
        ids = {f"i{n}": int(row[0]) for n, row in enumerate(rows)}
        yield (
            f"UPDATE outbox SET mailed_at = :now WHERE id IN ({', '.join(':' + k for k in ids)})",
            {"now": now, **ids},
        )
    return len(rows)


def _queue(kind: str, srn: str, booking_id: Any, event: dict[str, Any], now: str) -> Any:
    if kind == "cancelled":
        yield (
            "UPDATE mail_queue SET state = 'cancelled', settled_at = :now WHERE"
            " booking_id = :booking AND kind = 'reminder' AND state = 'pending'",
            {"booking": booking_id, "now": now},
        )
    choice = yield from read(srn)
    if choice is None or not choice.verified:
        return
    on = choice.events
    messages: list[tuple[str, str, dict[str, Any]]] = []
    if kind == "booked":
        if on["confirmation"]:
            messages.append(("confirmation", now, {}))
        due = _minus(event["start"], choice.reminder_minutes)
        if on["reminder"] and due > event["at"] and event["start"] > now:
            messages.append(("reminder", due, {"minutes": choice.reminder_minutes}))
    elif kind == "cancelled" and on["cancellation"]:
        why = yield from _why(srn, booking_id, event)
        if why is not None:
            messages.append(("cancellation", now, {"why": why[0]}))
    elif kind == "hold_offered" and on["waitlist"]:
        messages.append(("waitlist", now, {"deadline": event.get("hold_expires_at")}))
    elif kind == "no_show" and on["no_show"]:
        messages.append(("no_show", now, {}))
    elif kind == "suspended" and on["suspension"]:
        messages.append(("suspension", now, {}))
    for message, due, extra in messages:
        yield (
            _QUEUE,
            {
                "event": event["id"], "kind": message, "srn": srn, "to": choice.email,
                "booking": booking_id, "context": json.dumps({**event, **extra}), "due": due,
                "now": now,
            },
        )  # fmt: skip


def _minus(instant: str, minutes: int) -> str:
    at = datetime.fromisoformat(instant) - timedelta(minutes=minutes)
    return at.isoformat(timespec="seconds")


def _why(
    srn: str, booking_id: Any, event: dict[str, Any]
) -> Generator[Query, Rows, tuple[str | None] | None]:
    """Why somebody else cancelled the booking (None inside: no reason given); None when
    its holder did it themselves (no message: they know)."""
    rows = yield (
        f"SELECT actor_srn, reason FROM booking_events WHERE booking_id = :id AND {_CANCELS}"
        " ORDER BY id DESC LIMIT 1",
        {"id": booking_id},
    )
    actor, reason = rows[0] if rows else (None, event.get("reason"))
    if actor == srn:
        return None
    if reason == "blackout":
        closed = yield (
            "SELECT reason FROM blackouts WHERE resource = :resource AND starts_at < :end"
            " AND ends_at > :start ORDER BY id DESC LIMIT 1",
            {"resource": event["resource"], "start": event["start"], "end": event["end"]},
        )
        return (f"the lab is closed: {closed[0][0]}" if closed else "the lab is closed",)
    if reason == "series":
        return ("its weekly series was cancelled",)
    return (None if reason is None else str(reason),)


@dataclass(frozen=True)
class Mail:
    """One message to send: its row, the event it comes from, and what it says."""

    id: int
    event_id: str
    kind: str
    srn: str
    recipient: str
    context: dict[str, Any]
    attempts: int


def claim(
    now: str, lease_until: str, limit: int, skip_locked: bool = False
) -> Generator[Query, Rows, list[Mail]]:
    """Lease up to ``limit`` due messages, counting the attempt; drop those no longer
    wanted (settings changed since, a reminder's booking gone or started, an offered hold
    no longer held). The outer condition repeats the inner one (a claimer that waited for
    a lock re-checks the row); ``skip_locked`` (PostgreSQL only) skips rows being leased."""
    params: dict[str, Any] = {"now": now, "lease": lease_until, "n": limit}
    rows = yield (
        "UPDATE mail_queue SET lease_until = :lease, attempts = attempts + 1 WHERE id IN"
        f" (SELECT id FROM mail_queue WHERE {_DUE} ORDER BY next_attempt_at, id LIMIT :n"
        f"{' FOR UPDATE SKIP LOCKED' if skip_locked else ''})"
        f" AND {_DUE} RETURNING id, event_id, kind, srn, recipient, booking_id, context,"
        " attempts",
        params,
    )
    wanted: list[Mail] = []
    for id_, event_id, kind, srn, to, booking_id, context, attempts in rows:
        choice = yield from read(str(srn))
        state = None
        if choice is None or choice.email != to or not choice.verified:
            state = "dropped"  # the address changed, or was never verified
        elif not choice.events[SETTING[str(kind)]]:
            state = "dropped"  # turned off (unsubscribed) since
        elif kind == "reminder":
            found = yield (
                "SELECT 1 FROM bookings WHERE id = :id AND status = 'booked' AND starts_at > :now",
                {"id": booking_id, "now": now},
            )
            state = None if found else "cancelled"
        elif kind == "waitlist":  # an offer no longer open (taken, lapsed, cancelled)
            found = yield (
                "SELECT 1 FROM bookings WHERE id = :id AND status = 'held'"
                " AND hold_expires_at > :now",
                {"id": booking_id, "now": now},
            )
            state = None if found else "cancelled"
        if state is not None:
            yield (
                "UPDATE mail_queue SET state = :state, settled_at = :now, lease_until = NULL"
                " WHERE id = :id",
                {"state": state, "now": now, "id": id_},
            )
            continue
        wanted.append(
            Mail(int(id_), str(event_id), str(kind), str(srn), str(to),
                 json.loads(str(context)), int(attempts))
        )  # fmt: skip
    return wanted


@dataclass(frozen=True)
class Sent:
    """What one send came to: sent, or failed (``retry_at`` None: dead); ``waited``: not
    tried, behind its student's earlier message that failed (the attempt is not counted)."""

    id: int
    sent: bool
    retry_at: str | None = None
    error: str | None = None
    waited: bool = False


def settle(results: Sequence[Sent], now: str, lease: str) -> Generator[Query, Rows, None]:
    """Record each send, if the row is still leased by this sender (``lease``, its
    claim's expiry): a row whose lease ran out may be another sender's by now."""
    for s in results:
        if s.sent:
            sql = "state = 'sent', settled_at = :now, last_error = NULL"
        elif s.waited:
            sql = "next_attempt_at = :next, attempts = attempts - 1"
        elif s.retry_at is not None:
            sql = "next_attempt_at = :next, last_error = :error"
        else:
            sql = "state = 'dead', settled_at = :now, last_error = :error"
        yield (
            f"UPDATE mail_queue SET {sql}, lease_until = NULL WHERE id = :id"
            " AND state = 'pending' AND lease_until = :lease",
            {"id": s.id, "now": now, "next": s.retry_at, "error": s.error, "lease": lease},
        )


def counts() -> Generator[Query, Rows, dict[str, int]]:
    """Messages waiting to be sent and given up on: ``{"pending": n, "dead": n}``."""
    rows = yield (
        "SELECT state, COUNT(*) FROM mail_queue WHERE state IN ('pending', 'dead') GROUP BY state",
        {},
    )
    found = {str(s): int(n) for s, n in rows}
    return {"pending": found.get("pending", 0), "dead": found.get("dead", 0)}


def purge(before: str) -> Generator[Query, Rows, int]:
    """Forget messages settled (sent, cancelled, dropped; never the dead) before ``before``."""
    rows = yield (
        "DELETE FROM mail_queue WHERE state IN ('sent', 'cancelled', 'dropped')"
        " AND settled_at < :before RETURNING id",
        {"before": before},
    )
    return len(rows)
