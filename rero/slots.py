"""The booking rules: which slots exist, who may book or cancel what, and when a
booking ends.

HTTP views and WebSocket handlers call this and nothing below it. Who is asking is
:mod:`rero.identity`'s question; writing and publishing are :mod:`rero.commit`'s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo

from rero.auth import User
from rero.board import Board, BoardFeed
from rero.clock import Clock, stamp
from rero.commit import GroupCommit
from rero.errors import InvalidRequest, NotYourBooking, QuotaReached, SlotNotBooked, SlotUnavailable
from rero.identity import Identity, IdentityService
from rero.outcomes import Outcomes
from rero.settings import Settings
from rero.storage import Book, Cancel, Refusal, Release, SlotRow, SlotStore

log: Final = logging.getLogger(__name__)

#: Seconds between two looks for ended bookings (``release_after_slot_end``).
EXPIRY_INTERVAL: Final = 30.0


@dataclass(frozen=True)
class Schedule:
    """One-hour slots from ``first_hour`` to ``last_hour``; a slot's id is its start hour."""

    first_hour: int = 3
    last_hour: int = 15

    def rows(self) -> list[tuple[int, str, str]]:
        """``(id, start_time, end_time)`` for every slot, times as HH:MM."""
        return [(h, f"{h:02d}:00", f"{h + 1:02d}:00") for h in self.ids]

    @property
    def ids(self) -> range:
        return range(self.first_hour, self.last_hour)

    def check(self, slot_id: int) -> None:
        """Refuse an id outside the schedule, naming the valid range."""
        if slot_id not in self.ids:
            raise InvalidRequest(
                f"Slot {slot_id} does not exist: valid slots are "
                f"{self.first_hour} to {self.last_hour - 1}"
            )


def release_time(slot: SlotRow, tz: ZoneInfo) -> datetime | None:
    """When a booking ends: the slot's first end time after it was made, in ``tz``.

    Without dates in the protocol a booking means the slot's next occurrence; one
    made during the slot keeps the rest of it.
    """
    if not slot.is_booked or not slot.booked_at:
        return None
    try:
        booked = datetime.fromisoformat(slot.booked_at)
    except ValueError:
        return None
    if booked.tzinfo is None:
        booked = booked.replace(tzinfo=timezone.utc)
    local = booked.astimezone(tz)
    hours, minutes = (int(part) for part in slot.end_time.split(":"))
    midnight = datetime.combine(local.date(), time(0), tz)
    end = midnight + timedelta(hours=hours, minutes=minutes)
    return end if end > local else end + timedelta(days=1)


class SlotService:
    """Owns the rules of booking; changes go through the group commit."""

    def __init__(
        self,
        identity: IdentityService,
        commit: GroupCommit,
        feed: BoardFeed,
        store: SlotStore,
        settings: Settings,
        clock: Clock,
        outcomes: Outcomes,
    ) -> None:
        self._identity = identity
        self._commit = commit
        self._feed = feed
        self._store = store
        self.schedule = Schedule(settings.first_hour, settings.last_hour)
        self._limit = settings.max_bookings_per_user
        self._tz = ZoneInfo(settings.timezone)
        self._clock = clock
        self._outcomes = outcomes

    @property
    def board(self) -> Board:
        """The newest committed board; reading it never touches the database."""
        return self._feed.current

    async def book(self, identity: Identity, slot_id: int) -> User:
        """Book ``slot_id``: checked before auth, decided by one conditional write."""
        with self._outcomes.counted("book"):
            return await self._book(identity, slot_id)

    async def _book(self, identity: Identity, slot_id: int) -> User:
        self.schedule.check(slot_id)
        user = await self._identity.authenticate(identity)
        write = await self._commit.write(
            Book(slot_id, user.srn, stamp(self._clock), self._limit),
            # In a rush the losers are refused from the committed board under the
            # lock, without queueing for the database; the store decides the winner.
            skip=lambda board: board.is_booked(slot_id),
        )
        if write is not None and write.refused is Refusal.QUOTA:
            raise QuotaReached(f"Booking limit reached: at most {self._limit} slots per user")
        if write is None or not write.changed:
            raise SlotUnavailable(f"Slot {slot_id} is not available")
        log.info("slot booked", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def cancel(self, identity: Identity, slot_id: int) -> User:
        """Cancel a booking: one's own, or anyone's for an admin."""
        with self._outcomes.counted("cancel"):
            return await self._cancel(identity, slot_id)

    async def _cancel(self, identity: Identity, slot_id: int) -> User:
        if slot_id not in self.board.by_id:
            self.schedule.check(slot_id)
        user = await self._identity.authenticate(identity)
        admin = self._identity.is_admin(user)
        slot = self.board.by_id.get(slot_id)
        holder = slot.booked_by if slot is not None else None
        action = "admin_cancelled" if admin and holder != user.srn else "cancelled"
        write = await self._commit.write(
            Cancel(slot_id, None if admin else user.srn, user.srn, action, stamp(self._clock))
        )
        assert write is not None
        if write.refused is Refusal.NOT_YOURS:
            raise NotYourBooking("You can only cancel your own bookings")
        if not write.changed:
            raise SlotNotBooked(f"Slot {slot_id} is not booked")
        log.info("slot cancelled", extra={"slot_id": slot_id, "srn": user.srn, "action": action})
        return user

    async def bookings(self, identity: Identity) -> list[SlotRow]:
        """The caller's bookings, from the board (whatever ``show_booked_by`` says)."""
        user = await self._identity.authenticate(identity)
        return self.board.held_by(user.srn)

    async def reset(self, identity: Identity) -> int:
        """Admin: release every booking; returns how many were released."""
        admin = await self._identity.require_admin(identity)
        board = self.board
        ids = tuple(s.id for s in board.slots)
        await self._commit.write(Release(ids, admin.srn, "reset", stamp(self._clock)))
        return len(board.booked)

    async def audit(
        self, identity: Identity, limit: int, before: int | None
    ) -> list[dict[str, object]]:
        await self._identity.require_admin(identity)
        return await self._store.events(limit, before)

    async def expire_due(self) -> list[int]:
        """Release bookings whose slot has ended (``release_after_slot_end``)."""
        now = self._clock()
        due = [
            s.id
            for s in self.board.slots
            if (end := release_time(s, self._tz)) is not None and end <= now
        ]
        if due:
            await self._commit.write(Release(tuple(due), None, "expired", stamp(self._clock)))
            log.info("bookings expired", extra={"slot_ids": due})
        return due

    async def expire_forever(self) -> None:
        """Release ended bookings now and every ``EXPIRY_INTERVAL`` seconds."""
        while True:
            try:
                await self.expire_due()
            except Exception:  # a storage hiccup must not end the loop
                log.exception("releasing ended bookings failed")
            await asyncio.sleep(EXPIRY_INTERVAL)
