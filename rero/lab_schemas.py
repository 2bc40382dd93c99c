"""Marshmallow schemas of the lab API: one instance per payload, feeding validation and
the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from rero.schemas import Text, _Body


class JsonBoolean(fields.Boolean):
    """``true`` or ``false`` only: not ``1``, ``0`` or ``"no"``, which equal them in Python."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class LabStatusRequest(_Body):
    """``{"available": false, "reason": "..."}`` (out of service) or ``{"available": true}``."""

    available = JsonBoolean(required=True)
    reason = Text(load_default=None, validate=validate.Length(min=1, max=200))

    @validates_schema
    def _reason_when_out(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("available") is False and not data.get("reason"):
            raise ValidationError("Required when available is false.", "reason")


class EventsQuery(_Body):
    """``?after=<event id>``: catch up on the events that followed it."""

    after = fields.UUID(load_default=None)


class LabSession(Schema):
    booking_id = fields.Integer(required=True)
    srn = fields.String(required=True)
    name = fields.String(required=True)
    start = fields.String(required=True, metadata={"description": "ISO 8601, resource's zone"})
    end = fields.String(required=True)
    checked_in = fields.Boolean(required=True)


class LabStatus(Schema):
    resource = fields.String(required=True)
    available = fields.Boolean(required=True)
    reason = fields.String(allow_none=True, required=True)
    since = fields.String(
        allow_none=True, required=True, metadata={"description": "When the state began"}
    )


class LabStarted(Schema):
    booking_id = fields.Integer(required=True)
    checked_in_at = fields.String(required=True)


STATUS: Final = LabStatusRequest()
EVENTS: Final = EventsQuery()
