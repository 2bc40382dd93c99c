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
from collections.abc import Generator, Sequence
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
    Limit,
    Refusal,
    Series,
    Write,
)

Query = tuple[str, dict[str, Any]]
Rows = list[Sequence[Any]]
Program = Generator[Query, Rows, Write]

COLUMNS: Final = (
    "id, resource, date, slot_id, starts_at, ends_at, srn, status, created_at, series_id"
)
_BLACKOUT_COLUMNS: Final = "id, resource, starts_at, ends_at, reason"
_COVERING: Final = (
    "FROM blackouts WHERE resource = :resource AND lifted_at IS NULL"
    " AND starts_at < :end AND ends_at > :start"
)
_HELD: Final = (
    "FROM bookings WHERE resource = :resource AND starts_at = :start AND status = 'booked'"
)
_EVENT: Final = (
    "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at, resource, date,"
    " booking_id, reason) VALUES (:slot_id, :holder, :actor, :action, :at, :resource, :date,"
    " :booking_id, :reason)"
)
_DAY: Final = (
    f"SELECT {COLUMNS} FROM bookings WHERE resource = :resource AND date = :date"
    " AND status <> 'cancelled' ORDER BY starts_at"
)


def booking(row: Sequence[Any]) -> BookingRow:
    id_, resource, day, slot_id, start, end, srn, status, created, series = row
    return BookingRow(
        int(id_), str(resource), str(day), int(slot_id), str(start), str(end), str(srn),
        str(status), str(created), None if series is None else str(series),
    )  # fmt: skip


def blackout(row: Sequence[Any]) -> BlackoutRow:
    id_, resource, start, end, reason = row
    return BlackoutRow(int(id_), str(resource), str(start), str(end), str(reason))


def _count(limit: Limit, n: int) -> tuple[str, dict[str, Any]]:
    """The booker's bookings that ``limit`` counts, as a scalar subquery."""
    sql = "SELECT COUNT(*) FROM bookings WHERE srn = :srn AND status <> 'cancelled'"
    params: dict[str, Any] = {}
    for i, (column, op, value) in enumerate(
        (
            ("resource", "=", limit.resource),
            ("date", ">=", limit.first),
            ("date", "<=", limit.last),
            ("ends_at", ">", limit.ends_after),
        )
    ):
        if value is not None:
            name = f"limit{n}_{i}"
            sql += f" AND {column} {op} :{name}"
            params[name] = value
    return sql, params


def _book(c: Book) -> Program:
    params: dict[str, Any] = {
        "resource": c.resource, "date": c.date, "slot_id": c.slot_id, "start": c.start,
        "end": c.end, "srn": c.srn, "at": c.at, "series_id": c.series_id,
    }  # fmt: skip
    conditions = [f"NOT EXISTS (SELECT 1 {_COVERING})", f"NOT EXISTS (SELECT 1 {_HELD})"]
    counts = []
    for n, limit in enumerate(c.limits):
        sql, extra = _count(limit, n)
        counts.append((limit, sql, extra))
        conditions.append(f"({sql}) < {int(limit.limit)}")
        params.update(extra)
    rows = yield (
        "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
        " created_at, updated_at, series_id) SELECT :resource, :date, :slot_id, :start, :end,"
        " :srn, 'booked', :at, :at, :series_id WHERE "
        + " AND ".join(conditions)
        + f" ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
        params,
    )
    if rows:
        made = booking(rows[0])
        yield from _audit(made, c.actor, "booked", c.at, None)
        return Write(True, bookings=(made,))
    reasons = yield (f"SELECT reason {_COVERING} ORDER BY starts_at LIMIT 1", params)
    if reasons:
        return Write(False, Refusal.CLOSED, str(reasons[0][0]))
    if (yield (f"SELECT 1 {_HELD}", params)):
        return Write(False, Refusal.TAKEN)
    for limit, sql, extra in counts:
        ((count,),) = yield (sql, {"srn": c.srn, **extra})
        if int(count) >= limit.limit:
            return Write(False, Refusal.QUOTA, f"{limit.kind}:{limit.limit}")
    return Write(False, Refusal.TAKEN)  # taken by a commit that raced this one


def _audit(b: BookingRow, actor: str | None, action: str, at: str, reason: str | None) -> Program:
    yield (
        _EVENT,
        {
            "slot_id": b.slot_id, "holder": b.srn, "actor": actor, "action": action, "at": at,
            "resource": b.resource, "date": b.date, "booking_id": b.id, "reason": reason,
        },
    )  # fmt: skip
    return Write(True)


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
        yield from _audit(gone, c.actor, c.action, c.at, c.reason)
        return Write(True, bookings=(gone,))
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
    sql = "UPDATE bookings SET status = 'cancelled', updated_at = :at WHERE status = 'booked'"
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
    for b in gone:
        yield from _audit(b, c.actor, c.action, c.at, c.reason)
    return Write(bool(gone), bookings=gone)


def _add_blackout(c: AddBlackout) -> Program:
    rows = yield (
        "INSERT INTO blackouts (resource, starts_at, ends_at, reason, created_by, created_at)"
        " VALUES (:resource, :start, :end, :reason, :actor, :at)"
        f" RETURNING {_BLACKOUT_COLUMNS}",
        {"resource": c.resource, "start": c.start, "end": c.end, "reason": c.reason,
         "actor": c.actor, "at": c.at},
    )  # fmt: skip
    closed = CancelMany(c.actor, "cancelled", c.at, c.now, "blackout", resource=c.resource)
    cancelled = yield from _cancel_many(closed, (c.start, c.end))
    return Write(True, bookings=cancelled.bookings, blackout=blackout(rows[0]))


def _lift_blackout(c: LiftBlackout) -> Program:
    rows = yield (
        "UPDATE blackouts SET lifted_at = :at, lifted_by = :actor WHERE id = :id"
        f" AND lifted_at IS NULL RETURNING {_BLACKOUT_COLUMNS}",
        {"id": c.blackout_id, "at": c.at, "actor": c.actor},
    )
    if not rows:
        return Write(False, Refusal.NOT_FOUND)
    return Write(True, blackout=blackout(rows[0]))


def _series(c: Series) -> Program:
    parts = []
    for book in c.books:
        parts.append((yield from _book(book)))
    return Write(any(p.changed for p in parts), parts=tuple(parts))


def program(change: Change) -> Program:
    """The statements that make ``change``, deciding it as they go."""
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
