"""Marshmallow schemas of the calendar's routes: one instance per payload, at module level,
feeding both validation and the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Final

from marshmallow import Schema, fields, validate

from rero.schemas import LoginRequest, Text, _Body

#: A resource id; ``$`` in a pattern would let a trailing newline through, hence the length.
_RESOURCE_ID: Final = validate.And(
    validate.Length(min=1, max=32),
    validate.Regexp(r"^[a-z0-9-]+$", error="Not a resource id."),
    validate.Regexp(r"^[^\n]*$", error="Not a resource id."),
)
#: Dates the calendar knows: no lab books in the year 170 (or in local mean time).
_DATES: Final = validate.Range(date(2000, 1, 1), date(2999, 12, 31))
_INSTANTS: Final = validate.Range(
    datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2999, 12, 31, tzinfo=timezone.utc)
)


class BookingFields(_Body):
    """``{resource, date, slot_id}``; an admin may add ``srn`` (book for a student) and
    ``repeat_weeks`` (the same slot weekly, that many times)."""

    resource = fields.String(required=True, validate=_RESOURCE_ID)
    date = fields.Date(required=True, validate=_DATES)
    slot_id = fields.Integer(required=True, strict=True)
    srn = Text(validate=validate.Length(min=1, max=64))
    repeat_weeks = fields.Integer(strict=True, validate=validate.Range(min=1))


class BookingRequest(BookingFields, LoginRequest):
    """The same with ``username`` and ``password``, when no bearer token is sent."""


class DateQuery(_Body):
    date = fields.Date(load_default=None, validate=_DATES)


class RangeQuery(_Body):
    """``?from=&to=``: dates, both inclusive."""

    first = fields.Date(data_key="from", load_default=None, validate=_DATES)
    last = fields.Date(data_key="to", load_default=None, validate=_DATES)


class FromQuery(_Body):
    """``?from=``: a date."""

    first = fields.Date(data_key="from", load_default=None, validate=_DATES)


class BlackoutQuery(RangeQuery):
    resource = fields.String(load_default=None, validate=_RESOURCE_ID)


class BlackoutRequest(_Body):
    """``{resource, start, end, reason}``: instants with their UTC offset."""

    resource = fields.String(required=True, validate=_RESOURCE_ID)
    start = fields.AwareDateTime(required=True, validate=_INSTANTS)
    end = fields.AwareDateTime(required=True, validate=_INSTANTS)
    reason = Text(required=True, validate=validate.Length(min=1, max=200))


class SlotTarget(_Body):
    """A WebSocket message's slot on the calendar: ``{resource, date, slot_id}``."""

    resource = fields.String(required=True, validate=_RESOURCE_ID)
    date = fields.Date(required=True, validate=_DATES)
    slot_id = fields.Integer(required=True, strict=True)


class BoardKey(_Body):
    """``subscribe`` / ``unsubscribe``: a resource, and a date (default: its today)."""

    resource = fields.String(required=True, validate=_RESOURCE_ID)
    date = fields.Date(load_default=None, validate=_DATES)


BOOKING: Final = BookingRequest()
TARGET: Final = SlotTarget()
BOARD_KEY: Final = BoardKey()
BOOKING_ONLY: Final = BookingFields()
DATE: Final = DateQuery()
RANGE: Final = RangeQuery()
FROM: Final = FromQuery()
BLACKOUTS: Final = BlackoutQuery()
BLACKOUT: Final = BlackoutRequest()


# ---- response bodies ------------------------------------------------------------------------


class Window(Schema):
    first_date = fields.Date(required=True)
    last_date = fields.Date(required=True)
    next_opens_at = fields.String(required=True, metadata={"format": "date-time"})


class ResourceOut(Schema):
    id = fields.String(required=True, metadata={"example": "arm-1"})
    name = fields.String(required=True)
    site = fields.String(required=True, metadata={"example": "RR"})
    timezone = fields.String(required=True, metadata={"example": "Asia/Kolkata"})
    slot_minutes = fields.Integer(required=True)
    opens = fields.String(required=True, metadata={"example": "03:00"})
    closes = fields.String(required=True, metadata={"example": "15:00"})
    booking_window_days = fields.Integer(required=True)
    campuses = fields.List(fields.String(), required=True)
    default = fields.Boolean(required=True)
    has_lab = fields.Boolean(
        required=True,
        metadata={"description": "Whether its equipment admits students by access grant"},
    )
    window = fields.Nested(Window, required=True)


class Resources(Schema):
    resources = fields.List(fields.Nested(ResourceOut), required=True)


class DaySlot(Schema):
    id = fields.Integer(required=True)
    start = fields.String(required=True, metadata={"format": "date-time"})
    end = fields.String(required=True, metadata={"format": "date-time"})
    state = fields.String(required=True, metadata={"enum": ["free", "booked", "held", "closed"]})
    is_booked = fields.Boolean(required=True)
    booked_by = fields.String(allow_none=True, required=True)
    booked_at = fields.String(allow_none=True, required=True)
    reason = fields.String(
        allow_none=True, required=True, metadata={"description": "Why a slot is closed"}
    )
    held_until = fields.String(
        allow_none=True,
        required=True,
        metadata={"format": "date-time", "description": "When a held slot's hold lapses"},
    )


class DayBoard(Schema):
    resource = fields.String(required=True)
    date = fields.Date(required=True)
    timezone = fields.String(required=True)
    opens_at = fields.String(
        allow_none=True,
        required=True,
        metadata={"format": "date-time", "description": "When the date opens; null: open"},
    )
    slots = fields.List(fields.Nested(DaySlot), required=True)
    available_slots = fields.List(fields.Integer(), required=True)
    booked_slots = fields.List(fields.Integer(), required=True)


class BookingOut(Schema):
    id = fields.Integer(required=True)
    resource = fields.String(required=True)
    date = fields.Date(required=True)
    slot_id = fields.Integer(required=True)
    start = fields.String(required=True, metadata={"format": "date-time"})
    end = fields.String(required=True, metadata={"format": "date-time"})
    srn = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"enum": ["booked", "held", "cancelled", "completed", "no_show", "lapsed"]},
    )
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    series_id = fields.String(allow_none=True, required=True)
    checked_in_at = fields.String(allow_none=True, required=True, metadata={"format": "date-time"})


class Refused(Schema):
    date = fields.Date(required=True)
    reason = fields.String(required=True)


class BookingMade(Schema):
    """One booking; or, for a series, ``series_id``, ``bookings`` and ``refused``."""

    success = fields.Boolean(required=True)
    booking = fields.Nested(BookingOut)
    series_id = fields.String()
    bookings = fields.List(fields.Nested(BookingOut))
    refused = fields.List(fields.Nested(Refused))


class BookingList(Schema):
    bookings = fields.List(fields.Nested(BookingOut), required=True)


class SeriesCancelled(Schema):
    success = fields.Boolean(required=True)
    cancelled = fields.List(fields.Nested(BookingOut), required=True)


class BlackoutOut(Schema):
    id = fields.Integer(required=True)
    resource = fields.String(required=True)
    start = fields.String(required=True, metadata={"format": "date-time"})
    end = fields.String(required=True, metadata={"format": "date-time"})
    reason = fields.String(required=True)


class BlackoutMade(Schema):
    blackout = fields.Nested(BlackoutOut, required=True)
    cancelled = fields.List(
        fields.Integer(), metadata={"description": "Ids of the bookings it cancelled"}
    )


class BlackoutList(Schema):
    blackouts = fields.List(fields.Nested(BlackoutOut), required=True)
