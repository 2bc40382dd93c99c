"""Calendar feeds: a private ``.ics`` URL per student (their bookings) and per resource
(everyone's bookings of it, for lab staff), for calendar apps that subscribe to a URL.

The URL's token is its own credential, not a session: random, shown once, stored only
as its SHA-256, revoked by the owner (or by making a new one). Feed fetches are rare:
each is one transaction, the feed and its bookings read together, rendered with
``icalendar``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vDuration

from rero.bookings import BookingService
from rero.calendar import utc
from rero.clock import Clock, stamp
from rero.errors import NotFound
from rero.identity import Identity, IdentityService
from rero.storage import BookingRow, Programs
from rero.storage.feed_programs import FeedRow, Listed, Owner, open_feed, read_feed, revoke_feed

log: Final = logging.getLogger(__name__)

#: How far back a feed shows bookings (their end); every upcoming one is shown.
RECENT: Final = timedelta(days=30)
#: What calendar apps are told about refreshing (the HTTP answer may be cached 5 minutes).
REFRESH: Final = timedelta(hours=1)
PRODID: Final = "-//rero//calendar feed//EN"
ZONE_MARGIN: Final = timedelta(days=366)
#: What :func:`secrets.token_urlsafe` makes: anything else is no feed of ours, unlooked-up.
TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{20,100}\Z")


@dataclass(frozen=True)
class Feed:
    """A feed just made: the only time its URL (its token) is seen."""

    url: str
    created_at: str
    resource: str | None = None


def digest(token: str) -> str:
    """What the database holds instead of a feed's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _instant(text: str) -> datetime | None:
    """A stored instant in UTC (one without an offset is UTC); None if it is none."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


class FeedService:
    """Opens, revokes and renders calendar feeds; students own theirs, admins the
    resources'."""

    def __init__(
        self,
        calendar: BookingService,
        identity: IdentityService,
        store: Programs,
        clock: Clock,
        public_url: str,
    ) -> None:
        self._calendar = calendar
        self._identity = identity
        self._store = store
        self._clock = clock
        self._public_url = public_url.rstrip("/")

    def base(self, origin: str) -> str:
        """Where feed links point: ``public_url``, else the request's own origin."""
        return self._public_url or origin.rstrip("/")

    # ---- owning a feed ---------------------------------------------------------------

    async def open_mine(self, identity: Identity, origin: str) -> Feed:
        """A new feed of the caller's bookings; their previous one stops working."""
        user = await self._identity.authenticate(identity)
        return await self._open(Owner(srn=user.srn), origin)

    async def revoke_mine(self, identity: Identity) -> bool:
        user = await self._identity.authenticate(identity)
        return await self._revoke(Owner(srn=user.srn))

    async def open_for(self, identity: Identity, resource_id: str, origin: str) -> Feed:
        """Admins: a new feed of every booking of a resource, replacing its previous one."""
        await self._identity.require_staff(identity)
        resource = self._calendar.resource(resource_id)
        return await self._open(Owner(resource=resource.id), origin)

    async def revoke_for(self, identity: Identity, resource_id: str) -> bool:
        await self._identity.require_staff(identity)
        return await self._revoke(Owner(resource=self._calendar.resource(resource_id).id))

    async def _open(self, owner: Owner, origin: str) -> Feed:
        token = secrets.token_urlsafe(32)
        row = await self._store.perform(open_feed(digest(token), owner, stamp(self._clock)))
        log.info("calendar feed opened", extra={"srn": owner.srn, "resource": owner.resource})
        url = f"{self.base(origin)}/calendar/{token}.ics"
        return Feed(url, row.created_at, owner.resource)

    async def _revoke(self, owner: Owner) -> bool:
        revoked = await self._store.perform(revoke_feed(owner, stamp(self._clock)))
        if revoked:
            log.info("calendar feed revoked", extra={"srn": owner.srn, "resource": owner.resource})
        return revoked

    # ---- reading one -----------------------------------------------------------------

    async def render(self, token: str, origin: str) -> bytes:
        """The ``.ics`` of a live feed's token (404 for any other token)."""
        found = None
        if TOKEN_SHAPE.match(token):
            since = utc(self._clock() - RECENT)
            found = await self._store.perform(read_feed(digest(token), since))
        if found is None:
            raise NotFound("No such calendar feed")
        feed, listed = found
        ics: bytes = self._ics(feed, listed, self.base(origin)).to_ical()
        return ics

    def _place(self, resource_id: str) -> tuple[str, str, ZoneInfo]:
        """A resource's name, site and zone; one no longer configured shows as its id, in
        the default resource's zone."""
        lab = self._calendar.lab
        found = lab.get(resource_id)
        if found is None:
            return resource_id, "", lab.default.zone
        return found.name, found.site, found.zone

    def booking_ics(self, b: BookingRow, base: str) -> bytes:
        """One booking as an ``.ics`` of its own (a confirmation mail's attachment), the
        same event a feed shows."""
        host = urlsplit(base).hostname or "rero"
        calendar: Calendar = Calendar.new(prodid=PRODID, method="PUBLISH")
        now = self._clock()
        calendar.add_component(self._event(Listed(b, b.created_at), base, host, now, staff=False))
        calendar.add_missing_timezones()
        ics: bytes = calendar.to_ical()
        return ics

    def _ics(self, feed: FeedRow, listed: list[Listed], base: str) -> Calendar:
        host = urlsplit(base).hostname or "rero"
        resource_id = feed.owner.resource
        title = "Lab bookings" if resource_id is None else self._place(resource_id)[0]
        calendar: Calendar = Calendar.new(
            prodid=PRODID, name=f"{title} (rero)", method="PUBLISH", calscale="GREGORIAN",
            refresh_interval=REFRESH, uid=f"feed-{feed.id}@{host}",
        )  # fmt: skip
        calendar.add("x-published-ttl", vDuration(REFRESH))
        now = self._clock()
        for item in listed:
            calendar.add_component(self._event(item, base, host, now, staff=bool(resource_id)))
        if listed:  # each zone's rules for the feed's span, a year on either side
            first = datetime.fromisoformat(listed[0].booking.start).date() - ZONE_MARGIN
            last = max(datetime.fromisoformat(i.booking.end) for i in listed).date()
            calendar.add_missing_timezones(first, last + ZONE_MARGIN)
        return calendar

    def _event(self, item: Listed, base: str, host: str, now: datetime, *, staff: bool) -> Event:
        b = item.booking
        name, site, zone = self._place(b.resource)
        lab = self._calendar.lab.labs.get(b.resource)
        status = "completed" if b.status == "booked" and b.end <= utc(now) else b.status
        student = f"{b.name} ({b.srn})" if b.name else b.srn
        lines = [f"Status: {status.replace('_', '-')}"]
        if staff:
            lines.append(f"Student: {student}")
        if lab is not None:
            lines.append(f"Lab: {lab.launch_url}")
        lines.append(f"Booking: {b.id}")
        event: Event = Event.new(
            uid=f"booking-{b.id}@{host}",
            summary=f"{name}: {student}" if staff else name,
            location=site or None,
            description="\n".join(lines),
            start=datetime.fromisoformat(b.start).astimezone(zone),
            end=datetime.fromisoformat(b.end).astimezone(zone),
            stamp=now.astimezone(timezone.utc),
            created=_instant(b.created_at),
            last_modified=_instant(item.updated_at),
            url=lab.launch_url if lab is not None else f"{base}/",
        )
        event.add("status", "CANCELLED" if status == "cancelled" else "CONFIRMED")
        return event
