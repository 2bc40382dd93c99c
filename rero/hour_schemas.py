"""Marshmallow schemas of the hour's routes (holds, the waitlist, release, suspensions):
one instance per payload, feeding validation and the OpenAPI document."""

from __future__ import annotations

from typing import Final

from marshmallow import Schema, fields, validate

from rero.calendar_schemas import BookingOut, SlotTarget
from rero.schemas import LoginRequest, Text, _Body


class TargetRequest(SlotTarget, LoginRequest):
    """A slot, with ``username`` and ``password`` when no bearer token is sent."""


class SrnQuery(_Body):
    """``?srn=``: an admin asks about a student."""

    srn = Text(load_default=None, validate=validate.Length(min=1, max=64))


class HoldOut(BookingOut):
    expires_at = fields.String(allow_none=True, required=True, metadata={"format": "date-time"})


class HoldMade(Schema):
    hold = fields.Nested(HoldOut, required=True)


class BookingOnly(Schema):
    booking = fields.Nested(BookingOut, required=True)


class EntryOut(Schema):
    id = fields.Integer(required=True)
    resource = fields.String(required=True)
    date = fields.Date(required=True)
    slot_id = fields.Integer(required=True)
    start = fields.String(required=True, metadata={"format": "date-time"})
    end = fields.String(required=True, metadata={"format": "date-time"})
    status = fields.String(required=True, metadata={"enum": ["waiting", "offered", "left"]})
    position = fields.Integer(
        required=True, metadata={"description": "1: next in line; 0 once offered or left"}
    )
    hold_id = fields.Integer(allow_none=True, required=True)
    hold_expires_at = fields.String(
        allow_none=True, required=True, metadata={"format": "date-time"}
    )


class EntryMade(Schema):
    entry = fields.Nested(EntryOut, required=True)


class Waitlist(Schema):
    waitlist = fields.List(fields.Nested(EntryOut), required=True)


class Suspension(Schema):
    srn = fields.String(required=True)
    suspended_until = fields.String(
        allow_none=True, required=True, metadata={"format": "date-time"}
    )


TARGET: Final = SlotTarget()
TARGET_LOGIN: Final = TargetRequest()
SRN: Final = SrnQuery()
