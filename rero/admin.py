"""What the staff read to run the lab: the audit trail with filters, and a student's
record (bookings, no-shows, suspension, role). Staff only; the writes they make go through
the services that own each rule (bookings, staff, hour, roles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from rero.bookings import BookingService
from rero.calendar import iso, local, utc
from rero.clock import Clock, stamp
from rero.errors import NotFound, RequestInvalid
from rero.hour import HourService
from rero.identity import Identity, IdentityService
from rero.settings import Settings
from rero.storage import Programs
from rero.storage.analytics import counts
from rero.storage.audit import AuditFilter, events, lines_of_day, record
from rero.storage.queries import EVENT_KEYS
from rero.usage import ANALYTICS_DAYS, MAX_ANALYTICS_DAYS, shape

#: The columns of an audit event, in order (the CSV export's header).
AUDIT_KEYS: Final = EVENT_KEYS
#: A student's bookings shown at most, newest first.
RECORD_BOOKINGS: Final = 200


@dataclass(frozen=True)
class AuditAsk:
    """An audit query as a request names it: dates are the default resource's."""

    srn: str | None = None
    resource: str | None = None
    action: str | None = None
    first: date | None = None
    last: date | None = None


class AdminService:
    """Reads for the staff; every method checks the role first."""

    def __init__(
        self,
        bookings: BookingService,
        hour: HourService,
        identity: IdentityService,
        store: Programs,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._bookings = bookings
        self._hour = hour
        self._identity = identity
        self._store = store
        self._clock = clock
        self._window = timedelta(days=settings.no_show_window_days)

    async def audit(
        self, identity: Identity, ask: AuditAsk, limit: int, before: int | None
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered; dates bound ``at`` in the lab's zone."""
        await self._identity.require_staff(identity)
        zone = self._bookings.lab.default.zone
        first = None if ask.first is None else utc(local(zone, ask.first, 0))
        last = None if ask.last is None else utc(local(zone, ask.last + timedelta(days=1), 0))
        found = AuditFilter(ask.srn, ask.resource, ask.action, first, last)
        return await self._store.perform(events(found, limit, before))

    async def student(self, identity: Identity, srn: str) -> dict[str, Any]:
        """A student's record: role, bookings (newest first), no-shows in the window,
        suspension, and places on waitlists."""
        await self._identity.require_staff(identity)
        now = self._clock()
        got = await self._store.perform(
            record(srn, utc(now - self._window), stamp(self._clock), RECORD_BOOKINGS)
        )
        role, source = self._identity.roles.of(srn)
        if not got.known and source == "default":
            raise NotFound(f"No record of student {srn}")
        zone = self._bookings.lab.default.zone
        until = got.suspended_until
        return {
            "srn": srn,
            "role": role,
            "role_source": source,
            "bookings": [self._bookings.as_json(b) for b in got.bookings],
            "no_shows": got.no_shows,
            "suspended_until": None if until is None else iso(datetime.fromisoformat(until), zone),
            "waitlist": [self._hour.entry_json(e) for e in await self._hour.waitlist_of(srn)],
        }

    async def board(self, identity: Identity, resource_id: str, day: date | None) -> dict[str, Any]:
        """A resource's date as the staff see it: each slot with its booking or hold (who,
        status, check-in) and who waits for it, in order."""
        await self._identity.require_staff(identity)
        board = await self._bookings.board(resource_id, day)
        lines = await self._store.perform(lines_of_day(board.resource.id, board.date.isoformat()))
        data = board.data
        for cell, shown in zip(board.cells, data["slots"], strict=True):
            holder = cell.holder
            shown["booking"] = None if holder is None else {
                "id": holder.id, "srn": holder.srn, "name": holder.name, "status": holder.status,
                "checked_in_at": holder.checked_in_at,
            }  # fmt: skip
            line = enumerate(lines.get(cell.id, []), 1)
            shown["waitlist"] = [
                {"srn": srn, "name": name, "position": n} for n, (srn, name) in line
            ]
        return data

    async def analytics(
        self, identity: Identity, first: date | None, last: date | None, resource: str | None
    ) -> dict[str, Any]:
        """Usage over dates ``first``..``last`` (default: the last 30 days), one resource
        or all; the database counts, this shapes (docs/analytics.md)."""
        await self._identity.require_staff(identity)
        lab = self._bookings.lab
        chosen = [self._bookings.resource(resource)] if resource else list(lab.resources.values())
        last = last or lab.default.today(self._clock())
        first = first or last - timedelta(days=ANALYTICS_DAYS - 1)
        if first > last:
            raise RequestInvalid({"from": ["Must not be after to."]})
        if (last - first).days >= MAX_ANALYTICS_DAYS:
            raise RequestInvalid({"to": [f"At most {MAX_ANALYTICS_DAYS} days at once."]})
        ids = None if resource is None else [chosen[0].id]
        got = await self._store.perform(counts(first.isoformat(), last.isoformat(), ids))
        return shape(got, chosen, first, last)
