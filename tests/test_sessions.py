"""Sessions and safeguards: tokens, throttling, quotas, expiry, admins, audit, headers."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from rero.keys import CALENDAR, STORAGE
from rero.settings import Settings
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    BOB,
    BOB_SRN,
    Clock,
    FakePesu,
    bearer,
    collect,
    connect,
    login,
    receive,
    users,
)

INVALID_SESSION = {"detail": "Invalid or expired session"}


# ---- tokens -----------------------------------------------------------------------------------


async def test_bearer_token_works_on_every_credentialed_route(client: Any) -> None:
    token = await login(client)
    resp = await client.post("/book-slot", json={"slot_id": 6}, headers=bearer(token))
    assert (resp.status, await resp.json()) == (
        200,
        {"success": True, "message": "Slot 6 booked successfully", "slot_id": 6},
    )
    resp = await client.post("/my-bookings", headers=bearer(token))
    body = await resp.json()
    assert (body["total_bookings"], body["bookings"][0]["id"]) == (1, 6)
    resp = await client.post("/cancel-slot", json={"slot_id": 6}, headers=bearer(token))
    assert resp.status == 200
    board = await (await client.get("/slots")).json()
    assert board["booked_slots"] == []


async def test_token_with_missing_slot_id_is_422(client: Any) -> None:
    token = await login(client)
    resp = await client.post("/book-slot", json={}, headers=bearer(token))
    assert resp.status == 422
    assert (await resp.json())["errors"] == {"slot_id": ["Missing data for required field."]}


async def test_only_a_hash_of_the_token_is_stored(client: Any, settings: Settings) -> None:
    token = await login(client)
    with closing(sqlite3.connect(settings.database_path)) as db:
        rows = db.execute("SELECT token_hash, srn FROM sessions").fetchall()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), ALICE_SRN)]


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer ", "Basic abc"])
async def test_bad_token(client: Any, header: str) -> None:
    resp = await client.post("/book-slot", json={"slot_id": 6}, headers={"Authorization": header})
    if header.startswith("Bearer") and header.strip() != "Bearer":
        assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    else:  # no usable bearer token: the body must carry credentials
        assert resp.status == 422


async def test_logout_revokes(client: Any) -> None:
    token = await login(client)
    resp = await client.post("/auth/logout", headers=bearer(token))
    assert resp.status == 204
    resp = await client.post("/book-slot", json={"slot_id": 6}, headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    resp = await client.post("/auth/logout", headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    resp = await client.post("/auth/logout")
    assert resp.status == 401


async def test_token_expires_with_the_clock(make: Any, clock: Clock, settings: Settings) -> None:
    client = await make(session_minutes=30)
    resp = await client.post("/auth/login", json=ALICE)
    body = await resp.json()
    assert body["expires_at"] == "2026-11-24T03:30:00+00:00"
    clock.advance(minutes=29)
    assert (await client.post("/my-bookings", headers=bearer(body["token"]))).status == 200
    clock.advance(minutes=1)
    resp = await client.post("/my-bookings", headers=bearer(body["token"]))
    assert (resp.status, await resp.json()) == (401, INVALID_SESSION)
    await login(client, BOB)  # a new login purges expired rows
    with closing(sqlite3.connect(settings.database_path)) as db:
        assert db.execute("SELECT srn FROM sessions").fetchall() == [(BOB_SRN,)]


async def test_tokens_survive_a_restart(make: Any) -> None:
    first = await make()
    token = await login(first)
    second = await make()
    resp = await second.post("/book-slot", json={"slot_id": 4}, headers=bearer(token))
    assert resp.status == 200


async def test_ws_token_authenticate_and_logout(client: Any) -> None:
    token = await login(client)
    ws = await connect(client)
    await ws.send_json({"type": "book_slot", "slot_id": 7, "token": token})
    assert (await collect(ws, "booking_response"))["booking_response"]["success"] is True

    await ws.send_json({"type": "authenticate", **BOB})
    reply = (await collect(ws, "auth_response"))["auth_response"]
    assert reply["success"] is True
    assert reply["user"]["srn"] == BOB_SRN
    assert set(reply) == {"type", "success", "user", "token", "expires_at"}
    await ws.send_json({"type": "book_slot", "slot_id": 8})
    got = (await collect(ws, "booking_response"))["booking_response"]
    assert got == {
        "type": "booking_response",
        "success": True,
        "message": "Slot 8 booked successfully",
        "slot_id": 8,
    }
    board = await (await client.get("/slots")).json()
    assert board["slots"][5]["booked_by"] == BOB_SRN

    await ws.send_json({"type": "logout"})
    assert (await collect(ws, "logout_response"))["logout_response"]["success"] is True
    await ws.send_json({"type": "cancel_slot", "slot_id": 8})
    assert await receive(ws) == {
        "type": "error",
        "message": "Missing slot_id, username, or password in cancellation request",
    }

    await ws.send_json({"type": "authenticate", "token": token})
    reply = await receive(ws)
    assert reply["success"] is True
    assert "token" not in reply
    assert reply["user"]["srn"] == ALICE_SRN

    await ws.send_json({"type": "authenticate", "token": "forged"})
    assert await receive(ws) == {
        "type": "auth_response",
        "success": False,
        "message": "Invalid or expired session",
    }
    await ws.send_json({"type": "authenticate", "username": "alice", "password": "bad"})
    assert (await receive(ws))["message"] == "Authentication failed. Invalid credentials."
    await ws.send_json({"type": "book_slot", "slot_id": 9, "token": "forged"})
    assert (await receive(ws))["message"] == "Invalid or expired session"
    await ws.send_json({"type": "authenticate"})
    assert (await receive(ws))["type"] == "error"


# ---- throttling -------------------------------------------------------------------------------


async def test_username_lockout_without_upstream_calls(
    make: Any, pesu: FakePesu, clock: Clock
) -> None:
    client = await make(auth_backend="pesu", pesu_auth_url=pesu.url)
    bad = {"username": "student", "password": "wrong"}
    for _ in range(5):
        assert (await client.post("/auth/login", json=bad)).status == 401
    calls = len(pesu.calls)
    for who in (bad, {"username": "student", "password": "right"}):
        resp = await client.post("/auth/login", json=who)
        assert resp.status == 429
        assert await resp.json() == {"detail": "Too many failed attempts, try again in 900 seconds"}
        assert resp.headers["Retry-After"] == "900"
    assert len(pesu.calls) == calls
    clock.advance(minutes=10)
    resp = await client.post("/auth/login", json=bad)
    assert (await resp.json())["detail"].endswith("in 300 seconds")
    clock.advance(minutes=5, seconds=1)
    resp = await client.post("/auth/login", json={"username": "student", "password": "right"})
    assert resp.status == 200


async def test_success_resets_the_username_count(make: Any) -> None:
    client = await make()
    bad = {"username": "alice", "password": "wrong"}
    for _ in range(4):
        await client.post("/auth/login", json=bad)
    assert (await client.post("/auth/login", json=ALICE)).status == 200
    for _ in range(4):
        assert (await client.post("/auth/login", json=bad)).status == 401
    assert (await client.post("/auth/login", json=ALICE)).status == 200


async def test_a_success_writes_only_when_there_is_something_to_forgive(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every password check succeeds this way: it must not cost a database write."""
    client = await make()
    storage = client.app[STORAGE]
    cleared: list[str] = []
    clear = storage.clear_failures

    async def counting(key: str) -> None:
        cleared.append(key)
        await clear(key)

    monkeypatch.setattr(storage, "clear_failures", counting)
    for _ in range(3):
        assert (await client.post("/my-bookings", json=ALICE)).status == 200
    assert cleared == ["pair:127.0.0.1 alice"]
    await client.post("/auth/login", json={"username": "alice", "password": "wrong"})
    assert (await client.post("/my-bookings", json=ALICE)).status == 200
    assert cleared == ["pair:127.0.0.1 alice", "pair:127.0.0.1 alice"]


