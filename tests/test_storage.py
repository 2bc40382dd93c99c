"""SQLite storage: creation, durability settings, migrations, schedule reconciliation."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from rero.app import create_app
from rero.settings import Settings
from rero.slots import Schedule
from rero.storage import Book, Cancel
from rero.storage.sqlite import open_sqlite
from rero.storage.sqlite_schema import MIGRATIONS
from tests.helpers import ALICE, ROOT, ClientFactory, one

SCHEDULE = Schedule().rows()

OLD_SCHEMA = """
CREATE TABLE slots (
    id INTEGER PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    is_booked BOOLEAN DEFAULT FALSE,
    booked_at DATETIME DEFAULT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
)"""


def raw(path: Path | str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on a plain connection, committed and closed."""
    with closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, params).fetchall()


async def test_creates_file_and_directory_with_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "rero.db"
    async with open_sqlite(str(path), SCHEDULE) as storage:
        assert [s.id for s in await storage.slots()] == list(range(3, 15))
    columns = [(r[1], r[2], r[3], r[4]) for r in raw(path, "PRAGMA table_info(slots)")]
    assert columns == [
        ("id", "INTEGER", 0, None),
        ("start_time", "TEXT", 1, None),
        ("end_time", "TEXT", 1, None),
        ("is_booked", "BOOLEAN", 0, "FALSE"),
        ("booked_by", "TEXT", 0, "NULL"),
        ("booked_at", "DATETIME", 0, "NULL"),
        ("created_at", "DATETIME", 0, "CURRENT_TIMESTAMP"),
        ("updated_at", "DATETIME", 0, "CURRENT_TIMESTAMP"),
    ]
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


async def test_full_sync_on_the_connection(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), SCHEDULE) as storage:
        assert await storage._db.execute_fetchall("PRAGMA synchronous") == [(2,)]


async def test_bookings_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    async with open_sqlite(path, SCHEDULE) as storage:
        assert (await one(storage, Book(5, "SRN1", "2026-01-01T10:00:00+00:00"))).changed
    async with open_sqlite(path, SCHEDULE) as storage:
        slot = {s.id: s for s in await storage.slots()}[5]
        assert (slot.is_booked, slot.booked_by, slot.booked_at) == (
            True,
            "SRN1",
            "2026-01-01T10:00:00+00:00",
        )


async def test_conditional_writes(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), SCHEDULE) as storage:
        assert (await one(storage, Book(5, "A", "t"))).changed
        assert not (await one(storage, Book(5, "B", "t"))).changed
        assert not (await one(storage, Cancel(5, "B", "B", "cancelled", "t"))).changed
        assert (await one(storage, Cancel(5, "A", "A", "cancelled", "t"))).changed
        assert not (await one(storage, Cancel(5, "A", "A", "cancelled", "t"))).changed
        assert (await one(storage, Book(5, "B", "t"))).changed
        assert (await one(storage, Cancel(5, None, "ADMIN", "admin_cancelled", "t"))).changed
        events = await storage.events(10, None)
        assert [(e["action"], e["holder_srn"], e["actor_srn"]) for e in events] == [
            ("admin_cancelled", "B", "ADMIN"),
            ("booked", "B", "B"),
            ("cancelled", "A", "A"),
            ("booked", "A", "A"),
        ]


async def test_migrates_old_schema_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(OLD_SCHEMA)
        db.executemany(
            "INSERT INTO slots (id, start_time, end_time, is_booked, booked_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (h, f"{h:02d}:00", f"{h + 1:02d}:00", h == 9, "2025-01-01" if h == 9 else None)
                for h in range(3, 15)
            ],
        )
    async with open_sqlite(str(path), SCHEDULE) as storage:
        slots = {s.id: s for s in await storage.slots()}
    assert len(slots) == 12
    assert (slots[9].is_booked, slots[9].booked_by, slots[9].booked_at) == (
        True,
        None,
        "2025-01-01",
    )
    assert not slots[8].is_booked
    assert "booked_by" in [r[1] for r in raw(path, "PRAGMA table_info(slots)")]
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_reconciles_schedule(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    async with open_sqlite(path, SCHEDULE) as storage:
        await one(storage, Book(14, "HOLDER", "t"))
    raw(path, "UPDATE slots SET start_time = '99:99' WHERE id = 5")
    # Shrink to 3..12, then check: free 13 dropped, booked 14 kept, times repaired.
    async with open_sqlite(path, Schedule(3, 13).rows()) as storage:
        slots = {s.id: s for s in await storage.slots()}
    assert sorted(slots) == [*range(3, 13), 14]
    assert slots[14].booked_by == "HOLDER"
    assert slots[5].start_time == "05:00"
    # Grow to 2..16: missing slots are added.
    async with open_sqlite(path, Schedule(2, 17).rows()) as storage:
        assert [s.id for s in await storage.slots()] == list(range(2, 17))


async def test_counts(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), SCHEDULE) as storage:
        await one(storage, Book(3, "A", "t"))
        counts = await storage.counts()
    assert (counts.total, counts.booked) == (12, 1)


def test_the_store_benchmark_runs() -> None:
    """bench.store's short form: every grouped change is made (it asserts so)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.store", "--seconds", "0.2", "--sizes", "1", "5"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "| 5 |" in out


# ---- a file removed or replaced under the running server ----------------------------------


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def exists(path: Path) -> bool:
    return path.exists()


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_lost_database_file_is_noticed(
    aiohttp_client: ClientFactory, settings: Settings, tmp_path: Path, how: str
) -> None:
    client = await aiohttp_client(create_app(settings))
    path = Path(settings.database_path)
    resp = await client.post("/book-slot", json={"slot_id": 5, **ALICE})
    assert resp.status == 200
    remove_database(path)
    if how == "replaced":
        async with open_sqlite(str(tmp_path / "other.db"), SCHEDULE):
            pass
        (tmp_path / "other.db").rename(path)
    resp = await client.post("/book-slot", json={"slot_id": 6, **ALICE})
    assert (resp.status, await resp.json()) == (503, {"detail": "Storage unavailable, try again"})
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unhealthy"
    assert exists(path) == (how == "replaced")  # never silently recreated
    resp = await client.post("/cancel-slot", json={"slot_id": 5, **ALICE})
    assert resp.status == 503
