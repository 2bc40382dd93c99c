"""Marshmallow schemas of the role routes: one instance per payload, feeding validation
and the OpenAPI document."""

from __future__ import annotations

from typing import Final

from marshmallow import Schema, fields, validate

from rero.calendar_schemas import BookingOut
from rero.hour_schemas import EntryOut
from rero.roles import ROLES
from rero.schemas import Text, _Body


class RoleRequest(_Body):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class StaffCancelRequest(_Body):
    """``{reason}``: said to the student and kept in the audit trail."""

    reason = Text(required=True, validate=validate.Length(min=1, max=200))


class RoleOut(Schema):
    srn = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": list(ROLES)})
    source = fields.String(required=True, metadata={"enum": ["config", "runtime"]})


class RoleList(Schema):
    roles = fields.List(fields.Nested(RoleOut), required=True)


class StudentRecord(Schema):
    """A student as the staff see them."""

    srn = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": list(ROLES)})
    role_source = fields.String(required=True, metadata={"enum": ["config", "runtime", "default"]})
    bookings = fields.List(fields.Nested(BookingOut), required=True)
    no_shows = fields.Integer(
        required=True, metadata={"description": "No-shows within no_show_window_days"}
    )
    suspended_until = fields.String(allow_none=True, required=True)
    waitlist = fields.List(fields.Nested(EntryOut), required=True)


ROLE: Final = RoleRequest()
STAFF_CANCEL: Final = StaffCancelRequest()
