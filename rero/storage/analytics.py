"""Usage analytics, counted by the database (run with ``Storage.perform``, the same SQL on
both stores): everything is grouped there, so what comes back is one row per (resource,
date, slot) at most, whatever the number of bookings and events."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rero.storage import Query, Rows

#: The statuses of a booking that was made and kept (whatever came of it).
_KEPT = "status IN ('booked', 'completed', 'no_show')"


@dataclass(frozen=True)
class Counts:
    """What the database counted for dates ``first``..``last`` (local dates)."""

    #: (resource, date, slot_id) of every slot booked (kept).
    booked: list[tuple[str, str, int]]
    #: (resource, date, kept bookings, the newest booking's creation instant).
    days: list[tuple[str, str, int, str]]
    bookings: int
    cancellations: int
    no_shows: int
    #: Hours between each cancellation and its slot's start, ascending.
    cancellation_leads: list[float]
    unique_students: int
    repeat_students: int
    waitlist_total: int
    waitlist_booked: int


def _scope(resources: Sequence[str] | None, params: dict[str, Any]) -> str:
    """`` AND resource IN (...)`` for the resources asked, with their parameters."""
    if resources is None:
        return ""
    names = []
    for n, resource in enumerate(resources):
        params[f"r{n}"] = resource
        names.append(f":r{n}")
    return f" AND resource IN ({', '.join(names) or 'NULL'})"


def counts(
    first: str, last: str, resources: Sequence[str] | None
) -> Generator[Query, Rows, Counts]:
    params: dict[str, Any] = {"first": first, "last": last}
    where = "date >= :first AND date <= :last" + _scope(resources, params)
    booked = yield (
        f"SELECT resource, date, slot_id FROM bookings WHERE {where} AND {_KEPT}"
        " GROUP BY resource, date, slot_id",
        params,
    )
    days = yield (
        f"SELECT resource, date, COUNT(*), MAX(created_at) FROM bookings WHERE {where}"
        f" AND {_KEPT} GROUP BY resource, date",
        params,
    )
    ((made, cancelled, missed),) = yield (
        "SELECT COUNT(CASE WHEN action = 'booked' THEN 1 END),"
        " COUNT(CASE WHEN action IN ('cancelled', 'admin_cancelled', 'reset') THEN 1 END),"
        f" COUNT(CASE WHEN action = 'no_show' THEN 1 END) FROM booking_events WHERE {where}",
        params,
    )
    leads = yield (
        f"SELECT starts_at, updated_at FROM bookings WHERE {where} AND status = 'cancelled'",
        params,
    )
    # Grouping by an expression keeps SQLite off the (srn, date) index, which would look
    # up every row for its status: a scan and a sort are four times faster here.
    ((unique, repeat),) = yield (
        "SELECT COUNT(*), COUNT(CASE WHEN n > 1 THEN 1 END) FROM (SELECT COUNT(*) AS n"
        f" FROM bookings WHERE {where} AND {_KEPT} GROUP BY srn || '') per_student",
        params,
    )
    ((waited, converted),) = yield (
        "SELECT COUNT(*), COUNT(CASE WHEN status = 'booked' THEN 1 END) FROM waitlist"
        f" WHERE {where}",
        params,
    )
    return Counts(
        [(str(r), str(d), int(s)) for r, d, s in booked],
        [(str(r), str(d), int(n), str(at)) for r, d, n, at in days],
        int(made), int(cancelled), int(missed), sorted(_hours(s, u) for s, u in leads),
        int(unique), int(repeat), int(waited), int(converted),
    )  # fmt: skip


def _hours(start: str, at: str) -> float:
    return (datetime.fromisoformat(start) - datetime.fromisoformat(at)).total_seconds() / 3600
