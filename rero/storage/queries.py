"""The reads both stores share (``:name`` parameters), and the shape of the version-1
upgrade, which turns each booking of the original slots table into a dated one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from rero.storage.rows import COLUMNS

BLACKOUTS: Final = (
    "SELECT id, resource, starts_at, ends_at, reason FROM blackouts"
    " WHERE lifted_at IS NULL ORDER BY starts_at, id"
)
COMPLETE: Final = (
    "UPDATE bookings SET status = 'completed', updated_at = :now"
    " WHERE status = 'booked' AND ends_at <= :now"
)
LIVE: Final = (
    "SELECT COUNT(*), COUNT(CASE WHEN resource = :resource AND ends_at <= :until THEN 1 END)"
    " FROM bookings WHERE status = 'booked' AND ends_at > :now"
)
EVENT_KEYS: Final = (
    "id", "slot_id", "holder_srn", "actor_srn", "action", "at", "resource", "date",
    "booking_id", "reason",
)  # fmt: skip
EVENTS: Final = (
    f"SELECT {', '.join(EVENT_KEYS)} FROM booking_events WHERE id < :before"
    " ORDER BY id DESC LIMIT :limit"
)
#: What ``rero export`` writes out, in this order: each key's table, ordered by id.
EXPORTED: Final = {
    "bookings": "bookings", "blackouts": "blackouts", "waitlist": "waitlist",
    "suspensions": "suspensions", "events": "booking_events",
}  # fmt: skip


def mine(
    srn: str, first: str | None, last: str | None, ends_after: str | None
) -> tuple[str, dict[str, Any]]:
    """A student's bookings on dates ``first``..``last``, or (``ends_after``) the upcoming."""
    sql = f"SELECT {COLUMNS} FROM bookings WHERE srn = :srn"
    params: dict[str, Any] = {"srn": srn}
    if ends_after is not None:
        sql += " AND status = 'booked' AND ends_at > :after"
        params["after"] = ends_after
    if first is not None:
        sql += " AND date >= :first"
        params["first"] = first
    if last is not None:
        sql += " AND date <= :last"
        params["last"] = last
    return sql + " ORDER BY starts_at, id", params


@dataclass(frozen=True)
class Dated:
    """Where a version-1 booking lands: the default resource's slot at its next occurrence
    after the upgrade (instants in UTC ISO 8601)."""

    resource: str
    date: str
    slot_id: int
    start: str
    end: str


class Upgrade(Protocol):
    """Dates a version-1 booking (its slot id), or None when that slot no longer exists."""

    #: The default resource, which every version-1 booking and audit row was about.
    resource: str

    def __call__(self, slot_id: int) -> Dated | None: ...
