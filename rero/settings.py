"""Settings: built-in defaults, then one TOML profile, then environment variables.

Every value is validated once at start-up so that a bad setting stops the
process with one line naming it, instead of failing later under load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_ENV: Final = "RERO_CONFIG"
DEFAULT_PESU_AUTH_URL: Final = "https://pesu-auth.onrender.com/authenticate"

#: Environment variables that override any profile, by the setting they set.
ENV_OVERRIDES: Final = (
    "HOST",
    "PORT",
    "LOG_LEVEL",
    "DATABASE_PATH",
    "PESU_AUTH_URL",
    "CACHE_DURATION_MINUTES",
    "AUTH_BACKEND",
    "PESU_AUTH_TIMEOUT_SECONDS",
    "FAKE_USERS_FILE",
    "SESSION_MINUTES",
    "WORKERS",
    "DATABASE_URL",
)


class SettingsError(Exception):
    """A setting that cannot be used; the message is one line for the operator."""


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


@dataclass(frozen=True)
class Settings:
    """The effective, validated configuration of one process."""

    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "info"
    database_path: str = "data/rero.db"
    auth_backend: str = "pesu"
    pesu_auth_url: str = DEFAULT_PESU_AUTH_URL
    pesu_auth_timeout_seconds: float = 10.0
    cache_duration_minutes: float = 30.0
    fake_users_file: str = ""
    fake_users: tuple[FakeUser, ...] = ()
    cors_origins: tuple[str, ...] = ("*",)
    first_hour: int = 3
    last_hour: int = 15
    ws_allowed_origins: tuple[str, ...] = ("*",)
    ws_heartbeat_seconds: float = 30.0
    ws_compression: bool = False
    ws_max_connections: int = 10_000
    ws_send_timeout_seconds: float = 10.0
    session_minutes: float = 30.0
    max_failed_logins_per_user: int = 5
    max_failed_logins_per_address: int = 20
    failed_login_window_minutes: float = 15.0
    trusted_proxies: tuple[str, ...] = ()
    max_bookings_per_user: int = 0
    release_after_slot_end: bool = False
    timezone: str = "Asia/Kolkata"
    show_booked_by: bool = True
    admins: tuple[str, ...] = ()
    workers: int = 1
    database_url: str = ""


class _FakeUserSchema(Schema):
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


class _FakeUsersFileSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    users = fields.List(fields.Nested(_FakeUserSchema), required=True)


def _valid_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Unknown time zone.") from None


class _SettingsSchema(Schema):
    """Validates the merged raw values; unknown keys are typos and are refused."""

    class Meta:
        unknown = RAISE

    host = fields.String(validate=validate.Length(min=1))
    port = fields.Integer(validate=validate.Range(1, 65535))
    log_level = fields.String(
        validate=validate.OneOf(["debug", "info", "warning", "error", "critical"])
    )
    database_path = fields.String(validate=validate.Length(min=1))
    auth_backend = fields.String(validate=validate.OneOf(["pesu", "fake"]))
    pesu_auth_url = fields.Url(require_tld=False, schemes={"http", "https"})
    pesu_auth_timeout_seconds = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    cache_duration_minutes = fields.Float(validate=validate.Range(min=0))
    fake_users_file = fields.String()
    fake_users = fields.List(fields.Nested(_FakeUserSchema))
    cors_origins = fields.List(fields.String(validate=validate.Length(min=1)))
    first_hour = fields.Integer(strict=True, validate=validate.Range(0, 23))
    last_hour = fields.Integer(strict=True, validate=validate.Range(1, 24))
    ws_allowed_origins = fields.List(fields.String(validate=validate.Length(min=1)))
    ws_heartbeat_seconds = fields.Float(validate=validate.Range(min=0))
    ws_compression = fields.Boolean()
    ws_max_connections = fields.Integer(strict=True, validate=validate.Range(min=1))
    ws_send_timeout_seconds = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    session_minutes = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    max_failed_logins_per_user = fields.Integer(strict=True, validate=validate.Range(min=1))
    max_failed_logins_per_address = fields.Integer(strict=True, validate=validate.Range(min=1))
    failed_login_window_minutes = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    trusted_proxies = fields.List(fields.IP())
    max_bookings_per_user = fields.Integer(strict=True, validate=validate.Range(min=0))
    release_after_slot_end = fields.Boolean()
    timezone = fields.String(validate=_valid_timezone)
    show_booked_by = fields.Boolean()
    admins = fields.List(fields.String(validate=validate.Length(min=1)))
    workers = fields.Integer(validate=validate.Range(1, 64))
    database_url = fields.String(
        validate=validate.Regexp(
            r"^$|^(postgres|postgresql)://", error="Must be a postgresql:// URL."
        )
    )

    @validates_schema
    def _hours_in_order(self, data: dict[str, Any], **_: Any) -> None:
        first = data.get("first_hour", Settings.first_hour)
        last = data.get("last_hour", Settings.last_hour)
        if first >= last:
            raise ValidationError(f"must be after first_hour ({first})", "last_hour")


_SCHEMA: Final = _SettingsSchema()


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return dict(tomllib.load(f))
    except OSError as e:
        raise SettingsError(f"{what}={str(path)!r}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{what}={str(path)!r}: not valid TOML: {e}") from None


def _describe(key: str, raw: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """``PORT='abc' (from environment PORT)``, or ``port='abc' (from config/x.toml)``."""
    source = sources.get(key, "")
    name = key.upper() if source.startswith("environment") else key
    shown = "***" if key == "fake_users" else repr(raw.get(key))
    return f"{name}={shown}" + (f" (from {source})" if source else "")


def _first_error(messages: Any) -> str:
    """Flatten marshmallow's nested messages to the first sentence."""
    while isinstance(messages, (dict, list)):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages))
    return str(messages)


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults, the profile at ``path`` (or ``$RERO_CONFIG``) and the environment."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = path or env.get(CONFIG_ENV) or None
    if path:
        profile = _read_toml(Path(path), "config")
        raw.update(profile)
        sources.update(dict.fromkeys(profile, path))
    for name in ENV_OVERRIDES:
        if name in env:
            raw[name.lower()] = env[name]
            sources[name.lower()] = f"environment {name}"
    if isinstance(raw.get("log_level"), str):
        raw["log_level"] = raw["log_level"].lower()
    try:
        data = _SCHEMA.load(raw)
    except ValidationError as e:
        key = next(iter(e.messages_dict))
        if key not in raw:
            raise SettingsError(
                f"invalid setting {key!r}: {_first_error(e.messages_dict)}"
            ) from None
        error = _first_error(e.messages_dict[key])
        raise SettingsError(f"invalid setting {_describe(key, raw, sources)}: {error}") from None
    users = data.pop("fake_users", [])
    if data.get("fake_users_file"):
        users_file = _read_toml(Path(data["fake_users_file"]), "FAKE_USERS_FILE")
        try:
            users = _FakeUsersFileSchema().load(users_file)["users"]
        except ValidationError as e:
            raise SettingsError(
                f"FAKE_USERS_FILE={data['fake_users_file']!r}: {_first_error(e.messages_dict)}"
            ) from None
    for key in ("cors_origins", "ws_allowed_origins", "trusted_proxies", "admins"):
        if key in data:
            data[key] = tuple(str(v) for v in data[key])
    settings = Settings(**data, fake_users=tuple(FakeUser(**u) for u in users))
    if settings.auth_backend == "fake" and not settings.fake_users:
        raise SettingsError("AUTH_BACKEND='fake' needs users: set fake_users or FAKE_USERS_FILE")
    return settings
