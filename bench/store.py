"""The SQLite store alone: durable changes per second by group size, and the cost of
one round trip to aiosqlite's thread (what a statement run from the event loop pays).

Alternating book and cancel of one slot through ``SqliteStorage.apply`` on a fresh file
(WAL, ``synchronous=FULL``), ``--seconds`` per group size; no server, no network.

    python -m bench.store --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rero.resources import NextOccurrence, build_lab
from rero.settings import Settings
from rero.storage import Book, Cancel, Change
from rero.storage.sqlite import SqliteStorage, open_sqlite

DAY, START, END = "2030-01-07", "2030-01-07T05:00:00+00:00", "2030-01-07T06:00:00+00:00"
NOW = "2030-01-07T00:00:00+00:00"
BOOK = Book("lab", DAY, 5, START, END, "S1", "S1", "t")
CANCEL = Cancel(None, ("lab", START), "S1", "S1", "cancelled", "t", NOW)


async def changes_per_second(storage: SqliteStorage, size: int, seconds: float) -> float:
    made, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        group: list[Change] = [BOOK if (made + i) % 2 == 0 else CANCEL for i in range(size)]
        applied = await storage.apply(group)
        assert all(w.changed for w in applied.writes), "every change in the group should be made"
        made += size
    if made % 2:  # leave the slot free for the next size
        await storage.apply([CANCEL])
    return made / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        upgrade = NextOccurrence(build_lab(Settings()).default, datetime.now(timezone.utc))
        async with open_sqlite(str(Path(tmp) / "store.db"), upgrade) as storage:
            trips, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                await storage.counts(NOW)  # one statement, one round trip
                trips += 1
            trip_us = (time.perf_counter() - started) / trips * 1e6
            print(f"one round trip (a one-statement read): {trip_us:.0f} us")
            print("\n| changes per commit | changes/s | ms per commit |")
            print("| --- | --- | --- |")
            for size in args.sizes:
                rate = await changes_per_second(storage, size, args.seconds)
                print(f"| {size} | {rate:,.0f} | {size / rate * 1000:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
