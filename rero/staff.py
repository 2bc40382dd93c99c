"""What lab staff do to the calendar: weekly series of bookings, and blackouts that close a
resource for a while (cancelling what they cover). The rules of a single booking stay in
:mod:`rero.bookings`; this module uses them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from rero.bookings import BookingService, Target
from rero.calendar import utc
from rero.clock import Clock, stamp
from rero.commit import GroupCommit
from rero.errors import Conflict, InvalidRequest, NotFound, RequestInvalid
from rero.feed import BoardFeed
from rero.identity import Identity, IdentityService
from rero.storage import (
    AddBlackout,
    BlackoutRow,
    Book,
    BookingRow,
    CancelMany,
    LiftBlackout,
    Series,
    SlotStore,
)

log: Final = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesResult:
    series_id: str
    bookings: list[BookingRow]
    refused: list[tuple[date, str]]


class StaffService:
    """Series and blackouts: admins only, for now."""

    def __init__(
        self,
        bookings: BookingService,
        identity: IdentityService,
        commit: GroupCommit,
        feed: BoardFeed,
        store: SlotStore,
        clock: Clock,
    ) -> None:
        self._bookings = bookings
        self._identity = identity
        self._commit = commit
        self._feed = feed
        self._store = store
        self._clock = clock
        self.resource = bookings.resource
        self.target = bookings.target
        self.max_series_weeks = bookings.max_series_weeks

    # ---- series ----------------------------------------------------------------------

    async def book_series(
        self, identity: Identity, resource_id: str, day: date, slot_id: int, weeks: int,
        srn: str | None = None,
    ) -> SeriesResult:  # fmt: skip
        """Staff: the same slot weekly, ``weeks`` times, in one transaction; each
        occurrence decided on its own (for another student: admins only)."""
        if weeks > self.max_series_weeks:
            raise RequestInvalid({"repeat_weeks": [f"Must be at most {self.max_series_weeks}."]})
        self.target(resource_id, day, slot_id)
        user = await self._identity.require_staff(identity)
        if srn is not None and srn != user.srn:
            await self._identity.require_admin(user)
        series_id = uuid.uuid4().hex
        refused: list[tuple[date, str]] = []
        books: list[tuple[Target, Book]] = []
        for week in range(weeks):
            when = day + timedelta(weeks=week)
            try:
                target = self.target(resource_id, when, slot_id)
                self._bookings.admit(user, target, staff=True)
            except (InvalidRequest, Conflict) as e:
                refused.append((when, e.detail))
                continue
            except RequestInvalid:
                refused.append((when, f"Slot {slot_id} does not exist on {when.isoformat()}"))
                continue
            change = self._bookings.change(
                target, srn or user.srn, user.srn, staff=True, series=series_id
            )
            books.append((target, change))
        made: list[BookingRow] = []
        if books:
            write = await self._commit.write(Series(tuple(b for _, b in books)))
            assert write is not None
            for (target, _), part in zip(books, write.parts, strict=True):
                if part.changed:
                    made.extend(part.bookings)
                else:
                    refused.append((target.day, self._bookings.refusal(target, part).detail))
        refused.sort()
        return SeriesResult(series_id, made, refused)

    async def cancel_series(
        self, identity: Identity, series_id: str, first: date | None
    ) -> list[BookingRow]:
        """Cancel a series' bookings from ``first`` (default: all that have not ended)."""
        user = await self._identity.authenticate(identity)
        admin = self._identity.is_staff(user)
        rows = await self._store.series(series_id)
        if not rows or not (admin or all(r.srn == user.srn for r in rows)):
            raise NotFound(f"Series {series_id} does not exist")
        starts_from = None
        if first is not None:
            resource = self.resource(rows[0].resource)
            starts_from = utc(resource.day_bounds(first)[0])
        now = stamp(self._clock)
        change = CancelMany(user.srn, "cancelled", now, now, "series", series_id=series_id,
                            starts_from=starts_from,
                            offer_until=self._bookings.offer_until())  # fmt: skip
        write = await self._commit.write(change)
        assert write is not None
        return [b for b in write.bookings if b.status == "cancelled"]  # not the offers

    async def cancel(self, identity: Identity, booking_id: int, reason: str) -> BookingRow:
        """Staff: cancel anyone's booking with a reason, audited as ``admin_cancelled`` and
        told to the student (the ``cancelled`` outbox event carries it)."""
        staff = await self._identity.require_staff(identity)
        gone = await self._bookings.cancel(staff, booking_id, reason)
        log.info("booking cancelled by staff", extra={"booking": booking_id, "by": staff.srn})
        return gone

    # ---- blackouts -----------------------------------------------------------------------

    async def add_blackout(
        self, identity: Identity, resource_id: str, start: datetime, end: datetime, reason: str
    ) -> tuple[BlackoutRow, list[BookingRow]]:
        """Admins: close a range; the bookings inside are cancelled in the same commit."""
        resource = self.resource(resource_id)
        if end <= start:
            raise RequestInvalid({"end": ["Must be after start."]})
        admin = await self._identity.require_staff(identity)
        now = stamp(self._clock)
        change = AddBlackout(resource.id, utc(start), utc(end), reason, admin.srn, now, now)
        write = await self._commit.write(change)
        assert write is not None
        assert write.blackout is not None
        log.info(
            "blackout added", extra={"resource": resource.id, "cancelled": len(write.bookings)}
        )
        return write.blackout, list(write.bookings)

    async def blackouts(
        self, identity: Identity, resource_id: str | None, first: date | None, last: date | None
    ) -> list[BlackoutRow]:
        await self._identity.require_staff(identity)
        if resource_id is not None:
            self.resource(resource_id)
        rows = self._feed.blackouts(resource_id)
        if first is not None:
            rows = [b for b in rows if b.end > utc(self.resource(b.resource).day_bounds(first)[0])]
        if last is not None:
            rows = [b for b in rows if b.start < utc(self.resource(b.resource).day_bounds(last)[1])]
        return rows

    async def lift_blackout(self, identity: Identity, blackout_id: int) -> BlackoutRow:
        admin = await self._identity.require_staff(identity)
        write = await self._commit.write(LiftBlackout(blackout_id, admin.srn, stamp(self._clock)))
        if write is None or write.blackout is None:
            raise NotFound(f"Blackout {blackout_id} does not exist")
        return write.blackout
