"""What more than one test module needs: the test users, a fake PESU, a real server
process and its WebSocket observers, the WebSocket protocol's reading helpers, and
``eventually``, the one way a test waits for something to happen.

Fixtures stay in ``conftest.py``; test modules import helpers from here only, never from
each other or from ``conftest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from rero.calendar import utc
from rero.grants import generate_key
from rero.logs import AccessLogger
from rero.resources import NextOccurrence, build_lab
from rero.setting_checks import FakeUser, LabConfig, ResourceConfig
from rero.settings import Settings
from rero.storage import (
    AddBlackout,
    Book,
    Cancel,
    CancelMany,
    Change,
    LiftBlackout,
    Limit,
    Refusal,
    Series,
    SessionLimits,
    Storage,
    Write,
)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
# As root in a sandbox, and with no network beyond loopback: no background requests.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ALICE = {"username": "alice", "password": "alice-pw-Zq7"}
BOB = {"username": "bob", "password": "bob-pw-Xk4"}
ALICE_SRN = "PES1UG22CS001"
BOB_SRN = "PES1UG22EC002"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
WSMessage = dict[str, Any]


# ---- waiting ------------------------------------------------------------------------------


def _describe(predicate: Callable[..., object]) -> str:
    """The predicate's source line, so a timeout says what was awaited."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


async def eventually(
    predicate: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 5.0,
    *,
    what: str = "",
    interval: float = 0.01,
) -> None:
    """Wait until ``predicate()`` (sync or async) is true; fail the test after ``timeout``.

    Tests wait for the condition itself rather than sleeping for a guessed while: that
    is fast on an idle machine, still right on a loaded one, and a condition that never
    comes fails with a message instead of hanging.
    """
    __tracebackhide__ = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            try:
                result = await asyncio.wait_for(result, max(deadline - loop.time(), interval))
            except asyncio.TimeoutError:
                result = False
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"not true within {timeout:g} s: {what or _describe(predicate)}")
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], object], timeout: float, *, what: str, interval: float = 0.05
) -> None:
    """``eventually`` for code outside an event loop (a subprocess starting up)."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout:g} s: {what}")
        time.sleep(interval)


class StartingGate:
    """Holds ``racers`` tasks until every one of them is waiting, then lets them all go
    together: a rush starts at once without guessing how long getting ready takes."""

    def __init__(self, racers: int) -> None:
        self.racers = racers
        self.waiting = 0
        self._open = asyncio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        await self._open.wait()

    async def open(self, timeout: float = 10.0) -> None:
        await eventually(
            lambda: self.waiting == self.racers,
            timeout,
            what=f"all {self.racers} racers at the gate ({self.waiting} there)",
        )
        self._open.set()


class Clock:
    """A wall clock and a monotonic timer that tests move by hand, for
    ``create_app(settings, clock=clock, timer=clock.timer)``."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def timer(self) -> float:
        return self.mono

    def advance(self, **delta: float) -> None:
        step = timedelta(**delta)
        self.now += step
        self.mono += step.total_seconds()


# ---- users, ports, the store ---------------------------------------------------------------


#: Session limits off, for tests of the store's other rules.
NO_LIMITS = SessionLimits(window_start="", per_window=0, keep=0, purge_before="")


