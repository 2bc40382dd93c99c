"""SQLite storage over aiosqlite: WAL, full sync, versioned migrations.

One connection serves the process. Each method runs its whole transaction
under one lock, so transactions never interleave across awaits. Every change
is decided by one conditional statement's row count, and the changes queued
while a commit was in flight share the next one (group commit: one fsync).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from rero.compat import run_on_connection_thread
from rero.errors import StorageUnavailable
from rero.storage import (
    Book,
    Cancel,
    Change,
    Counts,
    Release,
    SlotDefinitions,
    SlotRow,
    Write,
    refusal,
)
from rero.storage.sqlite_schema import migrate
from rero.storage.sqlite_sessions import SqliteSessions, immediate

log: Final = logging.getLogger(__name__)
T = TypeVar("T")

CHANGE_POLL_INTERVAL: Final = 0.05

#: SQL and its parameters.
Statement = tuple[str, Sequence[object]]

_SELECT_SLOTS: Final = (
    "SELECT id, start_time, end_time, is_booked, booked_by, booked_at FROM slots ORDER BY id"
)

_EVENT: Final = (
    "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at) VALUES (?, ?, ?, ?, ?)"
)


def _row(r: sqlite3.Row | tuple[object, ...]) -> SlotRow:
    id_, start, end, booked, by, at = r
    return SlotRow(
        int(str(id_)),
        str(start),
        str(end),
        bool(booked),
        None if by is None else str(by),
        None if at is None else str(at),
    )


_BOOK: Final = (
    "UPDATE slots SET is_booked = 1, booked_by = ?, booked_at = ?, updated_at = ?"
    " WHERE id = ? AND is_booked = 0 AND (? = 0 OR"
    " (SELECT COUNT(*) FROM slots WHERE is_booked = 1 AND booked_by = ?) < ?)"
)
# These two pick the same rows: the booked slots among a JSON list of ids, held by a
# given SRN unless it is NULL.
_FREEING_EVENTS: Final = (
    "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at)"
    " SELECT id, booked_by, ?, ?, ? FROM slots WHERE is_booked = 1"
    " AND id IN (SELECT value FROM json_each(?)) AND (? IS NULL OR booked_by = ?) ORDER BY id"
)
_FREE: Final = (
    "UPDATE slots SET is_booked = 0, booked_by = NULL, booked_at = NULL, updated_at = ?"
    " WHERE is_booked = 1"
    " AND id IN (SELECT value FROM json_each(?)) AND (? IS NULL OR booked_by = ?)"
)


def _statements(change: Change) -> tuple[Statement, Statement]:
    """The statement that decides ``change`` (by its row count) and the one completing it.

    A cancel or release decides by writing its audit rows (they read the holder the
    update is about to clear); a booking decides by its update.
    """
    if isinstance(change, Book):
        c = change
        decide = (c.srn, c.at, c.at, c.slot_id, c.limit, c.srn, c.limit)
        return (_BOOK, decide), (_EVENT, (c.slot_id, c.srn, c.srn, "booked", c.at))
    if isinstance(change, Cancel):
        ids, holder = [change.slot_id], change.srn
    else:
        ids, holder = list(change.slot_ids), None
    which = (json.dumps(ids), holder, holder)
    return (_FREEING_EVENTS, (change.actor, change.action, change.at, *which)), (
        _FREE,
        (change.at, *which),
    )


def _read_slots(conn: sqlite3.Connection) -> tuple[SlotRow, ...]:
    return tuple(_row(r) for r in conn.execute(_SELECT_SLOTS))


def _why(conn: sqlite3.Connection, change: Change) -> Write:
    """A refusal, with its reason read in the transaction that refused it."""
    if isinstance(change, Release):
        return Write(False)
    row = conn.execute("SELECT is_booked, booked_by FROM slots WHERE id = ?", (change.slot_id,))
    slot = next(((bool(booked), by) for booked, by in row), None)
    return Write(False, refused=refusal(change, slot))


def _apply(conn: sqlite3.Connection, changes: Sequence[Change]) -> list[Write]:
    """Make ``changes`` in order in one transaction (on the connection's thread).

    Each is decided by one conditional statement's row count and completed by one
    more; a refused change writes nothing, so none needs undoing.
    """
    refusals: list[Write | None] = []
    with immediate(conn):
        for change in changes:
            decide, complete = _statements(change)
            if conn.execute(*decide).rowcount > 0:
                conn.execute(*complete)
                refusals.append(None)
            else:
                refusals.append(_why(conn, change))
        slots = _read_slots(conn)
    return [w or Write(True, slots) for w in refusals]


class SqliteStorage(SqliteSessions):
    """The embedded store; see the module docstring for its guarantees."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path
        self.description = "sqlite"
        #: How other processes' commits are noticed: polling ``PRAGMA data_version``.
        self.bus = "sqlite-data-version"
        self.listening = True  # the change feed is this connection itself
        #: Bumped by every failed-login write here and every commit seen from elsewhere.
        self.generation = 0
        self._version: int | None = None
        self._file = _file_identity(path)
        self._lost = False

    def _check_file(self) -> None:
        """Refuse to go on once the file was removed or replaced under the server.

        The open connection would keep writing to the unlinked file, and every change
        it acknowledged would be gone at the next start; a stat costs microseconds.
        """
        if self._lost:
            raise StorageUnavailable()
        if self._file is not None and _file_identity(self.path) != self._file:
            self._lost = True
            log.error("the database file was removed or replaced: refusing every request")
            raise StorageUnavailable()

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` alone on the connection; driver errors become a 503, not a 500."""
        async with self._lock:
            self._check_file()
            try:
                return await work()
            except sqlite3.Error as e:
                log.error("database error: %s", e)
                if self._db.in_transaction:
                    await self._db.rollback()
                raise StorageUnavailable() from None

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` alone on the connection, on its own thread, in one hop
        (a hop costs more than a statement: docs/performance.md)."""
        return await self._run(lambda: run_on_connection_thread(self._db, work))

    async def slots(self) -> tuple[SlotRow, ...]:
        return await self._in_thread(_read_slots)

    async def apply(self, changes: Sequence[Change]) -> list[Write]:
        """Every change in one transaction: one commit, one fsync, however many changes."""
        return await self._in_thread(lambda conn: _apply(conn, changes))

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        async def read() -> list[dict[str, object]]:
            rows = await self._db.execute_fetchall(
                "SELECT id, slot_id, holder_srn, actor_srn, action, at FROM booking_events"
                " WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before if before is not None else 2**62, limit),
            )
            keys = ("id", "slot_id", "holder_srn", "actor_srn", "action", "at")
            return [dict(zip(keys, r, strict=True)) for r in rows]

        return await self._run(read)

    async def locked_since(self, limits: Mapping[str, int], since: float) -> dict[str, float]:
        keys = json.dumps(list(limits))
        wanted = json.dumps([[k, n] for k, n in limits.items()])

        async def read() -> dict[str, float]:
            rows = await self._db.execute_fetchall(
                "SELECT key, at FROM (SELECT key, at, ROW_NUMBER() OVER"
                " (PARTITION BY key ORDER BY at DESC) AS n FROM login_failures"
                " WHERE key IN (SELECT value FROM json_each(?)) AND at > ?)"
                " WHERE (key, n) IN (SELECT json_extract(value, '$[0]'),"
                " json_extract(value, '$[1]') FROM json_each(?))",
                (keys, since, wanted),
            )
            return {str(k): float(at) for k, at in rows}

        return await self._run(read)

    async def add_failures(self, keys: Sequence[str], at: float, purge_before: float) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute("DELETE FROM login_failures WHERE at <= ?", (purge_before,))
                conn.executemany(
                    "INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, at) for k in keys]
                )

        await self._in_thread(add)
        self.generation += 1

    async def clear_failures(self, key: str) -> None:
        async def clear() -> None:
            await self._db.execute("DELETE FROM login_failures WHERE key = ?", (key,))

        await self._run(clear)

    async def data_version(self) -> int:
        async def read() -> int:
            rows = await self._db.execute_fetchall("PRAGMA data_version")
            version = int(next(iter(rows))[0])
            if version != self._version:
                self._version = version
                self.generation += 1
            return version

        return await self._run(read)

    async def watch(self, on_change: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_change`` after another connection commits; runs until cancelled.

        ``PRAGMA data_version`` changes only when another connection commits, so this
        costs one tiny read per interval and a board read only when something changed.
        """
        last = await self.data_version()
        while True:
            await asyncio.sleep(CHANGE_POLL_INTERVAL)
            try:
                version = await self.data_version()
                if version != last:
                    last = version
                    await on_change()
            except Exception:  # a hiccup must not end the watch
                log.exception("watching for other writers failed")

    async def counts(self) -> Counts:
        async def count() -> Counts:
            rows = await self._db.execute_fetchall(
                "SELECT COUNT(*), COALESCE(SUM(is_booked = 1), 0) FROM slots"
            )
            total, booked = next(iter(rows))
            return Counts(int(total), int(booked))

        return await self._run(count)


def _file_identity(path: str) -> tuple[int, int] | None:
    """The file's device and inode: what stays the same while it is the same file."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


@asynccontextmanager
async def open_sqlite(path: str, schedule: SlotDefinitions) -> AsyncIterator[SqliteStorage]:
    """Open (creating file and directory if needed), migrate, and close on exit."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA busy_timeout = 5000")
        await migrate(db, schedule)
        storage = SqliteStorage(db, path)
        yield storage
    finally:
        await db.close()


# ---- operator commands: synchronous, read-only on the live file ---------------------------------


def _read_only(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def backup(path: str, dest: str) -> str:
    """Copy the live database with SQLite's online backup API; return integrity_check.

    The copy is consistent even while a server writes: the backup restarts when
    the source changes under it, and WAL readers never block the writer.
    """
    with closing(_read_only(path)) as source, closing(sqlite3.connect(dest)) as target:
        source.backup(target)
        (result,) = target.execute("PRAGMA integrity_check").fetchone()
    return str(result)


def export(path: str) -> dict[str, list[dict[str, object]]]:
    """Every slot and every audit event, as plain rows."""
    with closing(_read_only(path)) as db:
        db.row_factory = sqlite3.Row
        slots = [dict(r) for r in db.execute(_SELECT_SLOTS)]
        events = [dict(r) for r in db.execute("SELECT * FROM booking_events ORDER BY id")]
    for slot in slots:
        slot["is_booked"] = bool(slot["is_booked"])
    return {"slots": slots, "events": events}
