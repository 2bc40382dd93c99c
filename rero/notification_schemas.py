"""Marshmallow schemas of the notification routes: one instance per payload, feeding
validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from marshmallow import Schema, ValidationError, fields, validate

from rero.schemas import _Body
from rero.storage.notify_programs import EVENTS


class EventsField(fields.Field[dict[str, bool]]):
    """``{"confirmation": true, ...}``: JSON booleans only; a missing message is on, an
    unknown name a typo (422). Its errors are one flat list, as every field's are."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, bool]:
        if not isinstance(value, dict):
            raise ValidationError("Must be an object of messages and true or false.")
        unknown = sorted(str(k) for k in value if k not in EVENTS)
        if unknown:
            raise ValidationError(f"Unknown message {unknown[0]!r}: one of {', '.join(EVENTS)}.")
        wrong = next((k for k, v in value.items() if not isinstance(v, bool)), None)
        if wrong is not None:
            raise ValidationError(f"{wrong}: must be true or false.")
        return dict(value)


_EVENTS_DOC: Final = {
    "type": "object",
    "properties": {e: {"type": "boolean"} for e in EVENTS},
    "additionalProperties": False,
    "description": "Which messages to get; a missing one is on",
}


class NotificationRequest(_Body):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    reminder_minutes = fields.Integer(
        strict=True, validate=validate.Range(5, 24 * 60),
        metadata={"description": "Minutes before the start (default 60)"},
    )  # fmt: skip
    events = EventsField(load_default=dict, metadata=_EVENTS_DOC)


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
