"""The hour's writes, once for both stores: holds and their confirmation, check-in, early
release, the waitlist, suspensions, and the sweep that applies what time decides
(no-shows, lapsed holds, the lab's session events). Each is decided by one conditional
statement; its reason, when refused, is read in the same transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rero.storage import (
    BookingRow,
    Change,
    CheckIn,
    Confirm,
    DropHold,
    Hold,
    JoinWaitlist,
    LeaveWaitlist,
    LiftSuspension,
    Refusal,
    Release,
    Sweep,
    Write,
)
from rero.storage.rows import (
    COLUMNS,
    COVERING,
    KEPT,
    SUSPENDED,
    Program,
    audit,
    beyond_limits,
    booking,
    emit,
    event,
    lapse,
    promote,
    tell,
    within_limits,
)


def _why(found: list[Any], srn: str | None) -> Refusal:
    """Why a change of one booking found nothing to change: (srn, status, ends_at, ...)."""
    if not found:
        return Refusal.NOT_FOUND
    if srn is not None and found[0][0] != srn:
        return Refusal.NOT_YOURS
    status = found[0][1]
    if status == "cancelled":
        return Refusal.CANCELLED
    if status == "lapsed":
        return Refusal.LAPSED
    return Refusal.ENDED if status != "booked" else Refusal.NOT_NOW


def _hold(c: Hold) -> Program:
    params: dict[str, Any] = {
        "resource": c.resource, "date": c.date, "slot_id": c.slot_id, "start": c.start,
        "end": c.end, "srn": c.srn, "at": c.at, "name": c.name, "expires": c.expires_at,
    }  # fmt: skip
    lapsed = yield from lapse(
        c.at, c.offer_until, "resource = :resource AND starts_at = :start OR srn = :srn", params
    )
    rows = yield (
        "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
        " created_at, updated_at, name, hold_expires_at) SELECT :resource, :date, :slot_id,"
        " :start, :end, :srn, 'held', :at, :at, :name, :expires"
        f" WHERE NOT EXISTS (SELECT 1 {COVERING}) AND {within_limits((), params)[0]}"
        f" ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
        params,
    )
    if rows:
        made = booking(rows[0])
        yield from audit(made, c.actor, "held", c.at, None)
        return Write(True, bookings=(made, *lapsed.bookings), waitlisted=lapsed.waitlisted)
    # Refused: whatever lapsed on the way still changed its boards and waitlists.
    lapsed = replace(lapsed, changed=False)
    reasons = yield (f"SELECT reason {COVERING} ORDER BY starts_at LIMIT 1", params)
    if reasons:
        return replace(lapsed, refused=Refusal.CLOSED, detail=str(reasons[0][0]))
    why = yield from beyond_limits(c.srn, (), params)
    if why is not None:
        return replace(lapsed, refused=why.refused, detail=why.detail)
    if (yield (f"SELECT 1 {KEPT}", params)):
        return replace(lapsed, refused=Refusal.TAKEN)
    return replace(lapsed, refused=Refusal.HOLDING)


def _confirm(c: Confirm) -> Program:
    params: dict[str, Any] = {"id": c.hold_id, "srn": c.srn, "at": c.at, "no_show": c.no_show_at}
    conditions = within_limits(c.limits, params)
    rows = yield (
        "UPDATE bookings SET status = 'booked', hold_expires_at = NULL, no_show_at = :no_show,"
        " updated_at = :at WHERE id = :id AND srn = :srn AND status = 'held'"
        " AND hold_expires_at > :at AND " + " AND ".join(conditions) + f" RETURNING {COLUMNS}",
        params,
    )
    if rows:
        made = booking(rows[0])
        yield (
            "UPDATE waitlist SET status = 'booked', updated_at = :at WHERE hold_id = :id",
            {"at": c.at, "id": made.id},
        )
        yield from audit(made, c.srn, "booked", c.at, None)
        yield from tell("booked", made.srn, c.at, made)
        return Write(True, bookings=(made,))
    found = yield ("SELECT srn, status, hold_expires_at FROM bookings WHERE id = :id", params)
    if not found or found[0][0] != c.srn or found[0][1] not in ("held", "lapsed"):
        return Write(False, Refusal.NOT_FOUND if not found or found[0][0] != c.srn else
                     Refusal.CANCELLED)  # fmt: skip
    if found[0][1] == "lapsed" or str(found[0][2]) <= c.at:
        return Write(False, Refusal.LAPSED)
    why = yield from beyond_limits(c.srn, c.limits, params)
    return Write(False, Refusal.LAPSED) if why is None else why


def _drop_hold(c: DropHold) -> Program:
    rows = yield (
        "UPDATE bookings SET status = 'cancelled', updated_at = :at WHERE id = :id"
        f" AND srn = :srn AND status = 'held' RETURNING {COLUMNS}",
        {"id": c.hold_id, "srn": c.srn, "at": c.at},
    )
    if not rows:
        found = yield ("SELECT srn, status FROM bookings WHERE id = :id", {"id": c.hold_id})
        if not found or found[0][0] != c.srn:
            return Write(False, Refusal.NOT_FOUND)
        return Write(False, Refusal.LAPSED if found[0][1] == "lapsed" else Refusal.CANCELLED)
    gone = booking(rows[0])
    yield (
        "UPDATE waitlist SET status = 'declined', updated_at = :at WHERE hold_id = :id",
        {"at": c.at, "id": gone.id},
    )
    yield from audit(gone, c.srn, "hold_dropped", c.at, None)
    offered = yield from promote(gone, c.at, c.offer_until)
    return Write(True, bookings=(gone, *offered.bookings), waitlisted=offered.waitlisted)


def _check_in(c: CheckIn) -> Program:
    params: dict[str, Any] = {"id": c.booking_id, "srn": c.srn, "resource": c.resource}
    found = yield (f"SELECT {COLUMNS} FROM bookings WHERE id = :id", params)
    row = booking(found[0]) if found else None
    if row is None or row.srn != (c.srn or row.srn) or row.resource != (c.resource or row.resource):
        return Write(False, Refusal.NOT_FOUND)
    minutes = c.early.get(row.resource, c.default_early)
    if minutes is None:
        return Write(False, Refusal.NOT_FOUND, "no lab", seen=row)
    opens = datetime.fromisoformat(c.at) + timedelta(minutes=minutes)
    rows = yield (
        "UPDATE bookings SET checked_in_at = :at, updated_at = :at WHERE id = :id"
        " AND status = 'booked' AND checked_in_at IS NULL AND starts_at <= :opens"
        f" AND ends_at > :at RETURNING {COLUMNS}",
        {"id": row.id, "at": c.at, "opens": opens.isoformat(timespec="seconds")},
    )
    if rows:
        came = booking(rows[0])
        yield from audit(came, c.actor, "checked_in", c.at, None)
        yield from emit("session_started", came, c.at)
        return Write(True, bookings=(came,))
    if row.status == "booked" and row.checked_in_at is not None and row.end > c.at:
        return Write(False, detail=row.checked_in_at, seen=row)  # in already: nothing to do
    refusal = _why([(row.srn, row.status, row.end)], None)
    if refusal is Refusal.NOT_NOW and row.end <= c.at:
        refusal = Refusal.ENDED
    return Write(False, refusal, seen=row)


def _release(c: Release) -> Program:
    params = {"id": c.booking_id, "srn": c.srn, "at": c.at}
    rows = yield (
        "UPDATE bookings SET status = 'completed', updated_at = :at WHERE id = :id"
        " AND srn = :srn AND status = 'booked' AND starts_at <= :at AND ends_at > :at"
        f" RETURNING {COLUMNS}",
        params,
    )
    if not rows:
        found = yield ("SELECT srn, status, ends_at FROM bookings WHERE id = :id", params)
        refusal = _why(found, c.srn)
        if refusal is Refusal.NOT_NOW and found[0][2] <= c.at:
            refusal = Refusal.ENDED
        return Write(False, refusal)
    done = booking(rows[0])
    yield from audit(done, c.srn, "released", c.at, None)
    yield from emit("released_early", done, c.at)
    offered = yield from promote(done, c.at, c.offer_until)
    return Write(True, bookings=(done, *offered.bookings), waitlisted=offered.waitlisted)


def _join(c: JoinWaitlist) -> Program:
    params: dict[str, Any] = {
        "resource": c.resource, "date": c.date, "slot_id": c.slot_id, "start": c.start,
        "end": c.end, "srn": c.srn, "name": c.name, "at": c.at,
    }  # fmt: skip
    rows = yield (
        "INSERT INTO waitlist (resource, date, slot_id, starts_at, ends_at, srn, name, status,"
        " created_at, updated_at) SELECT :resource, :date, :slot_id, :start, :end, :srn, :name,"
        f" 'waiting', :at, :at WHERE EXISTS (SELECT 1 {KEPT} AND srn <> :srn)"
        " AND NOT EXISTS (SELECT 1 FROM bookings WHERE resource = :resource"
        " AND starts_at = :start AND srn = :srn AND status IN ('booked', 'held'))"
        " ON CONFLICT DO NOTHING RETURNING id",
        params,
    )
    line = yield ("SELECT srn FROM waitlist WHERE resource = :resource AND starts_at = :start"
                  " AND status = 'waiting'", params)  # fmt: skip
    waiting = tuple(str(r[0]) for r in line)
    if rows:
        return Write(True, detail=str(rows[0][0]), waitlisted=waiting)
    if (yield (f"SELECT 1 {KEPT} AND srn = :srn", params)):
        return Write(False, Refusal.TAKEN, "yours")
    if (yield ("SELECT 1 FROM waitlist WHERE resource = :resource AND starts_at = :start"
               " AND srn = :srn AND status IN ('waiting', 'offered')", params)):  # fmt: skip
        return Write(False, Refusal.WAITING)
    return Write(False, Refusal.NOT_TAKEN)


def _leave(c: LeaveWaitlist) -> Program:
    whose = "" if c.srn is None else " AND srn = :srn"
    params = {"id": c.entry_id, "srn": c.srn, "at": c.at}
    rows = yield (
        "UPDATE waitlist SET status = 'left', updated_at = :at WHERE id = :id"
        f" AND status = 'waiting'{whose} RETURNING resource, starts_at",
        params,
    )
    if not rows:
        return Write(False, Refusal.NOT_FOUND)
    line = yield (
        "SELECT srn FROM waitlist WHERE resource = :resource AND starts_at = :start"
        " AND status = 'waiting'",
        {"resource": rows[0][0], "start": rows[0][1]},
    )
    return Write(True, waitlisted=tuple(str(r[0]) for r in line) + ((c.srn,) if c.srn else ()))


def _lift_suspension(c: LiftSuspension) -> Program:
    rows = yield (
        "UPDATE suspensions SET lifted_at = :at, lifted_by = :actor WHERE srn = :srn"
        " AND lifted_at IS NULL AND ends_at > :at RETURNING id",
        {"srn": c.srn, "at": c.at, "actor": c.actor},
    )
    if not rows:
        return Write(False, Refusal.NOT_FOUND)
    return (yield from event("suspension_lifted", c.actor, c.at, c.srn))


def _sweep(c: Sweep) -> Program:
    now = c.now
    changed: list[BookingRow] = []
    waiting: list[str] = []
    rows = yield (
        "UPDATE bookings SET status = 'no_show', updated_at = :now WHERE status = 'booked'"
        f" AND checked_in_at IS NULL AND no_show_at <= :now RETURNING {COLUMNS}",
        {"now": now},
    )
    missed = sorted(map(booking, rows), key=lambda b: (b.start, b.id))
    for b in missed:
        changed.append(b)
        yield from audit(b, None, "no_show", now, None)
        yield from emit("no_show", b, now)
        offered = yield from promote(b, now, c.offer_until)
        changed.extend(offered.bookings)
        waiting.extend(offered.waitlisted)
    for srn in sorted({b.srn for b in missed} if c.no_show_limit else ()):
        yield from _suspend(srn, c)
    lapsed = yield from lapse(now, c.offer_until, "1 = 1", {})
    changed.extend(lapsed.bookings)
    waiting.extend(lapsed.waitlisted)
    yield (
        "UPDATE bookings SET status = 'completed', updated_at = :now WHERE status = 'booked'"
        " AND ends_at <= :now",
        {"now": now},
    )
    # The labs' session events: one query each for every lab, whatever their number.
    soon = dict(c.starting)
    if soon:
        params = {"latest": max(soon.values()), "now": now, "after": c.ended_after}
        for kind, which in (
            ("session_starting", "status = 'booked' AND starts_at <= :latest AND ends_at > :now"),
            ("session_ended", "status = 'completed' AND ends_at <= :now AND ends_at > :after"),
        ):
            due = yield (
                f"SELECT {COLUMNS} FROM bookings WHERE {which} AND NOT EXISTS (SELECT 1"
                " FROM outbox WHERE outbox.booking_id = bookings.id"
                f" AND outbox.kind = '{kind}')",
                params,
            )
            for b in map(booking, due):
                if b.resource in soon and (kind == "session_ended" or b.start <= soon[b.resource]):
                    yield from emit(kind, b, now)
    return Write(bool(changed), bookings=tuple(changed), waitlisted=tuple(waiting))


def _suspend(srn: str, c: Sweep) -> Program:
    """Suspend ``srn`` once their no-shows since ``no_show_since`` reach the limit."""
    params = {"srn": srn, "since": c.no_show_since, "at": c.now, "until": c.suspended_until}
    ((missed,),) = yield (
        "SELECT COUNT(*) FROM bookings WHERE srn = :srn AND status = 'no_show'"
        " AND starts_at >= :since",
        params,
    )
    if int(missed) >= c.no_show_limit and not (yield (f"SELECT 1 {SUSPENDED}", params)):
        yield (
            "INSERT INTO suspensions (srn, starts_at, ends_at, reason, created_at)"
            " VALUES (:srn, :at, :until, 'no-shows', :at)",
            params,
        )
        yield from tell("suspended", srn, c.now, None, until=c.suspended_until)
    return Write(True)


def hour_program(change: Change) -> Program | None:
    """The statements of one of the hour's changes; None for a calendar change."""
    makers: dict[type, Any] = {
        Hold: _hold, Confirm: _confirm, DropHold: _drop_hold, CheckIn: _check_in,
        Release: _release, JoinWaitlist: _join, LeaveWaitlist: _leave,
        LiftSuspension: _lift_suspension, Sweep: _sweep,
    }  # fmt: skip
    maker = makers.get(type(change))
    return None if maker is None else maker(change)
