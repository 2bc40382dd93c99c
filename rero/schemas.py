"""Marshmallow schemas for request bodies: one instance per payload, at module level."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from marshmallow import EXCLUDE, Schema, fields, validate

#: Audit ids are SQL BIGINTs: a larger ``before`` is no id at all.
MAX_ID: Final = 2**63 - 1


class Text(fields.String):
    """A string that is valid Unicode: JSON may spell a lone surrogate (``"\\ud800"``),
    which no UTF-8 encoder (a hash, a driver, PESU) accepts later."""

    default_error_messages = {"surrogate": "Not valid Unicode text."}  # noqa: RUF012

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode()
        except UnicodeEncodeError:
            raise self.make_error("surrogate") from None
        return text


class _Body(Schema):
    class Meta:
        # Frontends may send extra keys (a WebSocket "type", say); ignore them.
        unknown = EXCLUDE


class LoginRequest(_Body):
    """``{username, password}``."""

    username = Text(required=True, validate=validate.Length(min=1, max=256))
    password = Text(required=True, validate=validate.Length(min=1, max=1024))


class SlotRequest(LoginRequest):
    """``{slot_id, username, password}``; ``slot_id`` must be a JSON integer."""

    slot_id = fields.Integer(required=True, strict=True)


class SlotOnly(_Body):
    """``{slot_id}``, when the caller is identified by a token."""

    slot_id = fields.Integer(required=True, strict=True)


class ResetRequest(_Body):
    """``{confirm: true}``: an admin's reset must say so."""

    confirm = fields.Boolean(
        required=True, truthy={True}, falsy={False}, validate=validate.Equal(True)
    )


def _word(pattern: str) -> validate.Validator:
    """1-32 characters of ``pattern``'s class; ``$`` alone would let a final newline in."""
    return validate.And(
        validate.Length(min=1, max=32),
        validate.Regexp(pattern, error="Not a valid value."),
        validate.Regexp(r"^[^\n]*$", error="Not a valid value."),
    )


class AuditQuery(_Body):
    """A page of the audit trail (``limit``, ``before``), filtered by student, resource,
    action and dates ``from``..``to`` (each optional)."""

    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    before = fields.Integer(load_default=None, validate=validate.Range(1, MAX_ID))
    srn = Text(load_default=None, validate=validate.Length(min=1, max=64))
    resource = Text(load_default=None, validate=_word(r"^[a-z0-9-]+$"))
    action = Text(load_default=None, validate=_word(r"^[a-z_]+$"))
    first = fields.Date(data_key="from", load_default=None)
    last = fields.Date(data_key="to", load_default=None)


class AdminBoardQuery(_Body):
    """``?resource=&date=``: a resource's date (default: its today)."""

    resource = Text(required=True, validate=_word(r"^[a-z0-9-]+$"))
    date = fields.Date(load_default=None)


class AnalyticsQuery(_Body):
    """``?from=&to=&resource=``: dates (default: the last 30 days), one resource or all."""

    first = fields.Date(data_key="from", load_default=None)
    last = fields.Date(data_key="to", load_default=None)
    resource = Text(load_default=None, validate=_word(r"^[a-z0-9-]+$"))


class AuditExportQuery(AuditQuery):
    """The same filters for a CSV export: up to 100,000 events at once."""

    limit = fields.Integer(load_default=10_000, validate=validate.Range(1, 100_000))


class TokenMessage(_Body):
    """A WebSocket message that names its session token."""

    token = Text(required=True, validate=validate.Length(min=1, max=256))


LOGIN: Final = LoginRequest()
SLOT: Final = SlotRequest()
SLOT_ONLY: Final = SlotOnly()
RESET: Final = ResetRequest()
AUDIT: Final = AuditQuery()
AUDIT_EXPORT: Final = AuditExportQuery()
ADMIN_BOARD: Final = AdminBoardQuery()
ANALYTICS: Final = AnalyticsQuery()
TOKEN: Final = TokenMessage()


# ---- response bodies: they document the API (OpenAPI), the views build them as dicts ----------


class Error(Schema):
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), metadata={"description": "422"}
    )


