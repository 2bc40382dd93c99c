"""Sessions in PostgreSQL: only a hash of each token, and a log of revocations; a
revocation sends a NOTIFY, so every host ends the sockets signed in with it at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import asyncpg

T = TypeVar("T")

CHANNEL: Final = "rero_changes"


async def _revoke(
    conn: asyncpg.Connection, hashes: list[str], now: str, purge_before: str, origin: str
) -> None:
    await conn.executemany(
        "INSERT INTO session_revocations (token_hash, at) VALUES ($1, $2)",
        [(h, now) for h in hashes],
    )
    await conn.execute("DELETE FROM session_revocations WHERE at <= $1", purge_before)
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, origin)


class PostgresSessions:
    """The ``SessionStore`` half of the PostgreSQL store."""

    origin: str

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def create_session(self, token_hash: str, srn: str, expires_at: str, now: str) -> None:
        async def create(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
                await conn.execute(
                    "INSERT INTO sessions (token_hash, srn, expires_at) VALUES ($1, $2, $3)",
                    token_hash, srn, expires_at,
                )  # fmt: skip

        await self._run(create)

    async def session(self, token_hash: str, now: str) -> str | None:
        async def find(conn: asyncpg.Connection) -> str | None:
            srn: str | None = await conn.fetchval(
                "SELECT srn FROM sessions WHERE token_hash = $1 AND expires_at > $2",
                token_hash, now,
            )  # fmt: skip
            return srn

        return await self._run(find)

    async def delete_session(self, token_hash: str, now: str, purge_before: str) -> bool:
        async def delete(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                status = await conn.execute(
                    "DELETE FROM sessions WHERE token_hash = $1", token_hash
                )
                deleted = int(status.split()[-1]) > 0
                if deleted:
                    await _revoke(conn, [token_hash], now, purge_before, self.origin)
            return deleted

        return await self._run(delete)

    async def delete_sessions(self, srn: str, now: str, purge_before: str) -> list[str]:
        async def delete(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                rows = await conn.fetch(
                    "DELETE FROM sessions WHERE srn = $1 RETURNING token_hash", srn
                )
                hashes = [str(r["token_hash"]) for r in rows]
                if hashes:
                    await _revoke(conn, hashes, now, purge_before, self.origin)
            return hashes

        return await self._run(delete)

    async def revocations(self, after: int) -> tuple[int, list[str]]:
        async def read(conn: asyncpg.Connection) -> tuple[int, list[str]]:
            if after < 0:
                newest = await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM session_revocations")
                return int(newest), []
            rows = await conn.fetch(
                "SELECT id, token_hash FROM session_revocations WHERE id > $1 ORDER BY id", after
            )
            return (int(rows[-1]["id"]) if rows else after), [str(r["token_hash"]) for r in rows]

        return await self._run(read)
