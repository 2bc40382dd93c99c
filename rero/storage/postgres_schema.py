"""The PostgreSQL schema: versioned migrations (table ``schema_version``), then the slots
brought to the schedule, in one transaction at start-up; and the export of the whole
database that ``rero export`` reads without migrating."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg

from rero.storage import SlotDefinitions

log: Final = logging.getLogger(__name__)

MIGRATION_LOCK: Final = 7_262_001  # an advisory lock id for migrations
CONNECT_TIMEOUT: Final = 10.0
#: What a lost or refused connection raises: the database is unavailable, not the request bad.
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)

#: Migration N brings the schema from version N-1 to N. Append only.
MIGRATIONS: Final = (
    """
    CREATE TABLE IF NOT EXISTS slots (
        id INTEGER PRIMARY KEY,
        start_time TEXT NOT NULL,
        end_time TEXT NOT NULL,
        is_booked BOOLEAN DEFAULT FALSE,
        booked_by TEXT DEFAULT NULL,
        booked_at TEXT DEFAULT NULL,
        created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sessions (
        token_hash TEXT PRIMARY KEY, srn TEXT NOT NULL, expires_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
    CREATE TABLE IF NOT EXISTS booking_events (
        id BIGSERIAL PRIMARY KEY, slot_id INTEGER NOT NULL, holder_srn TEXT,
        actor_srn TEXT, action TEXT NOT NULL, at TEXT NOT NULL)
    """,
    """
    CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
    CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (key, at)
    """,
    """
    CREATE TABLE IF NOT EXISTS session_revocations (
        id BIGSERIAL PRIMARY KEY, token_hash TEXT NOT NULL, at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS sessions_srn ON sessions (srn);
    ALTER TABLE sessions ADD COLUMN IF NOT EXISTS created_at TEXT NOT NULL DEFAULT '';
    CREATE TABLE IF NOT EXISTS logins (srn TEXT NOT NULL, at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS logins_srn ON logins (srn, at)
    """,
)


async def migrate(conn: asyncpg.Connection, schedule: SlotDefinitions) -> None:
    """Bring the schema to the newest version, then the slots to the schedule, under an
    advisory lock (workers and hosts start together)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT MAX(version) FROM schema_version") or 0
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migration: applying version %d", number)
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        await conn.executemany(
            "INSERT INTO slots (id, start_time, end_time) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET start_time = excluded.start_time,"
            " end_time = excluded.end_time, updated_at = CURRENT_TIMESTAMP"
            " WHERE slots.start_time <> excluded.start_time OR slots.end_time <> excluded.end_time",
            schedule,
        )
        ids = [slot_id for slot_id, _, _ in schedule]
        await conn.execute("DELETE FROM slots WHERE NOT is_booked AND NOT (id = ANY($1))", ids)
        for row in await conn.fetch(
            "SELECT id, booked_by FROM slots WHERE NOT (id = ANY($1))", ids
        ):
            log.warning(
                "slot %s is outside the schedule but booked by %s: kept until cancelled",
                row["id"], row["booked_by"],
            )  # fmt: skip


async def export(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Every slot and every audit event, as plain rows, from one consistent snapshot."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except DRIVER_ERRORS as e:
        raise ConnectionError(f"cannot reach DATABASE_URL ({type(e).__name__})") from None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            slots = [
                dict(r)
                for r in await conn.fetch(
                    "SELECT id, start_time, end_time, is_booked, booked_by, booked_at FROM slots"
                    " ORDER BY id"
                )
            ]
            events = await conn.fetch("SELECT * FROM booking_events ORDER BY id")
    except asyncpg.UndefinedTableError:
        raise FileNotFoundError("no rero database at DATABASE_URL") from None
    except DRIVER_ERRORS as e:
        raise ConnectionError(f"cannot read DATABASE_URL ({type(e).__name__})") from None
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)
    return {"slots": slots, "events": [dict(r) for r in events]}
