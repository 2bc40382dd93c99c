"""Fan-out with subscriptions: the server CPU one change costs, by the number of subscribers
of the board it touches, and the original (legacy) fan-out beside the bare broadcast.

rero (one worker, the three resources of bench/lab.py, ``booking_window_days`` 8, the
protocol ping off so only changes cost CPU) gets two phases in one run:

1. **Boards.** ``--subscribers`` sockets (10,000) subscribe, one board each, over 21 boards
   (3 resources x the dates today + 1 ... today + 7), skewed: one board gets half of them
   (5,000), one a twentieth (500), the other 19 share the rest; beside them ``--legacy``
   sockets (1,000) never subscribe. A change is a student's ``POST /bookings`` or
   ``DELETE /bookings/{id}`` (bearer token) on one board, done when its reply is in and
   every subscriber of that board holds the new board. Measured on the 5,000 board, the
   500 board and a board nobody watches (today + 8: the fixed cost of a change), in turn,
   ``--repeat`` times, ``--rounds`` changes each. The legacy sockets must get nothing.
2. **Legacy.** The subscribers leave; ``--clients`` (5,000) legacy sockets on rero and as
   many on the bare server (bench/bare.py). rero's change is ``POST /book-slot`` or
   ``/cancel-slot`` (cached credentials, as bench/fanout.py), the bare server's
   ``POST /change``; done when every client holds the new board. Interleaved: ``--rounds``
   changes on each, ``--repeat`` times.

Server CPU is every thread's run time from the scheduler (``/proc/PID/task/*/schedstat``,
nanoseconds; bench/common.py's ``cpu_seconds``), read before and after the changes, divided
by their number. The load is one process of light clients (bench/wsclient.py); mind
``ulimit -n``: it holds 11,000 sockets, rero as many. Loopback only, bounded by the counts.

    python -m bench.subscriptions --subscribers 10000 --legacy 1000 --clients 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import aiohttp

from bench.common import cpu_seconds, free_port, serve_bare, serve_rero
from bench.lab import RESOURCE_IDS, book, cancel, first_date, lab_profile, login_all
from bench.wsclient import RawWebSocket, connect

DATES = range(1, 8)  # today + 1 ... today + 7
UNWATCHED = 8  # today + 8: the board nobody subscribes to
LEGACY_BODY = {"slot_id": 9, "username": "u0", "password": "p0"}


class Round:
    """The clients one change must reach; done when each holds a new board."""

    def __init__(self, clients: list[Sock]) -> None:
        self.left = len(clients)
        self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()
        if not clients:
            self.done.set_result(None)
        for c in clients:
            c.round = self

    def arrived(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.last = time.perf_counter()
            self.done.set_result(None)


class Sock(RawWebSocket):
    """A client on one board (``board`` set after it subscribes) or on the rolling board
    (``board`` None); counts the boards it is sent and tells its current round."""

    def __init__(self) -> None:
        super().__init__()
        self.board: tuple[str, str] | None = None
        self.frames = 0
        self.round: Round | None = None
        loop = asyncio.get_running_loop()
        self.greeted = loop.create_future()  # the board every socket is sent on connect
        self.subscribed = loop.create_future()

    def frame(self, payload: bytes) -> None:
        if b"slots_update" not in payload:
            if b'"error"' in payload:
                print(payload[:200], file=sys.stderr)
            return
        if not self.greeted.done():
            self.greeted.set_result(None)
            return
        if self.board is not None and not self.subscribed.done():
            if b'"resource"' in payload:
                self.subscribed.set_result(None)
            return
        self.frames += 1
        if self.round is not None:
            r, self.round = self.round, None
            r.arrived()

    def subscribe(self, resource: str, day: date) -> None:
        self.board = (resource, str(day))
        self.send_text(json.dumps({"type": "subscribe", "resource": resource, "date": str(day)}))


async def connect_greeted(port: int, n: int) -> list[Sock]:
    """``n`` sockets, each past the board it is sent on connect."""
    socks = await connect(Sock, port, n)
    await asyncio.wait_for(asyncio.gather(*(s.greeted for s in socks)), 120)
    return socks


async def changes(
    pid: int, clients: list[Sock], change: Callable[[int], Awaitable[None]], rounds: int
) -> dict[str, float]:
    """Run ``rounds`` changes one after another, each awaited until it has reached every
    one of ``clients``; the server's CPU ms per change and the median ms to the last one."""
    await asyncio.sleep(0.2)
    cpu0 = cpu_seconds(pid)
    last = []
    for k in range(rounds):
        r = Round(clients)
        t0 = time.perf_counter()
        await change(k)
        await asyncio.wait_for(r.done, 30)
        last.append(((r.last or time.perf_counter()) - t0) * 1000)
    await asyncio.sleep(0.2)
    cpu = cpu_seconds(pid) - cpu0
    return {"cpu_ms": cpu * 1000 / rounds, "last_ms": statistics.median(last)}


