"""The storage seam: narrow protocols, one per consumer, and the changes they take.

Each consumer names only the protocol it uses: the group commit a :class:`SlotStore`,
identity a :class:`SessionStore` and a :class:`LoginFailureStore`, the wiring a
:class:`ChangeFeed`, the operator endpoints a :class:`Probe`. Both stores (SQLite and
PostgreSQL) satisfy every one of them, and :class:`Storage` as a whole.
"""

from __future__ import annotations

import enum
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


class Refusal(enum.Enum):
    """Why the store refused a change: its condition, read in the same transaction."""

    TAKEN = "taken"  # a booking of a slot someone holds (or that does not exist)
    QUOTA = "quota"  # a booking of a free slot by someone at their limit
    NOT_BOOKED = "not_booked"  # a cancel of a slot nobody holds
    NOT_YOURS = "not_yours"  # a cancel of a slot somebody else holds


@dataclass(frozen=True)
class Write:
    """What a conditional write did.

    For a change, ``slots`` is the board read in the commit's transaction, after it and
    every change committed with it: exactly what the database holds once committed. For a
    refusal, ``refused`` says why and ``slots`` is empty. A release that found nothing to
    free is neither changed nor refused.
    """

    changed: bool
    slots: tuple[SlotRow, ...] = ()
    refused: Refusal | None = None


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

#: The slots a schedule defines, as ``(id, start_time, end_time)`` rows.
SlotDefinitions = Sequence[tuple[int, str, str]]


def refusal(change: Change, slot: tuple[bool, str | None] | None) -> Refusal | None:
    """Why ``change`` was refused, from its slot's ``(is_booked, booked_by)`` as the refused
    condition saw it (None: no such slot). One rule for both stores."""
    if isinstance(change, Book):
        return Refusal.QUOTA if slot is not None and not slot[0] else Refusal.TAKEN
    if isinstance(change, Cancel):
        return Refusal.NOT_YOURS if slot is not None and slot[0] else Refusal.NOT_BOOKED
    return None


@dataclass(frozen=True)
class Counts:
    """Slot counts read from the database itself, for health checks."""

    total: int
    booked: int


@dataclass(frozen=True)
class SessionLimits:
    """How many logins a student may make in a window, and sessions keep (0: no limit)."""

    window_start: str
    per_window: int
    keep: int
    #: Revocations older than this no longer matter (their sessions would have expired).
    purge_before: str


@dataclass(frozen=True)
class Opened:
    """What opening a session did: refused (with the window's first login), or opened,
    revoking the oldest sessions past the cap."""

    opened: bool
    first_in_window: str | None = None
    revoked: tuple[str, ...] = ()


class SlotStore(Protocol):
    """The slots, their conditional writes and their audit trail."""

    async def slots(self) -> tuple[SlotRow, ...]:
        """Every slot, ordered by id."""
        ...

    async def apply(self, changes: Sequence[Change]) -> list[Write]:
        """Make ``changes`` in order, each decided by its own condition; one :class:`Write`
        each. Every change that happened is durable when this returns, with its audit row."""
        ...

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        """Audit rows, newest first, with ids below ``before``."""
        ...


class SessionStore(Protocol):
    """Sessions, by the hash of their token only."""

    async def create_session(
        self, token_hash: str, srn: str, expires_at: str, now: str, limits: SessionLimits
    ) -> Opened:
        """Store a session (a token's hash only), purging expired ones, unless ``srn``
        opened ``limits.per_window`` since ``limits.window_start``; then revoke the oldest
        sessions of ``srn`` beyond ``limits.keep``. All in one transaction."""
        ...

    async def session(self, token_hash: str, now: str) -> str | None:
        """The SRN of a live session, or None."""
        ...

    async def delete_session(self, token_hash: str, now: str, purge_before: str) -> bool:
        """Revoke one session; whether it was there. Every revocation is logged (entries
        from before ``purge_before`` are forgotten) so other processes learn of it."""
        ...

    async def delete_sessions(self, srn: str, now: str, purge_before: str) -> list[str]:
        """Revoke every session of ``srn``; the hashes of those that were there."""
        ...

    async def revocations(self, after: int) -> tuple[int, list[str]]:
        """Token hashes revoked after log entry ``after``, and the newest entry's id
        (``after`` < 0: only the newest id, to start from)."""
        ...


class LoginFailureStore(Protocol):
    """Failed logins by key, shared by every process for throttling."""

    #: Changes whenever failed logins may have been written (here or by another process).
    generation: int

    async def locked_since(self, limits: Mapping[str, int], since: float) -> dict[str, float]:
        """For each key with at least ``limits[key]`` failed logins after ``since``: when
        the ``limits[key]``-th newest happened (the key is locked until it leaves the window).
        One query for all keys: it runs on every password check."""
        ...

    async def add_failures(self, keys: Sequence[str], at: float, purge_before: float) -> None:
        """Record a failed login under each key; forget failures older than the window."""
        ...

    async def clear_failures(self, key: str) -> None:
        """Forget every failure under ``key``."""
        ...


class ChangeFeed(Protocol):
    """Tells this process that another one committed."""

    #: How other processes' commits are noticed.
    bus: str
    #: Whether the change feed from other processes is connected.
    listening: bool

    async def watch(self, on_change: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_change`` whenever another process may have committed; also after a
        lost connection to the change feed is back. Runs until cancelled."""
        ...


class Probe(Protocol):
    """What the operator endpoints read from the database itself."""

    description: str
    bus: str
    listening: bool

    async def counts(self) -> Counts:
        """Count slots in the database (touches the database, unlike the board)."""
        ...


class Storage(SlotStore, SessionStore, LoginFailureStore, ChangeFeed, Probe, Protocol):
    """A whole store, as :func:`rero.storage.backends.open_storage` yields it."""
