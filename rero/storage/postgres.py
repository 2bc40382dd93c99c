"""PostgreSQL storage over asyncpg, for any number of hosts, with LISTEN/NOTIFY as the bus.

Same tables, same guarantees as the SQLite store, and the same programs
(:mod:`rero.storage.programs`): each change is decided by one conditional statement, audit
rows commit with their change, advisory locks order what a unique index cannot (a
student's quota, a blackout against bookings), sessions and throttling counts are shared.
Every committing write also sends a NOTIFY (delivered on commit), which each process turns
into fresh boards for its clients.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, TypeVar

import asyncpg

from rero.errors import StorageUnavailable
from rero.storage import (
    AddBlackout,
    Applied,
    BlackoutRow,
    Book,
    BookingRow,
    Change,
    Confirm,
    Counts,
    DayKey,
    Hold,
    Query,
    Rows,
    Series,
    Sweep,
    Write,
)
from rero.storage.postgres_schema import DRIVER_ERRORS, migrate
from rero.storage.postgres_sessions import CHANNEL, PostgresSessions
from rero.storage.programs import day, numbered, program
from rero.storage.queries import BLACKOUTS, COMPLETE, EVENT_KEYS, EVENTS, LIVE, Upgrade, mine
from rero.storage.rows import COLUMNS, blackout, booking

log: Final = logging.getLogger(__name__)
T = TypeVar("T")

CLOSE_TIMEOUT: Final = 5.0
KEEPALIVE: Final = 2.0  # seconds between checks that the LISTEN connection still lives


async def fetch(conn: asyncpg.Connection, query: Query) -> list[asyncpg.Record]:
    """Run a shared ``:name`` query as PostgreSQL's numbered one."""
    sql, names = numbered(query[0])
    rows: list[asyncpg.Record] = await conn.fetch(sql, *(query[1][n] for n in names))
    return rows


async def run(conn: asyncpg.Connection, steps: Generator[Query, Rows, T]) -> T:
    """Run a program's statements on ``conn``, sending each its rows back."""
    try:
        query = next(steps)
        while True:
            query = steps.send([tuple(r) for r in await fetch(conn, query)])
    except StopIteration as done:
        result: T = done.value
        return result


def _locks(change: Change) -> list[tuple[str, bool]]:
    """Advisory locks (key, shared) a change takes first, in a fixed order: a blackout
    excludes bookings of its resource while it cancels them; one student's bookings
    queue behind each other, so their quotas are counted without a race."""
    books = change.books if isinstance(change, Series) else (change,)
    if isinstance(change, AddBlackout):
        return [("resource:" + change.resource, False)]
    if isinstance(change, Sweep):  # one sweep at a time across hosts
        return [("sweep", False)]
    if isinstance(change, Hold | Confirm):
        return [("srn:" + change.srn, False)]
    keys = {("resource:" + b.resource, True) for b in books if isinstance(b, Book)}
    keys |= {("srn:" + b.srn, False) for b in books if isinstance(b, Book) and b.limits}
    return sorted(keys)


