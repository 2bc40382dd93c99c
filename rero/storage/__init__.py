"""The storage seam: narrow protocols, one per consumer, and the changes they take.

Each consumer names only the protocol it uses: the group commit a :class:`SlotStore`,
identity a :class:`SessionStore` and a :class:`LoginFailureStore`, the wiring a
:class:`ChangeFeed`, the operator endpoints a :class:`Probe`. Both stores (SQLite and
PostgreSQL) satisfy every one of them, and :class:`Storage` as a whole.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from rero.storage.changes import (
    AddBlackout,
    Book,
    Cancel,
    CancelMany,
    Change,
    CheckIn,
    Confirm,
    DropHold,
    Hold,
    JoinWaitlist,
    LeaveWaitlist,
    LiftBlackout,
    LiftSuspension,
    Limit,
    Release,
    Series,
    Sweep,
)

__all__ = [
    "AddBlackout",
    "Applied",
    "BlackoutRow",
    "Book",
    "BookingRow",
    "Cancel",
    "CancelMany",
    "Change",
    "ChangeFeed",
    "CheckIn",
    "Confirm",
    "Counts",
    "DayKey",
    "DropHold",
    "Hold",
    "JoinWaitlist",
    "LeaveWaitlist",
    "LiftBlackout",
    "LiftSuspension",
    "Limit",
    "LoginFailureStore",
    "Opened",
    "Probe",
    "Programs",
    "Query",
    "Refusal",
    "Release",
    "Rows",
    "Series",
    "SessionLimits",
    "SessionStore",
    "SlotStore",
    "Storage",
    "Sweep",
    "Write",
]  # fmt: skip


@dataclass(frozen=True)
class BookingRow:
    """One booking as stored: instants in UTC ISO 8601, ``date`` the resource's local date."""

    id: int
    resource: str
    date: str
    slot_id: int
    start: str
    end: str
    srn: str
    status: str
    created_at: str
    series_id: str | None = None
    name: str = ""
    checked_in_at: str | None = None
    hold_expires_at: str | None = None


@dataclass(frozen=True)
class BlackoutRow:
    """A closed range of one resource (instants in UTC ISO 8601)."""

    id: int
    resource: str
    start: str
    end: str
    reason: str


T = TypeVar("T")
#: A statement with ``:name`` parameters, and the rows it returned.
Query = tuple[str, dict[str, Any]]
Rows = list[Sequence[Any]]

#: A board's key: (resource id, ISO date).
DayKey = tuple[str, str]

#: Statuses a booking can have; ``booked`` and ``held`` (a hold) keep its slot.
BOOKED: Final = "booked"
HELD: Final = "held"
CANCELLED: Final = "cancelled"
COMPLETED: Final = "completed"
NO_SHOW: Final = "no_show"
LAPSED: Final = "lapsed"


class Refusal(enum.Enum):
    """Why the store refused a change: its condition, read in the same transaction."""

    TAKEN = "taken"  # a booking of a slot someone holds
    QUOTA = "quota"  # a booking past one of the booker's limits (``detail``: which)
    CLOSED = "closed"  # a booking inside a blackout (``detail``: its reason)
    NOT_FOUND = "not_found"  # a cancel of a booking that does not exist
    NOT_BOOKED = "not_booked"  # a cancel of a slot nobody holds
    NOT_YOURS = "not_yours"  # a cancel of somebody else's booking
    CANCELLED = "cancelled"  # a cancel of a cancelled booking
    ENDED = "ended"  # a cancel of a booking whose slot has ended
    SUSPENDED = "suspended"  # a booker suspended for no-shows (``detail``: until when)
    HOLDING = "holding"  # a hold by a student who holds another slot already
    LAPSED = "lapsed"  # a confirm of a hold that has lapsed
    NOT_NOW = "not_now"  # a check-in or release outside the booking's time
    NOT_TAKEN = "not_taken"  # joining the waitlist of a slot nobody holds
    WAITING = "waiting"  # joining a waitlist the student is on already


