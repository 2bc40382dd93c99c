"""Sign-ins per student are limited, and so are live sessions (finding 11 of the
security review: 200 logins made 200 sessions, each a durable write)."""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, WSMsgType

from rero.keys import STORAGE
from rero.storage import SessionLimits, Storage
from rero.storage.postgres import open_postgres
from rero.storage.sqlite import open_sqlite
from tests.helpers import ALICE, BOB, UPGRADE, Clock, connect, receive


async def login(client: Any, who: dict[str, str] = ALICE) -> Any:
    return await client.post("/auth/login", json=who)


async def test_sign_ins_per_minute_are_limited(make: Any, clock: Clock) -> None:
    client = await make(max_logins_per_user_per_minute=3, max_sessions_per_user=0)
    for _ in range(3):
        assert (await login(client)).status == 200
        clock.advance(seconds=10)
    resp = await login(client)  # 30 s after the first of the minute
    assert resp.status == 429
    assert await resp.json() == {"detail": "Too many sign-ins, try again in 30 seconds"}
    assert resp.headers["Retry-After"] == "30"
    assert (await login(client, BOB)).status == 200  # another student is not held up
    ws = await connect(client)  # the WebSocket sign-in is the same door
    await ws.send_json({"type": "authenticate", **ALICE})
    assert await receive(ws) == {
        "type": "auth_response",
        "success": False,
        "message": "Too many sign-ins, try again in 30 seconds",
    }
    clock.advance(seconds=30)
    assert (await login(client)).status == 200
    assert (await login(client)).status == 429  # the second and third are still recent


async def test_refused_sign_ins_do_not_count(make: Any, clock: Clock) -> None:
    client = await make(max_logins_per_user_per_minute=1, max_sessions_per_user=0)
    assert (await login(client)).status == 200
    for _ in range(5):
        assert (await login(client)).status == 429
    clock.advance(seconds=61)
    assert (await login(client)).status == 200


async def test_the_oldest_session_beyond_the_cap_is_revoked(make: Any, clock: Clock) -> None:
    client = await make(max_sessions_per_user=2, max_logins_per_user_per_minute=0)
    tokens = []
    for _ in range(2):
        tokens.append((await (await login(client)).json())["token"])
        clock.advance(seconds=1)
    ws = await connect(client)
    await ws.send_json({"type": "authenticate", "token": tokens[0]})
    assert (await receive(ws))["success"] is True
    newest = (await (await login(client)).json())["token"]
    msg = await receive(ws, timeout=1)
    assert msg == {"type": "session_ended"}
    closing = await ws.receive(timeout=1)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, WSCloseCode.POLICY_VIOLATION)
    statuses = [
        (await client.post("/my-bookings", headers={"Authorization": f"Bearer {t}"})).status
        for t in (*tokens, newest)
    ]
    assert statuses == [401, 200, 200]


async def test_two_hundred_logins_make_at_most_the_cap(make: Any) -> None:
    """The review's case, with the defaults: 30 a minute, 10 kept."""
    client = await make()
    statuses = [(await login(client)).status for _ in range(200)]
    assert statuses == [200] * 30 + [429] * 170
    assert len(await client.app[STORAGE].delete_sessions("PES1UG22CS001", "2026", "2025")) == 10


async def check_limits(storage: Storage) -> None:
    def limits(window_start: str, per_window: int, keep: int) -> SessionLimits:
        return SessionLimits(window_start, per_window, keep, purge_before="2026")

    later = "2999-01-01T00:00:00+00:00"
    for i in range(3):
        opened = await storage.create_session(
            f"h{i}", "A", later, f"2026-11-24T03:00:0{i}", limits("2026-11-24T02:59", 3, 2), "A"
        )
        assert opened.opened
        assert opened.revoked == (("h0",) if i == 2 else ())
    refused = await storage.create_session(
        "h9", "A", later, "2026-11-24T03:00:05", limits("2026-11-24T02:59", 3, 2), "A"
    )
    assert (refused.opened, refused.first_in_window) == (False, "2026-11-24T03:00:00")
    assert await storage.session("h9", "2026") is None
    found = [await storage.session(f"h{i}", "2026") for i in range(3)]
    assert [f and f[0] for f in found] == [None, "A", "A"]
    _, revoked = await storage.revocations(0)
    assert revoked == ["h0"]
    opened = await storage.create_session(
        "h3", "A", later, "2026-11-24T03:01:01", limits("2026-11-24T03:00:01", 3, 0), "A"
    )
    assert opened == type(opened)(True)  # the window moved on; no cap: nothing revoked


async def test_session_limits_in_sqlite(tmp_path: Any) -> None:
    async with open_sqlite(str(tmp_path / "s.db"), UPGRADE) as storage:
        await check_limits(storage)


async def test_session_limits_in_postgresql(pg_url: str) -> None:
    async with open_postgres(pg_url, UPGRADE) as storage:
        await check_limits(storage)
