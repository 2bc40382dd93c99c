"""Marshmallow schemas of the role routes: one instance per payload, feeding validation
and the OpenAPI document."""

from __future__ import annotations

from typing import Final

from marshmallow import Schema, fields, validate

from rero.roles import ROLES
from rero.schemas import _Body


class RoleRequest(_Body):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class RoleOut(Schema):
    srn = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": list(ROLES)})
    source = fields.String(required=True, metadata={"enum": ["config", "runtime"]})


class RoleList(Schema):
    roles = fields.List(fields.Nested(RoleOut), required=True)


ROLE: Final = RoleRequest()