async def test_address_lockout_and_trusted_proxies(make: Any) -> None:
    client = await make(fake_users=users(30))
    for i in range(20):
        resp = await client.post("/auth/login", json={"username": f"user{i}", "password": "x"})
        assert resp.status == 401
    resp = await client.post("/auth/login", json={"username": "user25", "password": "pw-25"})
    assert resp.status == 429
    # X-Forwarded-For is not believed from an untrusted peer.
    headers = {"X-Forwarded-For": "203.0.113.9"}
    resp = await client.post("/auth/login", json={"username": "user26", "password": "pw-26"},
                             headers=headers)  # fmt: skip
    assert resp.status == 429

    proxied = await make(fake_users=users(30), trusted_proxies=("127.0.0.1",))
    for i in range(20):
        await proxied.post("/auth/login", json={"username": f"user{i}", "password": "x"},
                           headers={"X-Forwarded-For": "203.0.113.9"})  # fmt: skip
    other = {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}
    ok = await proxied.post("/auth/login", json={"username": "user25", "password": "pw-25"},
                            headers=other)  # fmt: skip
    assert ok.status == 200
    same = await proxied.post("/auth/login", json={"username": "user26", "password": "pw-26"},
                              headers={"X-Forwarded-For": "203.0.113.9"})  # fmt: skip
    assert same.status == 429


