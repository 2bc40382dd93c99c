"""Usage analytics, shaped from what the database counted (:mod:`rero.storage.analytics`):
utilization by weekday and hour of each resource's wall clock, cancellation lead times,
no-shows, students, how fast each day filled after it opened, waitlist conversion. Pure
functions of the counts and the calendar."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final

from rero.calendar import Resource, Slot
from rero.storage.analytics import Counts

#: The default span, and the longest one asked at once (days).
ANALYTICS_DAYS: Final = 30
MAX_ANALYTICS_DAYS: Final = 400


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ascending ``values``; None when there are none."""
    if not values:
        return None
    rank = max(1, -(-len(values) * fraction // 1))  # ceil(n * fraction), at least 1
    return round(values[int(rank) - 1], 2)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


#: Each open (resource id, date)'s slots; closed days and holidays have none.
Offered = dict[tuple[str, date], tuple[Slot, ...]]


def offered(resources: Sequence[Resource], days: list[date]) -> Offered:
    return {
        (r.id, day): r.slots_on(day) if r.closure(day) is None else ()
        for r in resources
        for day in days
    }


def utilization(
    booked: Sequence[tuple[str, str, int]], resources: Sequence[Resource], open_: Offered
) -> list[dict[str, Any]]:
    """Per resource, weekday (0 Monday) and local hour: booked slots over the slots open
    then (closed days and holidays offer none; two half-hour slots make one hour)."""
    # Nearly every day of a resource has the same slots at the same wall hours: each
    # pattern is worked out once, and the offers are counted per (weekday, pattern).
    patterns: dict[tuple[tuple[int, int], ...], dict[int, int]] = {}
    days: dict[tuple[str, str], tuple[int, dict[int, int]]] = {}
    kinds: Counter[tuple[str, int, tuple[tuple[int, int], ...]]] = Counter()
    for (rid, day), slots in open_.items():
        pattern = tuple((s.id, s.start.hour) for s in slots)  # starts are on the wall clock
        days[(rid, day.isoformat())] = (day.weekday(), patterns.setdefault(pattern, dict(pattern)))
        kinds[(rid, day.weekday(), pattern)] += 1
    offers: Counter[tuple[str, int, int]] = Counter()
    for (rid, weekday, pattern), n in kinds.items():
        for _, at in pattern:
            offers[(rid, weekday, at)] += n
    taken: Counter[tuple[str, int, int]] = Counter()
    for rid, day_text, slot_id in booked:
        weekday, hours = days.get((rid, day_text), (0, {}))
        if (hour := hours.get(slot_id)) is not None:
            taken[(rid, weekday, hour)] += 1
    order = {r.id: n for n, r in enumerate(resources)}
    return [
        {"resource": rid, "weekday": weekday, "hour": hour,
         "booked_fraction": round(taken[(rid, weekday, hour)] / n, 4)}
        for (rid, weekday, hour), n in sorted(offers.items(), key=lambda k: (order[k[0][0]], k[0]))
    ]  # fmt: skip


def fill_minutes(
    days: Sequence[tuple[str, str, int, str]], resources: Sequence[Resource], open_: Offered
) -> list[dict[str, Any]]:
    """For each (resource, date) whose every slot was booked: minutes from the date's
    opening to the booking that filled it."""
    by_id = {r.id: r for r in resources}
    out = []
    for resource_id, day_text, kept, newest in days:
        r = by_id.get(resource_id)
        day = date.fromisoformat(day_text)
        slots = open_.get((resource_id, day))
        if r is None or not slots or kept < len(slots):
            continue
        minutes = (datetime.fromisoformat(newest) - r.opens_at(day)).total_seconds() / 60
        out.append({"resource": resource_id, "date": day_text, "minutes": round(minutes, 1)})
    return sorted(out, key=lambda d: (d["resource"], d["date"]))


def shape(got: Counts, resources: Sequence[Resource], first: date, last: date) -> dict[str, Any]:
    """The body of ``GET /admin/analytics``."""
    kept = sum(n for _, _, n, _ in got.days)
    open_ = offered(resources, _days(first, last))
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "resources": [r.id for r in resources],
        "utilization": utilization(got.booked, resources, open_),
        "bookings": got.bookings,
        "cancellations": got.cancellations,
        "cancellation_lead_hours": {
            "p50": percentile(got.cancellation_leads, 0.5),
            "p90": percentile(got.cancellation_leads, 0.9),
        },
        "no_show_rate": round(got.no_shows / kept, 4) if kept else None,
        "unique_students": got.unique_students,
        "repeat_students": got.repeat_students,
        "fill_minutes_after_open": fill_minutes(got.days, resources, open_),
        "waitlist_conversion": (
            round(got.waitlist_booked / got.waitlist_total, 4) if got.waitlist_total else None
        ),
    }
