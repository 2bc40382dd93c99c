"""Races on the calendar, on both stores: one winner per slot, quotas that concurrent
requests cannot exceed, and nothing left booked inside a blackout that raced bookings.
On PostgreSQL two apps (two group commits) share the database, as two hosts would."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from rero.app import create_app
from rero.keys import STORAGE
from rero.settings import Settings
from tests.helpers import (
    ARM,
    CAGE,
    TOMORROW,
    ClientFactory,
    Clock,
    bearer,
    eventually,
    login,
    new_database,
    users,
)

CROWD = users(300)


@pytest.fixture(params=["sqlite", "postgresql"])
async def clients(
    request: pytest.FixtureRequest,
    aiohttp_client: ClientFactory,
    settings: Settings,
    clock: Clock,
) -> Any:
    """Two clients of one store: the same app on SQLite, two apps on PostgreSQL."""
    changed = replace(
        settings, resources=(replace(ARM, campuses=()), CAGE), fake_users=CROWD,
        admins=("SRN0000",), max_bookings_per_day=2,
    )  # fmt: skip
    if request.param == "sqlite":
        client = await aiohttp_client(create_app(changed, clock=clock, timer=clock.timer))
        return client, client
    pytest.importorskip("asyncpg")
    url = await new_database(request.getfixturevalue("pg_cluster").url)
    pg = replace(changed, database_url=url)
    return tuple(
        [await aiohttp_client(create_app(pg, clock=clock, timer=clock.timer)) for _ in range(2)]
    )


def body(i: int, slot: int, resource: str = "cage") -> dict[str, Any]:
    return {"resource": resource, "date": TOMORROW, "slot_id": slot, "username": f"user{i}",
            "password": f"pw-{i}"}  # fmt: skip


async def test_300_students_one_slot_one_winner(clients: Any) -> None:
    a, b = clients
    resps = await asyncio.gather(
        *((a if i % 2 else b).post("/bookings", json=body(i, 20)) for i in range(300))
    )
    assert Counter(r.status for r in resps) == {201: 1, 409: 299}
    losers = Counter([(await r.json())["detail"] for r in resps if r.status == 409])
    assert losers == {"Slot 20 on 2026-11-25 is not available": 299}
    for client in (a, b):
        board = await (await client.get(f"/resources/cage/slots?date={TOMORROW}")).json()
        assert board["booked_slots"] == [20]


async def test_a_quota_holds_under_concurrency(clients: Any) -> None:
    a, b = clients
    tokens = [await login(c, {"username": "user7", "password": "pw-7"}) for c in (a, b)]
    resps = await asyncio.gather(
        *(
            (a, b)[i % 2].post(
                "/bookings",
                json={"resource": "arm-1", "date": TOMORROW, "slot_id": 3 + i},
                headers=bearer(tokens[i % 2]),
            )
            for i in range(12)
        )
    )
    assert sorted(r.status for r in resps) == [201, 201] + [409] * 10
    sentences = {(await r.json())["detail"] for r in resps if r.status == 409}
    assert sentences == {"Booking limit reached: at most 2 per day"}


async def test_a_blackout_racing_bookings_leaves_nothing_booked_inside(clients: Any) -> None:
    a, b = clients
    admin = await login(a, {"username": "user0", "password": "pw-0"})
    closing = {"resource": "arm-1", "start": f"{TOMORROW}T06:00:00+05:30",
               "end": f"{TOMORROW}T12:00:00+05:30", "reason": "inspection"}  # fmt: skip
    bookings = [
        (a, b)[i % 2].post("/bookings", json=body(i, 3 + i % 12, "arm-1")) for i in range(1, 120)
    ]
    blackout = a.post("/admin/blackouts", json=closing, headers=bearer(admin))
    resps = await asyncio.gather(*bookings[:60], blackout, *bookings[60:])
    assert resps[60].status == 201
    storage = a.server.app[STORAGE]
    rows = (await storage.days([("arm-1", TOMORROW)]))[("arm-1", TOMORROW)]
    inside = [r for r in rows if r.status == "booked" and 6 <= r.slot_id < 12]
    assert inside == []
    # Every refusal after it says why; nothing is a 500.
    assert {r.status for r in resps} <= {201, 409}
    for client in (a, b):  # the other app learns of it through its change feed

        async def closed(client: Any = client) -> bool:
            resp = await client.get(f"/resources/arm-1/slots?date={TOMORROW}")
            board = await resp.json()
            shut = {s["id"] for s in board["slots"] if s["reason"] == "inspection"}
            return shut == {6, 7, 8, 9, 10, 11}

        await eventually(closed, 5, what="the blackout on every app's board")


async def test_300_students_one_slot_one_hold_then_one_booking(clients: Any, clock: Clock) -> None:
    a, b = clients
    resps = await asyncio.gather(
        *((a if i % 2 else b).post("/holds", json=body(i, 21)) for i in range(300))
    )
    assert Counter(r.status for r in resps) == {201: 1, 409: 299}
    (won,) = [(i, await r.json()) for i, r in enumerate(resps) if r.status == 201]
    first, hold = won[0], won[1]["hold"]["id"]
    # The hold lapses: its holder's confirm races 299 new holds, and loses to time.
    clock.advance(seconds=121)
    token = await login(a, {"username": f"user{first}", "password": f"pw-{first}"})
    confirm = a.post(f"/holds/{hold}/confirm", headers=bearer(token))
    others = [
        (a if i % 2 else b).post("/holds", json=body(i, 21)) for i in range(300) if i != first
    ]
    resps = await asyncio.gather(confirm, *others)
    assert (resps[0].status, await resps[0].json()) == (409, {"detail": f"Hold {hold} has lapsed"})
    assert Counter(r.status for r in resps[1:]) == {201: 1, 409: 298}
    (second,) = [await r.json() for r in resps[1:] if r.status == 201]
    holder = int(second["hold"]["srn"].removeprefix("SRN"))
    # The new holder confirms while everyone else tries to book it: one booking, theirs.
    token = await login(b, {"username": f"user{holder}", "password": f"pw-{holder}"})
    confirm = b.post(f"/holds/{second['hold']['id']}/confirm", headers=bearer(token))
    books = [
        (a if i % 2 else b).post("/bookings", json=body(i, 21)) for i in range(300) if i != holder
    ]
    resps = await asyncio.gather(confirm, *books)
    assert resps[0].status == 201
    assert Counter(r.status for r in resps[1:]) == {409: 299}
    for client in (a, b):
        await eventually(lambda c=client: _booked(c), 5, what="both hosts show the one booking")


async def _booked(client: Any) -> bool:
    board = await (await client.get(f"/resources/cage/slots?date={TOMORROW}")).json()
    return bool(board["booked_slots"] == [21])
