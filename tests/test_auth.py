"""Auth backends and the cache: PESU against a local fake upstream, the fake backend."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from rero.app import create_app
from rero.auth import User
from rero.auth.cache import CachedAuth
from rero.auth.fake import FakeAuth
from rero.auth.pesu import PesuAuth
from rero.errors import AuthUnavailable, InvalidCredentials
from rero.settings import FakeUser
from tests.helpers import FakePesu, bystander, eventually, free_port, users

#: Modes of the fake PESU that say yes but name no SRN.
SRNLESS = ["no-srn", "null-srn", "empty-srn", "blank-srn"]


def pesu_auth(session: aiohttp.ClientSession, url: str, timeout: float = 2.0) -> PesuAuth:
    return PesuAuth(session, url, timeout)


async def test_pesu_success_maps_profile(session: Any, pesu: FakePesu) -> None:
    user = await pesu_auth(session, pesu.url).authenticate("student", "right")
    assert user == User(
        name="Pesu Student",
        srn="PES1UG22CS007",
        prn="PES12022000099",
        program="Bachelor of Technology",
        branch="Computer Science and Engineering",
        campus="RR",
    )
    assert pesu.calls == [{"username": "student", "password": "right", "profile": True}]


@pytest.mark.parametrize(("mode", "password"), [("ok", "wrong"), ("legacy-false", "right")])
async def test_pesu_invalid(session: Any, pesu: FakePesu, mode: str, password: str) -> None:
    pesu.mode = mode
    with pytest.raises(InvalidCredentials):
        await pesu_auth(session, pesu.url).authenticate("student", password)


async def test_pesu_400_is_invalid(session: Any, pesu: FakePesu) -> None:
    pesu.mode = "400"
    with pytest.raises(InvalidCredentials):
        await pesu_auth(session, pesu.url).authenticate("student", "right")


@pytest.mark.parametrize(
    "mode",
    ["500", "502", "429", "404", "html", "no-profile", "deep", *SRNLESS],
)
async def test_pesu_unavailable(session: Any, pesu: FakePesu, mode: str) -> None:
    pesu.mode = mode
    with pytest.raises(AuthUnavailable):
        await pesu_auth(session, pesu.url).authenticate("student", "right")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_pesu_redirect_is_not_followed(
    session: Any, pesu: FakePesu, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """A 307 would re-post the credentials wherever ``Location`` points: nothing goes there."""
    async with bystander() as elsewhere:
        pesu.mode, pesu.location = str(status), elsewhere.url
        with pytest.raises(AuthUnavailable):
            await pesu_auth(session, pesu.url).authenticate("student", "Wr0ng-Secret-7")
        assert (elsewhere.connections, bytes(elsewhere.received)) == (0, b"")
    assert len(pesu.calls) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "rero.auth.pesu"] == [
        f"PESU auth upstream answered HTTP {status}"
    ]
    assert "Wr0ng-Secret-7" not in caplog.text


async def test_login_through_a_redirecting_upstream_is_503(
    aiohttp_client: Any, settings: Any, pesu: FakePesu
) -> None:
    async with bystander() as elsewhere:
        pesu.mode, pesu.location = "307", elsewhere.url
        client = await aiohttp_client(
            create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
        )
        resp = await client.post("/auth/login", json={"username": "student", "password": "right"})
        assert (resp.status, await resp.json()) == (
            503,
            {"detail": "Authentication service unavailable"},
        )
        assert resp.headers["Retry-After"] == "10"
        assert elsewhere.connections == 0


@pytest.mark.parametrize("mode", SRNLESS)
async def test_login_without_an_srn_is_503_and_not_cached(
    aiohttp_client: Any, settings: Any, pesu: FakePesu, mode: str
) -> None:
    """Every SRN-less student would be one user, holding one another's bookings."""
    pesu.mode = mode
    client = await aiohttp_client(
        create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
    )
    for _ in range(2):
        resp = await client.post("/auth/login", json={"username": "student", "password": "right"})
        assert (resp.status, await resp.json()) == (
            503,
            {"detail": "Authentication service unavailable"},
        )
    assert len(pesu.calls) == 2  # nothing cached: the second login asked again


async def test_pesu_timeout(session: Any, pesu: FakePesu) -> None:
    pesu.delay = 1.0
    with pytest.raises(AuthUnavailable):
        await pesu_auth(session, pesu.url, timeout=0.2).authenticate("student", "right")


