"""Calendar feeds, once for both stores: a feed is a token's SHA-256 (never the token)
owned by a student (``srn``) or a resource (``resource``); one live feed per owner.
Each function is a program for :meth:`rero.storage.Programs.perform`."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from rero.storage import BookingRow, Query, Rows
from rero.storage.rows import COLUMNS, booking

#: A feed's owner as a condition on ``calendar_feeds``: a student's feed has no resource,
#: a resource's feed no student.
_STUDENT: Final = "srn = :srn AND resource IS NULL"
_RESOURCE: Final = "resource = :resource AND srn IS NULL"
#: The bookings a feed shows: made and kept (or cancelled), never holds or lapsed ones.
_SHOWN: Final = "status IN ('booked', 'completed', 'no_show', 'cancelled')"


@dataclass(frozen=True)
class Owner:
    """Whose feed: a student's (``srn``) or a resource's (``resource``)."""

    srn: str | None = None
    resource: str | None = None

    @property
    def condition(self) -> str:
        return _STUDENT if self.srn is not None else _RESOURCE

    @property
    def params(self) -> dict[str, Any]:
        return {"srn": self.srn, "resource": self.resource}


@dataclass(frozen=True)
class FeedRow:
    """A live feed as stored (without its hash)."""

    id: int
    owner: Owner
    created_at: str


@dataclass(frozen=True)
class Listed:
    """A booking in a feed, with when it last changed."""

    booking: BookingRow
    updated_at: str


def open_feed(token_hash: str, owner: Owner, at: str) -> Generator[Query, Rows, FeedRow]:
    """Revoke the owner's live feeds and store the new one's hash."""
    yield from revoke_feed(owner, at)
    rows = yield (
        "INSERT INTO calendar_feeds (token_hash, srn, resource, created_at)"
        " VALUES (:hash, :srn, :resource, :at) RETURNING id, created_at",
        {**owner.params, "hash": token_hash, "at": at},
    )
    return FeedRow(int(rows[0][0]), owner, str(rows[0][1]))


def revoke_feed(owner: Owner, at: str) -> Generator[Query, Rows, bool]:
    """Revoke the owner's live feeds; whether there was one."""
    rows = yield (
        "UPDATE calendar_feeds SET revoked_at = :at WHERE revoked_at IS NULL"
        f" AND {owner.condition} RETURNING id",
        {**owner.params, "at": at},
    )
    return bool(rows)


def read_feed(
    token_hash: str, ends_after: str
) -> Generator[Query, Rows, tuple[FeedRow, list[Listed]] | None]:
    """The live feed of a token's hash and its bookings ending after ``ends_after``, by
    start, in one transaction; None for an unknown or revoked token. Of two live feeds of
    one owner (two creations racing on PostgreSQL), only the newer answers."""
    found = yield (
        "SELECT id, srn, resource, created_at FROM calendar_feeds f WHERE token_hash = :hash"
        " AND revoked_at IS NULL AND NOT EXISTS (SELECT 1 FROM calendar_feeds n"
        " WHERE n.revoked_at IS NULL AND n.id > f.id"
        " AND COALESCE(n.srn, '') = COALESCE(f.srn, '')"
        " AND COALESCE(n.resource, '') = COALESCE(f.resource, ''))",
        {"hash": token_hash},
    )
    if not found:
        return None
    id_, srn, resource, created = found[0]
    owner = Owner(None if srn is None else str(srn), None if resource is None else str(resource))
    whose = "srn = :srn" if owner.srn is not None else "resource = :resource"
    rows = yield (
        f"SELECT {COLUMNS}, updated_at FROM bookings WHERE {whose} AND {_SHOWN}"
        " AND ends_at > :after ORDER BY starts_at, id",
        {**owner.params, "after": ends_after},
    )
    listed = [Listed(booking(r[:-1]), str(r[-1])) for r in rows]
    return FeedRow(int(id_), owner, str(created)), listed
