"""The hour's rules: holds and their confirmation, the waitlist, early release, no-shows
and suspensions. Every change goes through the group commit (its boards published after
it); the store decides races. The single-booking rules (window, campus, quotas) stay in
:mod:`rero.bookings`; this module uses them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Final

from rero.bookings import BookingService, Target
from rero.calendar import iso, utc
from rero.clock import Clock, stamp
from rero.commit import GroupCommit
from rero.errors import Conflict, Forbidden, NotFound, ReroError
from rero.identity import Identity, IdentityService
from rero.settings import Settings
from rero.storage import (
    BookingRow,
    Confirm,
    DropHold,
    Hold,
    JoinWaitlist,
    LeaveWaitlist,
    LiftSuspension,
    Refusal,
    Release,
    Storage,
    Sweep,
    Write,
)
from rero.storage.waitlist import WaitRow, offers_after, suspended_until, waitlist_of

log: Final = logging.getLogger(__name__)

#: Offers told from this process, remembered so other processes' news does not repeat them.
TOLD_KEPT: Final = 1024
#: A session's end is told to its lab if the sweep sees it within this long (a server
#: down for longer misses it; the grant's ``exp`` ends the session all the same).
ENDED_HORIZON: Final = timedelta(minutes=15)


class HourService:
    """Holds, the waitlist, release, no-shows; ``sweep`` is what the scheduler runs."""

    def __init__(
        self,
        bookings: BookingService,
        identity: IdentityService,
        commit: GroupCommit,
        store: Storage,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._bookings = bookings
        self._identity = identity
        self._commit = commit
        self._store = store
        self._clock = clock
        self._settings = settings
        #: Whether a student has a socket here, and how to send it a message.
        self.connected: Callable[[str], bool] = lambda srn: False
        self.tell: Callable[[str, str, str], None] = lambda srn, kind, text: None
        self._telling: set[asyncio.Task[None]] = set()
        #: The newest outbox event read for other processes' offers, and the offers (hold
        #: ids) told from here, which their events must not repeat.
        self._offers_seen = -1
        self._told: OrderedDict[int, None] = OrderedDict()
        commit.waitlist_listeners.append(self._waitlist_changed)

    def _offer_until(self, now: datetime) -> str:
        return utc(now + timedelta(seconds=self._settings.waitlist_hold_seconds))

    async def _write(self, change: Any, target: Target | None = None) -> Write:
        skip = None if target is None else self._bookings.skip(target)
        write = await self._commit.write(change, skip=skip)
        if write is None:
            write = Write(False, Refusal.TAKEN)
        return write

    async def follow_offers(self) -> None:
        """Another process committed: tell the students connected here of the offers it
        made (each offer's event is in the outbox, written with it)."""
        self._offers_seen, offers = await self._store.perform(offers_after(self._offers_seen))
        for hold, srns in offers:
            if hold.id not in self._told:
                self._waitlist_changed(Write(True, bookings=(hold,), waitlisted=srns))

    def _waitlist_changed(self, write: Write) -> None:
        """After any commit that moved a waitlist: tell the students connected here."""
        for hold in write.bookings:
            self._told[hold.id] = None
        while len(self._told) > TOLD_KEPT:
            self._told.popitem(last=False)
        told = {srn for srn in write.waitlisted if self.connected(srn)}
        if told:
            task = asyncio.create_task(self._tell(told, write))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    async def _tell(self, srns: set[str], write: Write) -> None:
        """Tell students on a waitlist that changed: their places, and a hold offered."""
        for hold in write.bookings:
            if hold.status == "held" and hold.srn in srns:
                text = {"type": "hold_offered", "data": {"hold": self.hold_json(hold)}}
                self.tell(hold.srn, "hold_offered", json.dumps(text))
        for srn in sorted(srns):
            try:
                places = await self.waitlist_of(srn)
            except ReroError:
                continue  # the database is away: the next change tells them
            data = {"waitlist": [self.entry_json(e) for e in places]}
            self.tell(srn, "waitlist", json.dumps({"type": "waitlist", "data": data}))

    def _refused(self, write: Write, what: str, target: Target | None = None) -> ReroError:
        """The sentence for a refused hold, confirm, release or waitlist change."""
        if write.refused is Refusal.SUSPENDED and write.detail:
            until = iso(datetime.fromisoformat(write.detail), self._bookings.lab.default.zone)
            return Forbidden(f"Bookings are suspended until {until} after repeated no-shows")
        if write.refused is Refusal.HOLDING:
            return Conflict("You already hold a slot: confirm or release it first")
        if write.refused is Refusal.LAPSED:
            return Conflict(f"{what} has lapsed")
        if write.refused is Refusal.NOT_NOW:
            return Conflict(f"{what} is not under way")
        if write.refused in (Refusal.ENDED, Refusal.CANCELLED):
            return Conflict(
                f"{what} is {'cancelled' if write.refused is Refusal.CANCELLED else 'over'}"
            )
        if write.refused is Refusal.TAKEN and write.detail == "yours":
            return Conflict("You keep this slot already")
        if write.refused is Refusal.WAITING:
            return Conflict("You are on this slot's waitlist already")
        if write.refused is Refusal.NOT_TAKEN and target is not None:
            return Conflict(target.sentence("is free: book it instead of waiting"))
        if target is not None:
            return self._bookings.refusal(target, write)
        return NotFound(f"{what} does not exist")

    # ---- holds ---------------------------------------------------------------------------

    async def hold(
        self, identity: Identity, resource_id: str, day: date, slot_id: int
    ) -> BookingRow:
        """Keep a free slot for the caller for ``hold_seconds`` (one hold at a time)."""
        target = self._bookings.target(resource_id, day, slot_id)
        user = await self._identity.authenticate(identity)
        self._bookings.admit(user, target, staff=False)
        now = self._clock()
        expires = min(now + timedelta(seconds=self._settings.hold_seconds), target.slot.end)
        change = Hold(
            target.resource.id, day.isoformat(), slot_id, utc(target.slot.start),
            utc(target.slot.end), user.srn, user.name, user.srn, stamp(self._clock), utc(expires),
            self._offer_until(now),
        )  # fmt: skip
        write = await self._write(change, target)
        if not write.changed:
            raise self._refused(write, target.sentence("hold"), target)
        return write.bookings[0]

    async def _own(self, identity: Identity, booking_id: int, what: str) -> tuple[str, BookingRow]:
        """The caller's SRN and their booking or hold ``booking_id`` (404 for anyone else's)."""
        user = await self._identity.authenticate(identity)
        row = await self._store.booking(booking_id)
        if row is None or row.srn != user.srn:
            raise NotFound(f"{what} {booking_id} does not exist")
        return user.srn, row

    async def confirm(self, identity: Identity, hold_id: int) -> BookingRow:
        """Make the caller's hold a booking, counted against their quotas now."""
        srn, row = await self._own(identity, hold_id, "Hold")
        target = self._bookings.target(row.resource, date.fromisoformat(row.date), row.slot_id)
        now = self._clock()
        change = Confirm(
            hold_id, srn, stamp(self._clock), self._bookings.limits(target, staff=False),
            self._bookings.no_show_at(target, now),
        )  # fmt: skip
        write = await self._write(change)
        if not write.changed:
            if write.refused is Refusal.QUOTA:
                raise self._bookings.refusal(target, write)
            raise self._refused(write, f"Hold {hold_id}")
        return write.bookings[0]

    async def drop(self, identity: Identity, hold_id: int) -> BookingRow:
        srn, _ = await self._own(identity, hold_id, "Hold")
        now = self._clock()
        write = await self._write(
            DropHold(hold_id, srn, stamp(self._clock), self._offer_until(now))
        )
        if not write.changed:
            raise self._refused(write, f"Hold {hold_id}")
        return write.bookings[0]

    # ---- the hour ------------------------------------------------------------------------

    async def release(self, identity: Identity, booking_id: int) -> BookingRow:
        """End the caller's booking early: the rest of the hour goes to the waitlist or
        is free to book."""
        srn, _ = await self._own(identity, booking_id, "Booking")
        now = self._clock()
        change = Release(booking_id, srn, stamp(self._clock), self._offer_until(now))
        write = await self._write(change)
        if not write.changed:
            raise self._refused(write, f"Booking {booking_id}")
        return write.bookings[0]

    # ---- the waitlist --------------------------------------------------------------------

    async def join(self, identity: Identity, resource_id: str, day: date, slot_id: int) -> WaitRow:
        target = self._bookings.target(resource_id, day, slot_id)
        user = await self._identity.authenticate(identity)
        self._bookings.admit(user, target, staff=False)
        change = JoinWaitlist(
            target.resource.id, day.isoformat(), slot_id, utc(target.slot.start),
            utc(target.slot.end), user.srn, user.name, stamp(self._clock),
        )  # fmt: skip
        write = await self._write(change)
        if not write.changed:
            raise self._refused(write, target.sentence("waitlist"), target)
        entry_id = int(write.detail or 0)
        mine = await self.waitlist_of(user.srn)
        return next(e for e in mine if e.id == entry_id)

    async def leave(self, identity: Identity, entry_id: int) -> None:
        user = await self._identity.authenticate(identity)
        write = await self._write(LeaveWaitlist(entry_id, user.srn, stamp(self._clock)))
        if not write.changed:
            raise NotFound(f"Waitlist entry {entry_id} does not exist")

    async def waitlist_of(self, srn: str) -> list[WaitRow]:
        return await self._store.perform(waitlist_of(srn, utc(self._clock())))

    async def whoami(self, identity: Identity) -> str:
        return (await self._identity.authenticate(identity)).srn

    async def mine(self, identity: Identity) -> list[WaitRow]:
        user = await self._identity.authenticate(identity)
        return await self.waitlist_of(user.srn)

    # ---- suspensions ---------------------------------------------------------------------

    async def suspension(self, identity: Identity, srn: str | None) -> str | None:
        """Until when the caller (or, for an admin, ``srn``) is suspended, or None."""
        user = await self._identity.authenticate(identity)
        if srn is not None and srn != user.srn:
            await self._identity.require_staff(user)
        until = await self._store.perform(suspended_until(srn or user.srn, stamp(self._clock)))
        zone = self._bookings.lab.default.zone
        return None if until is None else iso(datetime.fromisoformat(until), zone)

    async def lift_suspension(self, identity: Identity, srn: str) -> None:
        admin = await self._identity.require_admin(identity)
        write = await self._write(LiftSuspension(srn, admin.srn, stamp(self._clock)))
        if not write.changed:
            raise NotFound(f"{srn} is not suspended")
        log.info("suspension lifted", extra={"srn": srn, "by": admin.srn})

    # ---- time ----------------------------------------------------------------------------

    async def sweep(self) -> Write:
        """What time decided since the last look: no-shows (and suspensions), lapsed holds
        and the next offers, the lab's session events. Idempotent: any number of workers or
        hosts may run it."""
        now = self._clock()
        s = self._settings
        labs = self._bookings.lab.labs
        change = Sweep(
            utc(now), self._offer_until(now), s.no_show_limit,
            utc(now - timedelta(days=s.no_show_window_days)),
            utc(now + timedelta(days=s.suspension_days)),
            tuple((r, utc(now + timedelta(minutes=lab.early_minutes))) for r, lab in labs.items()),
            utc(now - ENDED_HORIZON),
        )  # fmt: skip
        return await self._write(change)

    # ---- rendering -----------------------------------------------------------------------

    def hold_json(self, row: BookingRow) -> dict[str, Any]:
        zone = self._bookings.lab.get(row.resource) or self._bookings.lab.default
        body = self._bookings.as_json(row)
        expires = row.hold_expires_at
        body["expires_at"] = (
            None if expires is None else iso(datetime.fromisoformat(expires), zone.zone)
        )
        return body

    def entry_json(self, entry: WaitRow) -> dict[str, Any]:
        zone = (self._bookings.lab.get(entry.resource) or self._bookings.lab.default).zone
        return {
            "id": entry.id, "resource": entry.resource, "date": entry.date,
            "slot_id": entry.slot_id, "start": iso(datetime.fromisoformat(entry.start), zone),
            "end": iso(datetime.fromisoformat(entry.end), zone), "status": entry.status,
            "position": entry.position, "hold_id": entry.hold_id,
            "hold_expires_at": None if entry.hold_expires_at is None
            else iso(datetime.fromisoformat(entry.hold_expires_at), zone),
        }  # fmt: skip
