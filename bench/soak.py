"""Soak: many WebSocket clients for a long time, a change every 100 ms, clients coming and
going; nothing may go wrong and server memory must stay flat.

* ``--clients`` raw WebSocket clients stay connected for ``--seconds``;
* one driver books and cancels over HTTP every ``--interval`` seconds (cached
  credentials; each request must succeed);
* every ``--period`` seconds ``--reconnect`` of the clients (a share) close and
  as many new ones connect;
* server RSS is sampled every 5 s; growth is measured from the end of ``--warmup``.

Passes when: no request failed, no client got an ``error`` or was closed by the
server, every client ends holding the final board (the body of ``GET /slots``),
and memory grew less than 5% after warm-up. Loopback only.

    python -m bench.soak --clients 1000 --seconds 600       # the full run, 10 min
    python -m bench.soak --clients 100 --seconds 15 --period 3 --warmup 5   # CI's form
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import aiohttp

from bench.common import rss_kib, verdict
from bench.fanout import rero_server
from bench.wsclient import RawWebSocket, connect

USER = {"username": "u1000", "password": "p1000"}
MEMORY_GROWTH_LIMIT = 0.05


class Watcher(RawWebSocket):
    """Keeps the newest board it was sent; counts ``error`` messages."""

    def __init__(self) -> None:
        super().__init__()
        self.board = b""
        self.errors = 0

    def frame(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"slots_update"'):
            self.board = payload
        elif b'"type":"error"' in payload:
            self.errors += 1

    def data(self) -> Any:
        return json.loads(self.board)["data"] if self.board else None

    def leave(self) -> None:
        """A clean close: close frame 1000, then the socket."""
        self._send(self.CLOSE, (1000).to_bytes(2, "big"))
        self.close()


async def drive(http: aiohttp.ClientSession, url: str, interval: float, stop: asyncio.Event,
                failures: list[str]) -> int:  # fmt: skip
    """Book then cancel slots 3..14 in turn, one request every ``interval``; return the count."""
    pending: set[asyncio.Task[None]] = set()
    sent = 0

    async def one(path: str, slot: int) -> None:
        try:
            async with http.post(url + path, json={"slot_id": slot, **USER}) as resp:
                if resp.status != 200:
                    failures.append(f"{path} {slot}: HTTP {resp.status} {await resp.text()}")
        except aiohttp.ClientError as e:
            failures.append(f"{path} {slot}: {e!r}")

    # Sequential per slot: a cancel is sent only after its booking was answered.
    async def pair(slot: int) -> None:
        await one("/book-slot", slot)
        await asyncio.sleep(interval)
        await one("/cancel-slot", slot)

    next_at = time.monotonic()
    while not stop.is_set():
        slot = 3 + (sent // 2) % 12
        task = asyncio.create_task(pair(slot))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 2
        next_at += 2 * interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)
    return sent


async def soak(clients: int, seconds: float, interval: float = 0.1, reconnect: float = 0.05,
               period: float = 60.0, warmup: float = 120.0) -> dict[str, Any]:  # fmt: skip
    failures: list[str] = []
    with rero_server() as (target, proc):
        async with aiohttp.ClientSession() as http:
            watchers = await connect(Watcher, target.port, clients)
            left: list[Watcher] = []
            stop = asyncio.Event()
            driver = asyncio.create_task(drive(http, target.url, interval, stop, failures))
            started = time.monotonic()
            samples: list[tuple[float, int]] = []
            next_sample, next_swap = started, started + period
            reconnects = 0
            while (now := time.monotonic()) - started < seconds:
                if now >= next_sample:
                    samples.append((now - started, rss_kib(proc.pid)))
                    next_sample += 5
                if now >= next_swap:
                    next_swap += period
                    k = max(1, round(reconnect * clients))
                    for w in random.sample(watchers, k):
                        watchers.remove(w)
                        w.leave()
                        left.append(w)
                    try:
                        watchers += await connect(Watcher, target.port, k)
                    except (OSError, ConnectionError) as e:
                        failures.append(f"reconnect failed: {e!r}")
                    reconnects += k
                await asyncio.sleep(0.2)
            stop.set()
            requests = await driver
            samples.append((time.monotonic() - started, rss_kib(proc.pid)))
            async with http.get(target.url + "/slots") as resp:
                final = await resp.json()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                stale = [w for w in watchers if w.data() != final]
                if not stale:
                    break
                await asyncio.sleep(0.1)
            if stale:
                failures.append(f"{len(stale)} clients do not hold the final board")
            dropped = [w for w in watchers if w.closed.done()]
            if dropped:
                codes = sorted({w.close_code for w in dropped}, key=str)
                failures.append(f"{len(dropped)} clients closed by the server: {codes}")
            errors = sum(w.errors for w in watchers + left)
            if errors:
                failures.append(f"{errors} error messages")
            for w in watchers:
                w.close()
    base = next((kib for t, kib in samples if t >= warmup), samples[0][1])
    growth = (samples[-1][1] - base) / base
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": requests,
        "reconnects": reconnects,
        "rss_kib_after_warmup": base,
        "rss_kib_end": samples[-1][1],
        "rss_kib_max": max(kib for _, kib in samples),
        "memory_growth": round(growth, 4),
        "rss_kib_every_30s": [kib for t, kib in samples if int(t) % 30 < 5],
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--reconnect", type=float, default=0.05, help="share per period")
    parser.add_argument("--period", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=120)
    args = parser.parse_args()
    result = asyncio.run(
        soak(args.clients, args.seconds, args.interval, args.reconnect, args.period, args.warmup)
    )
    verdict(result, not result["failures"] and result["memory_growth"] < MEMORY_GROWTH_LIMIT)


if __name__ == "__main__":
    main()
