"""Sessions end everywhere: a revoked or expired session stops its sockets at once, on
every process sharing the store (finding 2 of the security review)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from rero.app import create_app
from rero.settings import Settings
from rero.storage import Storage
from rero.storage.postgres import open_postgres
from rero.storage.sqlite import open_sqlite
from tests.helpers import (
    ALICE,
    BOB,
    NO_LIMITS,
    UPGRADE,
    ClientFactory,
    Clock,
    bearer,
    connect,
    eventually,
    login,
    receive,
)

INVALID_SESSION = {"detail": "Invalid or expired session"}
SESSION_ENDED = {"type": "session_ended"}


async def signed_in(client: Any, **auth: str) -> aiohttp.ClientWebSocketResponse:
    """A socket signed in with a token (or a password): the auth_response consumed."""
    ws = await connect(client)
    await ws.send_json({"type": "authenticate", **auth})
    reply = await receive(ws)
    assert (reply["type"], reply["success"]) == ("auth_response", True), reply
    return ws


async def ended(ws: aiohttp.ClientWebSocketResponse, timeout: float = 1.0) -> None:
    """``session_ended``, then a close with 1008, within ``timeout`` (boards may come first)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type == WSMsgType.TEXT and '"slots_update"' in msg.data:
            continue
        assert (msg.type, msg.json() if msg.type == WSMsgType.TEXT else None) == (
            WSMsgType.TEXT,
            SESSION_ENDED,
        )
        break
    msg = await ws.receive(timeout=timeout)
    assert (msg.type, msg.data, msg.extra) == (
        WSMsgType.CLOSE,
        WSCloseCode.POLICY_VIOLATION,
        "Session ended",
    )


async def book(ws: aiohttp.ClientWebSocketResponse, slot_id: int) -> dict[str, Any]:
    await ws.send_json({"type": "book_slot", "slot_id": slot_id})
    while True:
        reply = await receive(ws)
        if reply["type"] == "booking_response":
            return reply


async def test_http_logout_ends_the_sockets_of_that_session(make: Any) -> None:
    client = await make()
    token, other = await login(client), await login(client)
    ws = await signed_in(client, token=token)
    bystander = await signed_in(client, token=other)
    assert (await client.post("/auth/logout", headers=bearer(token))).status == 204
    await ended(ws)
    assert (await book(bystander, 5))["success"] is True  # another session of alice's


async def test_a_socket_checks_its_session_on_every_request(make: Any, clock: Clock) -> None:
    client = await make()
    ws = await signed_in(client, token=await login(client))
    assert (await book(ws, 5))["success"] is True
    clock.advance(minutes=31)  # past session_minutes: expired, not revoked
    assert await book(ws, 6) == {
        "type": "booking_response",
        "slot_id": 6,
        "success": False,
        "message": "Invalid or expired session",
    }
    await ws.send_json({"type": "cancel_slot", "slot_id": 5})
    reply = await receive(ws)
    assert (reply["type"], reply["success"]) == ("cancellation_response", False)
    assert reply["message"] == "Invalid or expired session"


