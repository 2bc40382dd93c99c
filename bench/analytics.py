"""Usage analytics over a year of synthetic history: how long ``GET /admin/analytics``'s
work (the database's counting through ``Storage.perform``, then the shaping) takes for a
whole year of every resource, the last 30 days, and one resource's year; target < 1 s.

The history: ``--resources`` resources with twelve hourly slots a day for 365 days; each
slot is booked (kept: completed, or a no-show one time in twenty) four times in five,
and booked-then-cancelled once more, every booking and cancellation with its audit
event, every tenth slot with a waitlist entry (at least 200,000 events with the default
20 resources). SQLite by default (a fresh file, WAL); ``--database-url`` for PostgreSQL
(an empty database of its own: the bench fills it). Each query runs ``--repeat`` times;
the median is printed.

    python -m bench.analytics --resources 20
    python -m bench.analytics --resources 20 --database-url postgresql://.../analytics
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rero.resources import NextOccurrence, build_lab
from rero.setting_checks import ResourceConfig
from rero.settings import Settings
from rero.storage import Storage
from rero.storage.analytics import counts
from rero.storage.backends import open_storage
from rero.usage import shape

FIRST = date(2025, 11, 1)
DAYS = 365
TARGET = 1.0


def history(resources: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                   list[tuple[Any, ...]]]:  # fmt: skip
    """Bookings, audit events and waitlist rows, as tuples for the INSERTs below."""
    rng = random.Random(seed)
    bookings, events, waiting = [], [], []
    for n in range(DAYS):
        day = FIRST + timedelta(days=n)
        for r in range(resources):
            for slot in range(3, 15):
                start = datetime(day.year, day.month, day.day, slot, tzinfo=timezone.utc)
                made = start - timedelta(days=rng.randint(0, 6), minutes=rng.randint(0, 600))
                kept = rng.random() < 0.8
                for status in ("cancelled", *(["no_show" if rng.random() < 0.05 else
                                               "completed"] if kept else [])):  # fmt: skip
                    bid = len(bookings) + 1
                    changed = made + timedelta(hours=rng.randint(1, 40))
                    bookings.append((bid, f"r{r}", day.isoformat(), slot, start.isoformat(),
                                     (start + timedelta(hours=1)).isoformat(),
                                     f"S{rng.randint(0, 3999)}", status, made.isoformat(),
                                     changed.isoformat()))  # fmt: skip
                    events.append((slot, f"r{r}", day.isoformat(), bid, "booked", made.isoformat()))
                    if status != "completed":
                        action = "cancelled" if status == "cancelled" else "no_show"
                        events.append((slot, f"r{r}", day.isoformat(), bid, action,
                                       changed.isoformat()))  # fmt: skip
                if slot % 10 == 0:
                    waiting.append((f"r{r}", day.isoformat(), slot, start.isoformat(),
                                    (start + timedelta(hours=1)).isoformat(),
                                    f"W{rng.randint(0, 999)}",
                                    "booked" if rng.random() < 0.3 else "lapsed",
                                    made.isoformat()))  # fmt: skip
    return bookings, events, waiting


async def fill(store: Storage, resources: int) -> int:
    bookings, events, waiting = history(resources)

    def insert() -> Any:
        for sql, rows in (
            ("INSERT INTO bookings (id, resource, date, slot_id, starts_at, ends_at, srn,"
             " status, created_at, updated_at) VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i, :j)",
             bookings),
            ("INSERT INTO booking_events (slot_id, resource, date, booking_id, action, at)"
             " VALUES (:a, :b, :c, :d, :e, :f)", events),
            ("INSERT INTO waitlist (resource, date, slot_id, starts_at, ends_at, srn, status,"
             " created_at, updated_at) VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :h)", waiting),
        ):  # fmt: skip
            for chunk in range(0, len(rows), 2000):
                for row in rows[chunk : chunk + 2000]:
                    yield (sql, dict(zip("abcdefghij", row, strict=False)))
        return None

    await store.perform(insert())
    return len(events)


@asynccontextmanager
async def opened(url: str, folder: str) -> AsyncIterator[Storage]:
    upgrade = NextOccurrence(build_lab(Settings()).default, datetime.now(timezone.utc))
    async with open_storage(str(Path(folder) / "analytics.db"), url, upgrade) as store:
        yield store


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query (median)")
    parser.add_argument(
        "--breakdown", action="store_true", help="then time the year's steps one by one"
    )
    args = parser.parse_args()
    configs = tuple(ResourceConfig(f"r{n}", timezone="UTC") for n in range(args.resources))
    lab = build_lab(Settings(resources=configs))
    last = FIRST + timedelta(days=DAYS - 1)
    with tempfile.TemporaryDirectory() as folder:
        async with opened(args.database_url, folder) as store:
            started = time.perf_counter()
            n = await fill(store, args.resources)
            print(f"history: {n:,} events, filled in {time.perf_counter() - started:.0f} s")
            print("\n| query | seconds | target |\n| --- | --- | --- |")
            worst = 0.0
            for label, first, ids in (
                ("a year, every resource", FIRST, None),
                ("the last 30 days", last - timedelta(days=29), None),
                ("a year, one resource", FIRST, ["r0"]),
            ):
                chosen = [lab.resources[i] for i in ids] if ids else list(lab.resources.values())
                runs = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    got = await store.perform(counts(first.isoformat(), last.isoformat(), ids))
                    shape(got, chosen, first, last)
                    runs.append(time.perf_counter() - began)
                took = statistics.median(runs)
                worst = max(worst, took)
                print(f"| {label} | {took:.3f} | < {TARGET:.0f} s |")
            if args.breakdown:
                await breakdown(store, list(lab.resources.values()), last)
    print(f"\n{'PASS' if worst < TARGET else 'MISS'}: slowest {worst:.3f} s")


async def breakdown(store: Storage, resources: list[Any], last: date) -> None:
    """Where a year of every resource goes: each query alone, then the shaping."""
    steps = counts(FIRST.isoformat(), last.isoformat(), None)
    print("\n| the year's step | seconds |\n| --- | --- |")
    query = next(steps)
    while True:
        began = time.perf_counter()
        rows = await store.perform(_one(query))
        print(f"| {' '.join(query[0].split()[:4])} ... | {time.perf_counter() - began:.3f} |")
        try:
            query = steps.send(rows)
        except StopIteration as done:
            got = done.value
            break
    began = time.perf_counter()
    shape(got, resources, FIRST, last)
    print(f"| shaping | {time.perf_counter() - began:.3f} |")


def _one(query: Any) -> Any:
    rows = yield query
    return rows


if __name__ == "__main__":
    asyncio.run(main())