async def test_ws_is_throttled_too(make: Any) -> None:
    client = await make()
    ws = await connect(client)
    for _ in range(5):
        await ws.send_json(
            {"type": "book_slot", "slot_id": 5, "username": "alice", "password": "x"}
        )
        await receive(ws)
    await ws.send_json({"type": "book_slot", "slot_id": 5, **ALICE})
    reply = await receive(ws)
    assert reply["success"] is False
    assert reply["message"].startswith("Too many failed attempts, try again in ")
    resp = await client.post("/book-slot", json={"slot_id": 5, **ALICE})
    assert resp.status == 429


# ---- fair use ---------------------------------------------------------------------------------


async def test_quota_is_enforced_and_atomic(make: Any) -> None:
    client = await make(max_bookings_per_user=2)
    token = await login(client)
    resps = await asyncio.gather(
        *(client.post("/book-slot", json={"slot_id": 3 + i}, headers=bearer(token))
          for i in range(10))
    )  # fmt: skip
    statuses = sorted(r.status for r in resps)
    assert statuses == [200, 200] + [400] * 8
    for r in resps:
        if r.status == 400:
            assert await r.json() == {"detail": "Booking limit reached: at most 2 slots per user"}
    ws = await connect(client)
    await ws.send_json({"type": "book_slot", "slot_id": 14, **ALICE})
    reply = (await collect(ws, "booking_response"))["booking_response"]
    assert reply["message"] == "Booking limit reached: at most 2 slots per user"
    # Someone else's slot is still "not available", not the quota.
    await client.post("/book-slot", json={"slot_id": 13, **BOB})
    resp = await client.post("/book-slot", json={"slot_id": 13}, headers=bearer(token))
    assert await resp.json() == {"detail": "Slot 13 is not available"}