class Slot(Schema):
    id = fields.Integer(required=True)
    start_time = fields.String(required=True, metadata={"example": "09:00"})
    end_time = fields.String(required=True, metadata={"example": "10:00"})
    is_booked = fields.Boolean(required=True)
    booked_by = fields.String(allow_none=True, required=True, metadata={"description": "SRN"})
    booked_at = fields.String(allow_none=True, required=True, metadata={"format": "date-time"})


# The body of GET /slots: documented as "Board", as apispec drops the suffix.
class BoardSchema(Schema):
    slots = fields.List(fields.Nested(Slot), required=True)
    available_slots = fields.List(fields.Integer(), required=True)
    booked_slots = fields.List(fields.Integer(), required=True)


class Index(Schema):
    message = fields.String(required=True)
    websocket_endpoint = fields.String(required=True)
    active_connections = fields.Integer(required=True)
    booked_slots = fields.List(fields.Integer(), required=True)


class DatabaseCounts(Schema):
    total_slots = fields.Integer()
    booked_slots = fields.Integer()
    available_slots = fields.Integer()
    database_path = fields.String()
    error = fields.String(metadata={"description": "When the database could not be read"})


class Reachability(Schema):
    kind = fields.String(required=True)
    reachable = fields.Boolean(required=True)


class MailHealth(Schema):
    """Email: an SMTP host set (else logged), messages waiting, messages given up on."""

    configured = fields.Boolean(required=True)
    pending = fields.Integer(required=True)
    dead = fields.Integer(required=True)


class Health(Schema):
    status = fields.String(required=True, metadata={"enum": ["healthy", "unhealthy"]})
    timestamp = fields.DateTime(required=True)
    active_connections = fields.Integer(required=True)
    total_slots = fields.Integer(required=True)
    booked_slots_count = fields.Integer(required=True)
    available_slots_count = fields.Integer(required=True)
    store = fields.Nested(Reachability, required=True)
    bus = fields.Nested(Reachability, required=True)
    database = fields.Nested(DatabaseCounts, required=True)
    mail = fields.Nested(MailHealth, required=True)


class Stats(Schema):
    database = fields.Nested(DatabaseCounts, required=True)
    websocket = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    slots = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    operations = fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Integer())
    )
    response_times_ms = fields.Dict(keys=fields.String(), values=fields.Float())


class UserOut(Schema):
    name = fields.String(required=True)
    srn = fields.String(required=True)
    prn = fields.String(required=True)
    program = fields.String(required=True)
    branch = fields.String(required=True)
    campus = fields.String(required=True)


class LoginResponse(Schema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)
    user = fields.Nested(UserOut, required=True)
    token = fields.String(required=True)
    expires_at = fields.DateTime(required=True)


class LogoutAllResponse(Schema):
    success = fields.Boolean(required=True)
    sessions_ended = fields.Integer(required=True)


class SlotResponse(Schema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)
    slot_id = fields.Integer(required=True)


class Booking(Schema):
    id = fields.Integer(required=True)
    start_time = fields.String(required=True)
    end_time = fields.String(required=True)
    booked_at = fields.String(allow_none=True, required=True)


class MyBookings(Schema):
    success = fields.Boolean(required=True)
    bookings = fields.List(fields.Nested(Booking), required=True)
    total_bookings = fields.Integer(required=True)


class ResetResponse(Schema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)
    released = fields.Integer(required=True)


class Event(Schema):
    id = fields.Integer(required=True)
    slot_id = fields.Integer(required=True)
    holder_srn = fields.String(allow_none=True, required=True)
    actor_srn = fields.String(allow_none=True, required=True)
    action = fields.String(
        required=True,
        metadata={"enum": ["booked", "cancelled", "admin_cancelled", "reset", "expired"]},
    )
    at = fields.String(required=True)
    resource = fields.String(allow_none=True, required=True)
    date = fields.String(allow_none=True, required=True)
    booking_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)


class Audit(Schema):
    events = fields.List(fields.Nested(Event), required=True)
    next_before = fields.Integer(allow_none=True, required=True)