@dataclass(frozen=True)
class Write:
    """What one change did: the bookings it made or cancelled, a blackout it added or
    lifted, or why it was refused (``detail``: the quota's kind and limit, or the
    blackout's reason). A series has one :class:`Write` per occurrence in ``parts``."""

    changed: bool
    refused: Refusal | None = None
    detail: str | None = None
    bookings: tuple[BookingRow, ...] = ()
    blackout: BlackoutRow | None = None
    parts: tuple[Write, ...] = ()
    #: Waitlist entries this write changed (joined, left, offered a hold): their srns.
    waitlisted: tuple[str, ...] = ()
    #: The booking a change found but did not change (a check-in made before), if any.
    seen: BookingRow | None = None

    @property
    def touched(self) -> set[DayKey]:
        """The boards this write changed."""
        keys = {(b.resource, b.date) for b in self.bookings}
        for part in self.parts:
            keys |= part.touched
        return keys


@dataclass(frozen=True)
class Applied:
    """Every change's :class:`Write`, and each touched board's bookings read in the
    commit's transaction after all of them: exactly what the database holds."""

    writes: list[Write]
    days: dict[DayKey, tuple[BookingRow, ...]]


@dataclass(frozen=True)
class Counts:
    """Counts read from the database itself, for health checks: bookings not ended
    (every resource), and those of one resource ending within a horizon."""

    live_bookings: int
    ending_soon: int


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
    """Bookings and blackouts, their conditional writes and their audit trail."""

    async def apply(self, changes: Sequence[Change]) -> Applied:
        """Make ``changes`` in order, each decided by its own condition. Every change that
        happened is durable when this returns, with its audit rows."""
        ...

    async def days(self, keys: Sequence[DayKey]) -> dict[DayKey, tuple[BookingRow, ...]]:
        """The bookings (not cancelled) of each board, by start."""
        ...

    async def booking(self, booking_id: int) -> BookingRow | None: ...

    async def bookings_of(
        self, srn: str, first: str | None, last: str | None, ends_after: str | None
    ) -> list[BookingRow]:
        """``srn``'s bookings on dates ``first``..``last`` (any status), or with
        ``ends_after``: the booked ones ending after it; by start."""
        ...

    async def series(self, series_id: str) -> list[BookingRow]: ...

    async def blackouts(self) -> list[BlackoutRow]:
        """Every blackout not lifted, by start."""
        ...

    async def complete(self, now: str) -> int:
        """Mark booked bookings that ended by ``now`` completed; how many."""
        ...

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        """Audit rows, newest first, with ids below ``before``."""
        ...


class SessionStore(Protocol):
    """Sessions, by the hash of their token only."""

    async def create_session(
        self,
        token_hash: str,
        srn: str,
        expires_at: str,
        now: str,
        limits: SessionLimits,
        profile: str,
    ) -> Opened:
        """Store a session (a token's hash only), purging expired ones, unless ``srn``
        opened ``limits.per_window`` since ``limits.window_start``; then revoke the oldest
        sessions of ``srn`` beyond ``limits.keep``. All in one transaction."""
        ...

    async def session(self, token_hash: str, now: str) -> tuple[str, str] | None:
        """The profile (JSON) a live session stores, and when it expires; or None: also
        for a session from before sessions stored profiles."""
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

    async def counts(self, now: str, resource: str = "", until: str = "") -> Counts:
        """Count bookings in the database (touches the database, unlike the board)."""
        ...


class Programs(Protocol):
    """Runs a program outside the group commit: a read of several statements, or a write
    whose boards nobody watches (the outbox, feed tokens), in one transaction."""

    async def perform(self, steps: Generator[Query, Rows, T], *, tell: bool = False) -> T:
        """Run ``steps`` in one transaction; ``tell``: other processes hear of it."""
        ...


class Storage(SlotStore, SessionStore, LoginFailureStore, ChangeFeed, Probe, Programs, Protocol):
    """A whole store, as :func:`rero.storage.backends.open_storage` yields it."""
