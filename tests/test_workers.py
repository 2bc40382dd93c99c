"""Several worker processes on one SQLite file: every change reaches every client."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import Observer, Server, start_server


@pytest.fixture(params=[2, 4])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    server = start_server(tmp_path, "max_bookings_per_user = 2", WORKERS=str(request.param))
    server.workers = request.param  # type: ignore[attr-defined]
    yield server
    server.proc.terminate()
    server.proc.wait(15)
    assert server.proc.returncode == 0


async def one_client_per_worker(session: aiohttp.ClientSession, server: Server) -> list[Observer]:
    """Open sockets until every worker holds one (the kernel spreads them by hash)."""
    by_worker: dict[str, Observer] = {}
    extra = []
    for _ in range(400):
        ws = await session.ws_connect(server.ws_url())
        pid = ws._response.headers["X-Rero-Worker"]
        if pid in by_worker:
            extra.append(ws)
        else:
            by_worker[pid] = Observer(ws)
        if len(by_worker) == server.workers:  # type: ignore[attr-defined]
            break
    for ws in extra:
        await ws.close()
    assert len(by_worker) == server.workers  # type: ignore[attr-defined]
    observers = list(by_worker.values())
    while any(not o.board for o in observers):
        await asyncio.sleep(0.01)
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
    while time.monotonic() - started < 2 and any(
        o.board.get("booked_slots") != [6] for o in observers
    ):
        await asyncio.sleep(0.005)
    assert all(o.board["booked_slots"] == [6] for o in observers)
    # Over the WebSocket of one worker, seen by the others.
    await observers[-1].ws.send_json(
        {"type": "cancel_slot", "slot_id": 6, "username": "user1", "password": "pw-1"}
    )
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(o.board["booked_slots"] for o in observers):
        await asyncio.sleep(0.005)
    assert all(o.board["booked_slots"] == [] for o in observers)
    for o in observers:
        await o.ws.close()


async def test_rush_across_workers_has_one_winner(
    cluster: Server, session: aiohttp.ClientSession
) -> None:
    start = asyncio.Event()

    async def attempt(i: int) -> int:
        await start.wait()
        body = {"slot_id": 9, "username": f"user{i}", "password": f"pw-{i}"}
        async with session.post(cluster.url + "/book-slot", json=body) as resp:
            return resp.status

    tasks = [asyncio.create_task(attempt(i)) for i in range(300)]
    await asyncio.sleep(0.1)
    start.set()
    assert Counter(await asyncio.gather(*tasks)) == {200: 1, 400: 299}
    final = await board(session, cluster)
    assert final["booked_slots"] == [9]


async def test_quota_and_throttle_hold_across_workers(
    cluster: Server, session: aiohttp.ClientSession
) -> None:
    who = {"username": "user7", "password": "pw-7"}
    url = cluster.url + "/book-slot"
    statuses = await asyncio.gather(
        *(session.post(url, json={"slot_id": 3 + i, **who}) for i in range(10))
    )
    assert sorted(r.status for r in statuses) == [200, 200] + [400] * 8
    for _ in range(5):
        async with session.post(
            cluster.url + "/auth/login", json={"username": "user8", "password": "bad"}
        ) as resp:
            assert resp.status == 401
    # Another worker counts these failures once its change feed has seen them (one poll).
    await asyncio.sleep(0.2)
    seen = set()
    for _ in range(8):  # fresh connections land on different workers
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.post(
                cluster.url + "/auth/login", json={"username": "user8", "password": "pw-8"}
            ) as resp,
        ):
            assert resp.status == 429
            seen.add(resp.headers["X-Rero-Worker"])
    assert len(seen) >= 1
