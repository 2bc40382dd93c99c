"""The original API's rules: the default resource's rolling board, where a booking means
a slot's next occurrence (today if it has not ended, else tomorrow). A thin layer over
:mod:`rero.bookings`, which owns every rule of the calendar; this module keeps the
original sentences and statuses.
"""

from __future__ import annotations

import logging
from typing import Final

from rero.auth import User
from rero.board import CLOSED, RollingBoard
from rero.bookings import BookingService, Target
from rero.calendar import Resource, Slot, utc
from rero.clock import Clock, stamp
from rero.commit import GroupCommit
from rero.errors import (
    Conflict,
    InvalidRequest,
    NotYourBooking,
    QuotaReached,
    SlotNotBooked,
    SlotUnavailable,
)
from rero.feed import BoardFeed
from rero.identity import Identity, IdentityService
from rero.outcomes import Outcomes
from rero.storage import BookingRow, CancelMany, Refusal, SlotStore

log: Final = logging.getLogger(__name__)


class SlotService:
    """The original booking API over the calendar: slot ids on the rolling board."""

    def __init__(
        self,
        bookings: BookingService,
        identity: IdentityService,
        commit: GroupCommit,
        feed: BoardFeed,
        store: SlotStore,
        clock: Clock,
        outcomes: Outcomes,
    ) -> None:
        self._bookings = bookings
        self._identity = identity
        self._commit = commit
        self._feed = feed
        self._store = store
        self._clock = clock
        self._outcomes = outcomes
        self.resource: Resource = bookings.lab.default

    async def board(self) -> RollingBoard:
        """The rolling board; reading it never touches the database."""
        return await self._feed.rolling()

    def check(self, slot_id: int) -> None:
        """Refuse an id outside the schedule, naming the valid range."""
        ids = self.resource.slot_ids
        if slot_id not in ids:
            raise InvalidRequest(
                f"Slot {slot_id} does not exist: valid slots are {ids[0]} to {ids[-1]}"
            )

    async def book(self, identity: Identity, slot_id: int) -> User:
        """Book ``slot_id``'s next occurrence: checked before auth, decided by the store."""
        with self._outcomes.counted("book"):
            return await self._book(identity, slot_id)

    async def _book(self, identity: Identity, slot_id: int) -> User:
        self.check(slot_id)
        user = await self._identity.authenticate(identity)
        cell = (await self.board()).occurrence(slot_id)
        unavailable = SlotUnavailable(f"Slot {slot_id} is not available")
        if cell is None or cell.state == CLOSED:
            raise unavailable
        target = Target(self.resource, cell.start.date(), Slot(slot_id, cell.start, cell.end))
        try:
            self._bookings.admit(user, target, staff=False)
        except (InvalidRequest, Conflict):
            raise unavailable from None
        change = self._bookings.change(target, user.srn, user.srn, staff=False, name=user.name)
        write = await self._commit.write(change, skip=self._bookings.skip(target))
        if write is not None and write.refused is Refusal.QUOTA and write.detail:
            kind, _, limit = write.detail.partition(":")
            if kind == "upcoming":
                raise QuotaReached(f"Booking limit reached: at most {limit} slots per user")
            raise QuotaReached(self._bookings.refusal(target, write).detail)
        if write is None or not write.changed:
            raise unavailable
        log.info("slot booked", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def cancel(self, identity: Identity, slot_id: int) -> User:
        """Cancel a booking of the rolling board: one's own, or anyone's for an admin."""
        with self._outcomes.counted("cancel"):
            return await self._cancel(identity, slot_id)

    async def _cancel(self, identity: Identity, slot_id: int) -> User:
        self.check(slot_id)
        user = await self._identity.authenticate(identity)
        admin = self._identity.is_staff(user)
        cell = (await self.board()).occurrence(slot_id)
        if cell is None or cell.holder is None:
            raise SlotNotBooked(f"Slot {slot_id} is not booked")
        slot = (self.resource.id, utc(cell.start))
        write = await self._commit.write(self._bookings.cancel_change(user, admin, slot=slot))
        assert write is not None
        if write.refused is Refusal.NOT_YOURS:
            raise NotYourBooking("You can only cancel your own bookings")
        if not write.changed:
            raise SlotNotBooked(f"Slot {slot_id} is not booked")
        log.info("slot cancelled", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def bookings(self, identity: Identity) -> list[tuple[int, BookingRow]]:
        """The caller's bookings on the rolling board (whatever ``show_booked_by`` says)."""
        user = await self._identity.authenticate(identity)
        return (await self.board()).held_by(user.srn)

    async def reset(self, identity: Identity) -> int:
        """Admin: cancel every booking of the default resource that has not ended."""
        admin = await self._identity.require_admin(identity)
        now = stamp(self._clock)
        write = await self._commit.write(
            CancelMany(admin.srn, "reset", now, now, resource=self.resource.id)
        )
        return 0 if write is None else len(write.bookings)
