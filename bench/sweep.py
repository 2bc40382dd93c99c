"""The no-show sweep over 10,000 bookings nobody checked in to, against a ceiling measured
in the same run: the one bare ``UPDATE`` that marks the same rows on a copy of the same
file (what any sweep must at least do). The sweep also writes an audit row and an outbox
event per no-show, looks up each slot's waitlist and offers every tenth slot to the first
in its line, and counts each student's no-shows for a suspension, in one transaction
(SQLite, WAL, ``synchronous=FULL``).

    python -m bench.sweep --bookings 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rero.resources import NextOccurrence, build_lab
from rero.settings import Settings
from rero.storage import Sweep
from rero.storage.sqlite import open_sqlite

START = datetime(2030, 1, 7, 3, 0, tzinfo=timezone.utc)
NOW = START + timedelta(minutes=15)  # every slot under way, its no-show due
TARGET_SECONDS = 1.0


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def fill(path: str, bookings: int) -> None:
    """``bookings`` due no-shows, one per resource, all in the same hour (so each freed
    slot can still be offered); every tenth slot has a waitlist."""
    rows, waiting = [], []
    start, end, due = START, START + timedelta(hours=1), START + timedelta(minutes=10)
    for n in range(bookings):
        rows.append((f"r{n}", start.date().isoformat(), start.hour, _iso(start),
                     _iso(end), f"S{n}", _iso(START), _iso(START), _iso(due)))  # fmt: skip
        if n % 10 == 0:
            waiting.append((f"r{n}", start.date().isoformat(), start.hour, _iso(start),
                            _iso(end), f"W{n}", _iso(START), _iso(START)))  # fmt: skip
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
            " created_at, updated_at, no_show_at) VALUES (?, ?, ?, ?, ?, ?, 'booked', ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO waitlist (resource, date, slot_id, starts_at, ends_at, srn, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?, ?)",
            waiting,
        )


def bare(path: str, now: str) -> float:
    """The ceiling: one UPDATE of the same rows, committed."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous = FULL")
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE bookings SET status = 'no_show', updated_at = ? WHERE status = 'booked'"
            " AND checked_in_at IS NULL AND no_show_at <= ?",
            (now, now),
        )
        db.execute("COMMIT")
        return time.perf_counter() - started


async def swept(path: str, now: datetime) -> tuple[float, int]:
    upgrade = NextOccurrence(build_lab(Settings()).default, now)
    async with open_sqlite(path, upgrade) as storage:
        change = Sweep(_iso(now), _iso(now + timedelta(minutes=5)), 3,
                       _iso(now - timedelta(days=30)), _iso(now + timedelta(days=7)))  # fmt: skip
        started = time.perf_counter()
        applied = await storage.apply([change])
        return time.perf_counter() - started, len(applied.writes[0].bookings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sweeps, ceilings = [], []
    with tempfile.TemporaryDirectory() as tmp:
        template = str(Path(tmp) / "template.db")
        upgrade = NextOccurrence(build_lab(Settings()).default, NOW)
        async with open_sqlite(template, upgrade):
            pass  # the schema, migrated
        fill(template, args.bookings)
        for i in range(args.repeat):
            a, b = str(Path(tmp) / f"sweep{i}.db"), str(Path(tmp) / f"bare{i}.db")
            shutil.copy(template, a)
            shutil.copy(template, b)
            seconds, changed = await swept(a, NOW)
            assert changed >= args.bookings, changed  # every no-show, and the offers
            sweeps.append(seconds)
            ceilings.append(bare(b, _iso(NOW)))
    sweep, ceiling = statistics.median(sweeps), statistics.median(ceilings)
    print(f"| bookings | sweep (median of {args.repeat}) | bare UPDATE | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    verdict = "PASS" if sweep < TARGET_SECONDS else "MISS"
    print(f"| {args.bookings:,} | {sweep * 1000:.0f} ms | {ceiling * 1000:.0f} ms |"
          f" {sweep / ceiling:.1f}x | < {TARGET_SECONDS:.0f} s: {verdict} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
