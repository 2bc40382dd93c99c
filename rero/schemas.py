"""Marshmallow schemas for request bodies: one instance per payload, at module level."""

from __future__ import annotations

from typing import Final

from marshmallow import EXCLUDE, Schema, fields, validate


class _Body(Schema):
    class Meta:
        # Frontends may send extra keys (a WebSocket "type", say); ignore them.
        unknown = EXCLUDE


class LoginRequest(_Body):
    """``{username, password}``."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=256))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class SlotRequest(LoginRequest):
    """``{slot_id, username, password}``; ``slot_id`` must be a JSON integer."""

    slot_id = fields.Integer(required=True, strict=True)


LOGIN: Final = LoginRequest()
SLOT: Final = SlotRequest()
