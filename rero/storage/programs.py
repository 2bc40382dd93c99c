"""Every calendar write, once, for both stores: each change is a *program* that yields SQL
(``:name`` parameters) and is sent back the rows it returned.

SQLite runs a program on its connection's thread, PostgreSQL on an asyncpg connection;
the decisions (which statement decides a change, how a refusal is explained) live here
only. Each change is decided by one conditional statement (``RETURNING`` tells whether it
happened); a refused change wrote nothing, so none needs undoing, and its reason is read
in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache
from typing import Any, Final

from rero.storage import (
    AddBlackout,
    BlackoutRow,
    Book,
    BookingRow,
    Cancel,
    CancelMany,
    Change,
    DayKey,
    LiftBlackout,
    Query,
    Refusal,
    Series,
    Write,
)
from rero.storage.hour_programs import hour_program
from rero.storage.rows import (
    BLACKOUT_COLUMNS,
    COLUMNS,
    COVERING,
    KEPT,
    Program,
    audit,
    beyond_limits,
    blackout,
    booking,
    emit,
    event,
    lapse,
    promote,
    tell,
    within_limits,
)

_DAY: Final = (
    f"SELECT {COLUMNS} FROM bookings WHERE resource = :resource AND date = :date"
    " AND status NOT IN ('cancelled', 'lapsed') ORDER BY starts_at, id"
)


def _book(c: Book) -> Program:
    params: dict[str, Any] = {
        "resource": c.resource, "date": c.date, "slot_id": c.slot_id, "start": c.start,
        "end": c.end, "srn": c.srn, "at": c.at, "series_id": c.series_id, "name": c.name,
        "no_show_at": c.no_show_at,
    }  # fmt: skip
    # An expired hold keeps its slot until it lapses, which it does now.
    lapsed = yield from lapse(c.at, None, "resource = :resource AND starts_at = :start", params)
    conditions = [
        f"NOT EXISTS (SELECT 1 {COVERING})",
        f"NOT EXISTS (SELECT 1 {KEPT})",
        *within_limits(c.limits, params),
    ]
    rows = yield (
        "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
        " created_at, updated_at, series_id, name, no_show_at) SELECT :resource, :date,"
        " :slot_id, :start, :end, :srn, 'booked', :at, :at, :series_id, :name, :no_show_at"
        " WHERE " + " AND ".join(conditions) + f" ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
        params,
    )
    if rows:
        made = booking(rows[0])
        yield from audit(made, c.actor, "booked", c.at, None)
        yield from tell("booked", made.srn, c.at, made)
        return Write(True, bookings=(made, *lapsed.bookings))
    reasons = yield (f"SELECT reason {COVERING} ORDER BY starts_at LIMIT 1", params)
    if reasons:
        return Write(False, Refusal.CLOSED, str(reasons[0][0]), lapsed.bookings)
    if (yield (f"SELECT 1 {KEPT}", params)):
        return Write(False, Refusal.TAKEN, bookings=lapsed.bookings)
    why = yield from beyond_limits(c.srn, c.limits, params)
    if why is not None:
        return replace(why, bookings=lapsed.bookings)
    return Write(False, Refusal.TAKEN)  # taken by a commit that raced this one


def _cancel(c: Cancel) -> Program:
    params: dict[str, Any]
    if c.booking_id is not None:
        where, params = "id = :id", {"id": c.booking_id}
    else:
        assert c.slot is not None
        where = "resource = :resource AND starts_at = :start AND status = 'booked'"
        params = {"resource": c.slot[0], "start": c.slot[1]}
    params.update(at=c.at, now=c.now)
    mine = ""
    if c.srn is not None:
        mine, params["srn"] = " AND srn = :srn", c.srn
    rows = yield (
        f"UPDATE bookings SET status = 'cancelled', updated_at = :at WHERE {where}"
        f" AND status = 'booked' AND ends_at > :now{mine} RETURNING {COLUMNS}",
        params,
    )
    if rows:
        gone = booking(rows[0])
        action = c.others if c.others is not None and gone.srn != c.actor else c.action
        yield from audit(gone, c.actor, action, c.at, c.reason)
        yield from emit("cancelled", gone, c.at, c.reason)
        offered = yield from promote(gone, c.now, c.offer_until)
        return Write(True, bookings=(gone, *offered.bookings), waitlisted=offered.waitlisted)
    found = yield (f"SELECT srn, status, ends_at FROM bookings WHERE {where}", params)
    if not found:
        return Write(False, Refusal.NOT_FOUND if c.booking_id is not None else Refusal.NOT_BOOKED)
    srn, status, _ = found[0]
    if c.srn is not None and srn != c.srn:
        return Write(False, Refusal.NOT_YOURS)
    if status == "cancelled":
        return Write(False, Refusal.CANCELLED)
    return Write(False, Refusal.ENDED if c.booking_id is not None else Refusal.NOT_BOOKED)


def _cancel_many(c: CancelMany, overlap: tuple[str, str] | None = None) -> Program:
    params: dict[str, Any] = {"at": c.at, "now": c.now}
    sql = "UPDATE bookings SET status = 'cancelled', updated_at = :at"
    sql += " WHERE status = 'booked'"
    sql += " AND ends_at > :now"
    for column, op, value in (
        ("resource", "=", c.resource),
        ("series_id", "=", c.series_id),
        ("srn", "=", c.srn),
        ("starts_at", ">=", c.starts_from),
        ("starts_at", "<", overlap and overlap[1]),
        ("ends_at", ">", overlap and overlap[0]),
    ):
        if value is not None:
            name = f"{column}_{len(params)}"
            sql += f" AND {column} {op} :{name}"
            params[name] = value
    rows = yield (f"{sql} RETURNING {COLUMNS}", params)
    gone = tuple(sorted((booking(r) for r in rows), key=lambda b: b.start))
    offers: list[BookingRow] = []
    waiting: list[str] = []
    for b in gone:
        yield from audit(b, c.actor, c.action, c.at, c.reason)
        yield from emit("cancelled", b, c.at, c.reason)
        if overlap is None:  # a blackout closes the slots it cancels: nothing to offer
            offered = yield from promote(b, c.now, c.offer_until)
            offers.extend(offered.bookings)
            waiting.extend(offered.waitlisted)
    return Write(bool(gone), bookings=gone + tuple(offers), waitlisted=tuple(waiting))


def _add_blackout(c: AddBlackout) -> Program:
    rows = yield (
        "INSERT INTO blackouts (resource, starts_at, ends_at, reason, created_by, created_at)"
        " VALUES (:resource, :start, :end, :reason, :actor, :at)"
        f" RETURNING {BLACKOUT_COLUMNS}",
        {"resource": c.resource, "start": c.start, "end": c.end, "reason": c.reason,
         "actor": c.actor, "at": c.at},
    )  # fmt: skip
    made = blackout(rows[0])
    # Audited first: the trail reads "closed", then each booking it cancelled.
    yield from event("blackout_added", c.actor, c.at, None, c.resource, _span(made))
    closed = CancelMany(c.actor, "cancelled", c.at, c.now, "blackout", resource=c.resource)
    cancelled = yield from _cancel_many(closed, (c.start, c.end))
    return Write(True, bookings=cancelled.bookings, blackout=made)


def _span(b: BlackoutRow) -> str:
    """A blackout in its audit row's reason: its id, UTC range and why."""
    return f"#{b.id} {b.start}/{b.end}: {b.reason}"


