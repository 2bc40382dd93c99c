"""The storage seam: the slot service talks to this protocol, never to a driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    """What a conditional write did: whether it changed anything, and the board.

    ``slots`` is read in the write's transaction: for a change, after it and every
    change committed with it, so exactly what the database holds once committed; for
    a refusal, as the refused condition saw it (to tell the caller why).
    """

    changed: bool
    slots: tuple[SlotRow, ...]


@dataclass(frozen=True)
class Book:
    """Book ``slot_id`` for ``srn`` only if it is free and ``srn`` holds fewer than
    ``limit`` slots (0: no limit)."""

    slot_id: int
    srn: str
    at: str
    limit: int = 0


@dataclass(frozen=True)
class Cancel:
    """Free ``slot_id`` only if it is booked (by ``srn``, unless None)."""

    slot_id: int
    srn: str | None
    actor: str
    action: str
    at: str


@dataclass(frozen=True)
class Release:
    """Free every booked slot among ``slot_ids`` (a reset, or bookings that expired)."""

    slot_ids: tuple[int, ...]
    actor: str | None
    action: str
    at: str


#: A write to the slots: it happens only if its condition holds, with one audit row per slot.
Change = Book | Cancel | Release


@dataclass(frozen=True)
class Counts:
    """Slot counts read from the database itself, for health checks."""

    total: int
    booked: int


class Storage(Protocol):
    """A durable store of slots whose writes decide races by their row count."""

    description: str
    bus: str
    #: Changes whenever failed logins may have been written (here or by another process).
    generation: int
    #: Whether the change feed from other processes is connected.
    listening: bool

    async def slots(self) -> tuple[SlotRow, ...]:
        """Every slot, ordered by id."""
        ...

    async def apply(self, changes: Sequence[Change]) -> list[Write]:
        """Make ``changes`` in order, each decided by its own condition; one :class:`Write`
        each. Every change that happened is durable when this returns, with its audit row."""
        ...

    async def create_session(self, token_hash: str, srn: str, expires_at: str, now: str) -> None:
        """Store a session (a token's hash only), purging expired ones."""
        ...

    async def session(self, token_hash: str, now: str) -> str | None:
        """The SRN of a live session, or None."""
        ...

    async def delete_session(self, token_hash: str) -> bool: ...

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        """Audit rows, newest first, with ids below ``before``."""
        ...

    async def locked_since(self, limits: Mapping[str, int], since: float) -> dict[str, float]:
        """For each key with at least ``limits[key]`` failed logins after ``since``: when
        the ``limits[key]``-th newest happened (the key is locked until it leaves the window).
        One query for all keys: it runs on every password check."""
        ...

    async def add_failures(self, keys: Sequence[str], at: float, purge_before: float) -> None:
        """Record a failed login under each key; forget failures older than the window."""
        ...

    async def clear_failures(self, key: str) -> None: ...

    async def watch(self, on_change: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_change`` whenever another process may have committed; also after a
        lost connection to the change feed is back. Runs until cancelled."""
        ...

    async def counts(self) -> Counts:
        """Count slots in the database (touches the database, unlike the board)."""
        ...