async def test_pesu_connection_refused(session: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/authenticate"
    with pytest.raises(AuthUnavailable):
        await pesu_auth(session, url).authenticate("student", "right")


async def test_pesu_connection_dropped(session: Any) -> None:
    """A server that accepts and closes without answering."""

    async def slam(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(AuthUnavailable):
            await pesu_auth(session, f"http://127.0.0.1:{port}/a").authenticate("s", "right")


# ---- the cache ----------------------------------------------------------------------------


async def test_cache_hits_and_expiry(session: Any, pesu: FakePesu) -> None:
    now = [0.0]
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800, timer=lambda: now[0])
    first = await cache.authenticate("student", "right")
    assert await cache.authenticate("student", "right") == first
    assert len(pesu.calls) == 1
    now[0] = 1799.0
    await cache.authenticate("student", "right")
    assert len(pesu.calls) == 1
    now[0] = 1801.0
    await cache.authenticate("student", "right")
    assert len(pesu.calls) == 2
    assert (cache.hits, cache.misses) == (2, 2)


async def test_cache_keys_by_password_too(session: Any, pesu: FakePesu) -> None:
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    await cache.authenticate("student", "right")
    with pytest.raises(InvalidCredentials):
        await cache.authenticate("student", "wrong")
    assert len(pesu.calls) == 2


async def test_cache_keys_every_spelling_of_a_username_alike(session: Any, pesu: FakePesu) -> None:
    """Trimmed and case-folded: `Carol` and ` carol` hit the entry of `carol`, and the
    upstream is asked for the username as normalized."""
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    first = await cache.authenticate("carol", "right")
    for spelling in ("Carol", " carol", "carol ", "carol\t", "CAROL"):
        assert await cache.authenticate(spelling, "right") == first
    assert (cache.hits, cache.misses) == (5, 1)
    assert pesu.calls == [{"username": "carol", "password": "right", "profile": True}]
    await cache.authenticate(" Dave ", "right")
    assert pesu.calls[-1]["username"] == "dave"


@pytest.mark.parametrize("mode", ["ok", "500"])
async def test_failures_are_not_cached(session: Any, pesu: FakePesu, mode: str) -> None:
    pesu.mode = mode
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    for _ in range(3):
        with pytest.raises((InvalidCredentials, AuthUnavailable)):
            await cache.authenticate("student", "wrong")
    assert len(pesu.calls) == 3


async def test_concurrent_misses_make_one_upstream_call(session: Any, pesu: FakePesu) -> None:
    pesu.delay = 0.2
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    results = await asyncio.gather(*(cache.authenticate("student", "right") for _ in range(50)))
    assert len(pesu.calls) == 1
    assert len(set(results)) == 1


async def test_concurrent_failures_make_one_call_and_all_fail(session: Any, pesu: FakePesu) -> None:
    pesu.delay = 0.2
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    results = await asyncio.gather(
        *(cache.authenticate("student", "wrong") for _ in range(50)), return_exceptions=True
    )
    assert len(pesu.calls) == 1
    assert all(isinstance(r, InvalidCredentials) for r in results)


async def test_a_cancelled_waiter_does_not_cancel_the_others(session: Any, pesu: FakePesu) -> None:
    pesu.delay = 0.3
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    first = asyncio.create_task(cache.authenticate("student", "right"))
    second = asyncio.create_task(cache.authenticate("student", "right"))
    await eventually(lambda: pesu.calls, 2, what="the shared upstream call under way")
    first.cancel()
    assert (await second).srn == "PES1UG22CS007"
    assert len(pesu.calls) == 1


async def test_cache_holds_no_password(session: Any, pesu: FakePesu) -> None:
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=1800)
    await cache.authenticate("student", "right")
    assert cache._cache is not None
    for key in cache._cache:
        assert b"right" not in key
        assert len(key) == 32


async def test_zero_ttl_disables_caching(session: Any, pesu: FakePesu) -> None:
    cache = CachedAuth(pesu_auth(session, pesu.url), ttl=0)
    await cache.authenticate("student", "right")
    await cache.authenticate("student", "right")
    assert len(pesu.calls) == 2


# ---- fake backend -------------------------------------------------------------------------


async def test_fake_backend(caplog: pytest.LogCaptureFixture) -> None:
    auth = FakeAuth(users(2))
    assert "FAKE" in caplog.text
    assert (await auth.authenticate("user1", "pw-1")).srn == "SRN0001"
    for username, password in [("user1", "pw-0"), ("nobody", "pw-1"), ("user1", "")]:
        with pytest.raises(InvalidCredentials):
            await auth.authenticate(username, password)


async def test_login_rush_makes_one_upstream_call_per_user(
    aiohttp_client: Any, settings: Any, pesu: FakePesu
) -> None:
    """1,000 logins from 100 students against a 300 ms upstream: exactly 100 calls."""
    pesu.delay = 0.3
    # The fake upstream gives these 100 usernames two SRNs: no per-student login limit here.
    unlimited = replace(settings, max_logins_per_user_per_minute=0, max_sessions_per_user=0)
    client = await aiohttp_client(
        create_app(replace(unlimited, auth_backend="pesu", pesu_auth_url=pesu.url))
    )
    bodies = [{"username": f"student{i % 100}", "password": "right"} for i in range(1000)]
    resps = await asyncio.gather(*(client.post("/auth/login", json=b) for b in bodies))
    assert {r.status for r in resps} == {200}
    assert len(pesu.calls) == 100


async def test_fake_users_sign_in_under_any_spelling() -> None:
    """The cache hands the fake backend the normalized name: a configured ``Alice`` too."""
    fake = CachedAuth(FakeAuth([FakeUser("Alice", "pw", "Alice Rao", "SRN1")]), 60)
    assert (await fake.authenticate("alice", "pw")).srn == "SRN1"
    assert (await fake.authenticate(" ALICE ", "pw")).srn == "SRN1"
    with pytest.raises(InvalidCredentials):
        await fake.authenticate("alice", "PW")