def _lift_blackout(c: LiftBlackout) -> Program:
    which = (
        "id = :id" if c.blackout_id is not None else "resource = :resource AND created_by = :actor"
    )
    rows = yield (
        f"UPDATE blackouts SET lifted_at = :at, lifted_by = :actor WHERE {which}"
        f" AND lifted_at IS NULL RETURNING {BLACKOUT_COLUMNS}",
        {"id": c.blackout_id, "at": c.at, "actor": c.actor, "resource": c.resource},
    )
    if not rows:
        return Write(False, Refusal.NOT_FOUND)
    offers: list[BookingRow] = []
    waiting: list[str] = []
    for lifted in map(blackout, rows):
        yield from event("blackout_lifted", c.actor, c.at, None, lifted.resource, _span(lifted))
        # Each waited-for slot the blackout closed goes to the first in its line.
        line = yield (
            "SELECT DISTINCT resource, date, slot_id, starts_at, ends_at FROM waitlist"
            " WHERE resource = :resource AND status = 'waiting' AND starts_at < :end"
            " AND ends_at > :start",
            {"resource": lifted.resource, "start": lifted.start, "end": lifted.end},
        )
        for resource, day, slot_id, start, end in line:
            freed = BookingRow(0, resource, day, int(slot_id), start, end, "", "", c.at)
            offered = yield from promote(freed, c.at, c.offer_until)
            offers.extend(offered.bookings)
            waiting.extend(offered.waitlisted)
    return Write(
        True, bookings=tuple(offers), blackout=blackout(rows[0]), waitlisted=tuple(waiting)
    )


def _series(c: Series) -> Program:
    parts = []
    for book in c.books:
        parts.append((yield from _book(book)))
    return Write(any(p.changed for p in parts), parts=tuple(parts))


def program(change: Change) -> Program:
    """The statements that make ``change``, deciding it as they go."""
    hour = hour_program(change)
    if hour is not None:
        return hour
    if isinstance(change, Book):
        return _book(change)
    if isinstance(change, Series):
        return _series(change)
    if isinstance(change, Cancel):
        return _cancel(change)
    if isinstance(change, CancelMany):
        return _cancel_many(change)
    if isinstance(change, AddBlackout):
        return _add_blackout(change)
    assert isinstance(change, LiftBlackout)
    return _lift_blackout(change)


def day(key: DayKey) -> Query:
    return _DAY, {"resource": key[0], "date": key[1]}


@lru_cache(maxsize=1024)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``:name`` parameters as PostgreSQL's ``$1``, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", number, sql), tuple(names)
