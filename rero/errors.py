"""Domain errors: each carries the HTTP status and the sentence clients see.

Both transports render these: HTTP as ``{"detail": ...}`` with the status,
the WebSocket as a failed response of the request's type.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ReroError(Exception):
    """Base class; ``str(error)`` is the client-facing sentence."""

    status: ClassVar[int] = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(ReroError):
    """The request is well-formed but names something that cannot be (an unknown slot)."""


class SlotUnavailable(ReroError):
    """The slot is already booked."""


class SlotNotBooked(ReroError):
    """Cancelling a slot nobody holds."""


class NotYourBooking(ReroError):
    """Cancelling a slot somebody else holds."""

    status = 403


class InvalidCredentials(ReroError):
    """The username or password is wrong."""

    status = 401

    def __init__(self, detail: str = "Invalid credentials") -> None:
        super().__init__(detail)


class AuthUnavailable(ReroError):
    """The authentication upstream could not give an answer; not the user's fault."""

    status = 503
    retry_after = 10

    def __init__(self, detail: str = "Authentication service unavailable") -> None:
        super().__init__(detail)


class StorageUnavailable(ReroError):
    """The database could not be read or written; the change did not happen."""

    status = 503

    def __init__(self, detail: str = "Storage unavailable, try again") -> None:
        super().__init__(detail)


class InvalidSession(ReroError):
    """A bearer token that is unknown, expired or revoked."""

    status = 401

    def __init__(self, detail: str = "Invalid or expired session") -> None:
        super().__init__(detail)


class TooManyAttempts(ReroError):
    """Login throttled; refused without asking the upstream, right password or not."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed attempts, try again in {retry_after} seconds")
        self.retry_after = retry_after


class TooManyLogins(TooManyAttempts):
    """A student signing in more often than any person does: a script, or a stolen password."""

    def __init__(self, retry_after: int) -> None:
        ReroError.__init__(self, f"Too many sign-ins, try again in {retry_after} seconds")
        self.retry_after = retry_after


class AdminRequired(ReroError):
    status = 403

    def __init__(self, detail: str = "Admin access required") -> None:
        super().__init__(detail)


class QuotaReached(ReroError):
    """The user already holds ``max_bookings_per_user`` slots."""


class RequestInvalid(ReroError):
    """A body or query that failed its schema: 422 with the messages per field."""

    status = 422

    def __init__(self, errors: Any) -> None:
        super().__init__("Request validation failed")
        self.errors = errors


class Conflict(ReroError):
    """The calendar's state refuses the request: taken, closed, over a limit."""

    status = 409


class NotFound(ReroError):
    """A resource, booking, series or blackout that does not exist."""

    status = 404


class Forbidden(ReroError):
    """Allowed to others, not to this caller (a resource of another campus)."""

    status = 403
