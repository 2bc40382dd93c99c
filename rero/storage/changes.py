"""The changes a store makes: each one decided by its own condition inside the commit's
transaction (:mod:`rero.storage.programs` says how). Instants are UTC ISO 8601."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One quota as the store counts it: the booker's bookings (not cancelled) on dates
    ``first``..``last`` (inclusive, or any), ending after ``ends_after`` (or any), on
    ``resource`` (or any), must stay below ``limit``. ``kind`` names it in a refusal."""

    kind: str
    limit: int
    resource: str | None = None
    first: str | None = None
    last: str | None = None
    ends_after: str | None = None


@dataclass(frozen=True)
class Book:
    """Book a slot for ``srn`` only if no blackout covers it, nobody holds it and every
    limit holds."""

    resource: str
    date: str
    slot_id: int
    start: str
    end: str
    srn: str
    actor: str
    at: str
    limits: tuple[Limit, ...] = ()
    series_id: str | None = None
    #: The student's name (for the lab), and when the booking becomes a no-show if not
    #: checked in (None: never).
    name: str = ""
    no_show_at: str | None = None


@dataclass(frozen=True)
class Series:
    """Several bookings in one transaction, each decided on its own."""

    books: tuple[Book, ...]


@dataclass(frozen=True)
class Cancel:
    """Cancel one booking, by id or by (resource, start), only if it is booked, has not
    ended at ``now``, and (unless ``srn`` is None) belongs to ``srn``. The audit row says
    ``action``, or ``others`` (if given) when the booking was not the actor's."""

    booking_id: int | None
    slot: tuple[str, str] | None
    srn: str | None
    actor: str
    action: str
    at: str
    now: str
    reason: str | None = None
    others: str | None = None
    #: Offer the freed slot to the first on its waitlist, as a hold lasting until then.
    offer_until: str | None = None


@dataclass(frozen=True)
class CancelMany:
    """Cancel every booking that has not ended and matches every filter given: a reset,
    the rest of a series, a student's bookings."""

    actor: str | None
    action: str
    at: str
    now: str
    reason: str | None = None
    resource: str | None = None
    series_id: str | None = None
    srn: str | None = None
    starts_from: str | None = None
    offer_until: str | None = None


@dataclass(frozen=True)
class AddBlackout:
    """Close ``resource`` from ``start`` to ``end`` and cancel the bookings inside."""

    resource: str
    start: str
    end: str
    reason: str
    actor: str
    at: str
    now: str


@dataclass(frozen=True)
class LiftBlackout:
    """Reopen what a blackout closed (the row stays, marked lifted)."""

    blackout_id: int | None
    actor: str
    at: str
    #: With no id: lift every open blackout of ``resource`` made by ``actor`` (a lab back
    #: in service lifts what it reported).
    resource: str | None = None
    offer_until: str | None = None


@dataclass(frozen=True)
class Hold:
    """Keep a free slot for ``srn`` until ``expires_at`` (one live hold per student); a
    waitlist's offer names its entry."""

    resource: str
    date: str
    slot_id: int
    start: str
    end: str
    srn: str
    name: str
    actor: str
    at: str
    expires_at: str
    #: Offer slots whose expired holds this lapses to their waitlists, until then.
    offer_until: str | None = None


@dataclass(frozen=True)
class Confirm:
    """Turn ``srn``'s live hold into a booking, within the limits."""

    hold_id: int
    srn: str
    at: str
    limits: tuple[Limit, ...] = ()
    no_show_at: str | None = None


@dataclass(frozen=True)
class DropHold:
    """Let go of ``srn``'s live hold (the slot goes to the waitlist or is free)."""

    hold_id: int
    srn: str
    at: str
    offer_until: str | None = None


@dataclass(frozen=True)
class CheckIn:
    """Mark a booking checked in, if it is booked, has not ended at ``at`` and starts
    within its resource's ``early`` minutes (``default_early`` for a resource not in it;
    None: such a resource cannot be entered this way); ``srn`` None: whoever holds it,
    on ``resource`` (the lab reports it)."""

    booking_id: int
    srn: str | None
    resource: str | None
    actor: str
    at: str
    early: Mapping[str, int]
    default_early: int | None = 0


@dataclass(frozen=True)
class Release:
    """End ``srn``'s booking early, during its slot: completed, the rest of the hour freed."""

    booking_id: int
    srn: str
    at: str
    offer_until: str | None = None


@dataclass(frozen=True)
class JoinWaitlist:
    """Wait for a slot somebody else keeps; refused for a free slot or a second place."""

    resource: str
    date: str
    slot_id: int
    start: str
    end: str
    srn: str
    name: str
    at: str


@dataclass(frozen=True)
class LeaveWaitlist:
    """Leave a waitlist (``srn`` None: an admin removes the entry)."""

    entry_id: int
    srn: str | None
    at: str


@dataclass(frozen=True)
class LiftSuspension:
    """End ``srn``'s suspensions now."""

    srn: str
    actor: str
    at: str


@dataclass(frozen=True)
class Sweep:
    """What time does, idempotently: no-shows (and suspensions after ``no_show_limit`` of
    them since ``no_show_since``), lapsed holds and their next offers, and the lab events
    of sessions starting (by each resource's ``starting`` instant) and ended."""

    now: str
    offer_until: str
    no_show_limit: int = 0
    no_show_since: str = ""
    suspended_until: str = ""
    starting: tuple[tuple[str, str], ...] = ()
    ended_after: str = ""


#: A write: it happens only if its condition holds, with one audit row per booking.
Change = (
    Book | Series | Cancel | CancelMany | AddBlackout | LiftBlackout | Hold | Confirm
    | DropHold | CheckIn | Release | JoinWaitlist | LeaveWaitlist | LiftSuspension | Sweep
)  # fmt: skip
