"""What the calendar benches share: a lab of three resources written into rero's profile,
sign-ins that return bearer tokens, dated bookings, and the address of a board.

The shapes are those of the calendar API (docs/api.md): ``GET /resources``,
``GET /resources/{id}/slots?date=``, ``POST /bookings``, ``DELETE /bookings/{id}``.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import aiohttp

from bench.common import resources_toml

#: Three resources on two sites, twelve hourly slots each (ids 3-14); the first is the
#: default one, whose rolling board is the original API's.
RESOURCE_IDS = ("arm-1", "arm-2", "cage-1")
ZONE = "Asia/Kolkata"


def lab_profile(extra_keys: str = "", **overrides: object) -> str:
    """Profile text: ``extra_keys`` (top-level TOML lines), then the three resources, each
    with ``overrides`` (``booking_window_days``, ``window_opens_at``...)."""
    resources = [
        {
            "id": rid,
            "name": rid.replace("-", " ").title(),
            "site": "RR" if i < 2 else "EC",
            "timezone": ZONE,
            "opens": "03:00",
            "closes": "15:00",
            "slot_minutes": 60,
            **overrides,
        }
        for i, rid in enumerate(RESOURCE_IDS)
    ]
    return extra_keys + resources_toml(resources)


def board_path(resource: str, day: date | str) -> str:
    return f"/resources/{resource}/slots?date={day}"


async def first_date(http: aiohttp.ClientSession, base: str) -> date:
    """Today in the lab's zone, as the server says (the window's first date)."""
    async with http.get(base + "/resources") as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return date.fromisoformat(body["resources"][0]["window"]["first_date"])


async def resources(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/resources") as resp:
        assert resp.status == 200, await resp.text()
        return {r["id"]: r for r in (await resp.json())["resources"]}


async def login_all(
    http: aiohttp.ClientSession, base: str, users: range, parallel: int = 64
) -> list[str]:
    """A session token for each fake user ``u{i}`` in ``users``, by ``POST /auth/login``."""
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> str:
        async with sem:
            body = {"username": f"u{i}", "password": f"p{i}"}
            async with http.post(base + "/auth/login", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return str((await resp.json())["token"])

    return list(await asyncio.gather(*(one(i) for i in users)))


async def book(
    http: aiohttp.ClientSession, base: str, token: str, resource: str, day: date, slot: int
) -> dict[str, Any]:
    """A dated booking by the holder of ``token``; its ``booking`` object."""
    body = {"resource": resource, "date": day.isoformat(), "slot_id": slot}
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(base + "/bookings", json=body, headers=headers) as resp:
        assert resp.status == 201, f"{resp.status} {await resp.text()}"
        return dict((await resp.json())["booking"])


async def cancel(http: aiohttp.ClientSession, base: str, token: str, booking_id: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.delete(f"{base}/bookings/{booking_id}", headers=headers) as resp:
        assert resp.status == 200, f"{resp.status} {await resp.text()}"
