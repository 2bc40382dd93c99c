"""The login throttle: one counter for every spelling of a username, failures counted per
(username, address), the per-address limit, and the per-username ceiling's back-off."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rero.app import create_app
from rero.settings import Settings, load_settings
from tests.helpers import ALICE, BOB, ROOT, ClientFactory, Clock, FakePesu

SPELLINGS = ("alice", "Alice", " alice", "alice ", "alice\t", "ALICE")
RIGHT = ALICE["password"]
#: The test client's peer is loopback; trusting it lets each request name its address.
PROXIED = {"trusted_proxies": ("127.0.0.1",)}
OWNER = "192.0.2.1"


async def attempt(client: Any, username: str, password: str, address: str = "") -> Any:
    headers = {"X-Forwarded-For": address} if address else {}
    body = {"username": username, "password": password}
    return await client.post("/auth/login", json=body, headers=headers)


async def assert_throttled(resp: Any, seconds: int) -> None:
    assert resp.status == 429
    detail = f"Too many failed attempts, try again in {seconds} seconds"
    assert await resp.json() == {"detail": detail}
    assert resp.headers["Retry-After"] == str(seconds)


# ---- one username, however it is typed --------------------------------------------------------


async def test_every_spelling_of_a_username_shares_one_counter(make: Any) -> None:
    client = await make()
    for spelling in SPELLINGS[:5]:
        assert (await attempt(client, spelling, "wrong")).status == 401
    for spelling in SPELLINGS:
        await assert_throttled(await attempt(client, spelling, RIGHT), 900)


async def test_every_spelling_signs_in_through_one_cache_entry(make: Any, pesu: FakePesu) -> None:
    """The upstream is asked once, for the normalized username; the cached answer serves
    every other spelling (PESU usernames are case-insensitive)."""
    client = await make(auth_backend="pesu", pesu_auth_url=pesu.url)
    users = []
    for spelling in ("student", "Student", " student", "STUDENT\t"):
        resp = await attempt(client, spelling, "right")
        assert resp.status == 200
        users.append((await resp.json())["user"])
    assert users == [users[0]] * 4
    assert pesu.calls == [{"username": "student", "password": "right", "profile": True}]


async def test_a_success_under_any_spelling_forgives_the_others(make: Any) -> None:
    client = await make()
    for spelling in SPELLINGS[:4]:
        assert (await attempt(client, spelling, "wrong")).status == 401
    assert (await attempt(client, " Alice ", RIGHT)).status == 200
    for spelling in SPELLINGS[:4]:
        assert (await attempt(client, spelling, "wrong")).status == 401
    assert (await attempt(client, "alice", RIGHT)).status == 200


# ---- per (username, address), per address ------------------------------------------------------


async def test_guessing_from_elsewhere_does_not_lock_the_owner_out(make: Any) -> None:
    client = await make(**PROXIED)
    for _ in range(5):
        assert (await attempt(client, "alice", "wrong", "203.0.113.9")).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, "203.0.113.9"), 900)
    assert (await attempt(client, "alice", RIGHT, OWNER)).status == 200
    # The owner's own mistakes still lock their own address.
    for _ in range(5):
        assert (await attempt(client, "alice", "wrong", OWNER)).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), 900)


async def test_twenty_failures_from_one_address_still_lock_it(make: Any) -> None:
    client = await make(**PROXIED)
    for i in range(4):
        for _ in range(5):
            assert (await attempt(client, f"student{i}", "wrong", "203.0.113.9")).status == 401
    await assert_throttled(await attempt(client, "bob", BOB["password"], "203.0.113.9"), 900)
    assert (await attempt(client, "bob", BOB["password"], OWNER)).status == 200


# ---- per username, across every address --------------------------------------------------------


async def test_the_ceiling_across_addresses_backs_off_instead_of_walling_off(
    make: Any, clock: Clock
) -> None:
    """50 failures from ten addresses, none over its own limits: the owner waits 1 s, and
    an attacker who goes on waits longer and longer, never the owner more than 60 s."""
    client = await make(**PROXIED)
    for i in range(10):
        for _ in range(5):
            assert (await attempt(client, "alice", "wrong", f"198.51.100.{i}")).status == 401
    waits = []
    for i in range(10, 19):
        resp = await attempt(client, "Alice", RIGHT, OWNER)
        waits.append(int(resp.headers["Retry-After"]))
        await assert_throttled(resp, waits[-1])
        assert (await attempt(client, "bob", BOB["password"], OWNER)).status == 200
        clock.advance(seconds=waits[-1])
        assert (await attempt(client, "alice", "wrong", f"198.51.100.{i}")).status == 401
    assert waits == [1, 1, 2, 4, 8, 16, 32, 60, 60]
    clock.advance(seconds=59)
    await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), 1)
    clock.advance(seconds=1)
    assert (await attempt(client, "alice", RIGHT, OWNER)).status == 200
    # The owner's success does not hand the guessers a fresh allowance...
    assert (await attempt(client, "alice", "wrong", "198.51.100.19")).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), 60)
    # ... but once the failures leave the window, the ceiling is far again.
    clock.advance(minutes=15)
    assert (await attempt(client, "alice", RIGHT, OWNER)).status == 200


async def test_the_ceiling_is_a_setting(make: Any) -> None:
    client = await make(max_failed_logins_per_user_across_addresses=3, **PROXIED)
    for i in range(2):
        assert (await attempt(client, "alice", "wrong", f"198.51.100.{i}")).status == 401
    assert (await attempt(client, "alice", RIGHT, OWNER)).status == 200
    assert (await attempt(client, "alice", "wrong", "198.51.100.2")).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), 1)


# ---- PostgreSQL ----------------------------------------------------------------------------------


async def test_the_throttle_on_postgresql(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock, pg_url: str
) -> None:
    """Spellings, pairs and the ceiling's back-off, with the failures in PostgreSQL."""
    pytest.importorskip("asyncpg")
    changes = {"database_url": pg_url, "max_failed_logins_per_user_across_addresses": 6}
    app = create_app(replace(settings, **changes, **PROXIED), clock=clock, timer=clock.timer)
    client = await aiohttp_client(app)
    for spelling in SPELLINGS[:5]:
        assert (await attempt(client, spelling, "wrong", "203.0.113.9")).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, "203.0.113.9"), 900)
    assert (await attempt(client, " ALICE", RIGHT, OWNER)).status == 200
    assert (await attempt(client, "alice", "wrong", "203.0.113.10")).status == 401  # the 6th
    for wait in (1, 1, 2):
        await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), wait)
        clock.advance(seconds=wait)
        assert (await attempt(client, "alice", "wrong", "203.0.113.10")).status == 401
    await assert_throttled(await attempt(client, "alice", RIGHT, OWNER), 4)


# ---- what a guesser can learn -------------------------------------------------------------------


def test_production_does_not_publish_usernames() -> None:
    """SRNs are usernames: a public board that shows them hands out whom to guess at."""
    production = load_settings(str(ROOT / "config" / "production.toml"), environ={})
    assert production.show_booked_by is False
    assert production.max_failed_logins_per_user_across_addresses == 50
