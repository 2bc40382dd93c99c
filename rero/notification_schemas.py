"""Marshmallow schemas of the notification routes: one instance per payload, feeding
validation and the OpenAPI document."""

from __future__ import annotations

from typing import Final

from marshmallow import RAISE, Schema, fields, validate

from rero.lab_schemas import JsonBoolean
from rero.schemas import _Body
from rero.storage.notify_programs import EVENTS


def _flag() -> fields.Boolean:
    """JSON true or false only (no "yes", no 1)."""
    return JsonBoolean()


class Events(Schema):
    """Which messages to get; a missing one is on. An unknown name is a typo: 422."""

    class Meta:
        unknown = RAISE

    confirmation = _flag()
    reminder = _flag()
    cancellation = _flag()
    waitlist = _flag()
    no_show = _flag()
    suspension = _flag()


assert tuple(Events._declared_fields) == EVENTS


class NotificationRequest(_Body):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    reminder_minutes = fields.Integer(
        strict=True, validate=validate.Range(5, 24 * 60),
        metadata={"description": "Minutes before the start (default 60)"},
    )  # fmt: skip
    events = fields.Nested(Events, load_default=dict)


class VerifyRequest(_Body):
    code = fields.String(
        required=True,
        validate=[
            validate.Length(equal=6, error="Must be six digits."),
            validate.Regexp(r"^[0-9]{6}$", error="Must be six digits."),
        ],
    )


class EventsOut(Schema):
    confirmation = fields.Boolean(required=True)
    reminder = fields.Boolean(required=True)
    cancellation = fields.Boolean(required=True)
    waitlist = fields.Boolean(required=True)
    no_show = fields.Boolean(required=True)
    suspension = fields.Boolean(required=True)


class NotificationSettings(Schema):
    email = fields.String(required=True, allow_none=True)
    verified = fields.Boolean(required=True)
    reminder_minutes = fields.Integer(required=True)
    events = fields.Nested(EventsOut, required=True)


class NotificationChanged(NotificationSettings):
    code_sent = fields.Boolean(
        required=True, metadata={"description": "Whether a code was mailed to the address"}
    )


class UnsubscribeQuery(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 200))


NOTIFY: Final = NotificationRequest()
VERIFY: Final = VerifyRequest()
UNSUBSCRIBE: Final = UnsubscribeQuery()
