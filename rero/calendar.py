"""The calendar's rules of time: resources, their slots on a date, the booking window and
closed days. Pure functions of a resource and an instant; no I/O, no aiohttp.

Slots follow the resource's local wall clock; every instant leaves here timezone-aware.
A slot's id is its start minute of the day divided by ``slot_minutes``, so hourly slots
from 03:00 keep the original ids 3 to 14.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PLURAL: Final = (
    "Mondays",
    "Tuesdays",
    "Wednesdays",
    "Thursdays",
    "Fridays",
    "Saturdays",
    "Sundays",
)


@dataclass(frozen=True)
class Quotas:
    """Booking limits (0: none): per date, per ISO week, and upcoming bookings at once."""

    per_day: int = 0
    per_week: int = 0
    upcoming: int = 0


@dataclass(frozen=True)
class Slot:
    """One occurrence of a slot: its id and its instants, in the resource's zone."""

    id: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Window:
    """The dates open for booking now, both inclusive, and when the next one opens."""

    first_date: date
    last_date: date
    next_opens_at: datetime


@dataclass(frozen=True)
class Resource:
    """A bookable thing (a robot arm, a station) at a site, with its opening hours."""

    id: str
    name: str
    site: str
    zone: ZoneInfo
    opens: int  # minutes after local midnight
    closes: int
    slot_minutes: int = 60
    window_days: int = 7
    window_opens_at: int = 0  # minutes after local midnight
    campuses: tuple[str, ...] = ()
    closed_weekdays: frozenset[int] = frozenset()  # 0 is Monday
    holidays: frozenset[date] = frozenset()
    quotas: Quotas | None = None  # this resource's own limits, besides the global ones
    default: bool = False
    hm: tuple[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hm", (clock_text(self.opens), clock_text(self.closes)))

    @property
    def slot_ids(self) -> range:
        return range(self.opens // self.slot_minutes, self.closes // self.slot_minutes)

    def slots_on(self, day: date) -> tuple[Slot, ...]:
        """Every slot of ``day``: a start the clocks skip is omitted, a repeated one is once."""
        return _slots_on(self, day)

    def slot(self, day: date, slot_id: int) -> Slot | None:
        return next((s for s in self.slots_on(day) if s.id == slot_id), None)

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def opens_at(self, day: date) -> datetime:
        """When ``day`` becomes bookable: ``window_opens_at``, ``window_days`` days before."""
        opening = day - timedelta(days=self.window_days)
        return local(self.zone, opening, self.window_opens_at)

    def window(self, now: datetime) -> Window:
        today = self.today(now)
        last = today + timedelta(days=self.window_days)
        if now < self.opens_at(last):
            last -= timedelta(days=1)
        return Window(today, last, self.opens_at(last + timedelta(days=1)))

    def closure(self, day: date) -> str | None:
        """Why the resource is closed all of ``day`` (besides blackouts), or None."""
        if day.weekday() in self.closed_weekdays:
            return f"closed on {_PLURAL[day.weekday()]}"
        if day in self.holidays:
            return "holiday"
        return None

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """Local midnight to the next one, in UTC: the instants ``day`` spans."""
        return local(self.zone, day, 0), local(self.zone, day + timedelta(days=1), 0)

    def next_occurrence(self, slot_id: int, now: datetime) -> Slot | None:
        """Slot ``slot_id`` today if it has not ended, else tomorrow: the rolling board's."""
        today = self.today(now)
        for day in (today, today + timedelta(days=1)):
            slot = self.slot(day, slot_id)
            if slot is not None and slot.end > now:
                return slot
        return None


def clock_text(minutes: int) -> str:
    """``03:00`` for 180."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_clock(text: str) -> int:
    """Minutes after midnight of ``HH:MM`` (``24:00`` allowed, as a closing time)."""
    hours, _, minutes = text.partition(":")
    if len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day")
    return value


def local(zone: ZoneInfo, day: date, minutes: int) -> datetime:
    """The instant at ``minutes`` after midnight of ``day`` on the local wall clock, in UTC.

    A wall-clock time the clocks skip maps to the instant the gap ends, so a window opening
    at 02:30 on a spring-forward night opens at 03:00.
    """
    naive = datetime.combine(day, time(0)) + timedelta(minutes=minutes)
    instant = naive.replace(tzinfo=zone).astimezone(timezone.utc)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:  # in a gap: find its end
        instant = naive.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
        while instant.astimezone(zone).replace(tzinfo=None) < naive:
            instant += timedelta(minutes=1)
    return instant


def _noon(midnight: datetime) -> timedelta | None:
    return (midnight + timedelta(hours=12)).utcoffset()


def _exists(zone: ZoneInfo, naive: datetime) -> datetime | None:
    instant = naive.replace(tzinfo=zone).astimezone(timezone.utc)
    return instant if instant.astimezone(zone).replace(tzinfo=None) == naive else None


@lru_cache(maxsize=4096)
def _slots_on(resource: Resource, day: date) -> tuple[Slot, ...]:
    midnight = datetime.combine(day, time(0))
    slots = []
    step = timedelta(minutes=resource.slot_minutes)
    zone = resource.zone
    first = midnight.replace(tzinfo=zone)
    if first.utcoffset() == (first + timedelta(days=1)).utcoffset() == _noon(first):
        # No change of offset that day (nearly every day): every wall time exists once.
        starts = [(slot_id, first + slot_id * step) for slot_id in resource.slot_ids]
        return tuple(Slot(slot_id, start, start + step) for slot_id, start in starts)
    for slot_id in resource.slot_ids:
        naive = midnight + slot_id * step
        start = _exists(resource.zone, naive)
        if start is None:
            continue
        end = _exists(resource.zone, naive + step) or start + step
        slots.append(Slot(slot_id, start.astimezone(resource.zone), end.astimezone(resource.zone)))
    return tuple(slots)


def iso(instant: datetime, zone: ZoneInfo) -> str:
    """ISO 8601 in ``zone``, to the second, with its UTC offset; in UTC for an instant
    whose local time would pass the year 9999 (a lab's open-ended blackout)."""
    try:
        return instant.astimezone(zone).isoformat(timespec="seconds")
    except OverflowError:
        return instant.astimezone(timezone.utc).isoformat(timespec="seconds")


def utc(instant: datetime) -> str:
    """An instant as the database stores it: UTC ISO 8601 to the second (sorts as text)."""
    return instant.astimezone(timezone.utc).isoformat(timespec="seconds")
