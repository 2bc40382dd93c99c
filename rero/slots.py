"""The slot service: every booking rule, the in-memory board, and publishing.

HTTP views and WebSocket handlers call this and nothing below it. A change is
published here, after its commit, so it reaches every client whichever
transport made it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Final

from rero.auth import AuthBackend, User
from rero.errors import InvalidRequest, NotYourBooking, SlotNotBooked, SlotUnavailable
from rero.storage import SlotRow, Storage, Write

log: Final = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Listener = Callable[["Board"], None]


def utcnow() -> datetime:
    """The default clock."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Schedule:
    """One-hour slots from ``first_hour`` to ``last_hour``; a slot's id is its start hour."""

    first_hour: int = 3
    last_hour: int = 15

    def rows(self) -> list[tuple[int, str, str]]:
        """``(id, start_time, end_time)`` for every slot, times as HH:MM."""
        return [(h, f"{h:02d}:00", f"{h + 1:02d}:00") for h in self.ids]

    @property
    def ids(self) -> range:
        return range(self.first_hour, self.last_hour)

    def check(self, slot_id: int) -> None:
        """Refuse an id outside the schedule, naming the valid range."""
        if slot_id not in self.ids:
            raise InvalidRequest(
                f"Slot {slot_id} does not exist: valid slots are "
                f"{self.first_hour} to {self.last_hour - 1}"
            )


@dataclass(frozen=True)
class Credentials:
    """A username and password as a client sent them; never stored or logged."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


class Board:
    """An immutable snapshot of every slot; built once per commit, serialized once."""

    def __init__(self, slots: tuple[SlotRow, ...]) -> None:
        self.slots = slots
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
                    "booked_by": s.booked_by,
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


class SlotService:
    """Owns the rules of booking; the only writer of slots and the only publisher."""

    def __init__(
        self,
        storage: Storage,
        auth: AuthBackend,
        schedule: Schedule,
        clock: Clock = utcnow,
    ) -> None:
        self._storage = storage
        self._auth = auth
        self.schedule = schedule
        self._clock = clock
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._board = Board(())

    @property
    def board(self) -> Board:
        """The newest committed board; reading it never touches the database."""
        return self._board

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(board)`` after every committed change; it must not block."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Read the board once at start-up."""
        self._board = Board(await self._storage.slots())

    async def authenticate(self, credentials: Credentials) -> User:
        return await self._auth.authenticate(credentials.username, credentials.password)

    async def book(self, credentials: Credentials, slot_id: int) -> User:
        """Book ``slot_id``: checked before auth, decided by one conditional write."""
        self.schedule.check(slot_id)
        user = await self.authenticate(credentials)
        at = self._clock().isoformat(timespec="seconds")
        write = await self._write(
            lambda: self._storage.book(slot_id, user.srn, at),
            # In a rush the losers are refused from the committed board under the
            # lock, without queueing for the database; the store decides the winner.
            skip=lambda board: slot_id in board.by_id and board.by_id[slot_id].is_booked,
        )
        if write is None or not write.changed:
            raise SlotUnavailable(f"Slot {slot_id} is not available")
        log.info("slot booked", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def cancel(self, credentials: Credentials, slot_id: int) -> User:
        """Cancel the caller's own booking of ``slot_id``."""
        if slot_id not in self._board.by_id:
            self.schedule.check(slot_id)
        user = await self.authenticate(credentials)
        write = await self._write(lambda: self._storage.cancel(slot_id, user.srn))
        assert write is not None
        if not write.changed:
            slot = next((s for s in write.slots if s.id == slot_id), None)
            if slot is None or not slot.is_booked:
                raise SlotNotBooked(f"Slot {slot_id} is not booked")
            raise NotYourBooking("You can only cancel your own bookings")
        log.info("slot cancelled", extra={"slot_id": slot_id, "srn": user.srn})
        return user

    async def bookings(self, credentials: Credentials) -> list[SlotRow]:
        """The caller's bookings, from the board."""
        user = await self.authenticate(credentials)
        return self._board.held_by(user.srn)

    async def _write(
        self,
        write: Callable[[], Awaitable[Write]],
        skip: Callable[[Board], bool] | None = None,
    ) -> Write | None:
        """Run a storage write under the lock; publish its board if it changed anything.

        One lock orders commit and publish, so boards go out in commit order, and
        makes ``skip`` (a refusal read from the board) exact within this process.
        """
        async with self._lock:
            if skip is not None and skip(self._board):
                return None
            result = await write()
            if result.changed:
                self._board = Board(result.slots)
                for listener in self._listeners:
                    try:
                        listener(self._board)
                    except Exception:  # a broken listener must not undo a committed booking
                        log.exception("board listener failed")
            return result
