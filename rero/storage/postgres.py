"""PostgreSQL storage over asyncpg, for any number of hosts, with LISTEN/NOTIFY as the bus.

Same tables, same guarantees as the SQLite store: each booking is one conditional
UPDATE decided by its row count, audit rows commit with their change, sessions and
throttling counts are shared. Every committing write also sends a NOTIFY (delivered on
commit), which each process turns into a fresh board for its clients.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncpg

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
from rero.storage.postgres_schema import DRIVER_ERRORS, migrate
from rero.storage.postgres_sessions import CHANNEL, PostgresSessions

log: Final = logging.getLogger(__name__)
T = TypeVar("T")

CLOSE_TIMEOUT: Final = 5.0
KEEPALIVE: Final = 2.0  # seconds between checks that the LISTEN connection still lives
_SELECT_SLOTS: Final = (
    "SELECT id, start_time, end_time, is_booked, booked_by, booked_at FROM slots ORDER BY id"
)
_EVENT: Final = (
    "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at)"
    " VALUES ($1, $2, $3, $4, $5)"
)


def _row(r: asyncpg.Record) -> SlotRow:
    return SlotRow(
        r["id"], r["start_time"], r["end_time"], bool(r["is_booked"]), r["booked_by"],
        r["booked_at"],
    )  # fmt: skip


async def _why(conn: asyncpg.Connection, change: Change) -> Write:
    """A refusal, with its reason read in the transaction that refused it."""
    if isinstance(change, Release):
        return Write(False)
    row = await conn.fetchrow(
        "SELECT is_booked, booked_by FROM slots WHERE id = $1", change.slot_id
    )
    slot = None if row is None else (bool(row["is_booked"]), row["booked_by"])
    return Write(False, refused=refusal(change, slot))


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

    async def _write(
        self,
        conn: asyncpg.Connection,
        change: Change,
        update: tuple[str, Sequence[object]],
        *,
        before: tuple[str, Sequence[object]] | None = None,
        after: tuple[str, Sequence[object]] | None = None,
        lock_key: str | None = None,
    ) -> Write:
        """One transaction decided by ``update``'s row count; notifies on commit."""
        tx = conn.transaction()
        await tx.start()
        try:
            if lock_key is not None:  # serializes one user's bookings (the quota's count)
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock_key)
            if before is not None:
                await conn.execute(before[0], *before[1])
            status = await conn.execute(update[0], *update[1])
            changed = int(status.split()[-1]) > 0
            if changed:
                if after is not None:
                    await conn.execute(after[0], *after[1])
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self.origin)
                write = Write(True, tuple(_row(r) for r in await conn.fetch(_SELECT_SLOTS)))
            else:
                write = await _why(conn, change)
        except BaseException:
            await tx.rollback()
            raise
        if changed:
            await tx.commit()
        else:
            await tx.rollback()
        return write

    async def slots(self) -> tuple[SlotRow, ...]:
        async def read(conn: asyncpg.Connection) -> tuple[SlotRow, ...]:
            return tuple(_row(r) for r in await conn.fetch(_SELECT_SLOTS))

        return await self._run(read)

    async def apply(self, changes: Sequence[Change]) -> list[Write]:
        """One transaction per change: a group would hold its row locks against the other
        workers for longer, and PostgreSQL groups concurrent commits itself."""
        writes = []
        for change in changes:
            if isinstance(change, Book):
                writes.append(await self._book(change))
            elif isinstance(change, Cancel):
                writes.append(await self._cancel(change))
            else:
                writes.append(await self._release(change))
        return writes

    async def _book(self, c: Book) -> Write:
        update = (
            "UPDATE slots SET is_booked = TRUE, booked_by = $1, booked_at = $2,"
            " updated_at = CURRENT_TIMESTAMP WHERE id = $3 AND NOT is_booked AND ($4 = 0 OR"
            " (SELECT COUNT(*) FROM slots WHERE is_booked AND booked_by = $1) < $4)"
        )
        return await self._run(
            lambda conn: self._write(
                conn,
                c,
                (update, (c.srn, c.at, c.slot_id, c.limit)),
                after=(_EVENT, (c.slot_id, c.srn, c.srn, "booked", c.at)),
                lock_key=c.srn if c.limit else None,
            )
        )

    async def _cancel(self, c: Cancel) -> Write:
        update = (
            "UPDATE slots SET is_booked = FALSE, booked_by = NULL, booked_at = NULL,"
            " updated_at = CURRENT_TIMESTAMP WHERE id = $1 AND is_booked"
            " AND ($2::TEXT IS NULL OR booked_by = $2)"
        )
        event = (
            "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at)"
            " VALUES ($1, (SELECT booked_by FROM slots WHERE id = $1), $2, $3, $4)"
        )
        return await self._run(
            lambda conn: self._write(
                conn,
                c,
                (update, (c.slot_id, c.srn)),
                before=(event, (c.slot_id, c.actor, c.action, c.at)),
            )
        )

    async def _release(self, c: Release) -> Write:
        ids = list(c.slot_ids)
        event = (
            "INSERT INTO booking_events (slot_id, holder_srn, actor_srn, action, at)"
            " SELECT id, booked_by, $2, $3, $4 FROM slots WHERE is_booked AND id = ANY($1)"
            " ORDER BY id"
        )
        update = (
            "UPDATE slots SET is_booked = FALSE, booked_by = NULL, booked_at = NULL,"
            " updated_at = CURRENT_TIMESTAMP WHERE is_booked AND id = ANY($1)"
        )
        return await self._run(
            lambda conn: self._write(
                conn, c, (update, (ids,)), before=(event, (ids, c.actor, c.action, c.at))
            )
        )

    async def events(self, limit: int, before: int | None) -> list[dict[str, object]]:
        async def read(conn: asyncpg.Connection) -> list[dict[str, object]]:
            rows = await conn.fetch(
                "SELECT id, slot_id, holder_srn, actor_srn, action, at FROM booking_events"
                " WHERE id < $1 ORDER BY id DESC LIMIT $2",
                before if before is not None else 2**62, limit,
            )  # fmt: skip
            return [dict(r) for r in rows]

        return await self._run(read)

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

    async def counts(self) -> Counts:
        async def count(conn: asyncpg.Connection) -> Counts:
            row = await conn.fetchrow(
                "SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE is_booked) AS booked FROM slots"
            )
            assert row is not None
            return Counts(int(row["total"]), int(row["booked"]))

        return await self._run(count)

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
async def open_postgres(dsn: str, schedule: SlotDefinitions) -> AsyncIterator[PostgresStorage]:
    """Connect a pool, migrate under an advisory lock (workers start together), close on exit."""
    pool: Any = await asyncpg.create_pool(dsn, min_size=1, max_size=10, timeout=10)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schedule)
        yield PostgresStorage(pool, dsn)
    finally:
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:  # a connection stuck on a dead server: drop it
            pool.terminate()
