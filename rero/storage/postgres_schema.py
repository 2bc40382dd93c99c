"""The PostgreSQL schema: versioned migrations (table ``schema_version``) in one
transaction at start-up; and the export of the whole database that ``rero export`` reads
without migrating."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg

from rero.storage.queries import EXPORTED, Upgrade

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
    """
    CREATE TABLE bookings (id BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL,
        date TEXT NOT NULL, slot_id INTEGER NOT NULL, starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL, srn TEXT NOT NULL, status TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, series_id TEXT);
    CREATE UNIQUE INDEX bookings_live ON bookings (resource, starts_at) WHERE status = 'booked';
    CREATE INDEX bookings_day ON bookings (resource, date);
    CREATE INDEX bookings_srn ON bookings (srn, date);
    CREATE INDEX bookings_series ON bookings (series_id) WHERE series_id IS NOT NULL;
    CREATE INDEX bookings_due ON bookings (ends_at) WHERE status = 'booked';
    CREATE TABLE blackouts (id BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL,
        starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL,
        created_by TEXT, created_at TEXT NOT NULL, lifted_by TEXT, lifted_at TEXT);
    CREATE INDEX blackouts_resource ON blackouts (resource, starts_at);
    ALTER TABLE booking_events ADD COLUMN resource TEXT, ADD COLUMN date TEXT,
        ADD COLUMN booking_id BIGINT, ADD COLUMN reason TEXT;
    ALTER TABLE sessions ADD COLUMN profile TEXT
    """,
    """
    ALTER TABLE bookings ADD COLUMN name TEXT NOT NULL DEFAULT '',
        ADD COLUMN checked_in_at TEXT, ADD COLUMN no_show_at TEXT,
        ADD COLUMN hold_expires_at TEXT, ADD COLUMN waitlist_id BIGINT;
    DROP INDEX bookings_live;
    CREATE UNIQUE INDEX bookings_live ON bookings (resource, starts_at)
        WHERE status IN ('booked', 'held');
    CREATE UNIQUE INDEX bookings_one_hold ON bookings (srn) WHERE status = 'held';
    CREATE INDEX bookings_no_show ON bookings (no_show_at)
        WHERE status = 'booked' AND checked_in_at IS NULL;
    CREATE INDEX bookings_holds ON bookings (hold_expires_at) WHERE status = 'held';
    CREATE TABLE waitlist (id BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL,
        date TEXT NOT NULL, slot_id INTEGER NOT NULL, starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL, srn TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        hold_id BIGINT);
    CREATE UNIQUE INDEX waitlist_once ON waitlist (resource, starts_at, srn)
        WHERE status IN ('waiting', 'offered');
    CREATE INDEX waitlist_line ON waitlist (resource, starts_at, id) WHERE status = 'waiting';
    CREATE INDEX waitlist_srn ON waitlist (srn, status);
    CREATE TABLE suspensions (id BIGSERIAL PRIMARY KEY, srn TEXT NOT NULL,
        starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL,
        created_at TEXT NOT NULL, lifted_by TEXT, lifted_at TEXT);
    CREATE INDEX suspensions_srn ON suspensions (srn, ends_at);
    CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL, resource TEXT, srn TEXT, booking_id BIGINT, at TEXT NOT NULL,
        payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL, lease_until TEXT, delivered_at TEXT, dead_at TEXT,
        last_error TEXT);
    CREATE UNIQUE INDEX outbox_once ON outbox (booking_id, kind) WHERE booking_id IS NOT NULL;
    CREATE INDEX outbox_pending ON outbox (next_attempt_at)
        WHERE delivered_at IS NULL AND dead_at IS NULL;
    CREATE INDEX outbox_resource ON outbox (resource, id);
    CREATE INDEX outbox_at ON outbox (at);
    CREATE TABLE calendar_feeds (id BIGSERIAL PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
        srn TEXT, resource TEXT, created_at TEXT NOT NULL, revoked_at TEXT);
    CREATE INDEX calendar_feeds_owner ON calendar_feeds (srn, resource)
        WHERE revoked_at IS NULL
    """,
    """
    CREATE TABLE roles (srn TEXT PRIMARY KEY, role TEXT NOT NULL, set_by TEXT NOT NULL,
        set_at TEXT NOT NULL)
    """,
    """
    CREATE TABLE notification_settings (srn TEXT PRIMARY KEY, email TEXT NOT NULL,
        verified_at TEXT, reminder_minutes INTEGER NOT NULL, events TEXT NOT NULL,
        code_hash TEXT, code_expires_at TEXT, code_tries INTEGER NOT NULL DEFAULT 0,
        code_sent_at TEXT, codes_since TEXT, codes_sent INTEGER NOT NULL DEFAULT 0,
        unsubscribe_hash TEXT UNIQUE, updated_at TEXT NOT NULL);
    CREATE TABLE mail_queue (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL,
        kind TEXT NOT NULL, srn TEXT NOT NULL, recipient TEXT NOT NULL, booking_id BIGINT,
        context TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL, lease_until TEXT, last_error TEXT,
        created_at TEXT NOT NULL, settled_at TEXT);
    CREATE UNIQUE INDEX mail_once ON mail_queue (event_id, kind, recipient);
    CREATE INDEX mail_due ON mail_queue (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX mail_booking ON mail_queue (booking_id) WHERE state = 'pending';
    CREATE INDEX mail_state_count ON mail_queue (state);
    CREATE INDEX booking_events_cancelled ON booking_events (booking_id)
        WHERE action IN ('cancelled', 'admin_cancelled', 'reset');
    CREATE TABLE mail_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO mail_state (name, value) VALUES ('dispatcher', '');
    CREATE INDEX mail_recipient ON mail_queue (recipient, id) WHERE state = 'pending';
    ALTER TABLE outbox ADD COLUMN mailed_at TEXT;
    UPDATE outbox SET mailed_at = at;
    CREATE INDEX outbox_unmailed ON outbox (id) WHERE mailed_at IS NULL
    """,
)
#: The version the calendar arrived with: below it, the bookings are in the slots table.
CALENDAR: Final = 5


async def migrate(conn: asyncpg.Connection, upgrade: Upgrade) -> None:
    """Bring the schema to the newest version under an advisory lock (workers and hosts
    start together), all in one transaction: a failed upgrade changes nothing."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT MAX(version) FROM schema_version") or 0
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migration: applying version %d", number)
            await conn.execute(sql)
            if number == CALENDAR:
                await _date_bookings(conn, upgrade)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)


