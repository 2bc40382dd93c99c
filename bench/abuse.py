"""Slow and abusive clients: the service must keep serving everyone else.

Beside ``--clients`` well-behaved WebSocket clients and an HTTP prober, it measures a
quiet window, then the same window while
* ``--never-read`` clients hold a WebSocket and never read (a 4 KiB receive buffer),
* one client opens a TCP connection and sends nothing,
* a storm makes ``--storm-rate`` WebSocket connection attempts per second for
  ``--storm-seconds`` (each a full handshake, closed once answered).
In both windows the board changes in rounds (a booking or cancel over HTTP, then
waiting until every well-behaved client holds the new board) while ``GET /slots`` is
probed every 20 ms. Reported: round and probe latencies (median, p99, max), failed
rounds and probes, the storm's achieved rate and outcomes, and how many never-reading
clients the server cut off (``ws_send_timeout_seconds``, from ``/metrics``).

    python -m bench.abuse                     # 100 clients, 200 never-readers, 2,000/s for 5 s
    python -m bench.abuse --clients 20 --never-read 20 --storm-rate 200 --storm-seconds 2 \
        --seconds 4                           # CI's form
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

import aiohttp

from bench.common import verdict
from bench.fanout import Client, Target, rero_server, start_round
from bench.wsclient import RawWebSocket, connect


class NeverReads(RawWebSocket):
    """Completes the handshake, then stops reading for good."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.handshaken and self.transport is not None:
            self.transport.pause_reading()


class Knock(RawWebSocket):
    """One storm attempt: handshake, then close as soon as the server answers."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.close()


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"n": len(values), "median_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(p99, 1), "max_ms": round(ordered[-1], 1)}  # fmt: skip


async def window(target: Target, http: aiohttp.ClientSession, clients: list[Any],
                 seconds: float) -> dict[str, Any]:  # fmt: skip
    """Rounds of change-and-deliver, and GET probes, for ``seconds``."""
    rounds: list[float] = []
    probes: list[float] = []
    failed = {"rounds": 0, "probes": 0}
    end = time.monotonic() + seconds

    async def probe() -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                async with http.get(target.url + "/slots") as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            probes.append((time.perf_counter() - t0) * 1000)
            failed["probes"] += not ok
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    while time.monotonic() < end:
        t0 = time.perf_counter()
        r = start_round(clients, await target.change(http))
        try:
            await asyncio.wait_for(r.done, 5)
            rounds.append((r.last - t0) * 1000)
        except asyncio.TimeoutError:
            failed["rounds"] += 1
        await asyncio.sleep(0.05)
    await prober
    return {"rounds": quantiles(rounds), "probes": quantiles(probes), "failed": failed}


async def storm(port: int, rate: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    outcomes = {"answered": 0, "refused": 0, "failed": 0}

    async def attempt() -> None:
        knock = Knock()
        try:
            await loop.create_connection(lambda: knock, "127.0.0.1", port)
            await asyncio.wait_for(knock.open, 10)
            outcomes["answered"] += 1
        except ConnectionError as e:
            outcomes["refused" if "503" in str(e) else "failed"] += 1
        except (OSError, asyncio.TimeoutError):
            outcomes["failed"] += 1
        finally:
            knock.close()

    tasks = []
    started = time.monotonic()
    tick = 0.01
    for i in range(int(seconds / tick)):
        tasks += [asyncio.create_task(attempt()) for _ in range(round(rate * tick))]
        await asyncio.sleep(max(0.0, started + (i + 1) * tick - time.monotonic()))
    launched_in = time.monotonic() - started
    await asyncio.gather(*tasks)
    return {"attempts": len(tasks), "achieved_per_s": round(len(tasks) / launched_in),
            **outcomes}  # fmt: skip


async def cut_off(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("rero_ws_clients_cut_off_total "):
                return int(float(line.split()[1]))
    return -1


async def abuse(clients: int = 100, never_read: int = 200, storm_rate: int = 2000,
                storm_seconds: float = 5, seconds: float = 30) -> dict[str, Any]:  # fmt: skip
    loop = asyncio.get_running_loop()
    with rero_server() as (target, proc):
        async with aiohttp.ClientSession() as http:
            good = await connect(Client, target.port, clients)
            quiet = await window(target, http, good, seconds)
            idle = socket.create_connection(("127.0.0.1", target.port))
            stalled = []
            for _ in range(never_read):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", target.port))
                _, client = await loop.create_connection(NeverReads, sock=sock)
                stalled.append(client)
            storming = asyncio.create_task(storm(target.port, storm_rate, storm_seconds))
            busy = await window(target, http, good, seconds)
            storm_result = await storming
            result = {
                "clients": clients,
                "quiet": quiet,
                "abused": busy,
                "storm": storm_result,
                "never_read": never_read,
                "never_read_cut_off": await cut_off(http, target.url),
                "good_clients_dropped": sum(c.closed.done() for c in good),
                "server_alive": proc.poll() is None,
            }
            idle.close()
            for c in good + stalled:
                c.close()
    return result


def passed(result: dict[str, Any]) -> bool:
    """Everyone else was served: every round delivered, every probe answered, nobody dropped."""
    busy = result["abused"]
    return bool(
        result["server_alive"]
        and result["good_clients_dropped"] == 0
        and busy["failed"] == {"rounds": 0, "probes": 0}
        and result["quiet"]["failed"] == {"rounds": 0, "probes": 0}
        and busy["rounds"]["n"] > 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--never-read", type=int, default=200)
    parser.add_argument("--storm-rate", type=int, default=2000)
    parser.add_argument("--storm-seconds", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=30, help="length of each window")
    args = parser.parse_args()
    result = asyncio.run(
        abuse(args.clients, args.never_read, args.storm_rate, args.storm_seconds, args.seconds)
    )
    verdict(result, passed(result))


if __name__ == "__main__":
    main()
