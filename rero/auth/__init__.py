"""Authentication: one protocol, a PESU and a fake backend, and a cache in front."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from rero.errors import AuthUnavailable, InvalidCredentials

__all__ = ["AuthBackend", "AuthUnavailable", "InvalidCredentials", "User"]


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
