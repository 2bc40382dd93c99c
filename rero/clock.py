"""The one clock: every rule that depends on time reads an injected ``Clock``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock."""
    return datetime.now(timezone.utc)


def stamp(clock: Clock) -> str:
    """Now, as the database stores it: ISO 8601 to the second."""
    return clock().isoformat(timespec="seconds")