class Errors(logging.Handler):
    """Collects the ERROR records a test's app logs (a fuzzer must cause none)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def login(client: Any, who: dict[str, str] = ALICE) -> str:
    """Sign in over HTTP; the session token."""
    resp = await client.post("/auth/login", json=who)
    assert resp.status == 200
    return str((await resp.json())["token"])


def bearer(token: str) -> dict[str, str]:
    """The header that names a session token."""
    return {"Authorization": f"Bearer {token}"}


def users(n: int) -> tuple[FakeUser, ...]:
    """``n`` distinct fake users ``user0..``, password ``pw-<i>``, SRN ``SRN<i>``."""
    return tuple(FakeUser(f"user{i}", f"pw-{i}", f"User {i}", f"SRN{i:04d}") for i in range(n))


def free_port() -> int:
    """A loopback port free right now (for a server that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one(storage: Storage, change: Change) -> Write:
    """Apply a single change."""
    (write,) = (await storage.apply([change])).writes
    return write


#: Dates version-1 bookings for the stores opened directly in tests.
UPGRADE: Final = NextOccurrence(
    build_lab(Settings()).default, datetime(2030, 1, 7, tzinfo=timezone.utc)
)

DAY = "2030-01-07"
NOW = "2030-01-07T00:00:00+00:00"


def at(hour: int) -> tuple[str, str]:
    """Slot ``hour``'s start and end on :data:`DAY`, as the store keeps them (UTC)."""
    return f"{DAY}T{hour:02d}:00:00+00:00", f"{DAY}T{hour + 1:02d}:00:00+00:00"


def book(hour: int, srn: str, stamp: str, *limits: Limit, resource: str = "lab") -> Book:
    """A booking of slot ``hour`` on :data:`DAY`."""
    return Book(resource, DAY, hour, *at(hour), srn, srn, stamp, limits)


def cancel(hour: int, srn: str | None, actor: str, stamp: str) -> Cancel:
    return Cancel(None, ("lab", at(hour)[0]), srn, actor, "cancelled", stamp, NOW)


async def apply_mixed_group(storage: Storage) -> list[Write]:
    """Each change in a group is decided in order and audited; a refusal sees the state
    that refused it. Shared by the SQLite and the PostgreSQL store's tests."""
    upcoming = Limit("upcoming", 1, ends_after=NOW)
    applied = await storage.apply(
        [
            book(5, "A", "t1"),
            book(5, "B", "t2"),  # taken by A, just before
            book(6, "A", "t3", upcoming),  # A's quota, reached just before
            cancel(5, "B", "B", "t4"),  # not B's
            cancel(5, "A", "A", "t5"),
            book(5, "B", "t6"),
            AddBlackout("lab", *at(7), "maintenance", "ADMIN", "t7", NOW),
            book(7, "B", "t8"),  # closed, just before
            CancelMany("ADMIN", "reset", "t9", NOW, resource="lab"),
        ]
    )
    writes = applied.writes
    assert [w.changed for w in writes] == [True, False, False, False, True, True, True, False, True]
    # Why each refusal, as the store saw it in the same transaction.
    assert [(w.refused, w.detail) for w in writes] == [
        (None, None), (Refusal.TAKEN, None), (Refusal.QUOTA, "upcoming:1"),
        (Refusal.NOT_YOURS, None), (None, None), (None, None), (None, None),
        (Refusal.CLOSED, "maintenance"), (None, None),
    ]  # fmt: skip
    # The board read in the transaction, after every change: nothing left booked.
    assert [(b.slot_id, b.srn, b.status) for b in applied.days[("lab", DAY)]] == []
    events = await storage.events(10, None)
    assert [(e["slot_id"], e["holder_srn"], e["actor_srn"], e["action"]) for e in events] == [
        (5, "B", "ADMIN", "reset"),
        (0, None, "ADMIN", "blackout_added"),  # not a booking's: slot 0, no date
        (5, "B", "B", "booked"),
        (5, "A", "A", "cancelled"),
        (5, "A", "A", "booked"),
    ]
    assert {e["resource"] for e in events} == {"lab"}
    assert {e["date"] for e in events if e["slot_id"]} == {DAY}
    return writes


async def store_contract(storage: Storage) -> None:
    """What every store guarantees, change by change. Shared by the SQLite and the
    PostgreSQL store's tests."""
    made = await one(storage, book(5, "A", "t1"))
    assert made.changed
    assert made.bookings[0].status == "booked"
    booking_id = made.bookings[0].id
    assert (await one(storage, book(5, "B", "t2"))).refused is Refusal.TAKEN
    # A cancel by id: not B's; A's own once; then it is cancelled.
    by_id = Cancel(booking_id, None, "B", "B", "cancelled", "t3", NOW)
    assert (await one(storage, by_id)).refused is Refusal.NOT_YOURS
    mine = Cancel(booking_id, None, "A", "A", "cancelled", "t3", NOW)
    assert [b.status for b in (await one(storage, mine)).bookings] == ["cancelled"]
    assert (await one(storage, mine)).refused is Refusal.CANCELLED
    missing = Cancel(10**9, None, None, "ADMIN", "cancelled", "t3", NOW)
    assert (await one(storage, missing)).refused is Refusal.NOT_FOUND
    # Ended: a booking whose end has passed can no longer be cancelled.
    b6 = (await one(storage, book(6, "B", "t4"))).bookings[0]
    late = Cancel(b6.id, None, "B", "B", "cancelled", "t5", at(6)[1])
    assert (await one(storage, late)).refused is Refusal.ENDED
    # Quotas: per day, scoped to a resource or not.
    day = Limit("day", 1, None, DAY, DAY)
    assert (await one(storage, book(7, "B", "t6", day))).refused is Refusal.QUOTA
    assert (await one(storage, book(7, "B", "t6", Limit("day", 1, "arm", DAY, DAY)))).changed
    # Reads: a board, a student's bookings, the upcoming ones.
    days = await storage.days([("lab", DAY)])
    assert [(b.slot_id, b.srn) for b in days[("lab", DAY)]] == [(6, "B"), (7, "B")]
    assert await storage.booking(b6.id) == b6
    assert [b.slot_id for b in await storage.bookings_of("A", DAY, DAY, None)] == [5]
    assert [b.slot_id for b in await storage.bookings_of("B", None, None, NOW)] == [6, 7]
    # A series: each occurrence decided on its own, in one transaction.
    series = Series((book(7, "C", "t7"), book(8, "C", "t7")))
    parts = (await one(storage, series)).parts
    assert [(p.changed, p.refused) for p in parts] == [(False, Refusal.TAKEN), (True, None)]
    # A blackout cancels what it covers and closes it; lifting reopens it.
    closed = await one(storage, AddBlackout("lab", at(7)[0], at(9)[1], "repairs", "ADM", "t8", NOW))
    assert closed.blackout is not None
    assert closed.blackout.reason == "repairs"
    assert sorted(b.slot_id for b in closed.bookings) == [7, 8]
    assert {b.status for b in closed.bookings} == {"cancelled"}
    assert (await one(storage, book(9, "D", "t9"))).detail == "repairs"
    assert [b.reason for b in await storage.blackouts()] == ["repairs"]
    lifted = await one(storage, LiftBlackout(closed.blackout.id, "ADM", "t10"))
    assert lifted.changed
    assert await storage.blackouts() == []
    assert (await one(storage, LiftBlackout(closed.blackout.id, "ADM", "t10"))).refused is (
        Refusal.NOT_FOUND
    )
    assert (await one(storage, book(9, "D", "t11"))).changed
    events = await storage.events(5, None)
    b = closed.blackout
    span = f"#{b.id} {b.start}/{b.end}: repairs"  # the blackout in its audit rows
    assert [(e["action"], e["slot_id"], e["reason"]) for e in events] == [
        ("booked", 9, None), ("blackout_lifted", 0, span), ("cancelled", 8, "blackout"),
        ("cancelled", 7, "blackout"), ("blackout_added", 0, span),
    ]  # fmt: skip
    # Ended bookings are marked completed; live ones counted.
    counts = await storage.counts(NOW, "lab", at(7)[0])
    assert (counts.live_bookings, counts.ending_soon) == (2, 1)
    assert await storage.complete(at(7)[0]) == 1  # slot 6 ended
    assert (await storage.booking(b6.id)).status == "completed"  # type: ignore[union-attr]
    # Sessions keep the profile.
    await storage.create_session("h", "A", "2999-01-01T00:00:00+00:00", "2026", NO_LIMITS, "{}")
    assert await storage.session("h", "2026") == ("{}", "2999-01-01T00:00:00+00:00")
    assert await storage.delete_session("h", "2026", "2025")
    assert await storage.session("h", "2026") is None


def outside_booking(path: Path, slot_id: int, srn: str) -> None:
    """Book ``slot_id``'s next occurrence on the default ``lab`` straight in the SQLite file,
    as another process would: only a server's change feed can tell it."""
    now = datetime.now(timezone.utc)
    slot = build_lab(Settings()).default.next_occurrence(slot_id, now)
    assert slot is not None
    start, end = (utc(t) for t in (slot.start, slot.end))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO bookings (resource, date, slot_id, starts_at, ends_at, srn, status,"
            " created_at, updated_at) VALUES ('lab', ?, ?, ?, ?, ?, 'booked', ?, ?)",
            (slot.start.date().isoformat(), slot_id, start, end, srn, start, start),
        )


async def new_database(cluster_url: str) -> str:
    """A fresh, empty database on the PostgreSQL cluster at ``cluster_url``; its URL."""
    import asyncpg

    name = f"rero_{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(cluster_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return cluster_url.rsplit("/", 1)[0] + "/" + name


# ---- the calendar's test lab ------------------------------------------------------------

ARM = ResourceConfig(
    "arm-1", name="Robot arm 1", site="RR", campuses=("RR",), closed_weekdays=("sun",),
    holidays=("2026-11-27",), booking_window_days=7,
)  # fmt: skip
CAGE = ResourceConfig(
    "cage", name="Drone cage", site="EC", opens="09:00", closes="11:00", slot_minutes=30,
    booking_window_days=2, window_opens_at="08:00",
)  # fmt: skip
CAROL = FakeUser("carol", "carol-pw-9", "Carol Das", "PES2UG22CS003", campus="EC")
CAROL_LOGIN = {"username": "carol", "password": "carol-pw-9"}
# The clock starts on Tuesday 2026-11-24 at 08:30 in Kolkata (03:00 UTC).
TODAY, TOMORROW = "2026-11-24", "2026-11-25"


# ---- a fake PESU upstream ------------------------------------------------------------------


@dataclass
class FakePesu:
    """A local stand-in for the PESU auth API whose behaviour each test sets."""

    mode: str = "ok"
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    #: The ``Location`` of a numeric mode's answer (mode "307" with a location: a redirect).
    location: str = ""

    def profile(self, username: str) -> dict[str, Any]:
        return {
            "name": "Pesu Student",
            "prn": "PES12022000099",
            "srn": f"PES1UG22CS{len(username):03d}",
            "program": "Bachelor of Technology",
            "branch": "Computer Science and Engineering",
            "branch_short_code": "CSE",
            "campus": "RR",
            "campus_code": 1,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)  # the subject: a slow upstream
        if self.mode == "ok" and body.get("password") == "right":
            return web.json_response(
                {
                    "status": True,
                    "message": "Login successful.",
                    "profile": self.profile(body["username"]),
                }
            )
        if self.mode.endswith("-srn"):  # a success whose profile names nobody
            profile = self.profile(body["username"])
            if self.mode == "no-srn":
                del profile["srn"]
            else:
                profile["srn"] = {"empty-srn": "", "blank-srn": " \t ", "null-srn": None}[self.mode]
            return web.json_response({"status": True, "profile": profile})
        if self.mode == "deep":  # nesting too deep for any JSON decoder's recursion
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        if self.mode == "ok":
            return web.json_response({"status": False, "message": "Invalid"}, status=401)
        if self.mode == "legacy-false":
            return web.json_response({"status": False, "message": "Invalid"})
        if self.mode == "no-profile":
            return web.json_response({"status": True})
        if self.mode == "html":
            return web.Response(text="<html>down</html>", content_type="text/html")
        headers = {"Location": self.location} if self.location else None
        return web.json_response({"error": self.mode}, status=int(self.mode), headers=headers)


@dataclass
class Bystander:
    """A loopback listener that only records: a place nothing must reach (a redirect's
    target, say). ``connections`` counts who connected, ``received`` what they sent."""

    url: str = ""
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def bystander() -> AsyncIterator[Bystander]:
    """A :class:`Bystander` listening while the block runs."""
    watcher = Bystander()
    server = await asyncio.start_server(watcher._serve, "127.0.0.1", 0, family=socket.AF_INET)
    watcher.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/elsewhere"
    async with server:
        yield watcher


# ---- a webhook receiver -------------------------------------------------------------------


@dataclass
class Delivery:
    """One POST a :class:`Receiver` got, and what it answered."""

    status: int
    headers: dict[str, str]
    body: bytes
    signed: bool


@dataclass
class Receiver:
    """A lab's webhook endpoint as its docs tell labs to write one: it checks the
    signature and drops repeats by ``X-Rero-Event-Id``. ``answers`` are the statuses of
    the next requests (then 200); ``unique`` the events it accepted, once each."""

    secret: bytes
    url: str = ""
    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Delivery] = field(default_factory=list)
    unique: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def verify(self, headers: Any, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in headers.get("X-Rero-Signature", "").split(","))
        signed = parts.get("t", "").encode() + b"." + body
        expected = hmac.new(self.secret, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)  # the subject: a slow receiver
        signed = self.verify(request.headers, body)
        status = self.answers.pop(0) if self.answers else 200
        status = status if signed else 401
        self.requests.append(Delivery(status, dict(request.headers), body, signed))
        event_id = request.headers.get("X-Rero-Event-Id", "")
        if status == 200 and event_id not in self.seen:
            self.seen.add(event_id)
            self.unique.append(json.loads(body))
        headers = {"Location": "/elsewhere"} if 300 <= status < 400 else None
        return web.Response(status=status, headers=headers)


