"""The SQLite schema: versioned migrations (``PRAGMA user_version``), then the slots
brought to the schedule, in one transaction at start-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import aiosqlite

from rero.storage import SlotDefinitions

log: Final = logging.getLogger(__name__)

_CREATE_SLOTS: Final = """
CREATE TABLE IF NOT EXISTS slots (
    id INTEGER PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    is_booked BOOLEAN DEFAULT FALSE,
    booked_by TEXT DEFAULT NULL,
    booked_at DATETIME DEFAULT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
)"""

#: Columns an older ``slots`` table may lack, as ALTER TABLE can add them
#: (SQLite refuses CURRENT_TIMESTAMP defaults there, hence NULL).
_ADDABLE_COLUMNS: Final = {
    "is_booked": "BOOLEAN DEFAULT FALSE",
    "booked_by": "TEXT DEFAULT NULL",
    "booked_at": "DATETIME DEFAULT NULL",
    "created_at": "DATETIME DEFAULT NULL",
    "updated_at": "DATETIME DEFAULT NULL",
}


async def _migrate_1(db: aiosqlite.Connection) -> None:
    """The original table, plus any column an older copy of it lacks."""
    await db.execute(_CREATE_SLOTS)
    have = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(slots)")}
    for column, definition in _ADDABLE_COLUMNS.items():
        if column not in have:
            log.info("migration: adding column slots.%s", column)
            await db.execute(f"ALTER TABLE slots ADD COLUMN {column} {definition}")
    await db.execute("UPDATE slots SET is_booked = 0 WHERE is_booked IS NULL")


async def _migrate_2(db: aiosqlite.Connection) -> None:
    """Sessions (only a hash of each token) and the append-only audit trail."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY,"
        " srn TEXT NOT NULL, expires_at TEXT NOT NULL)"
    )
    await db.execute("CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at)")
    await db.execute(
        "CREATE TABLE IF NOT EXISTS booking_events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " slot_id INTEGER NOT NULL, holder_srn TEXT, actor_srn TEXT, action TEXT NOT NULL,"
        " at TEXT NOT NULL)"
    )


async def _migrate_3(db: aiosqlite.Connection) -> None:
    """Failed logins, shared by every worker for throttling."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at REAL NOT NULL)"
    )
    await db.execute("CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (key, at)")


async def _migrate_4(db: aiosqlite.Connection) -> None:
    """Revoked sessions, so every worker can end the sockets signed in with them; when
    each session was opened, and recent logins, for the per-student limits."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS session_revocations (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " token_hash TEXT NOT NULL, at TEXT NOT NULL)"
    )
    await db.execute("CREATE INDEX IF NOT EXISTS sessions_srn ON sessions (srn)")
    await db.execute("ALTER TABLE sessions ADD COLUMN created_at TEXT NOT NULL DEFAULT ''")
    await db.execute("CREATE TABLE IF NOT EXISTS logins (srn TEXT NOT NULL, at TEXT NOT NULL)")
    await db.execute("CREATE INDEX IF NOT EXISTS logins_srn ON logins (srn, at)")


#: Migration N brings a database from user_version N-1 to N. Append only.
MIGRATIONS: Final[tuple[Callable[[aiosqlite.Connection], Awaitable[None]], ...]] = (
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
)


async def migrate(db: aiosqlite.Connection, schedule: SlotDefinitions) -> None:
    """Bring the schema to the newest version, then the slots to the schedule."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = next(iter(await db.execute_fetchall("PRAGMA user_version")))
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migration: applying version %d", number)
            await step(db)
            await db.execute(f"PRAGMA user_version = {number}")
        await _reconcile(db, schedule)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def _reconcile(db: aiosqlite.Connection, schedule: SlotDefinitions) -> None:
    """Add missing slots, fix times; drop free slots outside the schedule, keep booked ones."""
    await db.executemany(
        "INSERT INTO slots (id, start_time, end_time) VALUES (?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET start_time = excluded.start_time,"
        " end_time = excluded.end_time, updated_at = CURRENT_TIMESTAMP"
        " WHERE start_time != excluded.start_time OR end_time != excluded.end_time",
        schedule,
    )
    ids = (json.dumps([slot_id for slot_id, _, _ in schedule]),)
    await db.execute(
        "DELETE FROM slots WHERE is_booked = 0 AND id NOT IN (SELECT value FROM json_each(?))",
        ids,
    )
    for slot_id, holder in await db.execute_fetchall(
        "SELECT id, booked_by FROM slots WHERE id NOT IN (SELECT value FROM json_each(?))", ids
    ):
        log.warning(
            "slot %s is outside the schedule but booked by %s: kept until cancelled",
            slot_id,
            holder,
        )
