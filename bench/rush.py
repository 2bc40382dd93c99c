"""The window-opening rush: 2,000 distinct students, 3 resources x 12 slots, every
``POST /bookings`` sent in the same second the newest day opens.

rero runs one worker with the three resources of bench/lab.py, ``booking_window_days`` 7
and ``window_opens_at`` set to the first whole minute at least ``--lead`` seconds ahead in
the resources' zone, so the day that opens then (today + 7) is the target. Before it opens:
every student signs in (``POST /auth/login``, a bearer token each; the bench lifts the
sign-in limits), ``--subscribers`` WebSocket clients subscribe to the three target boards,
and each student gets its own keep-alive connection (bench/httpclient.py). At the opening
(plus ``--margin``) all requests are written at once; student i asks for resource i % 3,
slot 3 + (i // 3) % 12, so about 55 students contend for each slot. With ``--auth
password`` each request carries the student's username and password instead of the token
(the sign-ins left them in the auth cache), to tell the session read's share apart.

The ceiling: the same client, the same connections count and the same request bytes sent
at once to the bare aiohttp ``POST /echo`` (bench/bare.py), once before the rush and once
after it has settled; latency is from each request's write to its whole reply.

Passes when: the requests went out within the opening's second, exactly one 201 per slot
(36 winners, each for the slot it asked), every other reply a 4xx with a ``detail``
sentence (counted by sentence), the three boards show every slot booked, and every
subscriber's last ``slots_update`` equals ``GET /resources/{id}/slots?date=`` read after
the rush. Loopback only; the run takes
about ``--lead`` + 60 seconds at most plus the set-up.

    python -m bench.rush --students 2000 --subscribers 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from bench.common import cpu_seconds, free_port, serve_bare, serve_rero, verdict
from bench.httpclient import RawHTTP, open_many, post, rush
from bench.lab import RESOURCE_IDS, ZONE, board_path, lab_profile, login_all, resources
from bench.wsclient import RawWebSocket, connect

WINDOW_DAYS = 7
SLOTS = range(3, 15)
#: Seconds before the opening at which the students' connections are opened (well within
#: the 75 s keep-alive timeout).
OPEN_AHEAD = 15


class Subscriber(RawWebSocket):
    """Subscribes to one board and keeps the newest ``slots_update`` of it (parsed at the
    end, so the load side stays cheap during the rush)."""

    def __init__(self) -> None:
        super().__init__()
        self.last = b""
        self.updates = 0
        self.errors: list[bytes] = []
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def watch(self, resource: str, day: date) -> None:
        self.send_text(json.dumps({"type": "subscribe", "resource": resource, "date": str(day)}))

    def frame(self, payload: bytes) -> None:
        # The rolling board's updates carry no "resource"; a subscribed board's do.
        if b'"slots_update"' in payload and b'"resource"' in payload:
            self.last = payload
            self.updates += 1
            if not self.first.done():
                self.first.set_result(None)
        elif b'"type":"error"' in payload or b'"type": "error"' in payload:
            self.errors.append(payload)

    def data(self) -> Any:
        return json.loads(self.last)["data"] if self.last else None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(replies: list[tuple[int, bytes, float]]) -> dict[str, float]:
    took = [t * 1000 for _, _, t in replies]
    return {"p50_ms": round(percentile(took, 50), 1), "p99_ms": round(percentile(took, 99), 1),
            "max_ms": round(max(took), 1)}  # fmt: skip


async def echo_rush(
    port: int, requests: list[bytes], pid: int
) -> tuple[list[tuple[int, bytes, float]], float]:
    """The ceiling: the same bytes, to the bare echo, over as many connections opened
    first; the replies, and the server's CPU seconds from the first write to the last."""
    conns = await open_many(port, len(requests))
    echoes = [r.replace(b"POST /bookings ", b"POST /echo ", 1) for r in requests]
    try:
        cpu = cpu_seconds(pid)
        replies = await rush(conns, echoes)
        return replies, cpu_seconds(pid) - cpu
    finally:
        for c in conns:
            c.close()


