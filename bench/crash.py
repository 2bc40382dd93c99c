"""Crash test: SIGKILL the server during a booking storm; nothing acknowledged is lost.

Each round starts ``python -m rero`` on a fresh SQLite file, lets ``--clients`` clients
book and cancel (each on a slot shared with others, so many requests are refused), kills
the server with SIGKILL at a random moment, restarts it on the same file and checks:

* ``PRAGMA integrity_check`` is ok;
* every acknowledged booking and cancellation has its audit row (same slot, holder,
  action), and there are no more audit rows of a kind than were attempted;
* the live bookings are exactly what replaying the audit trail gives.

    python -m bench.crash --rounds 20 --clients 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import sys
import tempfile
from collections import Counter
from contextlib import closing
from pathlib import Path

import aiohttp

from bench.common import free_port, serve_rero

Acts = Counter[tuple[int, str, str]]  # (slot, holder SRN, "booked" or "cancelled") -> count


async def _storm(port: int, clients: int, kill_after: float, pid: int) -> tuple[Acts, Acts]:
    """Run the storm; SIGKILL ``pid`` after ``kill_after`` s. Return (acked, attempted)."""
    acked: Acts = Counter()
    attempted: Acts = Counter()
    url = f"http://127.0.0.1:{port}"

    async def client(i: int, http: aiohttp.ClientSession) -> None:
        slot, who = 3 + i % 12, {"username": f"u{i}", "password": f"p{i}"}
        action = "booked"
        while True:
            path = "/book-slot" if action == "booked" else "/cancel-slot"
            attempted[slot, f"S{i}", action] += 1
            try:
                async with http.post(url + path, json={"slot_id": slot, **who}) as resp:
                    ok = resp.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the server is gone
            if ok:
                acked[slot, f"S{i}", action] += 1
                action = "cancelled" if action == "booked" else "booked"

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.create_task(client(i, http)) for i in range(clients)]
        await asyncio.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
        await asyncio.gather(*tasks)
    return acked, attempted


def check(db_path: Path, acked: Acts, attempted: Acts) -> list[str]:
    """Every problem found in the database after the restart; empty means all is well."""
    problems = []
    with closing(sqlite3.connect(db_path)) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        events = db.execute(
            "SELECT slot_id, holder_srn, action, booking_id FROM booking_events ORDER BY id"
        ).fetchall()
        live = dict(db.execute("SELECT id, srn FROM bookings WHERE status = 'booked'"))
    recorded = Counter((s, h, a) for s, h, a, _ in events)
    for key, count in acked.items():
        if recorded[key] < count:
            problems.append(f"acknowledged but not recorded: {key} x{count - recorded[key]}")
    for key, count in recorded.items():
        if count > attempted[key]:
            problems.append(f"recorded more than attempted: {key}")
    replay: dict[int, str] = {}
    for _, holder, action, booking in events:
        if action == "booked":
            replay[booking] = holder
        else:
            replay.pop(booking, None)
    if replay != live:
        problems.append(f"bookings {live} differ from the audit replay {replay}")
    return problems


async def crash_once(folder: Path, clients: int, seed: int) -> list[str]:
    """One round; returns the problems found (none is a pass)."""
    rng = random.Random(seed)
    port = free_port()
    with serve_rero(port, clients, {"LOG_LEVEL": "error"}, folder) as proc:
        acked, attempted = await _storm(port, clients, rng.uniform(0.3, 1.5), proc.pid)
        proc.wait(10)
    # The restart runs migrations and recovery on the same file.
    with serve_rero(port, clients, {"LOG_LEVEL": "error"}, folder):
        return check(folder / "rero.db", acked, attempted) + (
            [] if sum(acked.values()) else ["nothing was acknowledged: the storm did not run"]
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    failures = 0
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            problems = await crash_once(Path(tmp), args.clients, seed=n)
        failures += bool(problems)
        print(f"round {n + 1}: {'ok' if not problems else '; '.join(problems)}", flush=True)
    print(f"{args.rounds - failures}/{args.rounds} rounds ok")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    asyncio.run(main())
