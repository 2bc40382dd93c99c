"""The SQLite schema: versioned migrations (``PRAGMA user_version``) in one transaction at
start-up; before upgrading a version-1 database, an online backup beside it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import aiosqlite

from rero.storage.queries import Upgrade

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


async def _migrate_5(db: aiosqlite.Connection, upgrade: Upgrade) -> None:
    """The calendar: dated bookings (at most one live per resource and start, by a partial
    unique index), blackouts, audit rows that name resource and date, sessions that keep
    the profile. Every version-1 booking becomes a dated one; the slots table goes."""
    for sql in CALENDAR_SCHEMA:
        await db.execute(sql)
    have = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(slots)")}
    if have:
        rows = await db.execute_fetchall(
            "SELECT id, booked_by, COALESCE(booked_at, '') FROM slots WHERE is_booked = 1"
        )
        for slot_id, srn, booked_at in rows:
            dated = upgrade(int(slot_id))
            if dated is None:
                log.warning(
                    "migration: slot %s no longer exists; %s's booking dropped", slot_id, srn
                )
                continue
            await db.execute(
                "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'booked', ?, ?)",
                (dated.resource, dated.date, dated.slot_id, dated.start, dated.end, srn or "",
                 booked_at or dated.start, booked_at or dated.start),
            )  # fmt: skip
        await db.execute("DROP TABLE slots")
    # Every version-1 event was about the one lab, now the default resource.
    await db.execute(
        "UPDATE booking_events SET resource = ? WHERE resource IS NULL", (upgrade.resource,)
    )


#: The calendar's tables, the same in both stores (types aside).
CALENDAR_SCHEMA: Final = (
    "CREATE TABLE bookings (id INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL,"
    " date TEXT NOT NULL, slot_id INTEGER NOT NULL, starts_at TEXT NOT NULL,"
    " ends_at TEXT NOT NULL, srn TEXT NOT NULL, status TEXT NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, series_id TEXT)",
    "CREATE UNIQUE INDEX bookings_live ON bookings (resource, starts_at) WHERE status = 'booked'",
    "CREATE INDEX bookings_day ON bookings (resource, date)",
    "CREATE INDEX bookings_srn ON bookings (srn, date)",
    "CREATE INDEX bookings_series ON bookings (series_id) WHERE series_id IS NOT NULL",
    "CREATE INDEX bookings_due ON bookings (ends_at) WHERE status = 'booked'",
    "CREATE TABLE blackouts (id INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL,"
    " starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL,"
    " created_by TEXT, created_at TEXT NOT NULL, lifted_by TEXT, lifted_at TEXT)",
    "CREATE INDEX blackouts_resource ON blackouts (resource, starts_at)",
    "ALTER TABLE booking_events ADD COLUMN resource TEXT",
    "ALTER TABLE booking_events ADD COLUMN date TEXT",
    "ALTER TABLE booking_events ADD COLUMN booking_id INTEGER",
    "ALTER TABLE booking_events ADD COLUMN reason TEXT",
    "ALTER TABLE sessions ADD COLUMN profile TEXT",
)

#: The hour itself: check-in, no-shows, holds (a booking row in status ``held``; a live
#: hold or booking per slot, by the same index), the waitlist, suspensions, the outbox
#: of events that must leave the process, calendar feed tokens (hashes only).
HOUR_SCHEMA: Final = (
    "ALTER TABLE bookings ADD COLUMN name TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE bookings ADD COLUMN checked_in_at TEXT",
    "ALTER TABLE bookings ADD COLUMN no_show_at TEXT",
    "ALTER TABLE bookings ADD COLUMN hold_expires_at TEXT",
    "ALTER TABLE bookings ADD COLUMN waitlist_id INTEGER",
    "DROP INDEX bookings_live",
    "CREATE UNIQUE INDEX bookings_live ON bookings (resource, starts_at)"
    " WHERE status IN ('booked', 'held')",
    "CREATE UNIQUE INDEX bookings_one_hold ON bookings (srn) WHERE status = 'held'",
    "CREATE INDEX bookings_no_show ON bookings (no_show_at)"
    " WHERE status = 'booked' AND checked_in_at IS NULL",
    "CREATE INDEX bookings_holds ON bookings (hold_expires_at) WHERE status = 'held'",
    "CREATE TABLE waitlist (id INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL,"
    " date TEXT NOT NULL, slot_id INTEGER NOT NULL, starts_at TEXT NOT NULL,"
    " ends_at TEXT NOT NULL, srn TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
    " status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
    " hold_id INTEGER)",
    "CREATE UNIQUE INDEX waitlist_once ON waitlist (resource, starts_at, srn)"
    " WHERE status IN ('waiting', 'offered')",
    "CREATE INDEX waitlist_line ON waitlist (resource, starts_at, id) WHERE status = 'waiting'",
    "CREATE INDEX waitlist_srn ON waitlist (srn, status)",
    "CREATE TABLE suspensions (id INTEGER PRIMARY KEY AUTOINCREMENT, srn TEXT NOT NULL,"
    " starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL,"
    " created_at TEXT NOT NULL, lifted_by TEXT, lifted_at TEXT)",
    "CREATE INDEX suspensions_srn ON suspensions (srn, ends_at)",
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL, resource TEXT, srn TEXT, booking_id INTEGER, at TEXT NOT NULL,"
    " payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at TEXT NOT NULL, lease_until TEXT, delivered_at TEXT, dead_at TEXT,"
    " last_error TEXT)",
    "CREATE UNIQUE INDEX outbox_once ON outbox (booking_id, kind) WHERE booking_id IS NOT NULL",
    "CREATE INDEX outbox_pending ON outbox (next_attempt_at)"
    " WHERE delivered_at IS NULL AND dead_at IS NULL",
    "CREATE INDEX outbox_resource ON outbox (resource, id)",
    "CREATE INDEX outbox_at ON outbox (at)",
    "CREATE TABLE calendar_feeds (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " token_hash TEXT NOT NULL UNIQUE, srn TEXT, resource TEXT, created_at TEXT NOT NULL,"
    " revoked_at TEXT)",
    "CREATE INDEX calendar_feeds_owner ON calendar_feeds (srn, resource) WHERE revoked_at IS NULL",
)


async def _migrate_6(db: aiosqlite.Connection) -> None:
    for sql in HOUR_SCHEMA:
        await db.execute(sql)


async def _migrate_7(db: aiosqlite.Connection) -> None:
    """Roles set at run time (the configured ones live in the profile)."""
    await db.execute(ROLES_TABLE)


#: The same in both stores.
ROLES_TABLE: Final = (
    "CREATE TABLE roles (srn TEXT PRIMARY KEY, role TEXT NOT NULL, set_by TEXT NOT NULL,"
    " set_at TEXT NOT NULL)"
)


#: Email notifications (docs/notifications.md): each student's address and choices (the
#: code and the unsubscribe token as hashes only), the mail queue (one row per message,
#: once per event and recipient), which outbox events were turned into mail (``mailed_at``;
#: the events before this migration count as mailed), and the unsubscribe links' key. The
#: same in both stores.
_MAIL: Final = (
    "CREATE TABLE notification_settings (srn TEXT PRIMARY KEY, email TEXT NOT NULL,"
    " verified_at TEXT, reminder_minutes INTEGER NOT NULL, events TEXT NOT NULL,"
    " code_hash TEXT, code_expires_at TEXT, code_tries INTEGER NOT NULL DEFAULT 0,"
    " code_sent_at TEXT, codes_since TEXT, codes_sent INTEGER NOT NULL DEFAULT 0,"
    " unsubscribe_hash TEXT UNIQUE, updated_at TEXT NOT NULL)",
    "CREATE TABLE mail_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, srn TEXT NOT NULL, recipient TEXT NOT NULL, booking_id INTEGER,"
    " context TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at TEXT NOT NULL, lease_until TEXT, last_error TEXT,"
    " created_at TEXT NOT NULL, settled_at TEXT)",
    "CREATE UNIQUE INDEX mail_once ON mail_queue (event_id, kind, recipient)",
    "CREATE INDEX mail_due ON mail_queue (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX mail_booking ON mail_queue (booking_id) WHERE state = 'pending'",
    "CREATE INDEX mail_state_count ON mail_queue (state)",
    "CREATE INDEX booking_events_cancelled ON booking_events (booking_id)"
    " WHERE action IN ('cancelled', 'admin_cancelled', 'reset')",
    "CREATE TABLE mail_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO mail_state (name, value) VALUES ('dispatcher', '')",
    "CREATE INDEX mail_recipient ON mail_queue (recipient, id) WHERE state = 'pending'",
    "ALTER TABLE outbox ADD COLUMN mailed_at TEXT",
    "UPDATE outbox SET mailed_at = at",
    "CREATE INDEX outbox_unmailed ON outbox (id) WHERE mailed_at IS NULL",
)


async def _migrate_8(db: aiosqlite.Connection) -> None:
    for sql in _MAIL:
        await db.execute(sql)


Step = Callable[[aiosqlite.Connection], Awaitable[None]]

#: Migration N brings a database from user_version N-1 to N. Append only.
MIGRATIONS: Final[tuple[Step, ...]] = (_migrate_1, _migrate_2, _migrate_3, _migrate_4)
#: The version the calendar arrived with: a database below it holds version-1 bookings.
CALENDAR: Final = len(MIGRATIONS) + 1
#: Migrations after the calendar's, appended in order.
LATER: Final[tuple[Step, ...]] = (_migrate_6, _migrate_7, _migrate_8)
#: The newest version.
VERSION: Final = CALENDAR + len(LATER)


async def migrate(db: aiosqlite.Connection, path: str, upgrade: Upgrade) -> None:
    """Bring the schema to the newest version; back up a version-1 database first."""
    (version,) = next(iter(await db.execute_fetchall("PRAGMA user_version")))
    tables = await db.execute_fetchall("SELECT 1 FROM sqlite_master WHERE name = 'slots'")
    if version < CALENDAR and tables and path != ":memory:":
        copy = await asyncio.to_thread(_backup, path)
        log.info("migration: version-1 database backed up to %s", copy)
    await db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = next(iter(await db.execute_fetchall("PRAGMA user_version")))
        for number in range(version + 1, VERSION + 1):
            log.info("migration: applying version %d", number)
            if number < CALENDAR:
                await MIGRATIONS[number - 1](db)
            elif number == CALENDAR:
                await _migrate_5(db, upgrade)
            else:
                await LATER[number - CALENDAR - 1](db)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


def _backup(path: str) -> str:
    """An online backup of ``path`` beside it: ``<name>.v1-<UTC timestamp>.bak``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy = f"{path}.v1-{stamp}.bak"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return str(Path(copy))
