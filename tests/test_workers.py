"""Several worker processes on one SQLite file: every change reaches every client."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.helpers import (
    Observer,
    Server,
    StartingGate,
    eventually,
    outside_booking,
    start_server,
)

pytestmark = pytest.mark.stress  # two and four server processes per test


@pytest.fixture(params=[2, 4])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    server = start_server(tmp_path, "max_bookings_per_user = 2", WORKERS=str(request.param))
    server.workers = request.param  # type: ignore[attr-defined]
    yield server
    server.proc.terminate()
    server.proc.wait(15)
    assert server.proc.returncode == 0


async def one_client_per_worker(session: aiohttp.ClientSession, server: Server) -> list[Observer]:
    """Open sockets until every worker holds one (whichever worker accepts first gets a
    connection: gunicorn's workers share the master's socket). The server answered its
    first /health from one worker; the others may still be starting, so keep trying
    until a deadline rather than for a number of sockets."""
    workers: int = server.workers  # type: ignore[attr-defined]
    by_worker: dict[str, Observer] = {}
    extra = []

    async def one_more() -> bool:
        ws = await session.ws_connect(server.ws_url())
        pid = ws._response.headers["X-Rero-Worker"]
        if pid in by_worker:
            extra.append(ws)
        else:
            by_worker[pid] = Observer(ws)
        return len(by_worker) == workers

    try:
        await eventually(one_more, 30, what=f"a socket on each of the {workers} workers")
    finally:
        for ws in extra:
            await ws.close()
    observers = list(by_worker.values())
    await eventually(lambda: all(o.board for o in observers), 10, what="every greeting board")
    return observers


async def board(session: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    async with session.get(server.url + "/slots") as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def test_a_booking_on_one_worker_reaches_every_worker(
    cluster: Server, session: aiohttp.ClientSession
) -> None:
    observers = await one_client_per_worker(session, cluster)
    started = time.monotonic()
    body = {"slot_id": 6, "username": "user1", "password": "pw-1"}
    async with session.post(cluster.url + "/book-slot", json=body) as resp:
        assert resp.status == 200
    await eventually(
        lambda: all(o.board.get("booked_slots") == [6] for o in observers),
        2 - (time.monotonic() - started),  # within 2 s of the request
    )
    # Over the WebSocket of one worker, seen by the others.
    await observers[-1].ws.send_json(
        {"type": "cancel_slot", "slot_id": 6, "username": "user1", "password": "pw-1"}
    )
    await eventually(lambda: all(o.board["booked_slots"] == [] for o in observers), 2)
    for o in observers:
        await o.ws.close()


async def test_rush_across_workers_has_one_winner(
    cluster: Server, session: aiohttp.ClientSession
) -> None:
    gate = StartingGate(300)

    async def attempt(i: int) -> int:
        await gate.wait()
        body = {"slot_id": 9, "username": f"user{i}", "password": f"pw-{i}"}
        async with session.post(cluster.url + "/book-slot", json=body) as resp:
            return resp.status

    tasks = [asyncio.create_task(attempt(i)) for i in range(300)]
    await gate.open()
    assert Counter(await asyncio.gather(*tasks)) == {200: 1, 400: 299}
    final = await board(session, cluster)
    assert final["booked_slots"] == [9]


async def test_quota_and_throttle_hold_across_workers(
    cluster: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    who = {"username": "user7", "password": "pw-7"}
    url = cluster.url + "/book-slot"
    statuses = await asyncio.gather(
        *(session.post(url, json={"slot_id": 3 + i, **who}) for i in range(10))
    )
    assert sorted(r.status for r in statuses) == [200, 200] + [400] * 8
    observers = await one_client_per_worker(session, cluster)
    for _ in range(5):
        async with session.post(
            cluster.url + "/auth/login", json={"username": "user8", "password": "bad"}
        ) as resp:
            assert resp.status == 401
    # Another worker counts these failures once its change feed has seen them. Probing
    # with the right password would forgive them on a worker that has not, so wait for
    # the feeds another way: a commit made outside every worker, after the failures,
    # reaches each worker's board only through its feed, which has then read past them.
    outside_booking(tmp_path / "rero.db", 14, "FEED")
    await eventually(
        lambda: all(o.board["slots"][-1]["booked_by"] == "FEED" for o in observers),
        10,
        what="every worker's change feed past the failures",
    )
    workers = {o.ws._response.headers["X-Rero-Worker"] for o in observers}
    seen = set()
    for _ in range(200):  # fresh connections land on different workers: ask every one
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.post(
                cluster.url + "/auth/login", json={"username": "user8", "password": "pw-8"}
            ) as resp,
        ):
            assert resp.status == 429
            seen.add(resp.headers["X-Rero-Worker"])
        if seen == workers:
            break
    assert seen == workers
    for o in observers:
        await o.ws.close()


async def test_a_subscription_follows_commits_from_every_worker(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A socket on one worker follows a board that another worker changes."""
    profile = 'resources = [{id = "cage", opens = "00:00", closes = "24:00", slot_minutes = 30}]'
    server = start_server(tmp_path, profile, WORKERS="2")
    try:
        day = (datetime.now(ZoneInfo("Asia/Kolkata")).date() + timedelta(days=1)).isoformat()
        sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}

        async def one_on_each() -> bool:
            ws = await session.ws_connect(server.ws_url())
            sockets.setdefault(ws._response.headers["X-Rero-Worker"], ws)
            return len(sockets) == 2

        await eventually(one_on_each, 30, what="a socket on each worker")
        for ws in sockets.values():
            await ws.receive_json(timeout=5)  # the rolling board's greeting
            await ws.send_json({"type": "subscribe", "resource": "cage", "date": day})
            assert (await ws.receive_json(timeout=5))["data"]["booked_slots"] == []
        body = {"resource": "cage", "date": day, "slot_id": 20, "username": "user1",
                "password": "pw-1"}  # fmt: skip
        async with session.post(server.url + "/bookings", json=body) as resp:
            assert resp.status == 201
        for ws in sockets.values():
            update = await ws.receive_json(timeout=5)
            assert (update["resource"], update["data"]["booked_slots"]) == ("cage", [20])
    finally:
        server.proc.terminate()
        server.proc.wait(15)
