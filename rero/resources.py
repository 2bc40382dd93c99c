"""The lab's resources, built once from the settings: ``[[resources]]`` tables, or with
none, the one ``lab`` the original service had (``first_hour`` to ``last_hour``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from rero.calendar import WEEKDAYS, Quotas, Resource, iso, parse_clock, utc
from rero.setting_checks import LabConfig, ResourceConfig
from rero.settings import Settings
from rero.storage.queries import Dated

DEFAULT_ID: Final = "lab"


@dataclass(frozen=True)
class Lab:
    """Every resource by id, the default one (the original API's), the global quotas, and
    the equipment behind each resource that has a ``[resources.lab]`` table."""

    resources: dict[str, Resource]
    default: Resource
    quotas: Quotas
    labs: dict[str, LabConfig] = field(default_factory=dict)
    #: How many minutes before its start a booking of each lab's resource may be entered.
    early: dict[str, int] = field(default_factory=dict)

    def get(self, resource_id: str) -> Resource | None:
        return self.resources.get(resource_id)


def _resource(config: ResourceConfig, settings: Settings, default: bool) -> Resource:
    limits = (
        config.max_bookings_per_day,
        config.max_bookings_per_week,
        config.max_upcoming_bookings,
    )
    return Resource(
        id=config.id,
        name=config.name or config.id,
        site=config.site,
        zone=ZoneInfo(config.timezone or settings.timezone),
        opens=parse_clock(config.opens),
        closes=parse_clock(config.closes),
        slot_minutes=config.slot_minutes,
        window_days=config.booking_window_days,
        window_opens_at=parse_clock(config.window_opens_at),
        campuses=config.campuses,
        closed_weekdays=frozenset(WEEKDAYS.index(d) for d in config.closed_weekdays),
        holidays=frozenset(date.fromisoformat(d) for d in config.holidays),
        quotas=None if limits == (None, None, None) else Quotas(*(n or 0 for n in limits)),
        default=default,
    )


def build_lab(settings: Settings) -> Lab:
    configs = settings.resources or (
        ResourceConfig(
            DEFAULT_ID,
            name="ReRo lab",
            opens=f"{settings.first_hour:02d}:00",
            closes=f"{settings.last_hour:02d}:00",
        ),
    )
    default_id = next((c.id for c in configs if c.default), configs[0].id)
    resources = {c.id: _resource(c, settings, c.id == default_id) for c in configs}
    upcoming = settings.max_upcoming_bookings or settings.max_bookings_per_user
    quotas = Quotas(settings.max_bookings_per_day, settings.max_bookings_per_week, upcoming)
    labs = {c.id: c.lab for c in configs if c.lab is not None}
    early = {rid: lab.early_minutes for rid, lab in labs.items()}
    return Lab(resources, resources[default_id], quotas, labs, early)


class NextOccurrence:
    """Dates a version-1 booking: its slot's next occurrence after ``now`` (the upgrade)."""

    def __init__(self, resource: Resource, now: datetime) -> None:
        self.resource = resource.id
        self._default = resource
        self._now = now

    def __call__(self, slot_id: int) -> Dated | None:
        slot = self._default.next_occurrence(slot_id, self._now)
        if slot is None:
            return None
        return Dated(self.resource, slot.start.date().isoformat(), slot_id,
                     utc(slot.start), utc(slot.end))  # fmt: skip


def describe(lab: Lab, now: datetime) -> list[dict[str, Any]]:
    """Every resource as ``GET /resources`` shows it, with its window at ``now``."""
    described = []
    for r in lab.resources.values():
        window = r.window(now)
        described.append(
            {
                "id": r.id, "name": r.name, "site": r.site, "timezone": str(r.zone),
                "slot_minutes": r.slot_minutes, "opens": r.hm[0], "closes": r.hm[1],
                "booking_window_days": r.window_days, "campuses": list(r.campuses),
                "default": r.default, "has_lab": r.id in lab.labs,
                "window": {
                    "first_date": window.first_date.isoformat(),
                    "last_date": window.last_date.isoformat(),
                    "next_opens_at": iso(window.next_opens_at, r.zone),
                },
            }
        )  # fmt: skip
    return described