def board_change(
    http: aiohttp.ClientSession, base: str, token: str, resource: str, day: date
) -> Callable[[int], Awaitable[None]]:
    """Change ``k``: book slot 9 of the board (even ``k``) or cancel that booking (odd)."""
    held: list[int] = []

    async def change(k: int) -> None:
        if k % 2 == 0:
            held.append((await book(http, base, token, resource, day, 9))["id"])
        else:
            await cancel(http, base, token, held.pop())

    return change


def spread(n: int, boards: list[tuple[str, date]]) -> list[tuple[str, date]]:
    """The board of each of ``n`` subscribers: half on the first board, a twentieth on the
    second, the rest evenly over the others."""
    big, small = n // 2, n // 20
    rest = boards[2:]
    return (
        [boards[0]] * big
        + [boards[1]] * small
        + [rest[i % len(rest)] for i in range(n - big - small)]
    )


def summary(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"


async def phase_boards(
    args: argparse.Namespace, http: aiohttp.ClientSession, base: str, port: int, pid: int
) -> tuple[list[Sock], dict[str, Any]]:
    today = await first_date(http, base)
    token = (await login_all(http, base, range(1)))[0]
    boards = [(r, today + timedelta(days=d)) for d in DATES for r in RESOURCE_IDS]
    # The skewed boards are on resources other than the default one, so no change to them
    # touches the rolling board the legacy sockets see.
    big = (RESOURCE_IDS[1], today + timedelta(days=3))
    small = (RESOURCE_IDS[2], today + timedelta(days=3))
    boards = [big, small] + [b for b in boards if b not in (big, small)]
    legacy = await connect_greeted(port, args.legacy)
    subs = await connect_greeted(port, args.subscribers)
    for s, (resource, day) in zip(subs, spread(len(subs), boards), strict=True):
        s.subscribe(resource, day)
    await asyncio.wait_for(asyncio.gather(*(s.subscribed for s in subs)), 120)
    legacy_frames = sum(s.frames for s in legacy)
    measured = {
        "big board": big,
        "small board": small,
        "unwatched board": (RESOURCE_IDS[2], today + timedelta(days=UNWATCHED)),
    }
    watchers = {
        name: [s for s in subs if s.board == (r, str(d))] for name, (r, d) in measured.items()
    }
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in measured}
    for _ in range(args.repeat):
        for name, (resource, day) in measured.items():
            change = board_change(http, base, token, resource, day)
            # An even number of changes leaves the board as it was.
            rounds = args.rounds + args.rounds % 2
            figures[name].append(await changes(pid, watchers[name], change, rounds))
    result: dict[str, Any] = {
        name: {
            "subscribers": len(watchers[name]),
            "cpu_ms": [round(f["cpu_ms"], 2) for f in figs],
            "last_ms": [round(f["last_ms"], 1) for f in figs],
        }
        for name, figs in figures.items()
    }
    result["legacy_frames_during_dated_changes"] = sum(s.frames for s in legacy) - legacy_frames
    for s in subs:
        s.close()
    return legacy, result