async def test_a_booking_ends_with_its_slot(
    make: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make(release_after_slot_end=False)
    assert "release_after_slot_end is ignored" in caplog.text  # accepted, and said so
    calendar = client.server.app[CALENDAR]
    ws = await connect(client)
    await client.post("/book-slot", json={"slot_id": 9, **ALICE})  # 08:30 IST: today 09-10
    assert (await receive(ws))["data"]["booked_slots"] == [9]
    clock.advance(hours=1, minutes=29)  # 09:59 IST
    await calendar.tick()
    assert (await (await client.get("/slots")).json())["booked_slots"] == [9]
    clock.advance(minutes=1)  # 10:00 IST: the rolling board shows tomorrow's slot 9
    assert (await (await client.get("/slots")).json())["booked_slots"] == []
    await calendar.tick()
    assert (await receive(ws))["data"]["booked_slots"] == []
    # Booked after today's slot ended: it holds until tomorrow's end.
    await client.post("/book-slot", json={"slot_id": 9, **BOB})
    assert (await receive(ws))["data"]["slots"][6]["booked_by"] == BOB_SRN
    clock.advance(hours=23, minutes=59)
    await calendar.tick()
    assert (await (await client.get("/slots")).json())["booked_slots"] == [9]
    clock.advance(minutes=1)
    await calendar.tick()
    assert (await receive(ws))["data"]["booked_slots"] == []
    mine = await (await client.post("/my-bookings", json=BOB)).json()
    assert mine["bookings"] == []


async def test_hidden_booked_by(make: Any) -> None:
    client = await make(show_booked_by=False)
    ws = await connect(client)
    await client.post("/book-slot", json={"slot_id": 9, **ALICE})
    board = await (await client.get("/slots")).json()
    assert board["slots"][6]["is_booked"] is True
    assert board["slots"][6]["booked_by"] is None
    assert (await receive(ws))["data"]["slots"][6]["booked_by"] is None
    mine = await (await client.post("/my-bookings", json=ALICE)).json()
    assert [b["id"] for b in mine["bookings"]] == [9]


# ---- admins and the audit trail ---------------------------------------------------------------


async def test_admin_cancels_anyone_and_everything_is_audited(make: Any) -> None:
    client = await make(admins=(ALICE_SRN,))
    admin = await login(client)
    await client.post("/book-slot", json={"slot_id": 5, **BOB})
    await client.post("/book-slot", json={"slot_id": 6, **BOB})
    await client.post("/book-slot", json={"slot_id": 7, **ALICE})
    await client.post("/cancel-slot", json={"slot_id": 7, **ALICE})
    resp = await client.post("/cancel-slot", json={"slot_id": 5}, headers=bearer(admin))
    assert resp.status == 200
    ws = await connect(client)
    await ws.send_json({"type": "cancel_slot", "slot_id": 6, "token": admin})
    assert (await collect(ws, "cancellation_response"))["cancellation_response"]["success"]
    # Bob is no admin.
    await client.post("/book-slot", json={"slot_id": 8, **ALICE})
    resp = await client.post("/cancel-slot", json={"slot_id": 8, **BOB})
    assert (resp.status, await resp.json()) == (
        403,
        {"detail": "You can only cancel your own bookings"},
    )
    resp = await client.post("/admin/reset", json={"confirm": True}, headers=bearer(admin))
    assert (resp.status, await resp.json()) == (
        200,
        {"success": True, "message": "Released 1 bookings", "released": 1},
    )
    resp = await client.get("/admin/audit?limit=3", headers=bearer(admin))
    page = await resp.json()
    assert [(e["action"], e["slot_id"]) for e in page["events"]] == [
        ("reset", 8),
        ("booked", 8),
        ("admin_cancelled", 6),
    ]
    resp = await client.get(f"/admin/audit?before={page['next_before']}", headers=bearer(admin))
    rest = (await resp.json())["events"]
    assert [(e["action"], e["slot_id"], e["holder_srn"], e["actor_srn"]) for e in rest] == [
        ("admin_cancelled", 5, BOB_SRN, ALICE_SRN),
        ("cancelled", 7, ALICE_SRN, ALICE_SRN),
        ("booked", 7, ALICE_SRN, ALICE_SRN),
        ("booked", 6, BOB_SRN, BOB_SRN),
        ("booked", 5, BOB_SRN, BOB_SRN),
    ]
    assert all(e["at"] for e in rest)


async def test_admin_refusals(make: Any) -> None:
    client = await make(admins=(ALICE_SRN,))
    admin, user = await login(client), await login(client, BOB)
    for resp in (
        await client.post("/admin/reset", json={"confirm": True}, headers=bearer(user)),
        await client.post("/admin/reset", json={"confirm": True, **BOB}),
    ):
        assert (resp.status, await resp.json()) == (403, {"detail": "Admin access required"})
    resp = await client.get("/admin/audit", headers=bearer(user))  # assistants read it too
    assert (resp.status, await resp.json()) == (403, {"detail": "Staff access required"})
    for body in ({}, {"confirm": False}, {"confirm": "yes"}):
        resp = await client.post("/admin/reset", json=body, headers=bearer(admin))
        assert resp.status == 422
    assert (await client.get("/admin/audit")).status == 401
    resp = await client.get("/admin/audit?limit=0", headers=bearer(admin))
    assert resp.status == 422


# ---- hardening --------------------------------------------------------------------------------


async def test_security_headers(client: Any) -> None:
    for resp in (
        await client.get("/slots"),
        await client.get("/nope"),
        await client.post("/auth/login", json=ALICE),
    ):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
    login_resp = await client.post("/auth/login", json=ALICE)
    assert login_resp.headers["Cache-Control"] == "no-store"
    mine = await client.post("/my-bookings", json=ALICE)
    assert mine.headers["Cache-Control"] == "no-store"


async def test_failed_login_logs_username_and_address_never_secrets(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    token = await login(client)
    await client.post("/book-slot", json={"slot_id": 3}, headers=bearer(token))
    await client.post("/auth/logout", headers=bearer(token))
    await client.post("/auth/login", json={"username": "alice", "password": "Wr0ng-Pw-77"})
    failed = [r for r in caplog.records if r.getMessage() == "login failed"]
    assert [(r.username, r.address) for r in failed] == [("alice", "127.0.0.1")]  # type: ignore[attr-defined]
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for secret in (token, "Wr0ng-Pw-77", ALICE["password"]):
        assert secret not in text


async def test_session_minutes_from_environment() -> None:
    from rero.settings import load_settings

    assert load_settings(environ={"SESSION_MINUTES": "90"}).session_minutes == 90.0
