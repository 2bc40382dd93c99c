"""A booking rush through the real app: the store decides, exactly one wins."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

from rero.app import create_app
from tests.conftest import ClientFactory, users


async def test_200_concurrent_bookers_one_winner(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(200))))

    async def attempt(i: int) -> tuple[int, Any]:
        body = {"slot_id": 9, "username": f"user{i}", "password": f"pw-{i}"}
        resp = await client.post("/book-slot", json=body)
        return resp.status, await resp.json()

    results = await asyncio.gather(*(attempt(i) for i in range(200)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 400: 199}
    assert all(body == {"detail": "Slot 9 is not available"} for s, body in results if s == 400)
    winner = next(i for i, (s, _) in enumerate(results) if s == 200)
    board = await (await client.get("/slots")).json()
    assert board["booked_slots"] == [9]
    assert board["slots"][6]["booked_by"] == f"SRN{winner:04d}"


async def test_twelve_users_twelve_slots(aiohttp_client: ClientFactory, settings: Any) -> None:
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(12))))
    resps = await asyncio.gather(
        *(
            client.post(
                "/book-slot", json={"slot_id": 3 + i, "username": f"user{i}", "password": f"pw-{i}"}
            )
            for i in range(12)
        )
    )
    assert [r.status for r in resps] == [200] * 12
    board = await (await client.get("/slots")).json()
    assert board["available_slots"] == []
    assert [s["booked_by"] for s in board["slots"]] == [f"SRN{i:04d}" for i in range(12)]


async def test_book_cancel_storm_ends_consistent(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    """Interleaved books and cancels by many users: the board always equals the database."""
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(40))))

    async def churn(i: int) -> None:
        who = {"username": f"user{i}", "password": f"pw-{i}"}
        for n in range(5):
            slot = 3 + (i + n) % 12
            await client.post("/book-slot", json={"slot_id": slot, **who})
            await client.post("/cancel-slot", json={"slot_id": slot, **who})

    await asyncio.gather(*(churn(i) for i in range(40)))
    board = await (await client.get("/slots")).json()
    health = await (await client.get("/health")).json()
    assert health["database"]["booked_slots"] == len(board["booked_slots"])
