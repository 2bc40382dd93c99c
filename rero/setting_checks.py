"""The checks of single setting values, and the fake users' shape: kept apart from the
declaration in :mod:`rero.settings` so that it reads as one table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate


@dataclass(frozen=True)
class FakeUser:
    """A local user of the fake auth backend (development and tests only)."""

    username: str
    password: str
    name: str
    srn: str
    prn: str = ""
    program: str = ""
    branch: str = ""
    campus: str = ""


class FakeUserSchema(Schema):
    """One fake user, inline in a profile or in ``FAKE_USERS_FILE``."""

    class Meta:
        unknown = RAISE

    username = fields.String(required=True, validate=validate.Length(min=1))
    password = fields.String(required=True, validate=validate.Length(min=1))
    name = fields.String(required=True)
    srn = fields.String(required=True, validate=validate.Length(min=1))
    prn = fields.String(load_default="")
    program = fields.String(load_default="")
    branch = fields.String(load_default="")
    campus = fields.String(load_default="")


class FakeUsersFileSchema(Schema):
    """The file ``FAKE_USERS_FILE`` names: ``[[users]]`` tables."""

    class Meta:
        unknown = EXCLUDE

    users = fields.List(fields.Nested(FakeUserSchema), required=True)


def valid_timezone(name: str) -> None:
    """A name the tz database knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Unknown time zone.") from None


#: An origin as a browser writes it, and as CSP can name it: lower case, no default port.
_ORIGIN: Final = re.compile(r"(https?)://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::([1-9][0-9]{0,4}))?")
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def valid_origin(value: str) -> None:
    """Strict, because the value goes into the page's CSP header and its HTML as is."""
    match = _ORIGIN.fullmatch(value)
    if match is None or int(match[2] or 1) > 65535 or match[2] == _DEFAULT_PORTS[match[1]]:
        raise ValidationError(
            "Must be an http or https origin, scheme://host[:port] in lower case, with no"
            " path (for example https://lab2.example.edu)."
        )
