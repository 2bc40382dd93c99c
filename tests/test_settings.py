"""Settings: profiles, environment overrides, and one clear line for a bad value."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest

from rero.settings import (
    DEFAULT_PESU_AUTH_URL,
    ENV_OVERRIDES,
    FakeUser,
    Settings,
    SettingsError,
    load_settings,
)
from tests.helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG = ROOT / "config"
DEFAULT_TOML = CONFIG / "default.toml"
#: The declaration: every setting's default, and the environment variable of those that have one.
#: Every setting's default; one whose default is None (unset) is named in a comment only.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not None}
UNSET = [f.name for f in dataclasses.fields(Settings) if f.default is None]
ENV_SETTINGS = {
    f.metadata["env"]: f.name for f in dataclasses.fields(Settings) if f.metadata["env"]
}


def test_default_profile_is_the_builtin_defaults() -> None:
    assert load_settings(str(CONFIG / "default.toml"), environ={}) == Settings()
    assert load_settings(environ={}) == Settings()
    defaults = Settings()
    assert (defaults.host, defaults.port, defaults.database_path) == (
        "0.0.0.0",
        8000,
        "data/rero.db",
    )
    assert (defaults.auth_backend, defaults.cache_duration_minutes) == ("pesu", 30.0)
    assert defaults.pesu_auth_url == DEFAULT_PESU_AUTH_URL
    assert defaults.cors_origins == ("*",)


def test_development_profile_has_demo_users() -> None:
    settings = load_settings(str(CONFIG / "development.toml"), environ={})
    assert settings.auth_backend == "fake"
    assert len(settings.fake_users) >= 3


def test_production_profile_loads() -> None:
    assert load_settings(str(CONFIG / "production.toml"), environ={}).auth_backend == "pesu"


def test_rero_config_env_selects_profile() -> None:
    settings = load_settings(environ={"RERO_CONFIG": str(CONFIG / "development.toml")})
    assert settings.auth_backend == "fake"


def test_environment_overrides_profile(tmp_path: Path) -> None:
    env = {
        "HOST": "127.0.0.2",
        "PORT": "9001",
        "LOG_LEVEL": "WARNING",
        "DATABASE_PATH": "x/y.db",
        "PESU_AUTH_URL": "http://127.0.0.1:1/auth",
        "CACHE_DURATION_MINUTES": "5",
        "AUTH_BACKEND": "pesu",
        "PESU_AUTH_TIMEOUT_SECONDS": "2.5",
    }
    s = load_settings(str(CONFIG / "development.toml"), environ=env)
    assert (s.host, s.port, s.log_level, s.database_path) == (
        "127.0.0.2",
        9001,
        "warning",
        "x/y.db",
    )
    assert (s.pesu_auth_url, s.cache_duration_minutes, s.auth_backend) == (
        "http://127.0.0.1:1/auth",
        5.0,
        "pesu",
    )
    assert s.pesu_auth_timeout_seconds == 2.5


def test_fake_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text('[[users]]\nusername = "dev"\npassword = "pw"\nname = "Dev"\nsrn = "PES1"\n')
    env = {"AUTH_BACKEND": "fake", "FAKE_USERS_FILE": str(users), "HOST": "127.0.0.1"}
    s = load_settings(environ=env)
    assert s.fake_users == (FakeUser("dev", "pw", "Dev", "PES1"),)


def _users_file(tmp_path: Path) -> str:
    users = tmp_path / "users.toml"
    users.write_text('[[users]]\nusername = "dev"\npassword = "pw"\nname = "Dev"\nsrn = "PES1"\n')
    return str(users)


NETWORK_REFUSAL = (
    " would let anyone on the network sign in as a fake user: listen on a loopback address"
    " (HOST=127.0.0.1) or set allow_fake_auth_on_network = true in the profile"
)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "lab-server.example"])
def test_fake_auth_refuses_a_network_address(host: str, tmp_path: Path) -> None:
    env = {"AUTH_BACKEND": "fake", "FAKE_USERS_FILE": _users_file(tmp_path), "HOST": host}
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    assert str(info.value) == (
        f"AUTH_BACKEND='fake' (from environment AUTH_BACKEND) with HOST={host!r}"
        f" (from environment HOST){NETWORK_REFUSAL}"
    )


def test_fake_auth_on_the_default_host_names_where_each_value_came_from(tmp_path: Path) -> None:
    profile = tmp_path / "fake.toml"
    profile.write_text(f'auth_backend = "fake"\nfake_users_file = {_users_file(tmp_path)!r}\n')
    with pytest.raises(SettingsError) as info:
        load_settings(str(profile), environ={})
    assert str(info.value) == f"auth_backend='fake' (from {profile}) with host='0.0.0.0'" + (
        NETWORK_REFUSAL
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_fake_auth_listens_on_loopback(host: str, tmp_path: Path) -> None:
    env = {"AUTH_BACKEND": "fake", "FAKE_USERS_FILE": _users_file(tmp_path), "HOST": host}
    assert load_settings(environ=env).host == host


def test_fake_auth_on_the_network_only_by_a_profile_key(tmp_path: Path) -> None:
    env = {"AUTH_BACKEND": "fake", "FAKE_USERS_FILE": _users_file(tmp_path), "HOST": "0.0.0.0"}
    # No environment variable turns it on: a profile has to say so.
    with pytest.raises(SettingsError, match="allow_fake_auth_on_network"):
        load_settings(environ={**env, "ALLOW_FAKE_AUTH_ON_NETWORK": "true"})
    profile = tmp_path / "lan-demo.toml"
    profile.write_text("allow_fake_auth_on_network = true\n")
    settings = load_settings(str(profile), environ=env)
    assert (settings.auth_backend, settings.host) == ("fake", "0.0.0.0")
    assert settings.allow_fake_auth_on_network is True
    assert "allow_fake_auth_on_network" not in ENV_SETTINGS.values()


def test_pesu_auth_may_listen_anywhere() -> None:
    assert load_settings(environ={"HOST": "0.0.0.0"}).auth_backend == "pesu"


def test_database_url_without_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As after `pip install rero` without the postgres extra.
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"DATABASE_URL": "postgresql://rero:Sekr1t@db.example/rero"})
    assert str(info.value) == (
        "DATABASE_URL needs the postgres extra: pip install 'rero[postgres]'"
    )
    assert load_settings(environ={}).database_url == ""  # SQLite needs no extra


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"PORT": "abc"},
            "invalid setting PORT='abc' (from environment PORT): Not a valid integer.",
        ),
        ({"PORT": "70000"}, "PORT='70000'"),
        (
            {"AUTH_BACKEND": "ldap"},
            "AUTH_BACKEND='ldap' (from environment AUTH_BACKEND): Must be one of",
        ),
        ({"CACHE_DURATION_MINUTES": "-1"}, "CACHE_DURATION_MINUTES='-1'"),
        ({"PESU_AUTH_TIMEOUT_SECONDS": "0"}, "PESU_AUTH_TIMEOUT_SECONDS='0'"),
        ({"PESU_AUTH_URL": "not a url"}, "PESU_AUTH_URL='not a url'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        (
            {"DATABASE_URL": "mysql://x"},
            "DATABASE_URL='mysql://x' (from environment DATABASE_URL): Must be",
        ),
        ({"WORKERS": "0"}, "WORKERS='0'"),
        (
            {"FAKE_USERS_FILE": "/nonexistent/users.toml"},
            "FAKE_USERS_FILE='/nonexistent/users.toml': cannot read",
        ),
        ({"AUTH_BACKEND": "fake"}, "AUTH_BACKEND='fake' needs users"),
        ({"RERO_CONFIG": "/nonexistent.toml"}, "config='/nonexistent.toml': cannot read"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_profile_typo_and_hours(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("prot = 8000\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(str(typo), environ={})
    hours = tmp_path / "hours.toml"
    hours.write_text("first_hour = 10\nlast_hour = 9\n")
    with pytest.raises(SettingsError, match=r"last_hour=9 .*must be after first_hour"):
        load_settings(str(hours), environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(str(broken), environ={})


def test_cli_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "abc"}
    env.pop("RERO_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "rero"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rero: invalid setting PORT='abc' (from environment PORT): Not a valid integer."
    ]
    assert "Traceback" not in proc.stderr


def _default_toml() -> dict[str, Any]:
    with DEFAULT_TOML.open("rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("key", DEFAULTS)
def test_default_toml_writes_out_each_default(key: str) -> None:
    written = _default_toml()
    assert key in written, f"config/default.toml lacks {key} = {DEFAULTS[key]!r}"
    # TOML has arrays where Settings has tuples; otherwise the types must match too (10 != 10.0).
    value = tuple(written[key]) if isinstance(written[key], list) else written[key]
    assert (type(value), value) == (type(DEFAULTS[key]), DEFAULTS[key]), key


def test_default_toml_has_no_other_keys() -> None:
    assert sorted(_default_toml().keys() - DEFAULTS.keys()) == []
    text = DEFAULT_TOML.read_text()
    assert [k for k in UNSET if not re.search(rf"^# {k} ", text, re.MULTILINE)] == []


def test_default_toml_header_lists_every_environment_variable() -> None:
    lines = DEFAULT_TOML.read_text().splitlines()
    header = " ".join(takewhile(lambda line: line.startswith("#"), lines))
    assert tuple(ENV_SETTINGS) == ENV_OVERRIDES
    assert [n for n in ENV_OVERRIDES if not re.search(rf"\b{n}\b", header)] == []
    # A name that looks like a variable but is no longer declared is stale.
    assert sorted(set(re.findall(r"\b[A-Z]+(?:_[A-Z]+)+\b", header)) - set(ENV_OVERRIDES)) == []


#: A valid, non-default value for each environment variable, and what it becomes.
ENV_SAMPLES: dict[str, tuple[str, object]] = {
    "HOST": ("127.0.0.2", "127.0.0.2"),
    "PORT": ("9001", 9001),
    "LOG_LEVEL": ("WARNING", "warning"),
    "DATABASE_PATH": ("x/y.db", "x/y.db"),
    "AUTH_BACKEND": ("fake", "fake"),
    "PESU_AUTH_URL": ("http://127.0.0.1:1/auth", "http://127.0.0.1:1/auth"),
    "PESU_AUTH_TIMEOUT_SECONDS": ("2.5", 2.5),
    "CACHE_DURATION_MINUTES": ("0", 0.0),
    "FAKE_USERS_FILE": ("users.toml", "users.toml"),
    "SESSION_MINUTES": ("45", 45.0),
    "PUBLIC_URL": ("https://rero.example.edu", "https://rero.example.edu"),
    "WORKERS": ("4", 4),
    "DATABASE_URL": ("postgresql://db/rero", "postgresql://db/rero"),
}


@pytest.mark.parametrize(("name", "key"), ENV_SETTINGS.items())
def test_each_environment_variable_overrides_the_profile(
    name: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert name in ENV_SAMPLES, f"add a sample value for {name} to ENV_SAMPLES"
    raw, expected = ENV_SAMPLES[name]
    assert expected != DEFAULTS[key]
    monkeypatch.chdir(tmp_path)
    user = '{username = "dev", password = "pw", name = "Dev", srn = "PES1"}'
    Path("users.toml").write_text(f"users = [{user}]\n")
    # default.toml sets every key, so the variable has a profile value to beat; the inline
    # user lets AUTH_BACKEND=fake load.
    # allow_fake_auth_on_network: default.toml's host is the default, 0.0.0.0.
    profile = (
        DEFAULT_TOML.read_text()
        .replace("fake_users = []", f"fake_users = [{user}]")
        .replace("allow_fake_auth_on_network = false", "allow_fake_auth_on_network = true")
    )
    assert profile != DEFAULT_TOML.read_text()
    Path("profile.toml").write_text(profile)
    got = getattr(load_settings("profile.toml", environ={name: raw}), key)
    assert (type(got), got) == (type(expected), expected)
    assert getattr(load_settings("profile.toml", environ={}), key) == DEFAULTS[key]


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("", ""),
        ("postgresql://db.example/rero", "postgresql://db.example/rero"),
        ("postgresql://rero@db.example/rero", "postgresql://rero@db.example/rero"),
        ("postgresql://rero:pw@db.example/rero", "postgresql://rero:***@db.example/rero"),
        ("postgresql://:pw@db.example/rero", "postgresql://:***@db.example/rero"),
        ("postgresql://rero:p%40ss@db.example:5/x", "postgresql://rero:***@db.example:5/x"),
        ("postgresql://rero:pw@[::1/rero", "***"),  # unparsable: nothing of it
    ],
)
def test_mask_url(url: str, printed: str) -> None:
    from rero.setting_checks import mask_url

    assert mask_url(url) == printed


def readme_settings() -> dict[str, tuple[str, str]]:
    """The README's settings table: setting -> (environment variable, default), as written."""
    rows: dict[str, tuple[str, str]] = {}
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| setting | environment | default | meaning |")
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        setting, env, default, _ = (c.strip() for c in line.strip("|").split("|", 3))
        rows[setting.strip("`")] = (env.strip("`"), default)
    return rows


def as_written(value: object) -> str:
    """A default as the README writes it."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, tuple):
        return "`" + json.dumps(list(value)) + "`"
    return f"`{value}`" if value != "" else ""


def test_the_readme_lists_every_setting_with_its_variable_and_default() -> None:
    table = readme_settings()
    assert list(table) == [f.name for f in dataclasses.fields(Settings)]
    for f in dataclasses.fields(Settings):
        assert table[f.name] == (f.metadata["env"] or "", as_written(f.default)), f.name
