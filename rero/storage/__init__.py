"""The storage seam: the slot service talks to this protocol, never to a driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SlotRow:
    """One row of the ``slots`` table, as the board shows it."""

    id: int
    start_time: str
    end_time: str
    is_booked: bool
    booked_by: str | None
    booked_at: str | None


@dataclass(frozen=True)
class Write:
    """What a conditional write did: whether it changed the row, and the board after it.

    ``slots`` is read in the same transaction as the write, so it is exactly
    what the database holds once the write is committed.
    """

    changed: bool
    slots: tuple[SlotRow, ...]


@dataclass(frozen=True)
class Counts:
    """Slot counts read from the database itself, for health checks."""

    total: int
    booked: int


class Storage(Protocol):
    """A durable store of slots whose writes decide races by their row count."""

    description: str

    async def slots(self) -> tuple[SlotRow, ...]:
        """Every slot, ordered by id."""
        ...

    async def book(self, slot_id: int, srn: str, at: str) -> Write:
        """Book ``slot_id`` for ``srn`` only if it is free."""
        ...

    async def cancel(self, slot_id: int, srn: str | None) -> Write:
        """Free ``slot_id`` only if it is booked (by ``srn``, unless ``srn`` is None)."""
        ...

    async def counts(self) -> Counts:
        """Count slots in the database (touches the database, unlike the board)."""
        ...
