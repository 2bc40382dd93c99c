"""Boards: one resource's slots on one date, and the original API's rolling board.

A board is rendered once per change (or once the clock passes its ``valid_until``: a
slot ends, the day opens) and serialized once; readers (``GET /slots``,
``GET /resources/{id}/slots``, the hub, the rules' fast refusals) share it and never
touch the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any, Final

from rero.calendar import Resource, clock_text, iso, utc
from rero.storage import BlackoutRow, BookingRow

FREE: Final = "free"
BOOKED: Final = "booked"
HELD: Final = "held"
CLOSED: Final = "closed"
NEVER: Final = float("inf")


@dataclass(frozen=True)
class Cell:
    """One slot of a board as rendered: its state, and who holds it (whatever the board
    shows)."""

    id: int
    start: datetime
    end: datetime
    state: str
    reason: str | None = None
    holder: BookingRow | None = None


class DayBoard:
    """A resource's slots on a date, at an instant; valid until ``valid_until`` (epoch)."""

    def __init__(
        self,
        resource: Resource,
        day: date,
        bookings: Sequence[BookingRow],
        blackouts: Sequence[BlackoutRow],
        now: datetime,
        show_booked_by: bool,
    ) -> None:
        self.resource, self.date = resource, day
        # A live booking or hold keeps its slot; a finished one (completed, no-show) shows
        # only once the slot has ended: released early, the rest of the hour is free.
        kept = {b.start: b for b in bookings if b.status in ("booked", "held")}
        done = {b.start: b for b in bookings if b.status in ("completed", "no_show")}
        opens_at = resource.opens_at(day)
        closure = resource.closure(day)
        cells, edges = [], [opens_at] if now < opens_at else []
        for slot in resource.slots_on(day):
            start, end = utc(slot.start), utc(slot.end)
            holder = kept.get(start) or (done.get(start) if slot.end <= now else None)
            covering = next((b for b in blackouts if b.start < end and b.end > start), None)
            if slot.end > now:
                edges.append(slot.end)
            if holder is not None:
                state = HELD if holder.status == "held" else BOOKED
                cell = Cell(slot.id, slot.start, slot.end, state, None, holder)
            elif closure is not None:
                cell = Cell(slot.id, slot.start, slot.end, CLOSED, closure)
            elif covering is not None:
                cell = Cell(slot.id, slot.start, slot.end, CLOSED, covering.reason)
            elif slot.end <= now:
                cell = Cell(slot.id, slot.start, slot.end, CLOSED, "ended")
            elif now < opens_at:
                cell = Cell(slot.id, slot.start, slot.end, CLOSED, "not yet open")
            else:
                cell = Cell(slot.id, slot.start, slot.end, FREE)
            cells.append(cell)
        self.cells = tuple(cells)
        self.by_id = {c.id: c for c in cells}
        self.opens_at = None if now >= opens_at else opens_at
        self.valid_until = min(edges).timestamp() if edges else NEVER
        self.rendered_at = now.timestamp()
        self._show = show_booked_by

    def is_taken(self, slot_id: int, now: str) -> bool:
        """Whether a slot is booked, or held by a hold not expired at ``now`` (UTC ISO): an
        expired hold gives way to the next change, which lapses it."""
        cell = self.by_id.get(slot_id)
        if cell is None or cell.state not in (BOOKED, HELD):
            return False
        expires = cell.holder.hold_expires_at if cell.holder else None
        return cell.state == BOOKED or expires is None or expires > now

    @property
    def data(self) -> dict[str, Any]:
        """The body of ``GET /resources/{id}/slots`` and a subscription's ``data``."""
        zone = self.resource.zone
        return {
            "resource": self.resource.id,
            "date": self.date.isoformat(),
            "timezone": str(zone),
            "opens_at": None if self.opens_at is None else iso(self.opens_at, zone),
            "slots": [
                {
                    "id": c.id,
                    "start": iso(c.start, zone),
                    "end": iso(c.end, zone),
                    "state": c.state,
                    "is_booked": c.state == BOOKED,
                    "booked_by": (c.holder.srn or None) if c.holder and self._show else None,
                    "booked_at": c.holder.created_at if c.holder else None,
                    "reason": c.reason,
                    "held_until": iso(datetime.fromisoformat(c.holder.hold_expires_at), zone)
                    if c.holder and c.holder.hold_expires_at and c.state == HELD
                    else None,
                }
                for c in self.cells
            ],
            "available_slots": [c.id for c in self.cells if c.state == FREE],
            "booked_slots": [c.id for c in self.cells if c.state == BOOKED],
        }

    @cached_property
    def json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    @cached_property
    def body(self) -> bytes:
        """The JSON as sent over HTTP, encoded once."""
        return self.json.encode()


class RollingBoard:
    """The original ``GET /slots``: the default resource's every slot at its next
    occurrence (today if it has not ended, else tomorrow). An occurrence that cannot be
    booked (closed, not yet open) shows as booked by nobody."""

    def __init__(self, resource: Resource, today: DayBoard, tomorrow: DayBoard) -> None:
        self.resource = resource
        cells: list[Cell | None] = []
        for slot_id in resource.slot_ids:
            cell = today.by_id.get(slot_id)
            if cell is None or cell.end.timestamp() <= today.rendered_at:
                cell = tomorrow.by_id.get(slot_id)
            cells.append(cell)
        self.cells = dict(zip(resource.slot_ids, cells, strict=True))
        self.valid_until = min(today.valid_until, tomorrow.valid_until)
        self._show = today._show
        self.booked = [i for i, c in self.cells.items() if c is None or c.state != FREE]
        self.available = [i for i, c in self.cells.items() if c is not None and c.state == FREE]

    def occurrence(self, slot_id: int) -> Cell | None:
        return self.cells.get(slot_id)

    def held_by(self, srn: str) -> list[tuple[int, BookingRow]]:
        return [
            (i, c.holder) for i, c in self.cells.items() if c and c.holder and c.holder.srn == srn
        ]

    @property
    def data(self) -> dict[str, Any]:
        """The body of ``GET /slots`` and the ``data`` of the original ``slots_update``."""
        step = self.resource.slot_minutes
        slots = []
        for slot_id, cell in self.cells.items():
            holder = cell.holder if cell is not None else None
            slots.append(
                {
                    "id": slot_id,
                    "start_time": clock_text(slot_id * step),
                    "end_time": clock_text((slot_id + 1) * step),
                    "is_booked": cell is None or cell.state != FREE,
                    # A booking from before SRNs were kept has none: held by nobody known.
                    "booked_by": (holder.srn or None) if holder and self._show else None,
                    "booked_at": holder.created_at if holder else None,
                }
            )
        return {"slots": slots, "available_slots": self.available, "booked_slots": self.booked}

    @cached_property
    def json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    @cached_property
    def body(self) -> bytes:
        """The JSON as sent over HTTP, encoded once."""
        return self.json.encode()
