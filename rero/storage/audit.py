"""The staff's reads, once for both stores (run with ``Storage.perform``): audit events
filtered by student, resource, action and dates, newest first, a page at a time; a
student's record (bookings, no-shows, suspension); who waits for each slot of a date."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from rero.storage import BookingRow, Query, Rows
from rero.storage.queries import EVENT_KEYS
from rero.storage.rows import COLUMNS, booking


@dataclass(frozen=True)
class AuditFilter:
    """Which events: any of these may be None (no filter). ``first``/``last`` are UTC
    instants bounding ``at`` (inclusive, exclusive)."""

    srn: str | None = None
    resource: str | None = None
    action: str | None = None
    first: str | None = None
    last: str | None = None


def events(
    f: AuditFilter, limit: int, before: int | None
) -> Generator[Query, Rows, list[dict[str, Any]]]:
    """Events matching ``f`` with ids below ``before``, newest first, at most ``limit``;
    a student matches as the booking's holder or as the one who acted."""
    sql = f"SELECT {', '.join(EVENT_KEYS)} FROM booking_events WHERE id < :before"
    params: dict[str, Any] = {"before": 2**62 if before is None else before, "limit": limit}
    for clause, name, value in (
        ("(holder_srn = :srn OR actor_srn = :srn)", "srn", f.srn),
        ("resource = :resource", "resource", f.resource),
        ("action = :action", "action", f.action),
        ("at >= :first", "first", f.first),
        ("at < :last", "last", f.last),
    ):
        if value is not None:
            sql += f" AND {clause}"
            params[name] = value
    rows = yield (sql + " ORDER BY id DESC LIMIT :limit", params)
    return [dict(zip(EVENT_KEYS, r, strict=True)) for r in rows]


@dataclass(frozen=True)
class Record:
    """A student as the staff see them: every booking (newest first, at most a page),
    their no-shows counted since a date, and until when they are suspended."""

    bookings: list[BookingRow]
    no_shows: int
    suspended_until: str | None
    #: Whether the store knows the SRN at all (see ``record``).
    known: bool = True


def record(srn: str, since: str, at: str, limit: int) -> Generator[Query, Rows, Record]:
    params = {"srn": srn, "since": since, "at": at, "limit": limit}
    rows = yield (
        f"SELECT {COLUMNS} FROM bookings WHERE srn = :srn ORDER BY starts_at DESC, id DESC"
        " LIMIT :limit",
        params,
    )
    ((missed,),) = yield (
        "SELECT COUNT(*) FROM bookings WHERE srn = :srn AND status = 'no_show'"
        " AND starts_at >= :since",
        params,
    )
    until = yield (
        "SELECT MAX(ends_at) FROM suspensions WHERE srn = :srn AND lifted_at IS NULL"
        " AND starts_at <= :at AND ends_at > :at",
        params,
    )
    suspended = None if not until or until[0][0] is None else str(until[0][0])
    # Known: a booking, a place in a line, a suspension, an audit event naming them, a
    # live session or a recent sign-in (the store keeps no older record of sign-ins).
    known = bool(rows)
    if not known:
        found = yield (
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM waitlist WHERE srn = :srn)"
            " OR EXISTS (SELECT 1 FROM suspensions WHERE srn = :srn)"
            " OR EXISTS (SELECT 1 FROM booking_events WHERE holder_srn = :srn)"
            " OR EXISTS (SELECT 1 FROM booking_events WHERE actor_srn = :srn)"
            " OR EXISTS (SELECT 1 FROM sessions WHERE srn = :srn)"
            " OR EXISTS (SELECT 1 FROM logins WHERE srn = :srn)",
            params,
        )
        known = bool(found)
    return Record([booking(r) for r in rows], int(missed), suspended, known)


#: Who waits for each slot: slot id → (srn, name) in order.
Lines = dict[int, list[tuple[str, str]]]


def lines_of_day(resource: str, day: str) -> Generator[Query, Rows, Lines]:
    """Who waits for each slot of a resource's date, in order: slot id → (srn, name)."""
    rows = yield (
        "SELECT slot_id, srn, name FROM waitlist WHERE resource = :resource AND date = :date"
        " AND status = 'waiting' ORDER BY slot_id, id",
        {"resource": resource, "date": day},
    )
    found: Lines = {}
    for slot_id, srn, name in rows:
        found.setdefault(int(slot_id), []).append((str(srn), str(name)))
    return found
