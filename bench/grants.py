"""Access grants at the top of the hour against durable book+cancel, interleaved in one
run on one server.

rero runs one worker (SQLite, fake auth) with ``--students`` x ``--rounds`` resources,
each with a lab (``[resources.lab]``) and one slot covering the whole day, so every
booking of today is under way and may be entered. Every student signs in first and keeps
its own keep-alive connection (bench/httpclient.py). Then, ``--rounds`` times, in turn:

- grants: each student books a fresh resource for today (not timed), then all of them
  send ``POST /bookings/{id}/access`` at once: the first fetch of a grant checks the
  student in (a durable write through the group commit) and signs an EdDSA JWT;
- book+cancel (the ceiling): all of them ``POST /bookings`` (tomorrow) at once, then all
  ``DELETE /bookings/{id}`` at once: two durable writes each.

A round's rate is its requests over the wall time from the first write to the last reply.
Passes when every reply is the expected one and the median grant rate is at least 0.8x
the median book+cancel rate (requests per second).

    python -m bench.grants --students 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import aiohttp

from bench.common import free_port, resources_toml, serve_rero, verdict
from bench.httpclient import RawHTTP, open_many, post
from bench.lab import login_all
from rero.grants import generate_key

TARGET = 0.8


def profile(folder: Path, port: int, resources: int) -> str:
    key = folder / "grant.pem"
    generate_key(key)
    head = (
        f'public_url = "http://127.0.0.1:{port}"\ngrant_signing_keys = ["{key}"]\n'
        "no_show_minutes = 0\n"
    )
    tables = resources_toml(
        [
            {"id": f"r{i}", "opens": "00:00", "closes": "24:00", "slot_minutes": 1440,
             "booking_window_days": 2, "timezone": "UTC"}
            for i in range(resources)
        ]
    )  # fmt: skip
    # Each resource's lab, as its sub-table right after it.
    return head + tables.replace(
        'timezone = "UTC"\n', 'timezone = "UTC"\n[resources.lab]\nlaunch_url = "http://lab/"\n'
    )


def delete(path: str, token: str) -> bytes:
    return (
        f"DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def timed(conns: list[RawHTTP], requests: list[bytes], status: int) -> tuple[float, list]:
    """Send every request at once; the wall time to the last reply, and the bodies."""
    started = time.perf_counter()
    for conn, request in zip(conns, requests, strict=True):
        conn.send(request)
    replies = await asyncio.wait_for(asyncio.gather(*(c.reply for c in conns)), 120)
    took = time.perf_counter() - started
    bad = [(s, b[:120]) for s, b in replies if s != status]
    assert not bad, bad[:3]
    return took, [json.loads(b) for _, b in replies]


async def run(args: argparse.Namespace) -> None:
    n = args.students
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = profile(folder, port, n * args.rounds)
        with serve_rero(port, n, folder=folder, profile=text):
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                tokens = await login_all(http, base, range(n))
            today = date.today()  # the resources' zone is UTC
            conns = await open_many(port, n)
            grants, ceilings = [], []
            for k in range(args.rounds):
                made = [
                    post("/bookings", {"resource": f"r{k * n + i}", "date": str(today),
                                       "slot_id": 0}, tokens[i])
                    for i in range(n)
                ]  # fmt: skip
                _, bodies = await timed(conns, made, 201)
                ids = [b["booking"]["id"] for b in bodies]
                asks = [post(f"/bookings/{ids[i]}/access", {}, tokens[i]) for i in range(n)]
                took, bodies = await timed(conns, asks, 200)
                assert all(b["grant"].count(".") == 2 for b in bodies)
                grants.append(n / took)
                tomorrow = str(today + timedelta(days=1))
                books = [
                    post("/bookings", {"resource": f"r{k * n + i}", "date": tomorrow,
                                       "slot_id": 0}, tokens[i])
                    for i in range(n)
                ]  # fmt: skip
                booked, bodies = await timed(conns, books, 201)
                cancels = [delete(f"/bookings/{b['booking']['id']}", tokens[i])
                           for i, b in enumerate(bodies)]  # fmt: skip
                cancelled, _ = await timed(conns, cancels, 200)
                ceilings.append(2 * n / (booked + cancelled))
            for conn in conns:
                conn.close()
    grant, ceiling = statistics.median(grants), statistics.median(ceilings)
    print(f"| students | grants/s (median of {args.rounds}) | book+cancel requests/s |"
          " ratio | target |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    ok = grant >= TARGET * ceiling
    print(f"| {n:,} | {grant:,.0f} | {ceiling:,.0f} | {grant / ceiling:.2f} |"
          f" >= {TARGET}: {'PASS' if ok else 'MISS'} |")  # fmt: skip
    verdict({"grants_per_s": [round(g) for g in grants],
             "book_cancel_per_s": [round(c) for c in ceilings]}, ok)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
