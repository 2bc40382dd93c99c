"""The board: an immutable snapshot of every slot, and the feed that hands each new one on.

A board is built once per commit and serialized once; readers (``GET /slots``, the
hub, the rules) share it and never touch the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any, Final

from rero.storage import SlotRow

log: Final = logging.getLogger(__name__)

Listener = Callable[["Board"], None]


class Board:
    """Every slot as committed; ``show_booked_by`` decides what the public body shows."""

    def __init__(self, slots: tuple[SlotRow, ...], show_booked_by: bool = True) -> None:
        self.slots = slots
        self._show_booked_by = show_booked_by
        self.by_id = {s.id: s for s in slots}
        self.booked = [s.id for s in slots if s.is_booked]
        self.available = [s.id for s in slots if not s.is_booked]

    @cached_property
    def data(self) -> dict[str, Any]:
        """The body of ``GET /slots`` and the ``data`` of a ``slots_update``."""
        return {
            "slots": [
                {
                    "id": s.id,
                    "start_time": s.start_time,
                    "end_time": s.end_time,
                    "is_booked": s.is_booked,
                    "booked_by": s.booked_by if self._show_booked_by else None,
                    "booked_at": s.booked_at,
                }
                for s in self.slots
            ],
            "available_slots": self.available,
            "booked_slots": self.booked,
        }

    @cached_property
    def json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    def held_by(self, srn: str) -> list[SlotRow]:
        return [s for s in self.slots if s.is_booked and s.booked_by == srn]

    def is_booked(self, slot_id: int) -> bool:
        slot = self.by_id.get(slot_id)
        return slot is not None and slot.is_booked


class BoardFeed:
    """Holds the newest committed board and calls every listener with each new one."""

    def __init__(self, show_booked_by: bool) -> None:
        self._show_booked_by = show_booked_by
        self._listeners: list[Listener] = []
        self.current = Board((), show_booked_by)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(board)`` after every committed change; it must not block."""
        self._listeners.append(listener)

    def publish(self, slots: tuple[SlotRow, ...]) -> None:
        """Make ``slots`` (just committed) the current board and hand it to every listener."""
        board = self.current = Board(slots, self._show_booked_by)
        for listener in self._listeners:
            try:
                listener(board)
            except Exception:  # a broken listener must not undo a committed booking
                log.exception("board listener failed")