async def _date_bookings(conn: asyncpg.Connection, upgrade: Upgrade) -> None:
    """Every version-1 booking becomes the default resource's booking at its slot's next
    occurrence; the slots table goes, and old audit rows name the default resource."""
    rows = await conn.fetch("SELECT id, booked_by, booked_at FROM slots WHERE is_booked")
    for row in rows:
        dated = upgrade(int(row["id"]))
        if dated is None:
            log.warning(
                "migration: slot %s no longer exists; %s's booking dropped",
                row["id"], row["booked_by"],
            )  # fmt: skip
            continue
        made = row["booked_at"] or dated.start
        await conn.execute(
            "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'booked', $7, $7)",
            dated.resource, dated.date, dated.slot_id, dated.start, dated.end,
            row["booked_by"] or "", made,
        )  # fmt: skip
    await conn.execute("DROP TABLE slots")
    await conn.execute(
        "UPDATE booking_events SET resource = $1 WHERE resource IS NULL", upgrade.resource
    )


async def export(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Every booking, blackout and audit event, as plain rows, from one consistent snapshot."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except DRIVER_ERRORS as e:
        raise ConnectionError(f"cannot reach DATABASE_URL ({type(e).__name__})") from None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tables = {
                key: [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
                for key, table in EXPORTED.items()
            }
    except asyncpg.UndefinedTableError:
        raise FileNotFoundError("no rero database at DATABASE_URL") from None
    except DRIVER_ERRORS as e:
        raise ConnectionError(f"cannot read DATABASE_URL ({type(e).__name__})") from None
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)
    return tables
