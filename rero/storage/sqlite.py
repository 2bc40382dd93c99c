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
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from rero.compat import run_on_connection_thread
from rero.errors import StorageUnavailable
from rero.storage import (
    Applied,
    BlackoutRow,
    BookingRow,
    Change,
    Counts,
    DayKey,
    Query,
    Rows,
)
from rero.storage.programs import day, program
from rero.storage.queries import (
    BLACKOUTS,
    COMPLETE,
    EVENT_KEYS,
    EVENTS,
    EXPORTED,
    LIVE,
    Upgrade,
    mine,
)
from rero.storage.rows import COLUMNS, blackout, booking
from rero.storage.sqlite_schema import migrate
from rero.storage.sqlite_sessions import SqliteSessions, immediate

log: Final = logging.getLogger(__name__)
T = TypeVar("T")

CHANGE_POLL_INTERVAL: Final = 0.05


def run(conn: sqlite3.Connection, steps: Generator[Query, Rows, T]) -> T:
    """Run a program's statements on ``conn`` (its thread), sending each its rows back."""
    try:
        query = next(steps)
        while True:
            query = steps.send(conn.execute(*query).fetchall())
    except StopIteration as done:
        result: T = done.value
        return result


def _read_days(
    conn: sqlite3.Connection, keys: Iterable[DayKey]
) -> dict[DayKey, tuple[BookingRow, ...]]:
    return {key: tuple(booking(r) for r in conn.execute(*day(key))) for key in keys}


def _apply(conn: sqlite3.Connection, changes: Sequence[Change]) -> Applied:
    """Make ``changes`` in order in one transaction (on the connection's thread), then read
    every board they touched."""
    with immediate(conn):
        writes = [run(conn, program(change)) for change in changes]
        touched = set().union(*(w.touched for w in writes))
        return Applied(writes, _read_days(conn, sorted(touched)))


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

    async def perform(self, steps: Generator[Query, Rows, T], *, tell: bool = False) -> T:
        """Run one program (a read, or a write outside the group commit) in a transaction
        (other processes notice any commit by themselves: ``tell`` changes nothing)."""

        def work(conn: sqlite3.Connection) -> T:
            with immediate(conn):
                return run(conn, steps)

        return await self._in_thread(work)

    async def apply(self, changes: Sequence[Change]) -> Applied:
        """Every change in one transaction: one commit, one fsync, however many changes."""
        return await self._in_thread(lambda conn: _apply(conn, changes))

    async def days(self, keys: Sequence[DayKey]) -> dict[DayKey, tuple[BookingRow, ...]]:
        return await self._in_thread(lambda conn: _read_days(conn, keys))

    async def booking(self, booking_id: int) -> BookingRow | None:
        def read(conn: sqlite3.Connection) -> BookingRow | None:
            rows = conn.execute(f"SELECT {COLUMNS} FROM bookings WHERE id = ?", (booking_id,))
            return next((booking(r) for r in rows), None)

        return await self._in_thread(read)

    async def bookings_of(
        self, srn: str, first: str | None, last: str | None, ends_after: str | None
    ) -> list[BookingRow]:
        sql, params = mine(srn, first, last, ends_after)
        return await self._in_thread(lambda conn: [booking(r) for r in conn.execute(sql, params)])

    async def series(self, series_id: str) -> list[BookingRow]:
        sql = f"SELECT {COLUMNS} FROM bookings WHERE series_id = ? ORDER BY starts_at"
        return await self._in_thread(
            lambda conn: [booking(r) for r in conn.execute(sql, (series_id,))]
        )

    async def blackouts(self) -> list[BlackoutRow]:
        return await self._in_thread(lambda conn: [blackout(r) for r in conn.execute(BLACKOUTS)])

    async def complete(self, now: str) -> int:
        def mark(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return conn.execute(COMPLETE, {"now": now}).rowcount

        return await self._in_thread(mark)

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, object]]:
            rows = conn.execute(
                EVENTS, {"before": 2**62 if before is None else before, "limit": limit}
            )
            return [dict(zip(EVENT_KEYS, r, strict=True)) for r in rows]

        return await self._in_thread(read)

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

    async def counts(self, now: str, resource: str = "", until: str = "") -> Counts:
        def count(conn: sqlite3.Connection) -> Counts:
            params = {"now": now, "resource": resource, "until": until}
            live, soon = conn.execute(LIVE, params).fetchone()
            return Counts(int(live), int(soon))

        return await self._in_thread(count)


def _file_identity(path: str) -> tuple[int, int] | None:
    """The file's device and inode: what stays the same while it is the same file."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


async def _wal(db: aiosqlite.Connection) -> None:
    """Switch a new file to WAL. Workers starting together race for it, and SQLite answers
    "locked" at once to all but one (the busy timeout does not cover this switch): try
    again until one has made it, within the busy timeout."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)


@asynccontextmanager
async def open_sqlite(path: str, upgrade: Upgrade) -> AsyncIterator[SqliteStorage]:
    """Open (creating file and directory if needed), migrate, and close on exit."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA busy_timeout = 5000")
        await _wal(db)
        await db.execute("PRAGMA synchronous = FULL")
        await migrate(db, path, upgrade)
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
    """Every booking, blackout and audit event, as plain rows."""
    with closing(_read_only(path)) as db:
        db.row_factory = sqlite3.Row
        return {
            key: [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]
            for key, table in EXPORTED.items()
        }
