"""What the booked event costs a booking: the CPU time of one booking's program on
SQLite (alternating book and cancel of one slot, as bench/store.py does) without the
event (as before email notifications), for a student with no verified address (the
conditional INSERT finds none and writes nothing) and for one with (an outbox row).

Each measurement runs on a fresh copy of an empty database in ``/dev/shm`` with
``synchronous=OFF`` and no thread hop, so only the statements' CPU is counted; the three
cases alternate ``--rounds`` times and the table gives each one's median and range.

    python -m bench.booked_event --rounds 7 --changes 2000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import rero.storage.programs as programs
from rero.resources import NextOccurrence, build_lab
from rero.settings import Settings
from rero.storage import Book, Cancel, Write
from rero.storage.rows import tell
from rero.storage.sqlite import open_sqlite, run

DAY, START, END = "2030-01-07", "2030-01-07T05:00:00+00:00", "2030-01-07T06:00:00+00:00"
NOW = "2030-01-07T00:00:00+00:00"
BOOK = Book("lab", DAY, 5, START, END, "S1", "S1", NOW)
CANCEL = Cancel(None, ("lab", START), "S1", "S1", "cancelled", NOW, NOW)
CASES = ("without the event", "no verified address", "a verified address")


def _untold(*_: Any, **__: Any) -> Generator[Any, Any, Write]:
    return Write(True)
    yield  # a program that runs no statement


async def _empty(path: str) -> None:
    upgrade = NextOccurrence(build_lab(Settings()).default, datetime.now(timezone.utc))
    async with open_sqlite(path, upgrade):
        pass


def measure(template: str, folder: Path, case: str, changes: int) -> float:
    """Microseconds of CPU per change."""
    path = str(folder / f"{time.monotonic_ns()}.db")
    shutil.copy(template, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    if case == CASES[2]:
        conn.execute(
            "INSERT INTO notification_settings (srn, email, verified_at, reminder_minutes,"
            " events, updated_at) VALUES ('S1', 's1@example.edu', ?, 60, '{}', ?)",
            (NOW, NOW),
        )
    programs.tell = _untold if case == CASES[0] else tell  # type: ignore[assignment]
    started = time.process_time()
    conn.execute("BEGIN")
    for i in range(changes):
        assert run(conn, programs.program(BOOK if i % 2 == 0 else CANCEL)).changed
    conn.execute("COMMIT")
    conn.close()
    return (time.process_time() - started) / changes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--changes", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        template = str(Path(tmp) / "empty.db")
        asyncio.run(_empty(template))
        found: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.rounds):
            for case in CASES:
                found[case].append(measure(template, Path(tmp), case, args.changes))
    programs.tell = tell  # type: ignore[assignment]
    print("| case | us CPU per change (median) | range |")
    print("| --- | --- | --- |")
    for case, values in found.items():
        print(f"| {case} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} |")


if __name__ == "__main__":
    main()
