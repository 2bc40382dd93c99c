"""Marshmallow schemas of the hour's answers, for the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields

from rero.calendar_schemas import BookingOut


class Jwk(Schema):
    kty = fields.String(required=True, metadata={"enum": ["OKP"]})
    crv = fields.String(required=True, metadata={"enum": ["Ed25519"]})
    x = fields.String(required=True, metadata={"description": "The public key, base64url"})
    kid = fields.String(required=True, metadata={"description": "RFC 7638 thumbprint"})
    use = fields.String(required=True, metadata={"enum": ["sig"]})
    alg = fields.String(required=True, metadata={"enum": ["EdDSA"]})


class Jwks(Schema):
    """Every key whose grants may still be live; the first signs new ones."""

    keys = fields.List(fields.Nested(Jwk), required=True)


class AccessGrant(Schema):
    grant = fields.String(required=True, metadata={"description": "A compact JWS (EdDSA)"})
    launch_url = fields.String(
        required=True, metadata={"description": "The lab's launch_url with #grant=<JWS>"}
    )
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class CheckedIn(Schema):
    booking = fields.Nested(BookingOut, required=True)
