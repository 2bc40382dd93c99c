"""The hour itself, from the student's side: checking in, and the signed grant that hands
them to the lab's equipment (which checks them in too).

Both are allowed to the booking's owner only, from the lab's ``early_minutes`` before
the slot starts (none for a resource without a lab) until it ends. The store reads the
booking and decides the check-in in one transaction (:class:`rero.storage.CheckIn`); a
refusal's sentence is made from the row it found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from rero.auth import User
from rero.bookings import BookingService
from rero.calendar import iso, utc
from rero.commit import GroupCommit
from rero.errors import Conflict, NotFound
from rero.grants import GrantClaims, Signer
from rero.identity import Identity, IdentityService
from rero.setting_checks import LabConfig
from rero.storage import BookingRow, CheckIn

log: Final = logging.getLogger(__name__)

#: The sentence of each status that has no hour left to enter.
_GONE: Final = {
    "cancelled": "is cancelled",
    "no_show": "was a no-show",
    "completed": "has ended",
    "held": "is only held: confirm it first",
    "lapsed": "has lapsed",
}


@dataclass(frozen=True)
class Access:
    """A grant, where it takes the student, and when it ends (in the resource's zone)."""

    grant: str
    launch_url: str
    expires_at: str


class AccessService:
    """Owns the rules of entering a booked hour: whose, when, and which lab."""

    def __init__(
        self,
        calendar: BookingService,
        identity: IdentityService,
        commit: GroupCommit,
        signer: Signer,
    ) -> None:
        self._calendar = calendar
        self._identity = identity
        self._commit = commit
        self._signer = signer

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self._signer.jwks()

    async def check_in(self, identity: Identity, booking_id: int) -> BookingRow:
        """Check the caller in to their booking, or staff anyone at the lab's desk; again
        is no error (the same booking)."""
        user = await self._identity.authenticate(identity)
        staff = self._identity.is_staff(user)
        return await self._check_in(user, booking_id, lab_only=False, anyone=staff)

    async def access(self, identity: Identity, booking_id: int) -> Access:
        """A grant for the caller's booking of a resource with a lab, checking them in."""
        user = await self._identity.authenticate(identity)
        row = await self._check_in(user, booking_id, lab_only=True)
        lab = self._calendar.lab.labs[row.resource]
        start, end = datetime.fromisoformat(row.start), datetime.fromisoformat(row.end)
        claims = GrantClaims(
            resource=row.resource,
            srn=user.srn,
            name=user.name,
            booking_id=row.id,
            issued_at=self._calendar.now(),
            not_before=start - _early(lab),
            expires=end,
        )
        grant = self._signer.sign(claims)
        log.info("grant issued", extra={"resource": row.resource, "booking_id": row.id})
        launch = lab.launch_url.split("#", 1)[0]
        return Access(grant, f"{launch}#grant={grant}", iso(end, self._zone(row.resource)))

    async def _check_in(
        self, user: User, booking_id: int, *, lab_only: bool, anyone: bool = False
    ) -> BookingRow:
        """Check in; the store reads the booking and decides in the commit's transaction
        (a read before it would queue behind every commit in a rush)."""
        now = self._calendar.now()
        early = self._calendar.lab.early
        change = CheckIn(booking_id, None if anyone else user.srn, None, user.srn, utc(now),
                         early, None if lab_only else 0)  # fmt: skip
        write = await self._commit.write(change)
        assert write is not None  # no skip was given
        if write.changed:
            came = write.bookings[0]
            log.info("checked in", extra={"resource": came.resource, "booking_id": came.id})
            return came
        row = write.seen
        if row is None:  # unknown, or somebody else's: the same answer
            raise NotFound(f"Booking {booking_id} does not exist")
        if write.refused is None:  # checked in already
            return row
        if write.detail == "no lab":
            raise NotFound(f"Resource {row.resource} has no lab to enter")
        lab = self._calendar.lab.labs.get(row.resource)
        self._refuse_if_not_now(row, now, _early(lab))
        raise self._not_yet(row, _early(lab))  # the store found it not yet open

    def _refuse_if_not_now(self, row: BookingRow, now: datetime, early: timedelta) -> None:
        if row.status in _GONE:
            raise Conflict(f"Booking {row.id} {_GONE[row.status]}")
        if row.end <= utc(now):
            raise Conflict(f"Booking {row.id} {_GONE['completed']}")
        if datetime.fromisoformat(row.start) - early > now:
            raise self._not_yet(row, early)

    def _not_yet(self, row: BookingRow, early: timedelta) -> Conflict:
        opens = iso(datetime.fromisoformat(row.start) - early, self._zone(row.resource))
        return Conflict(f"Booking {row.id} is not for now: access opens at {opens}")

    def _zone(self, resource_id: str) -> ZoneInfo:
        lab = self._calendar.lab
        return (lab.get(resource_id) or lab.default).zone


def _early(lab: LabConfig | None) -> timedelta:
    """How long before its slot a booking may be entered: the lab's say, else not at all."""
    return timedelta(minutes=lab.early_minutes if lab is not None else 0)
