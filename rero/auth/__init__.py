"""Authentication: one protocol, a PESU and a fake backend, and a cache in front."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from rero.errors import AuthUnavailable, InvalidCredentials

__all__ = ["AuthBackend", "AuthUnavailable", "InvalidCredentials", "User", "normalize_username"]


def normalize_username(username: str) -> str:
    """The one spelling of a username that the throttle counts, the cache keys and the
    upstream is asked for: surrounding whitespace trimmed, case folded.

    PESU usernames (SRNs, PRNs, e-mail addresses) are case-insensitive and never begin or
    end with whitespace, so ``Carol``, `` carol`` and ``carol\t`` are all ``carol``. The
    upstream gets this spelling too, not the one typed: what the cache answers for
    ``Carol`` is then exactly what the upstream says for it, with the cache on or off.
    """
    return username.strip().casefold()


@dataclass(frozen=True)
class User:
    """Who a student is, as the PESU profile tells; only ``srn`` is ever stored."""

    name: str
    srn: str
    prn: str = ""
    program: str = ""
    branch: str = ""
    campus: str = ""

    def to_dict(self) -> dict[str, str]:
        """The ``user`` object of the login response."""
        return asdict(self)


class AuthBackend(Protocol):
    """Turns credentials into a :class:`User`, or raises a domain error."""

    async def authenticate(self, username: str, password: str) -> User:
        """Raise :class:`InvalidCredentials` or :class:`AuthUnavailable` on failure."""
        ...
