"""Sessions in PostgreSQL: only a hash of each token, and a log of revocations; a
revocation sends a NOTIFY, so every host ends the sockets signed in with it at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import asyncpg

from rero.storage import Opened, SessionLimits

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

    async def create_session(
        self,
        token_hash: str,
        srn: str,
        expires_at: str,
        now: str,
        limits: SessionLimits,
        profile: str,
    ) -> Opened:
        async def create(conn: asyncpg.Connection) -> Opened:
            async with conn.transaction():
                # One student's logins in order, so the count cannot race across hosts.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "login:" + srn)
                await conn.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
                if limits.per_window:
                    await conn.execute(
                        "DELETE FROM logins WHERE srn = $1 AND at <= $2", srn, limits.window_start
                    )
                    row = await conn.fetchrow(
                        "SELECT COUNT(*) AS n, MIN(at) AS first FROM logins WHERE srn = $1", srn
                    )
                    assert row is not None
                    if row["n"] >= limits.per_window:
                        return Opened(False, str(row["first"]))
                    await conn.execute("INSERT INTO logins (srn, at) VALUES ($1, $2)", srn, now)
                await conn.execute(
                    "INSERT INTO sessions (token_hash, srn, expires_at, created_at, profile)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    token_hash, srn, expires_at, now, profile,
                )  # fmt: skip
                if not limits.keep:
                    return Opened(True)
                rows = await conn.fetch(
                    "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions"
                    " WHERE srn = $1 AND token_hash <> $2 ORDER BY created_at DESC"
                    " OFFSET $3) RETURNING token_hash",
                    srn, token_hash, limits.keep - 1,
                )  # fmt: skip
                revoked = [str(r["token_hash"]) for r in rows]
                if revoked:
                    await _revoke(conn, revoked, now, limits.purge_before, self.origin)
            return Opened(True, revoked=tuple(revoked))

        return await self._run(create)

    async def session(self, token_hash: str, now: str) -> tuple[str, str] | None:
        async def find(conn: asyncpg.Connection) -> tuple[str, str] | None:
            row = await conn.fetchrow(
                "SELECT profile, expires_at FROM sessions WHERE token_hash = $1"
                " AND expires_at > $2 AND profile IS NOT NULL",
                token_hash, now,
            )  # fmt: skip
            return None if row is None else (str(row["profile"]), str(row["expires_at"]))

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
