"""A booking rush through the real app: the store decides, exactly one wins; changes in
flight share one commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rero import scheduler
from rero.app import create_app
from rero.auth import User
from rero.errors import StorageUnavailable
from rero.keys import SERVICE, STORAGE
from rero.storage import Applied, Cancel, Change
from rero.storage.sqlite import open_sqlite
from tests.helpers import (
    DAY,
    UPGRADE,
    ClientFactory,
    apply_mixed_group,
    book,
    cancel,
    eventually,
    one,
    users,
)


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


# ---- group commit -----------------------------------------------------------------------------


async def test_changes_in_flight_share_one_commit(
    aiohttp_client: ClientFactory, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve bookings at once take far fewer than twelve commits, and every one is made."""
    monkeypatch.setattr(scheduler, "SWEEP_INTERVAL", 3600.0)  # only the bookings commit
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(12))))
    storage = client.app[STORAGE]
    groups: list[int] = []
    apply = storage.apply

    async def counting(changes: Sequence[Change]) -> Applied:
        groups.append(len(changes))
        return await apply(changes)

    monkeypatch.setattr(storage, "apply", counting)
    for i in range(12):  # warm the auth cache: the bookings then arrive together
        await client.post("/my-bookings", json={"username": f"user{i}", "password": f"pw-{i}"})
    resps = await asyncio.gather(
        *(
            client.post(
                "/book-slot", json={"slot_id": 3 + i, "username": f"user{i}", "password": f"pw-{i}"}
            )
            for i in range(12)
        )
    )
    assert [r.status for r in resps] == [200] * 12
    assert sum(groups) == 12
    assert len(groups) <= 3, groups
    assert (await storage.counts("2000-01-01")).live_bookings == 12


async def test_one_group_mixes_changes_and_refusals(tmp_path: Path) -> None:
    """On SQLite the group is one commit: every change sees the board after it."""
    async with open_sqlite(str(tmp_path / "g.db"), UPGRADE) as storage:
        await apply_mixed_group(storage)


async def test_a_failed_commit_fails_its_whole_group_and_the_next_one_works(
    aiohttp_client: ClientFactory, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(4))))
    storage = client.app[STORAGE]
    apply = storage.apply
    failing = True

    async def flaky(changes: Sequence[Change]) -> Applied:
        if failing:
            raise StorageUnavailable()
        return await apply(changes)

    monkeypatch.setattr(storage, "apply", flaky)
    bodies = [{"slot_id": 3 + i, "username": f"user{i}", "password": f"pw-{i}"} for i in range(4)]
    resps = await asyncio.gather(*(client.post("/book-slot", json=b) for b in bodies))
    assert [r.status for r in resps] == [503] * 4
    assert (await (await client.get("/slots")).json())["booked_slots"] == []
    failing = False
    resps = await asyncio.gather(*(client.post("/book-slot", json=b) for b in bodies))
    assert [r.status for r in resps] == [200] * 4
    assert (await (await client.get("/slots")).json())["booked_slots"] == [3, 4, 5, 6]


async def test_a_requester_that_goes_away_does_not_undo_its_group(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(2))))
    service = client.app[SERVICE]
    first = asyncio.create_task(service.book(User("", "SRN0000"), 3))
    second = asyncio.create_task(service.book(User("", "SRN0001"), 4))
    await asyncio.sleep(0)  # one turn: both are queued for one commit, not yet begun
    first.cancel()
    await second
    assert (await (await client.get("/slots")).json())["booked_slots"] == [3, 4]


async def test_a_failing_statement_rolls_back_its_whole_group(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    async with open_sqlite(path, UPGRADE) as storage:
        with closing(sqlite3.connect(path)) as db:  # the disk fails on slot 7's audit row
            db.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON booking_events WHEN NEW.slot_id = 7"
                " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
            db.commit()
        with pytest.raises(StorageUnavailable):
            await storage.apply([book(5, "A", "t"), book(7, "B", "t")])
        assert await storage.days([("lab", DAY)]) == {("lab", DAY): ()}
        assert await storage.events(10, None) == []
        assert (await one(storage, book(5, "A", "t"))).changed  # the connection is usable


async def test_an_unexpected_error_mid_group_leaves_no_transaction_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a database error, so nothing above the store would roll back for it."""
    import rero.storage.sqlite as sqlite_store

    program = sqlite_store.program

    def broken(change: Change) -> Any:
        if isinstance(change, Cancel):
            raise ValueError("a bug")
        return program(change)

    async with open_sqlite(str(tmp_path / "g.db"), UPGRADE) as storage:
        monkeypatch.setattr(sqlite_store, "program", broken)
        with pytest.raises(ValueError, match="a bug"):
            await storage.apply([book(5, "A", "t"), cancel(5, "A", "A", "t")])
        monkeypatch.undo()
        assert await storage.days([("lab", DAY)]) == {("lab", DAY): ()}
        assert (await one(storage, book(5, "A", "t"))).changed


async def test_a_commit_cancelled_before_its_group_leaves_no_queue_behind(
    aiohttp_client: ClientFactory, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping while a group waits for the lock answers it (cancelled), and later
    changes are still committed rather than queued behind it for ever."""
    monkeypatch.setattr(scheduler, "SWEEP_INTERVAL", 3600.0)  # only the bookings commit
    client = await aiohttp_client(create_app(replace(settings, fake_users=users(2))))
    service = client.app[SERVICE]
    await service._commit._lock.acquire()  # a commit in flight
    waiting = asyncio.create_task(service.book(User("", "SRN0000"), 3))
    await eventually(lambda: service._commit._committing, 2, what="the commit task waiting")
    (commit,) = service._commit._committing
    commit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)
    service._commit._lock.release()
    await asyncio.wait_for(service.book(User("", "SRN0001"), 4), 5)
    assert (await (await client.get("/slots")).json())["booked_slots"] == [4]