def receiver_app(receiver: Receiver) -> web.Application:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    return app


# ---- raw HTTP: bytes no client library would send ------------------------------------------


@dataclass
class RawResponse:
    """An HTTP answer read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(data: bytes) -> RawResponse:
    """One response, as a server that closes the connection after it sends it."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawResponse(int(status_line.split()[1]), headers, body)


async def exchange(port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``request`` as it is (it should say ``Connection: close``) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return parse_response(await asyncio.wait_for(reader.read(), timeout))
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[int]:
    """``app`` on a loopback port (any free one by default), served as ``rero serve`` serves
    it: unlike aiohttp's TestServer, a client that goes away does not cancel its handler.
    Yields the port."""
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


# ---- PostgreSQL ----------------------------------------------------------------------------


@dataclass
class PgCluster:
    """A running cluster: its URL to the ``postgres`` database, and how to restart it."""

    url: str
    pg_ctl: list[str]

    def restart(self) -> None:
        # No pipes: the restarted server inherits them and would hold them open forever.
        subprocess.run(
            [*self.pg_ctl, "restart", "-m", "fast", "-w"],
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def pg_bin() -> Path | None:
    """The newest Debian PostgreSQL's ``bin`` folder, if one is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


# ---- a real server process -----------------------------------------------------------------


@dataclass
class Server:
    """``python -m rero`` running in its own process, and where it listens."""

    proc: subprocess.Popen[bytes]
    url: str

    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/slot-booking"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_users(path: Path, n: int) -> None:
    """A fake-users file with :func:`users` ``(n)`` in it."""
    path.write_text(
        "".join(
            f'[[users]]\nusername = "{u.username}"\npassword = "{u.password}"\n'
            f'name = "{u.name}"\nsrn = "{u.srn}"\n'
            for u in users(n)
        )
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1):  # noqa: S310 - loopback
            return True
    except OSError:  # refused, reset or not ready: not up yet
        return False


def start_server(
    tmp_path: Path, profile: str = "", *, log: Path | None = None, **env: str
) -> Server:
    """``python -m rero`` on the test profile, with ``profile`` (TOML) put before it and
    320 fake users ``user0..`` (see :func:`users`); returns once ``/health`` answers.
    Its log lines go to the file ``log``, if given."""
    write_users(tmp_path / "users.toml", 320)
    config = tmp_path / "profile.toml"
    config.write_text(profile + "\n" + (ROOT / "config" / "test.toml").read_text())
    port = int(env.pop("PORT", 0)) or free_port()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    stderr = subprocess.DEVNULL if log is None else os.open(log, flags, 0o644)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rero", "--config", str(config)],
        env={
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "warning",
            "DATABASE_PATH": str(tmp_path / "rero.db"),
            "FAKE_USERS_FILE": str(tmp_path / "users.toml"),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    if log is not None:
        os.close(stderr)  # the server has its own copy
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or _healthy(url),
            30,
            what=f"the server answering {url}/health",
        )
    except AssertionError:
        proc.kill()
        raise
    assert proc.poll() is None, f"the server exited with {proc.returncode} on start-up"
    return Server(proc, url)


class Observer:
    """A WebSocket client that remembers the last board it saw and its responses."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws
        self.board: dict[str, Any] = {}
        self.responses: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["type"] == "slots_update":
                self.board = data["data"]
            else:
                self.responses.append(data)


async def observe(session: aiohttp.ClientSession, urls: list[str]) -> list[Observer]:
    """One :class:`Observer` per WebSocket URL, returned once each has had its board."""
    observers = [Observer(await session.ws_connect(url)) for url in urls]
    await eventually(lambda: all(o.board for o in observers), 10, what="every greeting board")
    return observers


# ---- the WebSocket protocol, read from a test client ---------------------------------------


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> WSMessage:
    """The next message, which must be JSON text."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    parsed: WSMessage = json.loads(msg.data)
    return parsed


async def collect(ws: aiohttp.ClientWebSocketResponse, *kinds: str) -> dict[str, WSMessage]:
    """Read until one message of each kind has arrived, in any order (the order is free)."""
    seen: dict[str, WSMessage] = {}
    while not set(kinds) <= set(seen):
        msg = await receive(ws)
        seen[msg["type"]] = msg
    return seen


async def connect(client: Any, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
    """Open a socket and consume the board it is greeted with."""
    ws: aiohttp.ClientWebSocketResponse = await client.ws_connect("/slot-booking", **kwargs)
    assert (await receive(ws))["type"] == "slots_update"
    return ws


# ---- a server that must never be contacted -------------------------------------------------


class ByteCounter:
    """A raw TCP listener on loopback that answers nothing and counts every connection and
    every byte it receives: the stand-in for a server that must never hear from a client."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ByteCounter:
        self._server = await asyncio.start_server(self._count, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                self.received += len(chunk)
        except ConnectionError:  # a reset counts what came before it, no more
            pass
        writer.close()


# ---- the hour: labs and their grant keys -------------------------------------------------

PUBLIC_URL = "https://rero.example.edu"
#: A lab letting students in five minutes early (``with_lab`` names its launch URL).
LAB = LabConfig("https://lab.example.edu/", early_minutes=5)


def key_files(folder: Path, *names: str) -> tuple[str, ...]:
    """Grant signing keys written as ``rero keys generate`` writes them; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = tuple(str(folder / f"{name}.pem") for name in names)
    for path in paths:
        generate_key(path)
    return paths


def with_lab(resource: ResourceConfig, lab: LabConfig = LAB) -> ResourceConfig:
    """``resource`` with ``lab`` behind it, its own id in the launch URL."""
    return replace(resource, lab=replace(lab, launch_url=f"https://{resource.id}.lab.example.edu/"))


# ---- a real SMTP server ----------------------------------------------------------------------


class Inbox:
    """What a real SMTP server (``aiosmtpd``, on its own thread) accepted, by recipient;
    ``refusing``: it answers every message with a temporary failure (451); ``unknown``:
    recipients it refuses for good (550)."""

    def __init__(self) -> None:
        self.port = 0
        self.messages: list[tuple[tuple[str, ...], EmailMessage]] = []
        self.refusing = False
        self.refused = 0
        self.unknown: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.unknown:
            self.refused += 1
            return f"550 5.1.1 {address}: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusing:
            self.refused += 1
            return f"451 4.3.0 Mailbox {envelope.rcpt_tos[0]} busy, try again later"
        parsed = message_from_bytes(envelope.content, policy=email_policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.messages if address in rcpt]


@contextlib.contextmanager
def smtp_server() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def code_in(message: EmailMessage) -> str:
    """The verification code: the only run of six digits in the text part."""
    runs = re.findall(r"[0-9]+", text_of(message))
    assert [r for r in runs if len(r) >= 6] == [r for r in runs if len(r) == 6], runs
    (code,) = [r for r in runs if len(r) == 6]
    return str(code)