async def phase_legacy(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    rero: tuple[str, int, int, list[Sock]] | None,
    bare: tuple[str, int, int],
) -> dict[str, list[float]]:
    """Interleaved legacy changes on rero (if given) and the bare broadcast."""
    bare_url, bare_port, bare_pid = bare
    bare_clients = await connect_greeted(bare_port, args.clients)

    async def bare_change(k: int) -> None:
        async with http.post(bare_url + "/change") as resp:
            assert resp.status == 200

    out: dict[str, list[float]] = {"rero_cpu_ms": [], "bare_cpu_ms": [], "ratio": [],
                                   "rero_last_ms": [], "bare_last_ms": []}  # fmt: skip
    if rero is not None:
        base, port, pid, legacy = rero
        legacy += await connect_greeted(port, args.clients - len(legacy))

        async def rero_change(k: int) -> None:
            path = "/book-slot" if k % 2 == 0 else "/cancel-slot"
            async with http.post(base + path, json=LEGACY_BODY) as resp:
                assert resp.status == 200, await resp.text()

    for _ in range(args.repeat):
        rounds = args.rounds + args.rounds % 2
        b = await changes(bare_pid, bare_clients, bare_change, rounds)
        out["bare_cpu_ms"].append(round(b["cpu_ms"], 2))
        out["bare_last_ms"].append(round(b["last_ms"], 1))
        if rero is not None:
            r = await changes(pid, legacy, rero_change, rounds)
            out["rero_cpu_ms"].append(round(r["cpu_ms"], 2))
            out["rero_last_ms"].append(round(r["last_ms"], 1))
            out["ratio"].append(round(r["cpu_ms"] / b["cpu_ms"], 2))
    for c in bare_clients:
        c.close()
    return out


async def run(args: argparse.Namespace) -> None:
    bare_port = free_port()
    bare_url = f"http://127.0.0.1:{bare_port}"
    profile = lab_profile(
        f"ws_heartbeat_seconds = 0\nws_max_connections = {args.subscribers + args.legacy + 100}\n",
        booking_window_days=UNWATCHED,
    )
    with serve_bare(bare_port) as bare_proc:
        bare = (bare_url, bare_port, bare_proc.pid)
        async with aiohttp.ClientSession() as http:
            if args.bare_only:
                print(json.dumps(await phase_legacy(args, http, None, bare)))
                return
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            if args.skip_boards:  # the original service has no [[resources]]
                profile = "ws_heartbeat_seconds = 0\n"
            with serve_rero(port, 2, {"WORKERS": "1"}, profile=profile) as proc:
                legacy: list[Sock] = []
                boards: dict[str, Any] = {}
                if not args.skip_boards:
                    legacy, boards = await phase_boards(args, http, base, port, proc.pid)
                    print(json.dumps(boards), file=sys.stderr, flush=True)
                    await asyncio.sleep(1.0)  # the server lets the subscribers go
                rero = (base, port, proc.pid, legacy)
                legacy_figures = await phase_legacy(args, http, rero, bare)
                print(json.dumps(legacy_figures), file=sys.stderr, flush=True)
    report(boards, legacy_figures, args)


def report(
    boards: dict[str, Any], legacy: dict[str, list[float]], args: argparse.Namespace
) -> None:
    if boards:
        report_boards(boards)
    print(f"\n| legacy fan-out, {args.clients:,} clients | CPU ms per change | ms to the last"
          " client |\n| --- | --- | --- |")  # fmt: skip
    print(f"| bare broadcast | {summary(legacy['bare_cpu_ms'])} |"
          f" {summary(legacy['bare_last_ms'])} |")  # fmt: skip
    print(f"| rero | {summary(legacy['rero_cpu_ms'])} | {summary(legacy['rero_last_ms'])} |")
    print(f"| rero / bare | {summary(legacy['ratio'])} | |")


def report_boards(boards: dict[str, Any]) -> None:
    big = boards["big board"]["cpu_ms"]
    base = boards["unwatched board"]["cpu_ms"]
    print("| board | subscribers | CPU ms per change | / the big board's | net of the unwatched"
          " board, / the big board's | ms to the last subscriber |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("big board", "small board", "unwatched board"):
        row = boards[name]
        cpu = row["cpu_ms"]
        share = [c / b for c, b in zip(cpu, big, strict=True)]
        net = [(c - z) / (b - z) for c, b, z in zip(cpu, big, base, strict=True)]
        print(f"| {name} | {row['subscribers']:,} | {summary(cpu)} | {summary(share)} |"
              f" {summary(net)} | {summary(row['last_ms'])} |")  # fmt: skip
    print(f"\nlegacy sockets' frames during the dated changes: "
          f"{boards['legacy_frames_during_dated_changes']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--legacy", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=5_000, help="legacy fan-out clients")
    parser.add_argument("--rounds", type=int, default=20, help="changes per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare-only", action="store_true", help="the bare half alone")
    parser.add_argument("--skip-boards", action="store_true", help="the legacy phase alone")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