async def sleep_until(instant: float) -> None:
    await asyncio.sleep(max(0.0, instant - time.time()))


def sentence(detail: object) -> str:
    """A refusal's sentence with the slot number taken out, to count them by kind."""
    return re.sub(r"Slot \d+ ", "Slot N ", str(detail))


async def settle(
    http: aiohttp.ClientSession, base: str, subs: list[Subscriber], target: date, seconds: float
) -> tuple[int, dict[str, Any]]:
    """Wait until every subscriber holds its board as ``GET`` reads it now (or ``seconds``
    pass); how many do, and the boards."""
    deadline = time.monotonic() + seconds
    while True:
        boards = {}
        for rid in RESOURCE_IDS:
            async with http.get(base + board_path(rid, target)) as resp:
                boards[rid] = await resp.json()
        same = sum(s.data() == boards[RESOURCE_IDS[i % 3]] for i, s in enumerate(subs))
        if same == len(subs) or time.monotonic() > deadline:
            return same, boards
        await asyncio.sleep(0.2)


async def bare_only(args: argparse.Namespace) -> None:
    """The ceiling's half alone (made-up tokens), to try the load side without rero."""
    body = {"resource": RESOURCE_IDS[0], "date": "2026-12-01", "slot_id": 9}
    requests = [post("/bookings", body, "t" * 43) for _ in range(args.students)]
    port = free_port()
    with serve_bare(port) as proc:
        for _ in range(2):
            replies, cpu = await echo_rush(port, requests, proc.pid)
            print(
                json.dumps(
                    latency(replies) | {"cpu_us_per_request": round(cpu * 1e6 / len(requests))}
                )
            )


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    n = args.students
    now = datetime.now(ZoneInfo(ZONE))
    opening = (now + timedelta(seconds=args.lead)).replace(second=0, microsecond=0)
    opening += timedelta(minutes=1)
    target = opening.date() + timedelta(days=WINDOW_DAYS)
    profile = lab_profile(
        "ws_heartbeat_seconds = 0\n",
        booking_window_days=WINDOW_DAYS,
        window_opens_at=opening.strftime("%H:%M"),
    )
    result: dict[str, Any] = {"students": n, "subscribers": args.subscribers, "auth": args.auth,
                              "opening": opening.isoformat(), "target": str(target)}  # fmt: skip
    port, bare_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        serve_bare(bare_port) as bare_proc,
        serve_rero(port, n, {"WORKERS": "1"}, profile=profile) as proc,
    ):
        async with aiohttp.ClientSession() as http:
            t0 = time.perf_counter()
            tokens = await login_all(http, base, range(n))
            result["logins_per_s"] = round(n / (time.perf_counter() - t0))
            for r in (await resources(http, base)).values():
                last = r["window"]["last_date"]
                assert last == str(target - timedelta(days=1)), f"{r['id']}: last_date {last}"
            subs = await connect(Subscriber, port, args.subscribers)
            for i, s in enumerate(subs):
                s.watch(RESOURCE_IDS[i % 3], target)
            await asyncio.wait_for(asyncio.gather(*(s.first for s in subs)), 30)
            asked = [(RESOURCE_IDS[i % 3], SLOTS[(i // 3) % len(SLOTS)]) for i in range(n)]
            password = args.auth == "password"
            requests = [
                post(
                    "/bookings",
                    {"resource": r, "date": str(target), "slot_id": s}
                    | ({"username": f"u{i}", "password": f"p{i}"} if password else {}),
                    None if password else tokens[i],
                )
                for i, (r, s) in enumerate(asked)
            ]
            bare_before, cpu_bare = await echo_rush(bare_port, requests, bare_proc.pid)
            if time.time() > opening.timestamp() - OPEN_AHEAD - 1:
                raise SystemExit(f"set-up outlasted --lead {args.lead}: raise it")
            await sleep_until(opening.timestamp() - OPEN_AHEAD)
            conns: list[RawHTTP] = await open_many(port, n)
            await sleep_until(opening.timestamp() + args.margin)
            result["sent_after_opening_s"] = round(time.time() - opening.timestamp(), 3)
            cpu = cpu_seconds(proc.pid)
            replies = await rush(conns, requests, args.timeout)
            cpu_rero = cpu_seconds(proc.pid) - cpu
            for c in conns:
                c.close()
            same, boards = await settle(http, base, subs, target, args.settle)
            await asyncio.sleep(1.0)  # rero lets the rush's connections go first
            bare_after, cpu_after = await echo_rush(bare_port, requests, bare_proc.pid)

    winners: dict[tuple[str, int], int] = {}
    sentences: Counter[str] = Counter()
    wrong: list[str] = []
    for i, (status, body, _) in enumerate(replies):
        reply = json.loads(body)
        if status == 201:
            b = reply["booking"]
            key = (b["resource"], b["slot_id"])
            if key != asked[i] or b["date"] != str(target) or key in winners:
                wrong.append(f"student {i}: {body!r}")
            winners[key] = i
        elif 400 <= status < 500 and isinstance(reply.get("detail"), str):
            sentences[f"{status} {sentence(reply['detail'])}"] += 1
        else:
            wrong.append(f"student {i}: {status} {body!r}")
    full = all(b["booked_slots"] == list(SLOTS) for b in boards.values())
    rero_lat = latency(replies)
    before, after = latency(bare_before), latency(bare_after)
    ceiling = {k: (before[k] + after[k]) / 2 for k in ("p50_ms", "p99_ms")}
    result |= {
        "winners": len(winners),
        "refusals": dict(sentences),
        "wrong": wrong[:10],
        "boards_full": full,
        "subscribers_on_committed_board": same,
        "subscriber_errors": sum(len(s.errors) for s in subs),
        "updates_per_subscriber": statistics.median(s.updates for s in subs),
        "rero": rero_lat,
        "bare_before": before,
        "bare_after": after,
        # Server CPU from the first write to the last reply, per request (bare: mean of both).
        "rero_cpu_us_per_request": round(cpu_rero * 1e6 / n),
        "bare_cpu_us_per_request": round((cpu_bare + cpu_after) / 2 * 1e6 / n),
        "p50_ratio": round(rero_lat["p50_ms"] / ceiling["p50_ms"], 2),
        "p99_ratio": round(rero_lat["p99_ms"] / ceiling["p99_ms"], 2),
    }
    ok = (
        result["sent_after_opening_s"] < 1
        and len(winners) == len(RESOURCE_IDS) * len(SLOTS)
        and not wrong
        and sum(sentences.values()) == n - len(winners)
        and full
        and same == len(subs)
        and result["subscriber_errors"] == 0
    )
    return result, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--lead", type=float, default=40, help="set-up time before the opening")
    parser.add_argument("--margin", type=float, default=0.1, help="seconds after the opening")
    parser.add_argument("--timeout", type=float, default=60, help="for every reply")
    parser.add_argument("--settle", type=float, default=15, help="for the subscribers")
    parser.add_argument("--bare-only", action="store_true", help="the ceiling alone")
    parser.add_argument(
        "--auth",
        choices=("token", "password"),
        default="token",
        help="bearer tokens (the default), or username and password in each body (the"
        " credentials the sign-ins cached): tells the session read's share apart",
    )
    args = parser.parse_args()
    if args.bare_only:
        asyncio.run(bare_only(args))
        return
    result, ok = asyncio.run(run(args))
    r, b1, b2 = result["rero"], result["bare_before"], result["bare_after"]
    print("| server | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |")
    for name, row in (("bare echo, before", b1), ("rero", r), ("bare echo, after", b2)):
        print(f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    print(f"| rero / bare (mean of both) | {result['p50_ratio']} | {result['p99_ratio']} | |")
    verdict(result, ok)


if __name__ == "__main__":
    main()
