"""The calendar's booking rules: who may book which resource's slot on which date, the
window, closures, quotas, series and blackouts. Every change goes through the group
commit; the store decides races inside its transaction.

HTTP views and WebSocket handlers call this (and :mod:`rero.slots`, the original API on
top of it) and nothing below it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from rero.auth import User
from rero.board import DayBoard
from rero.calendar import Resource, Slot, iso, utc
from rero.clock import Clock, stamp
from rero.commit import GroupCommit, Skip
from rero.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    NotYourBooking,
    RequestInvalid,
)
from rero.feed import BoardFeed
from rero.identity import Identity, IdentityService
from rero.outcomes import Outcomes
from rero.resources import Lab, describe
from rero.settings import Settings
from rero.storage import (
    BlackoutRow,
    Book,
    BookingRow,
    Cancel,
    Limit,
    Refusal,
    SlotStore,
    Write,
)

log: Final = logging.getLogger(__name__)

_KINDS: Final = {"day": "per day", "week": "per week", "upcoming": "upcoming"}


@dataclass(frozen=True)
class Target:
    """A slot of a resource on a date, as a request names it."""

    resource: Resource
    day: date
    slot: Slot

    def sentence(self, tail: str) -> str:
        return f"Slot {self.slot.id} on {self.day.isoformat()} {tail}"


class BookingService:
    """Owns the calendar's rules; reading a board never touches the database."""

    def __init__(
        self,
        lab: Lab,
        identity: IdentityService,
        commit: GroupCommit,
        feed: BoardFeed,
        store: SlotStore,
        settings: Settings,
        clock: Clock,
        outcomes: Outcomes,
    ) -> None:
        self.lab = lab
        self._identity = identity
        self._commit = commit
        self._feed = feed
        self._store = store
        self._clock = clock
        self._outcomes = outcomes
        self.max_series_weeks = settings.max_series_weeks
        self.no_show_minutes = settings.no_show_minutes
        self.offer_seconds = settings.waitlist_hold_seconds

    def now(self) -> datetime:
        return self._clock()

    # ---- what a request names ------------------------------------------------------------

    def resource(self, resource_id: str) -> Resource:
        resource = self.lab.get(resource_id)
        if resource is None:
            raise NotFound(f"Resource {resource_id} does not exist")
        return resource

    def target(self, resource_id: str, day: date, slot_id: int) -> Target:
        """The slot a request names: 404 for an unknown resource, 422 for a slot the
        resource does not have on that date."""
        resource = self.resource(resource_id)
        slot = resource.slot(day, slot_id)
        if slot is None:
            ids = resource.slot_ids
            why = (
                f"Slot {slot_id} does not exist: valid slots are {ids[0]} to {ids[-1]}"
                if slot_id not in ids
                else f"Slot {slot_id} does not exist on {day.isoformat()}"
            )
            raise RequestInvalid({"slot_id": [why]})
        return Target(resource, day, slot)

    async def board(self, resource_id: str, day: date | None) -> DayBoard:
        resource = self.resource(resource_id)
        day = day or resource.today(self._clock())
        return await self._feed.day((resource.id, day.isoformat()))

    # ---- booking -------------------------------------------------------------------------

    def admit(self, user: User, target: Target, *, staff: bool) -> None:
        """The rules decided before the database: campus, ended, window, closed days.
        Staff (an admin booking for a student, or a series) are held to neither the
        campus nor the window."""
        resource, now = target.resource, self._clock()
        if resource.campuses and not staff and user.campus not in resource.campuses:
            campuses = " or ".join(resource.campuses)
            raise Forbidden(f"{resource.name} is for campus {campuses} only")
        if target.slot.end <= now or target.day < resource.today(now):
            raise InvalidRequest(target.sentence("has ended"))
        opens_at = resource.opens_at(target.day)
        if now < opens_at and not staff:
            raise InvalidRequest(
                f"Bookings for {target.day.isoformat()} open at {iso(opens_at, resource.zone)}"
            )
        closure = resource.closure(target.day)
        if closure is not None:
            raise Conflict(target.sentence(f"is closed: {closure}"))

    def limits(self, target: Target, *, staff: bool) -> tuple[Limit, ...]:
        """The quotas a booking of ``target`` must stay within (none for staff)."""
        if staff:
            return ()
        resource, day = target.resource, target.day
        monday = day - timedelta(days=day.weekday())
        now = utc(self._clock())
        found = []
        for quotas, scope in ((self.lab.quotas, None), (resource.quotas, resource.id)):
            if quotas is None:
                continue
            if quotas.per_day:
                found.append(Limit("day", quotas.per_day, scope, day.isoformat(), day.isoformat()))
            if quotas.per_week:
                sunday = monday + timedelta(days=6)
                found.append(
                    Limit("week", quotas.per_week, scope, monday.isoformat(), sunday.isoformat())
                )
            if quotas.upcoming:
                found.append(Limit("upcoming", quotas.upcoming, scope, ends_after=now))
        return tuple(found)

    def no_show_at(self, target: Target, now: datetime) -> str | None:
        """When a booking made ``now`` becomes a no-show unless checked in (None: never)."""
        if not self.no_show_minutes:
            return None
        due = max(target.slot.start, now) + timedelta(minutes=self.no_show_minutes)
        return utc(due) if due < target.slot.end else None

    def change(
        self,
        target: Target,
        srn: str,
        actor: str,
        *,
        staff: bool,
        series: str | None = None,
        name: str = "",
    ) -> Book:
        return Book(
            target.resource.id,
            target.day.isoformat(),
            target.slot.id,
            utc(target.slot.start),
            utc(target.slot.end),
            srn,
            actor,
            stamp(self._clock),
            self.limits(target, staff=staff),
            series,
            name,
            self.no_show_at(target, self._clock()),
        )

    def refusal(self, target: Target, write: Write | None) -> Conflict | Forbidden:
        """The sentence for a booking the store (or the fast path) refused."""
        if write is not None and write.refused is Refusal.CLOSED:
            return Conflict(target.sentence(f"is closed: {write.detail}"))
        if write is not None and write.refused is Refusal.SUSPENDED and write.detail:
            until = iso(datetime.fromisoformat(write.detail), target.resource.zone)
            return Forbidden(f"Bookings are suspended until {until} after repeated no-shows")
        if write is not None and write.refused is Refusal.QUOTA and write.detail:
            kind, _, limit = write.detail.partition(":")
            return Conflict(f"Booking limit reached: at most {limit} {_KINDS[kind]}")
        return Conflict(target.sentence("is not available"))

    def skip(self, target: Target) -> Skip:
        """Refuses a booking from the committed board, without queueing for the database."""
        key = target.resource.id, target.day.isoformat()
        return lambda: (
            (board := self._feed.cached(key)) is not None
            and board.is_taken(target.slot.id, utc(self._clock()))
        )

    async def book(
        self, identity: Identity, resource_id: str, day: date, slot_id: int, srn: str | None = None
    ) -> BookingRow:
        """Book one slot: for the caller, or (an admin) for ``srn``."""
        with self._outcomes.counted("book"):
            target = self.target(resource_id, day, slot_id)
            user, holder, staff = await self._booker(identity, srn)
            self.admit(user, target, staff=staff)
            name = user.name if holder == user.srn else ""
            change = self.change(target, holder, user.srn, staff=staff, name=name)
            write = await self._commit.write(change, skip=self.skip(target))
            if write is None or not write.changed:
                raise self.refusal(target, write)
            log.info("booked", extra={"resource": resource_id, "date": str(day), "slot": slot_id})
            return write.bookings[0]

    async def _booker(self, identity: Identity, srn: str | None) -> tuple[User, str, bool]:
        """Who books, for whom, and whether as staff (an admin booking for someone)."""
        user = await self._identity.authenticate(identity)
        if srn is None or srn == user.srn:
            return user, user.srn, False
        await self._identity.require_admin(user)
        return user, srn, True

    # ---- cancelling ----------------------------------------------------------------------

    async def cancel(self, identity: Identity, booking_id: int, why: str = "") -> BookingRow:
        with self._outcomes.counted("cancel"):
            user = await self._identity.authenticate(identity)
            change = self.cancel_change(user, self._identity.is_staff(user), booking_id, why=why)
            write = await self._commit.write(change)
            assert write is not None
            if write.changed:
                return write.bookings[0]
            if write.refused is Refusal.NOT_YOURS:
                raise NotYourBooking("You can only cancel your own bookings")
            if write.refused is Refusal.CANCELLED:
                raise Conflict(f"Booking {booking_id} is already cancelled")
            if write.refused is Refusal.ENDED:
                raise InvalidRequest(f"Booking {booking_id} has ended")
            raise NotFound(f"Booking {booking_id} does not exist")

    async def cancel_at(
        self, identity: Identity, resource_id: str, day: date, slot_id: int
    ) -> BookingRow:
        """Cancel the booking of a resource's slot on a date (the WebSocket names slots)."""
        target = self.target(resource_id, day, slot_id)
        with self._outcomes.counted("cancel"):
            user = await self._identity.authenticate(identity)
            admin = self._identity.is_staff(user)
            slot = (target.resource.id, utc(target.slot.start))
            write = await self._commit.write(self.cancel_change(user, admin, slot=slot))
            assert write is not None
            if write.changed:
                return write.bookings[0]
            if write.refused is Refusal.NOT_YOURS:
                raise NotYourBooking("You can only cancel your own bookings")
            raise InvalidRequest(target.sentence("is not booked"))

    def offer_until(self) -> str:
        """Until when a slot freed now is offered to the first on its waitlist."""
        return utc(self._clock() + timedelta(seconds=self.offer_seconds))

    def cancel_change(
        self, user: User, admin: bool, booking_id: int | None = None,
        slot: tuple[str, str] | None = None, why: str = "",
    ) -> Cancel:  # fmt: skip
        """Cancel by id or (resource, start): the caller's own, or (staff) anyone's, ``why``
        (audited, told to the student); the freed slot is offered to its waitlist."""
        now = stamp(self._clock)
        return Cancel(booking_id, slot, None if admin else user.srn, user.srn, "cancelled", now,
                      now, why or None, "admin_cancelled", self.offer_until())  # fmt: skip

    async def mine(
        self, identity: Identity, first: date | None, last: date | None
    ) -> list[BookingRow]:
        """The caller's bookings on dates ``first``..``last``; with neither, the upcoming."""
        user = await self._identity.authenticate(identity)
        upcoming = None if first or last else utc(self._clock())
        return await self._store.bookings_of(
            user.srn,
            None if first is None else first.isoformat(),
            None if last is None else last.isoformat(),
            upcoming,
        )

    # ---- time ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Publish the boards time has changed since the last look."""
        await self._commit.tick()

    async def complete(self) -> int:
        """Mark the bookings that have ended completed."""
        return await self._store.complete(stamp(self._clock))

    def next_change(self) -> float:
        """When (epoch seconds) time next changes a board."""
        return self._feed.next_change()

    # ---- rendering -----------------------------------------------------------------------

    def resources(self) -> list[dict[str, Any]]:
        """Every resource as ``GET /resources`` shows it, with its window now."""
        return describe(self.lab, self._clock())

    def _zone(self, resource_id: str) -> ZoneInfo:
        """A resource's zone (the default one's for a resource no longer configured)."""
        return (self.lab.get(resource_id) or self.lab.default).zone

    def blackout_json(self, row: BlackoutRow) -> dict[str, Any]:
        zone = self._zone(row.resource)
        return {
            "id": row.id,
            "resource": row.resource,
            "start": iso(datetime.fromisoformat(row.start), zone),
            "end": iso(datetime.fromisoformat(row.end), zone),
            "reason": row.reason,
        }

    def as_json(self, row: BookingRow) -> dict[str, Any]:
        """A booking as every new route and message shows it: instants in its zone."""
        zone = self._zone(row.resource)
        return {
            "id": row.id,
            "resource": row.resource,
            "date": row.date,
            "slot_id": row.slot_id,
            "start": iso(datetime.fromisoformat(row.start), zone),
            "end": iso(datetime.fromisoformat(row.end), zone),
            "srn": row.srn,
            "status": "completed" if row.status == "booked" and row.end <= utc(self._clock())
            else row.status,
            "created_at": row.created_at,
            "series_id": row.series_id,
            "checked_in_at": row.checked_in_at,
        }  # fmt: skip