class PostgresStorage(PostgresSessions):
    """The shared store; see the module docstring for its guarantees."""

    description = "postgresql"
    bus = "postgresql-notify"

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self.generation = 0
        self.listening = False
        #: Sent with every NOTIFY, so this process skips its own (it already has the board).
        self.origin = secrets.token_hex(8)

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection; an unreachable database is a 503."""
        try:
            async with self._pool.acquire(timeout=5) as conn:
                return await work(conn)
        except DRIVER_ERRORS as e:
            log.error("database error: %s", type(e).__name__)
            raise StorageUnavailable() from None

    async def perform(self, steps: Generator[Query, Rows, T], *, tell: bool = False) -> T:
        """Run one program (a read, or a write outside the group commit) in a transaction;
        ``tell``: other hosts are notified of it, as of a commit."""

        async def work(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                result = await run(conn, steps)
                if tell:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self.origin)
                return result

        return await self._run(work)

    async def apply(self, changes: Sequence[Change]) -> Applied:
        """One transaction per change: a group would hold its row locks against the other
        workers for longer, and PostgreSQL groups concurrent commits itself."""
        writes: list[Write] = []
        days: dict[DayKey, tuple[BookingRow, ...]] = {}
        for change in changes:
            write, read = await self._run(partial(self._apply_one, change=change))
            writes.append(write)
            days.update(read)
        return Applied(writes, days)

    async def _apply_one(
        self, conn: asyncpg.Connection, *, change: Change
    ) -> tuple[Write, dict[DayKey, tuple[BookingRow, ...]]]:
        async with conn.transaction():
            for key, shared in _locks(change):
                lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
                await conn.execute(f"SELECT {lock}(hashtext($1))", key)
            write = await run(conn, program(change))
            read = await self._read_days(conn, sorted(write.touched))
            if write.changed:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self.origin)
        return write, read

    @staticmethod
    async def _read_days(
        conn: asyncpg.Connection, keys: Sequence[DayKey]
    ) -> dict[DayKey, tuple[BookingRow, ...]]:
        return {k: tuple(booking(tuple(r)) for r in await fetch(conn, day(k))) for k in keys}

    async def days(self, keys: Sequence[DayKey]) -> dict[DayKey, tuple[BookingRow, ...]]:
        return await self._run(lambda conn: self._read_days(conn, keys))

    async def _rows(self, query: Query) -> list[tuple[Any, ...]]:
        async def read(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await fetch(conn, query)]

        return await self._run(read)

    async def booking(self, booking_id: int) -> BookingRow | None:
        rows = await self._rows(
            (f"SELECT {COLUMNS} FROM bookings WHERE id = :id", {"id": booking_id})
        )
        return booking(rows[0]) if rows else None

    async def bookings_of(
        self, srn: str, first: str | None, last: str | None, ends_after: str | None
    ) -> list[BookingRow]:
        return [booking(r) for r in await self._rows(mine(srn, first, last, ends_after))]

    async def series(self, series_id: str) -> list[BookingRow]:
        sql = f"SELECT {COLUMNS} FROM bookings WHERE series_id = :id ORDER BY starts_at"
        return [booking(r) for r in await self._rows((sql, {"id": series_id}))]

    async def blackouts(self) -> list[BlackoutRow]:
        return [blackout(r) for r in await self._rows((BLACKOUTS, {}))]

    async def complete(self, now: str) -> int:
        async def mark(conn: asyncpg.Connection) -> int:
            sql, names = numbered(COMPLETE)
            status = await conn.execute(sql, *(now for _ in names))
            return int(status.split()[-1])

        return await self._run(mark)

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        query = (EVENTS, {"before": 2**62 if before is None else before, "limit": limit})
        return [dict(zip(EVENT_KEYS, r, strict=True)) for r in await self._rows(query)]

    async def locked_since(self, limits: Mapping[str, int], since: float) -> dict[str, float]:
        async def read(conn: asyncpg.Connection) -> dict[str, float]:
            rows = await conn.fetch(
                "SELECT key, at FROM (SELECT key, at, ROW_NUMBER() OVER"
                " (PARTITION BY key ORDER BY at DESC) AS n FROM login_failures"
                " WHERE key = ANY($1) AND at > $2) ranked"
                " JOIN unnest($1::TEXT[], $3::INT[]) AS wanted(k, limit_n)"
                " ON ranked.key = wanted.k AND ranked.n = wanted.limit_n",
                list(limits), since, list(limits.values()),
            )  # fmt: skip
            return {str(r["key"]): float(r["at"]) for r in rows}

        return await self._run(read)

    async def add_failures(self, keys: Sequence[str], at: float, purge_before: float) -> None:
        async def add(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM login_failures WHERE at <= $1", purge_before)
                await conn.executemany(
                    "INSERT INTO login_failures (key, at) VALUES ($1, $2)", [(k, at) for k in keys]
                )
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self.origin)
            self.generation += 1

        await self._run(add)

    async def clear_failures(self, key: str) -> None:
        async def clear(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM login_failures WHERE key = $1", key)

        await self._run(clear)

    async def counts(self, now: str, resource: str = "", until: str = "") -> Counts:
        params = {"now": now, "resource": resource, "until": until}
        ((live, soon),) = await self._rows((LIVE, params))
        return Counts(int(live), int(soon))

    async def watch(self, on_change: Callable[[], Awaitable[None]]) -> None:
        """LISTEN on a connection of its own; reconnect with backoff after it is lost.

        Every (re)connection is followed by ``on_change``: a client gets a fresh board
        after an outage instead of missing the changes made meanwhile.
        """
        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
            except DRIVER_ERRORS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                await self._listen(conn, on_change)
            except DRIVER_ERRORS:
                log.warning("change feed lost; reconnecting")
            finally:
                self.listening = False
                if not conn.is_closed():
                    conn.terminate()

    async def _listen(self, conn: Any, on_change: Callable[[], Awaitable[None]]) -> None:
        wake = asyncio.Event()

        def notified(_conn: object, _pid: int, _channel: str, origin: str) -> None:
            if origin != self.origin:
                wake.set()

        await conn.add_listener(CHANNEL, notified)
        self.listening = True
        wake.set()  # a fresh board after every (re)connection
        while True:
            # asyncio.wait, not wait_for: before 3.12, wait_for can swallow a cancellation
            # that lands as the event fires, and shutdown would wait on this loop forever.
            waiter = asyncio.ensure_future(wake.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=KEEPALIVE)
            finally:
                waiter.cancel()
            if not done:
                await conn.execute("SELECT 1", timeout=KEEPALIVE)  # raises once it is gone
                continue
            wake.clear()
            self.generation += 1
            try:
                await on_change()
            except Exception:
                log.exception("publishing a change from another process failed")


@asynccontextmanager
async def open_postgres(dsn: str, upgrade: Upgrade) -> AsyncIterator[PostgresStorage]:
    """Connect a pool, migrate under an advisory lock (workers start together), close on exit."""
    pool: Any = await asyncpg.create_pool(dsn, min_size=1, max_size=10, timeout=10)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, upgrade)
        yield PostgresStorage(pool, dsn)
    finally:
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:  # a connection stuck on a dead server: drop it
            pool.terminate()
