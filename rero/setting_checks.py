"""The checks of single setting values, and the fake users' shape: kept apart from the
declaration in :mod:`rero.settings` so that it reads as one table."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from rero.calendar import WEEKDAYS, parse_clock


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


def valid_clock(value: str) -> None:
    """``HH:MM``, 00:00 to 24:00."""
    try:
        parse_clock(value)
    except ValueError as e:
        raise ValidationError(f"{e}.") from None


@dataclass(frozen=True)
class LabConfig:
    """A resource's ``[resources.lab]`` table: where its equipment is, how the service
    hands a student to it, and how it reaches the lab (docs/lab-integration.md)."""

    launch_url: str
    early_minutes: int = 5
    api_key_sha256: tuple[str, ...] = ()
    webhook_url: str = ""
    webhook_secret_env: str = ""


class LabSchema(Schema):
    """A ``[resources.lab]`` table: only hashes of lab keys, a webhook secret by name."""

    class Meta:
        unknown = RAISE

    launch_url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    early_minutes = fields.Integer(load_default=5, strict=True, validate=validate.Range(0, 120))
    api_key_sha256 = fields.List(
        fields.String(
            validate=validate.Regexp(
                r"^[0-9a-f]{64}\Z", error="Must be a SHA-256 in lower-case hex (rero keys lab)."
            )
        ),
        load_default=list,
    )
    webhook_url = fields.String(
        load_default="",
        validate=validate.Regexp(r"^$|^https?://\S+\Z", error="Must be an http(s) URL."),
    )
    webhook_secret_env = fields.String(
        load_default="",
        validate=validate.Regexp(
            r"^$|^[A-Z_][A-Z0-9_]*\Z", error="Must name an environment variable."
        ),
    )

    @validates_schema
    def _secret_with_url(self, data: dict[str, Any], **_: Any) -> None:
        if data["webhook_url"] and not data["webhook_secret_env"]:
            raise ValidationError(
                "a webhook_url needs webhook_secret_env (the variable holding its secret)",
                "webhook_secret_env",
            )

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> LabConfig:
        data["api_key_sha256"] = tuple(data["api_key_sha256"])
        return LabConfig(**data)


@dataclass(frozen=True)
class ResourceConfig:
    """One ``[[resources]]`` table, as written (times as HH:MM); see :mod:`rero.resources`."""

    id: str
    name: str | None = None
    site: str = ""
    timezone: str | None = None
    opens: str = "03:00"
    closes: str = "15:00"
    slot_minutes: int = 60
    booking_window_days: int = 7
    window_opens_at: str = "00:00"
    campuses: tuple[str, ...] = ()
    closed_weekdays: tuple[str, ...] = ()
    holidays: tuple[str, ...] = ()
    default: bool = False
    max_bookings_per_day: int | None = None
    max_bookings_per_week: int | None = None
    max_upcoming_bookings: int | None = None
    lab: LabConfig | None = None


def _limit() -> fields.Integer:
    """A resource's own quota; None: only the global one applies."""
    return fields.Integer(strict=True, validate=validate.Range(min=0), load_default=None)


class ResourceSchema(Schema):
    """A ``[[resources]]`` table: every key checked, opening hours whole slots."""

    class Meta:
        unknown = RAISE

    id = fields.String(
        required=True,
        validate=validate.Regexp(r"^[a-z0-9-]{1,32}\Z", error="Must be 1-32 of a-z, 0-9, -."),
    )
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    site = fields.String(load_default="", validate=validate.Length(max=32))
    timezone = fields.String(load_default=None, validate=valid_timezone)
    opens = fields.String(load_default="03:00", validate=valid_clock)
    closes = fields.String(load_default="15:00", validate=valid_clock)
    slot_minutes = fields.Integer(load_default=60, strict=True, validate=validate.Range(5, 24 * 60))
    booking_window_days = fields.Integer(
        load_default=7, strict=True, validate=validate.Range(0, 366)
    )
    window_opens_at = fields.String(load_default="00:00", validate=valid_clock)
    campuses = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    closed_weekdays = fields.List(
        fields.String(validate=validate.OneOf(WEEKDAYS)), load_default=list
    )
    holidays = fields.List(fields.Date(), load_default=list)
    default = fields.Boolean(load_default=False)
    max_bookings_per_day = _limit()
    max_bookings_per_week = _limit()
    max_upcoming_bookings = _limit()
    lab = fields.Nested(LabSchema, load_default=None)

    @validates_schema
    def _whole_slots(self, data: dict[str, Any], **_: Any) -> None:
        opens, closes = parse_clock(data["opens"]), parse_clock(data["closes"])
        step = data["slot_minutes"]
        if closes <= opens:
            raise ValidationError(f"must be after opens ({data['opens']})", "closes")
        if opens % step or (closes - opens) % step:
            raise ValidationError(
                f"opens ({data['opens']}) and closes - opens must be multiples of"
                f" slot_minutes ({step})",
                "slot_minutes",
            )
        if parse_clock(data["window_opens_at"]) >= 24 * 60:
            raise ValidationError("must be before 24:00", "window_opens_at")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> ResourceConfig:
        for key in ("campuses", "closed_weekdays"):
            data[key] = tuple(data[key])
        data["holidays"] = tuple(d.isoformat() for d in data["holidays"])
        return ResourceConfig(**data)


MASK: Final = "***"


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; unparsable: all of it."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def shown(key: str, value: Any) -> Any:
    """A setting's value as it may be printed: passwords never are."""
    if key == "fake_users":
        return [{**user, "password": MASK} for user in value] if isinstance(value, tuple) else MASK
    if key == "database_url" and isinstance(value, str):
        return mask_url(value)
    if "password" in key or "secret" in key:  # a typo's value too (smtp_password = ...)
        return MASK
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a name other than localhost
    may resolve to anything, so it counts as the network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def first_error(messages: Any) -> str:
    """Flatten marshmallow's nested messages to the first sentence."""
    while isinstance(messages, (dict, list)):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages))
    return str(messages)


#: The only place the SMTP password comes from (never a profile: it would be a file).
SMTP_PASSWORD_ENV: Final = "RERO_SMTP_PASSWORD"  # noqa: S105 - its name, not a password
_MAILBOX: Final = re.compile(r"[^\s@<>\"',;:]+@[^\s@<>\"',;:]+\.[^\s@<>\"',;:]+\Z")


def valid_mail_from(value: str) -> None:
    """Empty, or one plain address (``rero@lab.example.edu``): it goes into a header."""
    if value and not _MAILBOX.match(value):
        raise ValidationError("Must be an email address (rero@lab.example.edu).")


def mail_problem(data: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """What SMTP sending lacks: a sender address and links that reach the service once
    ``smtp_host`` is set; the password (only ever from the environment) for a username,
    and TLS (STARTTLS or implicit, not both) for it to cross in."""
    if data.get("smtp_username") and not env.get(SMTP_PASSWORD_ENV):
        return f"smtp_username is set: the environment variable {SMTP_PASSWORD_ENV} must be too"
    tls, starttls = data.get("smtp_tls", False), data.get("smtp_starttls", True)
    if tls and starttls:
        return "smtp_tls is set: set smtp_starttls = false (the connection is TLS already)"
    if data.get("smtp_username") and not (tls or starttls):
        return (
            "smtp_username is set: the password would cross in clear; set smtp_starttls or smtp_tls"
        )
    if data.get("smtp_host") and not data.get("mail_from"):
        return "smtp_host is set: mail_from (the sender's address) is required"
    if data.get("smtp_host") and not data.get("public_url"):
        return "smtp_host is set: public_url (where the links in mail point) is required"
    return None
