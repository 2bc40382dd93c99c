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


class SlotOnly(_Body):
    """``{slot_id}``, when the caller is identified by a token."""

    slot_id = fields.Integer(required=True, strict=True)


class ResetRequest(_Body):
    """``{confirm: true}``: an admin's reset must say so."""

    confirm = fields.Boolean(
        required=True, truthy={True}, falsy={False}, validate=validate.Equal(True)
    )


class AuditQuery(_Body):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    before = fields.Integer(load_default=None, validate=validate.Range(min=1))


class TokenMessage(_Body):
    """A WebSocket message that names its session token."""

    token = fields.String(required=True, validate=validate.Length(min=1, max=256))


LOGIN: Final = LoginRequest()
SLOT: Final = SlotRequest()
SLOT_ONLY: Final = SlotOnly()
RESET: Final = ResetRequest()
AUDIT: Final = AuditQuery()
TOKEN: Final = TokenMessage()
