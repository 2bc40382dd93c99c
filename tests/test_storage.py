"""SQLite storage: creation, durability settings, the store contract, migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from rero.app import create_app
from rero.settings import Settings
from rero.storage.sqlite import open_sqlite
from rero.storage.sqlite_schema import VERSION
from tests.helpers import (
    ALICE,
    DAY,
    NOW,
    ROOT,
    UPGRADE,
    ClientFactory,
    at,
    book,
    one,
    store_contract,
)

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
    async with open_sqlite(str(path), UPGRADE) as storage:
        assert await storage.days([("lab", DAY)]) == {("lab", DAY): ()}
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"bookings", "blackouts", "booking_events", "sessions"} <= tables
    assert "slots" not in tables
    # At most one live booking per resource and start: the database says so itself.
    indexes = raw(path, "SELECT sql FROM sqlite_master WHERE name = 'bookings_live'")
    assert indexes == [
        ("CREATE UNIQUE INDEX bookings_live ON bookings (resource, starts_at)"
         " WHERE status IN ('booked', 'held')",)
    ]  # fmt: skip
    assert raw(path, "PRAGMA user_version") == [(VERSION,)]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    assert not any(name.endswith(".bak") for name in os.listdir(path.parent))  # nothing to back up


async def test_full_sync_on_the_connection(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), UPGRADE) as storage:
        assert await storage._db.execute_fetchall("PRAGMA synchronous") == [(2,)]


async def test_bookings_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    async with open_sqlite(path, UPGRADE) as storage:
        made = (await one(storage, book(5, "SRN1", "2026-01-01T10:00:00+00:00"))).bookings[0]
    async with open_sqlite(path, UPGRADE) as storage:
        assert await storage.booking(made.id) == made


async def test_store_contract(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), UPGRADE) as storage:
        await store_contract(storage)


async def test_a_double_booking_is_refused_by_the_database_itself(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with open_sqlite(str(path), UPGRADE) as storage:
        await one(storage, book(5, "A", "t"))
    insert = (
        "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
        " created_at, updated_at) VALUES ('lab', ?, 5, ?, ?, 'B', 'booked', 't', 't')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        raw(path, insert, DAY, *at(5))


def version_1(path: Path, schema: str = OLD_SCHEMA, user_version: int = 0) -> None:
    """A database as the original service (or rero version 1) left it: slot 9 booked."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(schema)
        db.executemany(
            "INSERT INTO slots (id, start_time, end_time, is_booked, booked_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (
                    h,
                    f"{h:02d}:00",
                    f"{h + 1:02d}:00",
                    h in (9, 20),
                    "2025-01-01" if h == 9 else None,
                )
                for h in (*range(3, 15), 20)
            ],
        )
        db.execute(
            "UPDATE slots SET booked_by = 'PES1' WHERE id = 9"
        ) if "booked_by" in schema else None
        db.execute(f"PRAGMA user_version = {user_version}")


async def test_upgrades_a_version_1_database_with_a_backup_first(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version_1(path, OLD_SCHEMA.replace("is_booked BOOLEAN", "booked_by TEXT, is_booked BOOLEAN"))
    async with open_sqlite(str(path), UPGRADE) as storage:
        rows = await storage.bookings_of("PES1", None, None, None)
    # Slot 9's next occurrence after the upgrade (UPGRADE's clock: 2030-01-07 00:00 UTC,
    # 05:30 in Kolkata, so slot 9 is that morning at 09:00 local); slot 20 no longer exists.
    assert [(b.resource, b.date, b.slot_id, b.start, b.end, b.status, b.created_at)
            for b in rows] == [
        ("lab", "2030-01-07", 9, "2030-01-07T03:30:00+00:00", "2030-01-07T04:30:00+00:00",
         "booked", "2025-01-01"),
    ]  # fmt: skip
    (backup,) = [tmp_path / n for n in os.listdir(tmp_path) if n.startswith("old.db.v1-")]
    assert backup.name.endswith(".bak")
    assert raw(backup, "SELECT id FROM slots WHERE is_booked = 1") == [(9,), (20,)]
    assert raw(path, "PRAGMA user_version") == [(VERSION,)]


async def test_upgrades_the_original_schema(tmp_path: Path) -> None:
    """The original table lacked booked_by: its bookings are kept, by nobody known."""
    path = tmp_path / "old.db"
    version_1(path)
    async with open_sqlite(str(path), UPGRADE) as storage:
        assert [
            b.slot_id for b in (await storage.days([("lab", "2030-01-07")]))[("lab", "2030-01-07")]
        ] == [9]
    assert "slots" not in {r[0] for r in raw(path, "SELECT name FROM sqlite_master")}


async def test_counts(tmp_path: Path) -> None:
    async with open_sqlite(str(tmp_path / "r.db"), UPGRADE) as storage:
        await one(storage, book(3, "A", "t"))
        assert (await storage.counts(NOW)).live_bookings == 1
        assert (await storage.counts(at(3)[1])).live_bookings == 0


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
        async with open_sqlite(str(tmp_path / "other.db"), UPGRADE):
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


OPEN_AT = """
import asyncio, sys, time
from tests.helpers import UPGRADE
from rero.storage.sqlite import open_sqlite

async def main(path: str, at: float) -> None:
    while time.time() < at:
        await asyncio.sleep(0.001)
    async with open_sqlite(path, UPGRADE):
        pass

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


@pytest.mark.stress
@pytest.mark.parametrize("round_", range(4))
def test_workers_opening_a_new_file_together_all_start(tmp_path: Path, round_: int) -> None:
    """SQLite answers "locked" at once to all but one of the connections switching a new
    file to WAL together (gunicorn's workers at first start): each must still open it."""
    at = str(time.time() + 1.0)
    path = str(tmp_path / "new.db")
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT, path, at], cwd=ROOT,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(10)
    ]  # fmt: skip
    outcomes = [(p.wait(60), p.communicate(timeout=60)[1]) for p in procs]
    assert [err for code, err in outcomes if code != 0] == []