async def test_websocket_logout_revokes_the_token_it_used(make: Any) -> None:
    client = await make()
    token = await login(client)
    ws = await signed_in(client, token=token)
    twin = await signed_in(client, token=token)  # another tab with the same token
    await ws.send_json({"type": "logout"})
    assert await receive(ws) == {"type": "logout_response", "success": True}
    resp = await client.post("/my-bookings", headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    await ended(twin)
    await ws.send_json({"type": "get_slots"})  # the one that logged out keeps the board
    assert (await receive(ws))["type"] == "slots_update"
    await ws.send_json({"type": "book_slot", "slot_id": 5})
    reply = await receive(ws)
    assert reply["type"] == "error"  # signed out: credentials needed again


async def test_a_password_signed_socket_acts_under_the_session_it_opened(make: Any) -> None:
    client = await make()
    ws = await signed_in(client, **ALICE)
    resp = await client.post("/auth/logout-all", json=ALICE)
    assert (resp.status, await resp.json()) == (200, {"success": True, "sessions_ended": 1})
    await ended(ws)


async def test_logout_all_ends_every_session_of_the_caller_only(make: Any) -> None:
    client = await make()
    stolen, mine = await login(client), await login(client)
    bobs = await login(client, BOB)
    thief = await signed_in(client, token=stolen)
    tab = await signed_in(client, token=mine)
    bob = await signed_in(client, token=bobs)
    resp = await client.post("/auth/logout-all", headers=bearer(mine))
    assert resp.headers["Cache-Control"] == "no-store"
    assert (resp.status, await resp.json()) == (200, {"success": True, "sessions_ended": 2})
    await ended(thief)
    await ended(tab)
    for token in (stolen, mine):
        resp = await client.post("/my-bookings", headers=bearer(token))
        assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    assert (await book(bob, 5))["success"] is True
    resp = await client.post("/auth/logout-all", headers=bearer(mine))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    resp = await client.post("/auth/logout-all", json={"username": "alice", "password": "x"})
    assert resp.status == 401


async def test_logout_all_without_a_caller_is_refused(make: Any) -> None:
    client = await make()
    resp = await client.post("/auth/logout-all")
    assert resp.status == 400
    resp = await client.post("/auth/logout-all", json={})
    assert resp.status == 422


# ---- across processes: two apps on one store, as two workers or two hosts ---------------


@asynccontextmanager
async def two_apps(
    aiohttp_client: ClientFactory, settings: Settings, database_url: str = ""
) -> AsyncIterator[tuple[Any, Any]]:
    shared = replace(settings, database_url=database_url)
    first = await aiohttp_client(create_app(shared))
    second = await aiohttp_client(create_app(shared))
    yield first, second


async def test_a_logout_on_one_worker_ends_sockets_on_another(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    """SQLite: the other worker learns through its change feed (data_version)."""
    async with two_apps(aiohttp_client, settings) as (first, second):
        token = await login(first)
        ws = await signed_in(second, token=token)
        assert (await first.post("/auth/logout", headers=bearer(token))).status == 204
        await ended(ws)


async def test_a_logout_on_one_host_ends_sockets_on_another(
    aiohttp_client: ClientFactory, settings: Settings, pg_url: str
) -> None:
    """PostgreSQL: the revocation's NOTIFY wakes every other host."""
    async with two_apps(aiohttp_client, settings, pg_url) as (first, second):
        token = await login(first)
        ws = await signed_in(second, token=token)
        resp = await first.post("/auth/logout-all", headers=bearer(token))
        assert (await resp.json())["sessions_ended"] == 1
        await ended(ws)


# ---- the store: the revocation log -------------------------------------------------------


async def check_revocation_log(storage: Storage) -> None:
    later = "2999-01-01T00:00:00+00:00"
    start, nothing = await storage.revocations(-1)
    assert nothing == []
    assert await storage.revocations(start) == (start, [])
    for h, srn in (("h1", "A"), ("h2", "A"), ("h3", "B")):
        await storage.create_session(h, srn, later, "2026-11-24T03:00:00+00:00", NO_LIMITS, "{}")
    assert await storage.delete_session("h3", "2026-11-24T03:00:00+00:00", "2026")
    assert not await storage.delete_session("h3", "2026-11-24T03:00:00+00:00", "2026")
    revoked = await storage.delete_sessions("A", "2026-11-24T03:01:00+00:00", "2026")
    assert sorted(revoked) == ["h1", "h2"]
    assert await storage.delete_sessions("A", "2026-11-24T03:02:00+00:00", "2026") == []
    newest, revoked = await storage.revocations(start)
    assert sorted(revoked) == ["h1", "h2", "h3"]
    assert await storage.revocations(newest) == (newest, [])
    # Entries older than the longest session are forgotten at the next revocation.
    await storage.create_session("h4", "C", later, "2026-11-24T04:00:00+00:00", NO_LIMITS, "{}")
    cutoff = "2026-11-24T03:30:00+00:00"
    assert await storage.delete_session("h4", "2026-11-24T04:00:00+00:00", cutoff)
    assert (await storage.revocations(start))[1] == ["h4"]
    assert await storage.session("h1", "2026") is None


async def test_the_revocation_log_on_sqlite(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), UPGRADE) as storage:
        await check_revocation_log(storage)


async def test_the_revocation_log_on_postgresql(pg_url: str) -> None:
    async with open_postgres(pg_url, UPGRADE) as storage:
        await check_revocation_log(storage)


# ---- sessions a worker remembers -----------------------------------------------------------


async def test_a_remembered_session_still_ends_at_once(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock
) -> None:
    """A worker remembers the sessions it read (a rush reads each token once), yet a
    logout on another worker ends it there within the change feed's poll, and an expired
    session ends on time."""
    apps = [create_app(settings, clock=clock, timer=clock.timer) for _ in range(2)]
    one, other = [await aiohttp_client(app) for app in apps]
    token = await login(one)
    assert (await other.post("/my-bookings", headers=bearer(token))).status == 200  # read
    assert (await one.post("/auth/logout", headers=bearer(token))).status == 204

    async def refused() -> bool:
        return (await other.post("/my-bookings", headers=bearer(token))).status == 401

    await eventually(refused, 2, what="the other worker to learn of the logout")
    token = await login(one)
    assert (await one.post("/my-bookings", headers=bearer(token))).status == 200  # read
    clock.advance(minutes=30)  # session_minutes: expired, though remembered
    resp = await one.post("/my-bookings", headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
