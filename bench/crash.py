"""Crash test: SIGKILL the server during a booking storm; nothing acknowledged is lost.

Each round starts ``python -m rero`` on a fresh SQLite file, lets ``--clients`` clients
book and cancel (each on a slot shared with others, so many requests are refused), kills
the server with SIGKILL at a random moment, restarts it on the same file and checks:

* ``PRAGMA integrity_check`` is ok;
* every acknowledged booking and cancellation has its audit row (same slot, holder,
  action), and there are no more audit rows of a kind than were attempted;
* the slots table is exactly what replaying the audit trail gives.

    python bench/crash.py --rounds 20 --clients 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from fanout import free_port  # noqa: E402 - bench scripts run as files, not a package


def start_server(folder: Path, port: int, users: int) -> subprocess.Popen[bytes]:
    users_file = folder / "users.toml"
    if not users_file.exists():
        users_file.write_text(
            "".join(
                f'[[users]]\nusername = "u{i}"\npassword = "p{i}"\nname = "U{i}"\nsrn = "S{i}"\n'
                for i in range(users)
            )
        )
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "AUTH_BACKEND": "fake",
        "FAKE_USERS_FILE": str(users_file),
        "DATABASE_PATH": str(folder / "rero.db"),
        "LOG_LEVEL": "error",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rero"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


async def _storm(port: int, clients: int, kill_after: float, pid: int) -> tuple[Counter, Counter]:
    """Run the storm; SIGKILL ``pid`` after ``kill_after`` s. Return (acked, attempted)."""
    acked: Counter[tuple[int, str, str]] = Counter()
    attempted: Counter[tuple[int, str, str]] = Counter()
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


def check(db_path: Path, acked: Counter, attempted: Counter) -> list[str]:
    """Every problem found in the database after the restart; empty means all is well."""
    problems = []
    with closing(sqlite3.connect(db_path)) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        events = db.execute(
            "SELECT slot_id, holder_srn, action FROM booking_events ORDER BY id"
        ).fetchall()
        slots = dict(db.execute("SELECT id, booked_by FROM slots WHERE is_booked = 1"))
    recorded = Counter((s, h, a) for s, h, a in events)
    for key, count in acked.items():
        if recorded[key] < count:
            problems.append(f"acknowledged but not recorded: {key} x{count - recorded[key]}")
    for key, count in recorded.items():
        if count > attempted[key]:
            problems.append(f"recorded more than attempted: {key}")
    replay: dict[int, str] = {}
    for slot, holder, action in events:
        if action == "booked":
            replay[slot] = holder
        else:
            replay.pop(slot, None)
    if replay != slots:
        problems.append(f"slots {slots} differ from the audit replay {replay}")
    return problems


async def crash_once(folder: Path, clients: int, seed: int) -> list[str]:
    """One round; returns the problems found (none is a pass)."""
    rng = random.Random(seed)
    port = free_port()
    proc = start_server(folder, port, clients)
    acked, attempted = await _storm(port, clients, rng.uniform(0.3, 1.5), proc.pid)
    proc.wait(10)
    restarted = start_server(folder, port, clients)  # migrations and recovery on the same file
    try:
        return check(folder / "rero.db", acked, attempted) + (
            [] if sum(acked.values()) else ["nothing was acknowledged: the storm did not run"]
        )
    finally:
        restarted.terminate()
        restarted.wait(10)


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
