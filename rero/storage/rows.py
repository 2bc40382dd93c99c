"""What every write program shares: the row shapes, the audit row, the outbox event, and
the waitlist's offer of a freed slot. A program yields ``:name`` SQL and is sent the rows
back (:mod:`rero.storage.programs`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Sequence
from typing import Any, Final

from rero.storage import BlackoutRow, BookingRow, Limit, Query, Refusal, Rows, Write

Program = Generator[Query, Rows, Write]

COLUMNS: Final = (
    "id, resource, date, slot_id, starts_at, ends_at, srn, status, created_at, series_id,"
    " name, checked_in_at, hold_expires_at"
)
BLACKOUT_COLUMNS: Final = "id, resource, starts_at, ends_at, reason"
COVERING: Final = (
    "FROM blackouts WHERE resource = :resource AND lifted_at IS NULL"
    " AND starts_at < :end AND ends_at > :start"
)
#: The row that keeps a slot: a booking or a hold (the unique index ``bookings_live``).
KEPT: Final = (
    "FROM bookings WHERE resource = :resource AND starts_at = :start"
    " AND status IN ('booked', 'held')"
)
SUSPENDED: Final = (
    "FROM suspensions WHERE srn = :srn AND lifted_at IS NULL AND starts_at <= :at AND ends_at > :at"
)
#: The statuses a quota counts: bookings made and not cancelled (holds count once
#: confirmed).
_COUNTED: Final = "status IN ('booked', 'completed', 'no_show')"


_EVENT: Final = (
    "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at, resource, date,"
    " booking_id, reason) VALUES (:slot_id, :holder, :actor, :action, :at, :resource, :date,"
    " :booking_id, :reason)"
)
_OUTBOX: Final = (
    "INSERT INTO outbox (event_id, kind, resource, srn, booking_id, at, payload,"
    " next_attempt_at, mailed_at) VALUES (:event_id, :kind, :resource, :srn, :booking_id,"
    " :at, :payload, :at, :mailed) ON CONFLICT DO NOTHING"
)
#: The outbox events that may become mail; the others are written as mailed already, so
#: the dispatcher's index (unmailed rows) holds only these.
MAILED: Final = ("booked", "cancelled", "hold_offered", "no_show", "suspended")


#: An event only its student hears of (by mail), written only for a student with a verified
#: address: no resource, so the labs' webhooks and sockets, which follow their resource's
#: events, never see it.
_TOLD: Final = (
    "INSERT INTO outbox (event_id, kind, srn, booking_id, at, payload, next_attempt_at)"
    " SELECT :event_id, :kind, :srn, :booking_id, :at, :payload, :at WHERE EXISTS (SELECT 1"
    " FROM notification_settings WHERE srn = :srn AND verified_at IS NOT NULL)"
    " ON CONFLICT DO NOTHING"
)


def booking(row: Sequence[Any]) -> BookingRow:
    id_, resource, day, slot_id, start, end, srn, status, created, series, name, came, held = row
    return BookingRow(
        int(id_), str(resource), str(day), int(slot_id), str(start), str(end), str(srn),
        str(status), str(created), None if series is None else str(series), str(name or ""),
        None if came is None else str(came), None if held is None else str(held),
    )  # fmt: skip


def blackout(row: Sequence[Any]) -> BlackoutRow:
    id_, resource, start, end, reason = row
    return BlackoutRow(int(id_), str(resource), str(start), str(end), str(reason))


def audit(b: BookingRow, actor: str | None, action: str, at: str, reason: str | None) -> Program:
    return (yield from event(action, actor, at, b.srn, b.resource, reason, b))


def event(
    action: str,
    actor: str | None,
    at: str,
    holder: str | None = None,
    resource: str | None = None,
    reason: str | None = None,
    b: BookingRow | None = None,
) -> Program:
    """The one audit row shape: a booking's event names its slot, date and id; any other
    (a suspension lifted, a blackout added or lifted) has slot 0 and no date or booking."""
    yield (
        _EVENT,
        {
            "slot_id": b.slot_id if b else 0, "holder": holder, "actor": actor,
            "action": action, "at": at, "resource": resource, "date": b.date if b else None,
            "booking_id": b.id if b else None, "reason": reason,
        },
    )  # fmt: skip
    return Write(True)


def emit(kind: str, b: BookingRow, at: str, reason: str | None = None) -> Program:
    """An event for the lab (and the student) in the outbox, in this transaction: at most
    one of each kind per booking, each with its own id for receivers to drop repeats."""
    event_id = str(uuid.uuid4())
    payload = {
        "id": event_id, "type": kind, "resource": b.resource, "booking_id": b.id,
        "srn": b.srn, "name": b.name, "date": b.date, "slot_id": b.slot_id, "start": b.start,
        "end": b.end, "at": at, "reason": reason,
    }  # fmt: skip
    if kind == "hold_offered":  # the deadline as offered: confirming the hold clears it
        payload["hold_expires_at"] = b.hold_expires_at
    yield (
        _OUTBOX,
        {
            "event_id": event_id, "kind": kind, "resource": b.resource, "srn": b.srn,
            "booking_id": b.id, "at": at, "payload": json.dumps(payload, separators=(",", ":")),
            "mailed": None if kind in MAILED else at,
        },
    )  # fmt: skip
    return Write(True)


def tell(kind: str, srn: str, at: str, b: BookingRow | None, **extra: str) -> Program:
    """An event for the student's mail alone (booked, suspended), as :func:`emit` writes
    them but with no resource; nothing for a student without a verified address."""
    event_id = str(uuid.uuid4())
    payload: dict[str, Any] = {"id": event_id, "type": kind, "srn": srn, "at": at, **extra}
    if b is not None:
        payload.update(
            resource=b.resource, booking_id=b.id, name=b.name, date=b.date, slot_id=b.slot_id,
            start=b.start, end=b.end,
        )  # fmt: skip
    yield (
        _TOLD,
        {
            "event_id": event_id, "kind": kind, "srn": srn, "at": at,
            "booking_id": None if b is None else b.id,
            "payload": json.dumps(payload, separators=(",", ":")),
        },
    )  # fmt: skip
    return Write(True)


def promote(b: BookingRow, at: str, until: str | None) -> Program:
    """Offer the slot ``b`` kept to the first on its waitlist who can take it, as a hold
    until ``until`` (or the slot's end): none if the slot has ended, is closed or kept."""
    if until is None or b.end <= at:
        return Write(False)
    params: dict[str, Any] = {"resource": b.resource, "start": b.start, "end": b.end, "at": at}
    line = yield (
        "SELECT id, srn, name FROM waitlist WHERE resource = :resource AND starts_at = :start"
        " AND status = 'waiting' ORDER BY id",
        params,
    )
    waiting = tuple(str(srn) for _, srn, _ in line)
    for entry_id, srn, name in line:
        rows = yield (
            "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
            " created_at, updated_at, name, hold_expires_at, waitlist_id) SELECT :resource,"
            " :date, :slot_id, :start, :end, :srn, 'held', :at, :at, :name, :expires, :entry"
            f" WHERE NOT EXISTS (SELECT 1 {COVERING}) ON CONFLICT DO NOTHING"
            f" RETURNING {COLUMNS}",
            {**params, "date": b.date, "slot_id": b.slot_id, "srn": srn, "name": name,
             "expires": min(until, b.end), "entry": entry_id},
        )  # fmt: skip
        if rows:
            hold = booking(rows[0])
            yield (
                "UPDATE waitlist SET status = 'offered', hold_id = :hold, updated_at = :at"
                " WHERE id = :entry",
                {"hold": hold.id, "at": at, "entry": entry_id},
            )
            yield from audit(hold, None, "hold_offered", at, None)
            yield from emit("hold_offered", hold, at)
            return Write(True, bookings=(hold,), waitlisted=waiting)
        if (yield (f"SELECT 1 {KEPT}", params)) or (yield (f"SELECT 1 {COVERING}", params)):
            break  # kept by someone else meanwhile, or closed: nobody can have it
        # this student holds another slot already (one hold each): the next one may
    return Write(False, waitlisted=waiting)


def lapse(at: str, until: str | None, where: str, params: dict[str, Any]) -> Program:
    """Lapse the expired holds matching ``where``; offer each slot to the next in line."""
    rows = yield (
        "UPDATE bookings SET status = 'lapsed', updated_at = :at WHERE status = 'held'"
        f" AND hold_expires_at <= :at AND ({where}) RETURNING {COLUMNS}, waitlist_id",
        {**params, "at": at},
    )
    changed: list[BookingRow] = []
    waiting: list[str] = []
    for row in rows:
        gone = booking(row[:-1])
        changed.append(gone)
        if row[-1] is not None:
            yield (
                "UPDATE waitlist SET status = 'lapsed', updated_at = :at WHERE id = :id",
                {"at": at, "id": row[-1]},
            )
        yield from audit(gone, None, "hold_lapsed", at, None)
        offered = yield from promote(gone, at, until)
        changed.extend(offered.bookings)
        waiting.extend(offered.waitlisted)
    return Write(bool(changed), bookings=tuple(changed), waitlisted=tuple(waiting))


def count(limit: Limit, n: int) -> tuple[str, dict[str, Any]]:
    """The booker's bookings that ``limit`` counts, as a scalar subquery."""
    sql = f"SELECT COUNT(*) FROM bookings WHERE srn = :srn AND {_COUNTED}"
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


def within_limits(limits: Sequence[Limit], params: dict[str, Any]) -> list[str]:
    """The conditions that the booker (``:srn`` at ``:at``) is not suspended and stays
    within every limit; the limits' parameters are added to ``params``."""
    conditions = [f"NOT EXISTS (SELECT 1 {SUSPENDED})"]
    for n, limit in enumerate(limits):
        sql, extra = count(limit, n)
        conditions.append(f"({sql}) < {int(limit.limit)}")
        params.update(extra)
    return conditions


def beyond_limits(
    srn: str, limits: Sequence[Limit], params: dict[str, Any]
) -> Generator[Query, Rows, Write | None]:
    """Why a booker failed :func:`within_limits`: suspended (until when) or past which
    limit; None if neither (a race decided it)."""
    until = yield (f"SELECT MAX(ends_at) {SUSPENDED}", params)
    if until and until[0][0] is not None:
        return Write(False, Refusal.SUSPENDED, str(until[0][0]))
    for n, limit in enumerate(limits):
        sql, extra = count(limit, n)
        ((counted,),) = yield (sql, {"srn": srn, **extra})
        if int(counted) >= limit.limit:
            return Write(False, Refusal.QUOTA, f"{limit.kind}:{limit.limit}")
    return None
