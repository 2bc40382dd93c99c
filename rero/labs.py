"""The lab's side of the calendar: who the lab is (its key), the session under way, the
lab taking its equipment out of service and back, and the lab reporting that a student
started. Writes go through the group commit like everyone's, so boards follow."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from rero.calendar import Resource, iso
from rero.clock import Clock, stamp
from rero.commit import GroupCommit
from rero.errors import Conflict, Forbidden, NotFound, ReroError
from rero.feed import BoardFeed
from rero.resources import Lab
from rero.setting_checks import LabConfig
from rero.storage import AddBlackout, CheckIn, LiftBlackout, Programs, Refusal
from rero.storage.outbox_programs import LabOut, current, lab_status

log: Final = logging.getLogger(__name__)

#: A lab's out-of-service report closes its resource until it reports back.
UNTIL_BACK: Final = "9999-12-31T23:59:59+00:00"


class LabKeyRequired(ReroError):
    """No ``Authorization: Bearer <lab key>``."""

    status = 401

    def __init__(self) -> None:
        super().__init__("A lab key is required: Authorization: Bearer <key>")


def actor(resource_id: str) -> str:
    """Who the audit trail and blackouts say acted: the lab of that resource."""
    return f"lab:{resource_id}"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class LabService:
    """The lab API's rules; its transport is :mod:`rero.lab_views`."""

    def __init__(
        self,
        lab: Lab,
        commit: GroupCommit,
        feed: BoardFeed,
        store: Programs,
        clock: Clock,
        offer_seconds: int,
    ) -> None:
        self._lab = lab
        #: The lab of each resource that has one.
        self.configs = lab.labs
        self._commit = commit
        self._store = store
        self._clock = clock
        self._offer = timedelta(seconds=offer_seconds)
        self._status_locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[Callable[[], None]] = []
        # Every commit that changed a board may have written events: wake their readers.
        feed.on_day(lambda _board: self._committed())

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (quick, no I/O) after commits that may have written events."""
        self._listeners.append(listener)

    def _committed(self) -> None:
        for listener in self._listeners:
            listener()

    # ---- who asks ----------------------------------------------------------------------

    def authorize(self, resource_id: str, key: str | None) -> tuple[Resource, LabConfig]:
        """The resource and its lab, for a caller holding one of that lab's keys: 404 for
        a resource without a lab, 401 without a key, 403 with another key."""
        resource = self._lab.get(resource_id)
        if resource is None:
            raise NotFound(f"Resource {resource_id} does not exist")
        lab = self._lab.labs.get(resource_id)
        if lab is None:
            raise NotFound(f"Resource {resource_id} has no lab")
        if not key:
            raise LabKeyRequired()
        digest = _hash(key)
        # Compare with every hash, each in constant time: no early exit to time.
        matches = [hmac.compare_digest(digest, known) for known in lab.api_key_sha256]
        if not any(matches):
            raise Forbidden(f"This key is not a lab key of {resource_id}")
        return resource, lab

    # ---- what the lab reads and reports ------------------------------------------------

    async def current(self, resource: Resource) -> dict[str, Any] | None:
        """The booked session whose slot contains now, or None."""
        row = await self._store.perform(current(resource.id, stamp(self._clock)))
        if row is None:
            return None
        return {
            "booking_id": row.id,
            "srn": row.srn,
            "name": row.name,
            "start": self._iso(row.start, resource),
            "end": self._iso(row.end, resource),
            "checked_in": row.checked_in_at is not None,
        }

    async def set_available(
        self, resource: Resource, available: bool, reason: str | None
    ) -> dict[str, Any]:
        """Out of service: a blackout from now until the lab reports back (the bookings
        inside are cancelled, as by any blackout); back: that blackout lifted. A report
        of the state already in force changes nothing."""
        lock = self._status_locks.setdefault(resource.id, asyncio.Lock())
        async with lock:  # one report at a time per lab in this process
            state = await self._store.perform(lab_status(resource.id, actor(resource.id)))
            now = stamp(self._clock)
            if not available and state.reason is None:
                assert reason is not None
                change = AddBlackout(resource.id, now, UNTIL_BACK, reason, actor(resource.id),
                                     now, now)  # fmt: skip
                write = await self._commit.write(change)
                assert write is not None
                assert write.blackout is not None
                cancelled = len(write.bookings)
                log.info(
                    "lab out of service", extra={"resource": resource.id, "cancelled": cancelled}
                )
                state = LabOut(write.blackout.reason, write.blackout.start)
            elif available and state.reason is not None:
                offer = (self._clock() + self._offer).isoformat(timespec="seconds")
                lift = LiftBlackout(None, actor(resource.id), now, resource.id, offer)
                write = await self._commit.write(lift)
                assert write is not None
                log.info("lab back in service", extra={"resource": resource.id})
                state = LabOut(None, now)
        return {
            "resource": resource.id,
            "available": state.reason is None,
            "reason": state.reason,
            "since": None if state.since is None else self._iso(state.since, resource),
        }

    async def started(self, resource: Resource, lab: LabConfig, booking_id: int) -> dict[str, Any]:
        """The lab saw the student start: the booking is checked in (once)."""
        early = {resource.id: lab.early_minutes}
        change = CheckIn(booking_id, None, resource.id, actor(resource.id), stamp(self._clock),
                         early)  # fmt: skip
        write = await self._commit.write(change)
        assert write is not None
        if write.changed:
            came = write.bookings[0].checked_in_at
        elif write.refused is None and write.detail is not None:
            came = write.detail  # checked in already
        else:
            raise _refusal(booking_id, write.refused)
        assert came is not None
        return {"booking_id": booking_id, "checked_in_at": self._iso(came, resource)}

    @staticmethod
    def _iso(instant: str, resource: Resource) -> str:
        return iso(datetime.fromisoformat(instant), resource.zone)


def _refusal(booking_id: int, refused: Refusal | None) -> ReroError:
    if refused is Refusal.CANCELLED:
        return Conflict(f"Booking {booking_id} is cancelled")
    if refused is Refusal.ENDED:
        return Conflict(f"Booking {booking_id} has ended")
    if refused is Refusal.NOT_NOW:
        return Conflict(f"Booking {booking_id} has not started yet")
    if refused is Refusal.NOT_FOUND:
        return NotFound(f"Booking {booking_id} does not exist")
    return Conflict(f"Booking {booking_id} is not booked")
