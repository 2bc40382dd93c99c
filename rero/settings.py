"""Settings: built-in defaults, then one TOML profile, then environment variables.

Every value is validated once at start-up so that a bad setting stops the
process with one line naming it, instead of failing later under load.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, get_type_hints

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from rero.setting_checks import (
    MASK,
    FakeUser,
    FakeUserSchema,
    FakeUsersFileSchema,
    ResourceConfig,
    ResourceSchema,
    first_error,
    is_loopback,
    mail_problem,
    shown,
    valid_mail_from,
    valid_origin,
    valid_timezone,
)

CONFIG_ENV: Final = "RERO_CONFIG"
DEFAULT_PESU_AUTH_URL: Final = "https://pesu-auth.onrender.com/authenticate"


class SettingsError(Exception):
    """A setting that cannot be used; the message is one line for the operator."""


_T = TypeVar("_T")


def _setting(default: _T, check: fields.Field[Any], env: str | None = None) -> _T:
    """One setting: its default, the marshmallow field that checks a raw value, and the
    environment variable that overrides it, side by side so that none can drift."""
    return dataclasses.field(default=default, metadata={"check": check, "env": env})


@dataclass(frozen=True)
class Settings:
    """The effective, validated configuration of one process.

    The one declaration of the settings: the schema and the environment overrides
    are derived from these fields, and a test holds config/default.toml to them.
    """

    host: str = _setting("0.0.0.0", fields.String(validate=validate.Length(min=1)), env="HOST")
    port: int = _setting(8000, fields.Integer(validate=validate.Range(1, 65535)), env="PORT")
    log_level: str = _setting(
        "info",
        fields.String(validate=validate.OneOf(["debug", "info", "warning", "error", "critical"])),
        env="LOG_LEVEL",
    )
    database_path: str = _setting(
        "data/rero.db", fields.String(validate=validate.Length(min=1)), env="DATABASE_PATH"
    )
    auth_backend: str = _setting(
        "pesu", fields.String(validate=validate.OneOf(["pesu", "fake"])), env="AUTH_BACKEND"
    )
    pesu_auth_url: str = _setting(
        DEFAULT_PESU_AUTH_URL,
        fields.Url(require_tld=False, schemes={"http", "https"}),
        env="PESU_AUTH_URL",
    )
    pesu_auth_timeout_seconds: float = _setting(
        10.0,
        fields.Float(validate=validate.Range(min=0, min_inclusive=False)),
        env="PESU_AUTH_TIMEOUT_SECONDS",
    )
    cache_duration_minutes: float = _setting(
        30.0, fields.Float(validate=validate.Range(min=0)), env="CACHE_DURATION_MINUTES"
    )
    fake_users_file: str = _setting("", fields.String(), env="FAKE_USERS_FILE")
    fake_users: tuple[FakeUser, ...] = _setting((), fields.List(fields.Nested(FakeUserSchema)))
    # Profile only, never the environment: one stray variable must not expose fake users.
    allow_fake_auth_on_network: bool = _setting(False, fields.Boolean())
    cors_origins: tuple[str, ...] = _setting(
        ("*",), fields.List(fields.String(validate=validate.Length(min=1)))
    )
    first_hour: int = _setting(3, fields.Integer(strict=True, validate=validate.Range(0, 23)))
    last_hour: int = _setting(15, fields.Integer(strict=True, validate=validate.Range(1, 24)))
    ws_allowed_origins: tuple[str, ...] = _setting(
        ("*",), fields.List(fields.String(validate=validate.Length(min=1)))
    )
    ws_heartbeat_seconds: float = _setting(30.0, fields.Float(validate=validate.Range(min=0)))
    ws_compression: bool = _setting(False, fields.Boolean())
    ws_max_connections: int = _setting(
        10_000, fields.Integer(strict=True, validate=validate.Range(min=1))
    )
    ws_max_subscriptions: int = _setting(
        16, fields.Integer(strict=True, validate=validate.Range(1, 1000))
    )
    ws_send_timeout_seconds: float = _setting(
        10.0, fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    )
    body_timeout_seconds: float = _setting(
        10.0, fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    )
    session_minutes: float = _setting(
        30.0,
        fields.Float(validate=validate.Range(min=0, min_inclusive=False)),
        env="SESSION_MINUTES",
    )
    max_failed_logins_per_user: int = _setting(
        5, fields.Integer(strict=True, validate=validate.Range(min=1))
    )
    max_failed_logins_per_address: int = _setting(
        20, fields.Integer(strict=True, validate=validate.Range(min=1))
    )
    max_failed_logins_per_user_across_addresses: int = _setting(
        50, fields.Integer(strict=True, validate=validate.Range(min=1))
    )
    failed_login_window_minutes: float = _setting(
        15.0, fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    )
    trusted_proxies: tuple[str, ...] = _setting((), fields.List(fields.IP()))
    max_bookings_per_user: int = _setting(
        0, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    max_upcoming_bookings: int = _setting(
        0, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    max_bookings_per_day: int = _setting(
        0, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    max_bookings_per_week: int = _setting(
        0, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    max_series_weeks: int = _setting(
        12, fields.Integer(strict=True, validate=validate.Range(1, 104))
    )
    resources: tuple[ResourceConfig, ...] = _setting((), fields.List(fields.Nested(ResourceSchema)))
    # The hour itself (docs/lab-integration.md): the service's own URL (grants' issuer,
    # feed links), the Ed25519 keys that sign grants (the first signs), no-shows, holds.
    public_url: str = _setting(
        "",
        fields.String(
            validate=validate.Regexp(
                r"^$|^https?://[^\s/]+(/\S*)?\Z", error="Must be an http(s) URL."
            )
        ),
        env="PUBLIC_URL",
    )
    grant_signing_keys: tuple[str, ...] = _setting(
        (), fields.List(fields.String(validate=validate.Length(min=1)))
    )
    no_show_minutes: int = _setting(
        10, fields.Integer(strict=True, validate=validate.Range(0, 24 * 60))
    )
    no_show_limit: int = _setting(3, fields.Integer(strict=True, validate=validate.Range(min=0)))
    no_show_window_days: int = _setting(
        30, fields.Integer(strict=True, validate=validate.Range(1, 366))
    )
    suspension_days: int = _setting(7, fields.Integer(strict=True, validate=validate.Range(1, 366)))
    hold_seconds: int = _setting(
        120, fields.Integer(strict=True, validate=validate.Range(10, 3600))
    )
    waitlist_hold_seconds: int = _setting(
        300, fields.Integer(strict=True, validate=validate.Range(10, 24 * 3600))
    )
    # Accepted, ignored: a booking always ends with its slot now (None: not given).
    release_after_slot_end: bool | None = _setting(None, fields.Boolean(allow_none=True))
    max_logins_per_user_per_minute: int = _setting(
        30, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    max_sessions_per_user: int = _setting(
        10, fields.Integer(strict=True, validate=validate.Range(min=0))
    )
    timezone: str = _setting("Asia/Kolkata", fields.String(validate=valid_timezone))
    show_booked_by: bool = _setting(True, fields.Boolean())
    admins: tuple[str, ...] = _setting(
        (), fields.List(fields.String(validate=validate.Length(min=1)))
    )
    assistants: tuple[str, ...] = _setting(
        (), fields.List(fields.String(validate=validate.Length(min=1)))
    )
    board_servers: tuple[str, ...] = _setting((), fields.List(fields.String(validate=valid_origin)))
    workers: int = _setting(1, fields.Integer(validate=validate.Range(1, 64)), env="WORKERS")
    smtp_host: str = _setting("", fields.String(validate=validate.Regexp(r"^[^\s/:]*\Z")))
    smtp_port: int = _setting(587, fields.Integer(strict=True, validate=validate.Range(1, 65535)))
    smtp_starttls: bool = _setting(True, fields.Boolean())
    smtp_tls: bool = _setting(False, fields.Boolean())
    smtp_username: str = _setting("", fields.String())
    mail_from: str = _setting("", fields.String(validate=valid_mail_from))
    database_url: str = _setting(
        "",
        fields.String(
            validate=validate.Regexp(
                r"^$|^(postgres|postgresql)://", error="Must be a postgresql:// URL."
            )
        ),
        env="DATABASE_URL",
    )


#: The environment variable of each setting that has one, in declaration order.
_ENV_NAMES: Final[dict[str, str]] = {
    f.name: f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["env"]
}
#: Environment variables that override any profile.
ENV_OVERRIDES: Final = tuple(_ENV_NAMES.values())
#: Settings read as lists of strings (TOML arrays) but kept as tuples, being frozen.
_STRING_TUPLES: Final = frozenset(
    name for name, hint in get_type_hints(Settings).items() if hint == tuple[str, ...]
)


class _SettingsSchema(Schema):
    """The checks across settings; the per-setting fields come from Settings."""

    class Meta:
        unknown = RAISE  # an unknown key is a typo

    @validates_schema
    def _hours_in_order(self, data: dict[str, Any], **_: Any) -> None:
        first = data.get("first_hour", Settings.first_hour)
        last = data.get("last_hour", Settings.last_hour)
        if first >= last:
            raise ValidationError(f"must be after first_hour ({first})", "last_hour")

    @validates_schema
    def _one_default_resource(self, data: dict[str, Any], **_: Any) -> None:
        resources = data.get("resources", [])
        ids = [r.id for r in resources]
        twice = next((i for i in ids if ids.count(i) > 1), None)
        if twice is not None:
            raise ValidationError(f"resource id {twice!r} is used twice", "resources")
        if sum(r.default for r in resources) > 1:
            raise ValidationError("at most one resource may say default = true", "resources")

    @validates_schema
    def _labs_need_the_service_url(self, data: dict[str, Any], **_: Any) -> None:
        labs = [r.id for r in data.get("resources", []) if r.lab is not None]
        if labs and not data.get("public_url"):
            raise ValidationError(
                f"is required once a resource has a lab ({labs[0]}): grants name it", "public_url"
            )
        if labs and not data.get("grant_signing_keys"):
            raise ValidationError(
                f"is required once a resource has a lab ({labs[0]}): rero keys generate PATH",
                "grant_signing_keys",
            )


_SCHEMA: Final = _SettingsSchema.from_dict(
    {f.name: f.metadata["check"] for f in dataclasses.fields(Settings)}
)()


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
    name = _ENV_NAMES[key] if source.startswith("environment") else key
    value = MASK if key == "fake_users" else repr(shown(key, raw.get(key)))
    return f"{name}={value}" + (f" (from {source})" if source else "")


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
    for key, name in _ENV_NAMES.items():
        if name in env:
            raw[key] = env[name]
            sources[key] = f"environment {name}"
    if isinstance(raw.get("log_level"), str):
        raw["log_level"] = raw["log_level"].lower()
    try:
        data = _SCHEMA.load(raw)
    except ValidationError as e:
        key = next(iter(e.messages_dict))
        if key not in raw:
            raise SettingsError(
                f"invalid setting {key!r}: {first_error(e.messages_dict)}"
            ) from None
        error = first_error(e.messages_dict[key])
        raise SettingsError(f"invalid setting {_describe(key, raw, sources)}: {error}") from None
    users = data.pop("fake_users", [])
    if data.get("fake_users_file"):
        users_file = _read_toml(Path(data["fake_users_file"]), "FAKE_USERS_FILE")
        try:
            users = FakeUsersFileSchema().load(users_file)["users"]
        except ValidationError as e:
            raise SettingsError(
                f"FAKE_USERS_FILE={data['fake_users_file']!r}: {first_error(e.messages_dict)}"
            ) from None
    for key in _STRING_TUPLES & data.keys():
        data[key] = tuple(str(v) for v in data[key])
    data["resources"] = tuple(data.get("resources", ()))
    for resource in data["resources"]:
        secret = resource.lab.webhook_secret_env if resource.lab else ""
        if secret and not env.get(secret):
            raise SettingsError(
                f"resource {resource.id!r}: its webhook secret variable {secret} is not set"
            )
    if problem := mail_problem(data, env):
        raise SettingsError(problem)
    settings = Settings(**data, fake_users=tuple(FakeUser(**u) for u in users))
    if settings.database_url and importlib.util.find_spec("asyncpg") is None:
        raise SettingsError("DATABASE_URL needs the postgres extra: pip install 'rero[postgres]'")
    if settings.auth_backend == "fake" and not settings.fake_users:
        raise SettingsError("AUTH_BACKEND='fake' needs users: set fake_users or FAKE_USERS_FILE")
    if (
        settings.auth_backend == "fake"
        and not is_loopback(settings.host)
        and not settings.allow_fake_auth_on_network
    ):
        backend = _describe("auth_backend", {"auth_backend": "fake"}, sources)
        host = _describe("host", {"host": settings.host}, sources)
        raise SettingsError(
            f"{backend} with {host} would let anyone on the network sign in as a fake user:"
            " listen on a loopback address (HOST=127.0.0.1)"
            " or set allow_fake_auth_on_network = true in the profile"
        )
    return settings
