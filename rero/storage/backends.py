"""Which store a setting selects: open it to serve, export it, or back it up.

``database_url`` set means PostgreSQL (any number of hosts); empty means the SQLite
file at ``database_path``. The operator commands read without migrating, so they
never create or change a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rero.storage import Storage
from rero.storage import sqlite as sqlite_store
from rero.storage.queries import Upgrade
from rero.storage.sqlite import open_sqlite


class Unsupported(Exception):
    """An operator command this store does not do; the message names what to use instead."""


@asynccontextmanager
async def open_storage(
    database_path: str, database_url: str, upgrade: Upgrade
) -> AsyncIterator[Storage]:
    """Open and migrate (``upgrade`` dates a version-1 database's bookings); close on exit."""
    if database_url:
        from rero.storage.postgres import open_postgres  # the optional extra

        async with open_postgres(database_url, upgrade) as pg:
            yield pg
        return
    async with open_sqlite(database_path, upgrade) as storage:
        yield storage


async def export(database_path: str, database_url: str) -> dict[str, list[dict[str, object]]]:
    """Every booking, blackout and audit event, as plain rows."""
    if database_url:
        from rero.storage import postgres_schema

        return await postgres_schema.export(database_url)
    return await asyncio.to_thread(sqlite_store.export, database_path)


async def backup(database_path: str, database_url: str, dest: str) -> str:
    """A consistent copy of the SQLite file at ``dest``; the copy's integrity check."""
    if database_url:
        raise Unsupported(
            "backup copies a SQLite file; back up PostgreSQL with pg_dump"
            ' (pg_dump --format=custom --file=DEST "$DATABASE_URL")'
        )
    return await asyncio.to_thread(sqlite_store.backup, database_path, dest)
