"""Sessions in SQLite: only a hash of each token, and a log of revocations that every
worker reads through the change feed to end the sockets signed in with them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rero.storage import Opened, SessionLimits

T = TypeVar("T")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: committed if the block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _revoke(conn: sqlite3.Connection, hashes: list[str], now: str, purge_before: str) -> None:
    conn.executemany(
        "INSERT INTO session_revocations (token_hash, at) VALUES (?, ?)",
        [(h, now) for h in hashes],
    )
    conn.execute("DELETE FROM session_revocations WHERE at <= ?", (purge_before,))


class SqliteSessions:
    """The ``SessionStore`` half of the SQLite store; each call is one hop, one transaction."""

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
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
        def create(conn: sqlite3.Connection) -> Opened:
            with immediate(conn):
                conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
                if limits.per_window:
                    # Only this student's rows: the index serves it, and a student's
                    # stale rows go at their next sign-in (a window's worth at most).
                    conn.execute(
                        "DELETE FROM logins WHERE srn = ? AND at <= ?", (srn, limits.window_start)
                    )
                    count, first = conn.execute(
                        "SELECT COUNT(*), MIN(at) FROM logins WHERE srn = ?", (srn,)
                    ).fetchone()
                    if count >= limits.per_window:
                        return Opened(False, str(first))
                    conn.execute("INSERT INTO logins (srn, at) VALUES (?, ?)", (srn, now))
                conn.execute(
                    "INSERT INTO sessions (token_hash, srn, expires_at, created_at, profile)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (token_hash, srn, expires_at, now, profile),
                )
                if not limits.keep:
                    return Opened(True)
                rows = conn.execute(
                    "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions"
                    " WHERE srn = ? AND token_hash != ? ORDER BY created_at DESC"
                    " LIMIT -1 OFFSET ?) RETURNING token_hash",
                    (srn, token_hash, limits.keep - 1),
                ).fetchall()
                revoked = [str(r[0]) for r in rows]
                if revoked:
                    _revoke(conn, revoked, now, limits.purge_before)
            return Opened(True, revoked=tuple(revoked))

        return await self._in_thread(create)

    async def session(self, token_hash: str, now: str) -> tuple[str, str] | None:
        def find(conn: sqlite3.Connection) -> tuple[str, str] | None:
            rows = conn.execute(
                "SELECT profile, expires_at FROM sessions WHERE token_hash = ?"
                " AND expires_at > ? AND profile IS NOT NULL",
                (token_hash, now),
            )
            return next(((str(r[0]), str(r[1])) for r in rows), None)

        return await self._in_thread(find)

    async def delete_session(self, token_hash: str, now: str, purge_before: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                deleted = conn.execute(
                    "DELETE FROM sessions WHERE token_hash = ?", (token_hash,)
                ).rowcount
                if deleted:
                    _revoke(conn, [token_hash], now, purge_before)
            return deleted > 0

        return await self._in_thread(delete)

    async def delete_sessions(self, srn: str, now: str, purge_before: str) -> list[str]:
        def delete(conn: sqlite3.Connection) -> list[str]:
            with immediate(conn):
                rows = conn.execute(
                    "DELETE FROM sessions WHERE srn = ? RETURNING token_hash", (srn,)
                ).fetchall()
                hashes = [str(r[0]) for r in rows]
                if hashes:
                    _revoke(conn, hashes, now, purge_before)
            return hashes

        return await self._in_thread(delete)

    async def revocations(self, after: int) -> tuple[int, list[str]]:
        def read(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            if after < 0:
                (newest,) = conn.execute(
                    "SELECT COALESCE(MAX(id), 0) FROM session_revocations"
                ).fetchone()
                return int(newest), []
            rows = conn.execute(
                "SELECT id, token_hash FROM session_revocations WHERE id > ? ORDER BY id",
                (after,),
            ).fetchall()
            return (int(rows[-1][0]) if rows else after), [str(r[1]) for r in rows]

        return await self._in_thread(read)
