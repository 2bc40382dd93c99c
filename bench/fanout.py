"""WebSocket fan-out benchmark: rero against a bare aiohttp ceiling, in one run.

For each client count it starts the server, connects that many light clients (a
raw asyncio protocol that only splits frames and looks for a marker, so the load
side stays cheap), and measures:

* broadcast latency: from sending the change request to the LAST client holding
  the new board (median of ``--rounds``), and to the first client;
* server memory per idle connection (RSS delta over the connections);
* at 1,000 clients, a rush: every client sends a booking for the same slot at
  once; the time until every client holds its own answer and the final board.

Targets 127.0.0.1 only; bounded by the client counts and rounds given.

    python -m bench.fanout --clients 1000 5000 --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp

from bench.common import free_port, rss_kib, serve_bare, serve_rero
from bench.wsclient import RawWebSocket, connect

WORKERS = 1
DATABASE_URL = ""


class Round:
    """What every client waits for in one measurement."""

    def __init__(self, marker: bytes, n: int, need_reply: bool = False) -> None:
        self.marker = marker
        self.need_reply = need_reply
        self.left = n
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def arrived(self) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


class Client(RawWebSocket):
    """Checks each frame for the current round's marker."""

    current: Round | None = None

    def __init__(self) -> None:
        super().__init__()
        self.got_marker = False
        self.got_reply = False

    def frame(self, payload: bytes) -> None:
        r = Client.current
        if r is None:
            return
        if not self.got_marker and r.marker in payload:
            self.got_marker = True
            if not r.need_reply or self.got_reply:
                r.arrived()
        elif r.need_reply and not self.got_reply and b"_response" in payload:
            self.got_reply = True
            if self.got_marker:
                r.arrived()


def start_round(clients: list[Client], marker: bytes, need_reply: bool = False) -> Round:
    for c in clients:
        c.got_marker = c.got_reply = False
    Client.current = Round(marker, len(clients), need_reply)
    return Client.current


@contextlib.contextmanager
def rero_server() -> Iterator[tuple[Rero, subprocess.Popen[bytes]]]:
    """A rero server (fake auth, a fresh SQLite file) to make changes on, then stopped."""
    target = Rero()
    with target.server() as proc:
        yield target, proc


def _report(future: asyncio.Future[Any]) -> None:
    """A change the server refused would leave the round waiting: say so."""
    if future.exception() is None and future.result().status != 200:
        print(f"change refused: HTTP {future.result().status}", file=sys.stderr)


class Target:
    """One server under test: how to start it and how to make one change."""

    name = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seq = 0
        self.pending: asyncio.Future[Any] | None = None

    def server(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        """The running server, stopped at the end."""
        raise NotImplementedError

    async def change(self, http: aiohttp.ClientSession) -> bytes:
        """Start one change and return the marker of the board it produces."""
        raise NotImplementedError

    async def rush_setup(self, http: aiohttp.ClientSession, n: int) -> bytes:
        raise NotImplementedError

    def rush_message(self, i: int) -> str:
        raise NotImplementedError


class Bare(Target):
    name = "bare aiohttp"

    def server(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        return serve_bare(self.port)

    async def change(self, http: aiohttp.ClientSession) -> bytes:
        self.seq += 1
        marker = f'"seq": {self.seq},'.encode()
        self.pending = asyncio.ensure_future(http.post(self.url + "/change"))
        return marker

    async def rush_setup(self, http: aiohttp.ClientSession, n: int) -> bytes:
        await http.post(self.url + "/reset")
        self.seq += 1
        return f'"seq": {self.seq},'.encode()

    def rush_message(self, i: int) -> str:
        return '{"type":"book_slot"}'


class Rero(Target):
    name = "rero"

    def server(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        # u1000 makes the changes; u0 ... u999 are the rush.
        return serve_rero(self.port, 1001, {"WORKERS": str(WORKERS), "DATABASE_URL": DATABASE_URL})

    async def change(self, http: aiohttp.ClientSession) -> bytes:
        self.seq += 1
        booking = self.seq % 2 == 1
        path = "/book-slot" if booking else "/cancel-slot"
        body = {"slot_id": 9, "username": "u1000", "password": "p1000"}
        self.pending = asyncio.ensure_future(http.post(self.url + path, json=body))
        self.pending.add_done_callback(_report)
        return b'"booked_slots":[9]' if booking else b'"booked_slots":[]'

    async def rush_setup(self, http: aiohttp.ClientSession, n: int) -> bytes:
        # Warm the auth cache, as a rush of signed-in students would have it.
        sem = asyncio.Semaphore(50)

        async def login(i: int) -> None:
            async with sem:
                body = {"username": f"u{i}", "password": f"p{i}"}
                async with http.post(self.url + "/auth/login", json=body) as resp:
                    assert resp.status == 200

        await asyncio.gather(*(login(i) for i in range(n)))
        # An odd number of rounds leaves slot 9 booked: free it, so the final board is [10].
        body = {"slot_id": 9, "username": "u1000", "password": "p1000"}
        await (await http.post(self.url + "/cancel-slot", json=body)).release()
        await asyncio.sleep(0.5)
        return b'"booked_slots":[10]'

    def rush_message(self, i: int) -> str:
        return json.dumps(
            {"type": "book_slot", "slot_id": 10, "username": f"u{i}", "password": f"p{i}"}
        )


async def measure(target: Target, n: int, rounds: int, rush: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"server": target.name, "clients": n}
    with target.server() as proc:
        async with aiohttp.ClientSession() as http:
            before = rss_kib(proc.pid)
            clients = await connect(Client, target.port, n)
            await asyncio.sleep(1.0)
            result["kib_per_conn"] = round((rss_kib(proc.pid) - before) / n, 1)
            last, first = [], []
            for _ in range(rounds + 2):
                t0 = time.perf_counter()
                r = start_round(clients, await target.change(http))
                await asyncio.wait_for(r.done, 30)
                last.append((r.last - t0) * 1000)
                first.append((r.first - t0) * 1000)
                await asyncio.sleep(0.05)
            result["last_ms"] = round(statistics.median(last[2:]), 1)
            result["first_ms"] = round(statistics.median(first[2:]), 1)
            if rush:
                marker = await target.rush_setup(http, n)
                r = start_round(clients, marker, need_reply=True)
                messages = [target.rush_message(i) for i in range(n)]
                t0 = time.perf_counter()
                for c, m in zip(clients, messages, strict=True):
                    c.send_text(m)
                await asyncio.wait_for(r.done, 60)
                result["rush_ms"] = round((r.last - t0) * 1000, 1)
            for c in clients:
                assert c.transport is not None
                c.transport.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="rero worker processes")
    parser.add_argument("--skip-rush", action="store_true")
    parser.add_argument("--database-url", default="", help="run rero on PostgreSQL")
    args = parser.parse_args()
    global WORKERS, DATABASE_URL
    WORKERS, DATABASE_URL = args.workers, args.database_url
    rows = []
    for n in args.clients:
        for cls in (Bare, Rero):
            row = await measure(cls(), n, args.rounds, rush=n == 1000 and not args.skip_rush)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| clients | server | first ms | last ms | ratio (last) | KiB/conn | rush ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for bare, rero in zip(rows[::2], rows[1::2], strict=True):
        for row in (bare, rero):
            ratio = row["last_ms"] / bare["last_ms"]
            print(
                f"| {row['clients']} | {row['server']} | {row['first_ms']} | {row['last_ms']} |"
                f" {ratio:.2f} | {row['kib_per_conn']} | {row.get('rush_ms', '')} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
