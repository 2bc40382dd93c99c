"""The outbox's programs, once for both stores: claiming due events under a lease,
settling each delivery, purging old rows; following the outbox by id for the lab's
sockets; and the lab API's reads (the session under way, the lab's own blackout).
Run each with ``Storage.perform``; instants are UTC ISO 8601, as ``emit`` writes them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rero.storage import BookingRow, Query, Rows
from rero.storage.rows import COLUMNS, booking

#: Rows not delivered, not dead, whose attempt is due and whose lease (if any) ran out.
_DUE: Final = (
    "delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= :now"
    " AND (lease_until IS NULL OR lease_until <= :now)"
)


@dataclass(frozen=True)
class Claimed:
    """One event to deliver: its row, its id for receivers, and its body as stored."""

    id: int
    event_id: str
    resource: str
    at: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class Settled:
    """What one delivery came to: delivered, or failed (``retry_at`` None: dead)."""

    id: int
    delivered: bool
    retry_at: str | None = None
    error: str | None = None


def _among(resources: Sequence[str], params: dict[str, Any]) -> str:
    """``resource IN (:r0, ...)`` with its parameters (no resource: a false condition)."""
    if not resources:
        return "1 = 0"
    names = [f"r{i}" for i in range(len(resources))]
    params.update(zip(names, resources, strict=True))
    return "resource IN (" + ", ".join(f":{n}" for n in names) + ")"


def claim(
    resources: Sequence[str],
    now: str,
    lease_until: str,
    oldest: str,
    limit: int,
    skip_locked: bool = False,
) -> Generator[Query, Rows, list[Claimed]]:
    """Give up on events older than ``oldest``, then lease up to ``limit`` due events of
    ``resources`` in id order, counting the attempt. The outer condition repeats the
    inner one, so on PostgreSQL a claimer that waited for another's row lock re-checks the
    row as committed and skips what the other one leased; ``skip_locked`` (PostgreSQL
    only) lets concurrent claimers take different rows instead of waiting."""
    params: dict[str, Any] = {"now": now, "lease": lease_until, "oldest": oldest, "n": limit}
    among = _among(resources, params)
    yield (
        "UPDATE outbox SET dead_at = :now, last_error = 'expired' WHERE delivered_at IS NULL"
        f" AND dead_at IS NULL AND at < :oldest AND {among}",
        params,
    )
    rows = yield (
        "UPDATE outbox SET lease_until = :lease, attempts = attempts + 1 WHERE id IN"
        f" (SELECT id FROM outbox WHERE {_DUE} AND {among} ORDER BY id LIMIT :n"
        f"{' FOR UPDATE SKIP LOCKED' if skip_locked else ''})"
        f" AND {_DUE} RETURNING id, event_id, resource, at, payload, attempts",
        params,
    )
    claimed = [Claimed(int(i), str(e), str(r), str(a), str(p), int(n)) for i, e, r, a, p, n in rows]
    return sorted(claimed, key=lambda c: c.id)


def settle(results: Sequence[Settled], now: str) -> Generator[Query, Rows, None]:
    """Record each delivery: delivered, retried at its time, or dead; the lease ends."""
    for s in results:
        params = {"id": s.id, "now": now, "next": s.retry_at, "error": s.error}
        if s.delivered:
            sql = "delivered_at = :now, last_error = NULL"
        elif s.retry_at is not None:
            sql = "next_attempt_at = :next, last_error = :error"
        else:
            sql = "dead_at = :now, last_error = :error"
        yield (
            f"UPDATE outbox SET {sql}, lease_until = NULL WHERE id = :id AND delivered_at IS NULL",
            params,
        )


def purge(webhooks: Sequence[str], before: str) -> Generator[Query, Rows, int]:
    """Forget events older than ``before`` that are settled, or that no webhook sends,
    once the mail dispatcher has passed them."""
    params: dict[str, Any] = {"before": before}
    among = _among(webhooks, params)
    rows = yield (
        "DELETE FROM outbox WHERE at < :before AND mailed_at IS NOT NULL"
        " AND (delivered_at IS NOT NULL OR dead_at IS NOT NULL OR resource IS NULL"
        f" OR NOT ({among})) RETURNING id",
        params,
    )
    return len(rows)


def pending(resources: Sequence[str]) -> Generator[Query, Rows, dict[str, int]]:
    """How many events of each resource wait to be delivered (tests, operators)."""
    params: dict[str, Any] = {}
    rows = yield (
        "SELECT resource, COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL"
        f" AND {_among(resources, params)} GROUP BY resource",
        params,
    )
    return {str(r): int(n) for r, n in rows}


# ---- following the outbox by id, for the lab's sockets ---------------------------------------


def newest() -> Generator[Query, Rows, int]:
    """The newest event's row id (0: none yet): where a follower starts."""
    ((top,),) = yield ("SELECT COALESCE(MAX(id), 0) FROM outbox", {})
    return int(top)


def after(
    floor: int, limit: int, resource: str | None = None, upto: int | None = None
) -> Generator[Query, Rows, list[tuple[int, str, str]]]:
    """Events with row ids above ``floor`` (and up to ``upto``), of one resource or all,
    in id order: (id, resource, payload)."""
    params: dict[str, Any] = {"floor": floor, "n": limit, "resource": resource, "upto": upto}
    where = "id > :floor"
    where += "" if resource is None else " AND resource = :resource"
    where += "" if upto is None else " AND id <= :upto"
    rows = yield (
        f"SELECT id, resource, payload FROM outbox WHERE {where} ORDER BY id LIMIT :n",
        params,
    )
    return [(int(i), str(r), str(p)) for i, r, p in rows]


def event_row(event_id: str, resource: str) -> Generator[Query, Rows, int | None]:
    """The row id of one resource's event, by the id receivers see."""
    rows = yield (
        "SELECT id FROM outbox WHERE event_id = :event AND resource = :resource",
        {"event": event_id, "resource": resource},
    )
    return int(rows[0][0]) if rows else None


# ---- the lab API's reads -----------------------------------------------------------------


def current(resource: str, now: str) -> Generator[Query, Rows, BookingRow | None]:
    """The booking whose slot contains ``now``, if one is booked."""
    rows = yield (
        f"SELECT {COLUMNS} FROM bookings WHERE resource = :resource AND status = 'booked'"
        " AND starts_at <= :now AND ends_at > :now ORDER BY starts_at LIMIT 1",
        {"resource": resource, "now": now},
    )
    return booking(rows[0]) if rows else None


@dataclass(frozen=True)
class LabOut:
    """The lab's own report: out of service since ``since`` for ``reason``, or (``reason``
    None) in service since ``since`` (None: it never reported otherwise)."""

    reason: str | None
    since: str | None


def lab_status(resource: str, actor: str) -> Generator[Query, Rows, LabOut]:
    """Whether the lab's own blackout is in force (its reason and start), or when the
    last one was lifted."""
    params = {"resource": resource, "actor": actor}
    rows = yield (
        "SELECT reason, starts_at FROM blackouts WHERE resource = :resource"
        " AND created_by = :actor AND lifted_at IS NULL ORDER BY id LIMIT 1",
        params,
    )
    if rows:
        return LabOut(str(rows[0][0]), str(rows[0][1]))
    ((lifted,),) = yield (
        "SELECT MAX(lifted_at) FROM blackouts WHERE resource = :resource AND created_by = :actor",
        params,
    )
    return LabOut(None, None if lifted is None else str(lifted))
