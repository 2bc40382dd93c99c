"""The hour's reads, once for both stores (run with ``Storage.perform``): a student's
places on waitlists with their positions, and whether they are suspended."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from rero.storage import BookingRow, Query, Rows
from rero.storage.rows import COLUMNS, booking


@dataclass(frozen=True)
class WaitRow:
    """A place on a slot's waitlist: ``waiting`` at ``position`` (1 is next), or
    ``offered`` a hold (``hold_id``, until ``hold_expires_at``)."""

    id: int
    resource: str
    date: str
    slot_id: int
    start: str
    end: str
    status: str
    position: int
    hold_id: int | None
    hold_expires_at: str | None


def waitlist_of(srn: str, now: str) -> Generator[Query, Rows, list[WaitRow]]:
    """``srn``'s live places (slots not ended), by start."""
    rows = yield (
        "SELECT w.id, w.resource, w.date, w.slot_id, w.starts_at, w.ends_at, w.status,"
        " (SELECT COUNT(*) FROM waitlist o WHERE o.resource = w.resource"
        " AND o.starts_at = w.starts_at AND o.status = 'waiting' AND o.id <= w.id),"
        " w.hold_id, b.hold_expires_at FROM waitlist w"
        " LEFT JOIN bookings b ON b.id = w.hold_id AND b.status = 'held'"
        " WHERE w.srn = :srn AND w.status IN ('waiting', 'offered') AND w.ends_at > :now"
        " ORDER BY w.starts_at, w.id",
        {"srn": srn, "now": now},
    )
    return [_entry(r) for r in rows]


def _entry(r: Sequence[Any]) -> WaitRow:
    return WaitRow(
        int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), str(r[6]),
        int(r[7]) if r[6] == "waiting" else 0, None if r[8] is None else int(r[8]),
        None if r[9] is None else str(r[9]),
    )  # fmt: skip


def suspended_until(srn: str, at: str) -> Generator[Query, Rows, str | None]:
    rows = yield (
        "SELECT MAX(ends_at) FROM suspensions WHERE srn = :srn AND lifted_at IS NULL"
        " AND starts_at <= :at AND ends_at > :at",
        {"srn": srn, "at": at},
    )
    return None if not rows or rows[0][0] is None else str(rows[0][0])


#: What :func:`offers_after` finds: the newest outbox id read, and each offer (a hold)
#: with the students whose line it moved.
Offers = tuple[int, list[tuple[BookingRow, tuple[str, ...]]]]


def offers_after(after: int) -> Generator[Query, Rows, Offers]:
    """Holds offered from waitlists since outbox event ``after`` (any process's); with
    ``after`` < 0, only the newest event's id, to start from."""
    ((newest,),) = yield ("SELECT COALESCE(MAX(id), 0) FROM outbox", {})
    if after < 0:
        return int(newest), []
    offers = yield (
        f"SELECT {', '.join('b.' + c for c in COLUMNS.split(', '))} FROM outbox o"
        " JOIN bookings b ON b.id = o.booking_id WHERE o.id > :after AND o.id <= :newest"
        " AND o.kind = 'hold_offered' ORDER BY o.id",
        {"after": after, "newest": newest},
    )
    found = []
    for hold in map(booking, offers):
        line = yield (
            "SELECT srn FROM waitlist WHERE resource = :resource AND starts_at = :start"
            " AND status = 'waiting'",
            {"resource": hold.resource, "start": hold.start},
        )
        found.append((hold, (hold.srn, *(str(r[0]) for r in line))))
    return int(newest), found
