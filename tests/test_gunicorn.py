"""Several workers under gunicorn's master: a killed worker comes back and is logged, HUP
replaces the workers without failing a request, TERM stops everything within the grace
period, and one scrape of ``/metrics`` gives every worker's totals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Set
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rero.metrics import PUBLISH_SECONDS
from rero.settings import Settings
from rero.workers import GRACE, options
from tests.helpers import Server, eventually, start_server, wait_until

#: Server processes with two workers each.
stress = pytest.mark.stress

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def test_gunicorn_is_configured_from_the_settings(settings: Settings) -> None:
    got = options(replace(settings, host="::1", port=8123, workers=3, log_level="warning"))
    assert (got["bind"], got["workers"], got["loglevel"]) == (["[::1]:8123"], 3, "warning")
    assert got["worker_class"] == "aiohttp.GunicornWebWorker"
    assert got["graceful_timeout"] == GRACE
    assert got["control_socket_disable"] is True  # no socket shared by unrelated servers
    assert options(replace(settings, host="127.0.0.1"))["bind"] == [f"127.0.0.1:{settings.port}"]


def answered_by(url: str) -> str:
    """The worker that answers a request on a fresh connection."""
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:  # noqa: S310 - loopback
        return str(resp.headers["X-Rero-Worker"])


def workers_answering(url: str, n: int, *, besides: Set[str] = frozenset()) -> set[str]:
    """Ask on fresh connections until ``n`` different workers, none of ``besides``, have
    answered."""
    seen: set[str] = set()

    def ask() -> bool:
        seen.add(answered_by(url))
        return len(seen - besides) == n

    wait_until(ask, 30, what=f"{n} workers besides {besides}")
    return seen - besides


def running(pid: str) -> bool:
    return Path(f"/proc/{pid}").exists()


def stop(server: Server) -> None:
    server.proc.terminate()
    assert server.proc.wait(GRACE + 5) == 0


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[Server]:
    server = start_server(tmp_path, WORKERS="2", log=tmp_path / "server.log")
    yield server
    if server.proc.poll() is None:
        stop(server)


Sockets = dict[str, list[Any]]  # WebSockets by worker


async def sockets_on_each_worker(session: aiohttp.ClientSession, server: Server) -> Sockets:
    """Open WebSockets until each of the two workers holds one; by worker."""
    sockets: Sockets = {}

    async def one_more() -> bool:
        ws = await session.ws_connect(server.ws_url())
        sockets.setdefault(ws._response.headers["X-Rero-Worker"], []).append(ws)
        return len(sockets) == 2

    await eventually(one_more, 30, what="a WebSocket on each worker")
    return sockets


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be JSON."""
    return [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()]


@stress
async def test_a_killed_worker_is_replaced_and_the_master_logs_it(
    two_workers: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    before = workers_answering(two_workers.url, 2)
    sockets = await sockets_on_each_worker(session, two_workers)
    victim = min(before)
    os.kill(int(victim), signal.SIGKILL)
    workers_answering(two_workers.url, 1, besides=before)  # a new one
    assert not running(victim)
    # The dead worker's sockets leave the gauge with it; the survivor's stay.
    (survivor,) = before - {victim}

    async def only_the_survivors_sockets() -> bool:
        samples = await scrape(session, two_workers.url)
        return samples[("rero_websocket_connections", ())] == len(sockets[survivor])

    await eventually(only_the_survivors_sockets, 5 * PUBLISH_SECONDS)
    for ws in sockets[survivor]:
        await ws.close()
    stop(two_workers)
    killed = [
        line
        for line in log_lines(tmp_path)
        if line["level"] == "ERROR" and f"(pid:{victim}) was sent SIGKILL" in line["message"]
    ]
    assert len(killed) == 1, killed
    assert killed[0]["name"] == "gunicorn.error"


@stress
async def test_hup_replaces_the_workers_without_a_failed_request(
    two_workers: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    old = workers_answering(two_workers.url, 2)
    answered: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    done = asyncio.Event()

    async def get() -> None:
        async with session.get(two_workers.url + "/slots") as resp:
            await resp.read()
            answered[resp.headers["X-Rero-Worker"], resp.status] += 1

    async def ask() -> None:
        while not done.is_set():
            try:
                await get()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # An idle keep-alive connection closed by a retiring worker as the request
                # went out: a browser retries such an idempotent request once (RFC 9112
                # 9.3.1), and so does this client. The retry itself must not fail.
                try:
                    await get()
                except aiohttp.ClientError as e:
                    failures.append(repr(e))
            except aiohttp.ClientError as e:
                failures.append(repr(e))

    def new_answers() -> int:
        return sum(n for (pid, _), n in answered.items() if pid not in old)

    askers = [asyncio.create_task(ask()) for _ in range(4)]
    try:
        await eventually(lambda: answered.total() >= 50, 10, what="the old workers answering")
        two_workers.proc.send_signal(signal.SIGHUP)
        await eventually(
            lambda: not any(running(pid) for pid in old) and new_answers() >= 50,
            GRACE + 10,
            what="the old workers gone and the new ones answering",
        )
    finally:
        done.set()
        await asyncio.gather(*askers)
    assert failures == []
    assert {status for _, status in answered} == {200}
    assert {pid for pid, _ in answered} - old  # the loop's connections moved to new workers
    assert not workers_answering(two_workers.url, 2) & old
    stop(two_workers)
    assert [line for line in log_lines(tmp_path) if line["level"] == "ERROR"] == []


@stress
async def test_hup_reads_the_profile_again_and_keeps_it_if_broken(
    two_workers: Server, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.toml"
    rest = profile.read_text()

    async def hup(first_line: str) -> None:
        profile.write_text(first_line + "\n" + rest)
        old = workers_answering(two_workers.url, 2)
        two_workers.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: not any(running(pid) for pid in old), GRACE + 10, what="old gone")
        workers_answering(two_workers.url, 2)  # the new ones, both up

    async def book(user: int, slot: int) -> int:
        body = {"slot_id": slot, "username": f"user{user}", "password": f"pw-{user}"}
        async with (
            aiohttp.ClientSession() as fresh,  # the old workers closed the pooled connections
            fresh.post(two_workers.url + "/book-slot", json=body) as resp,
        ):
            return resp.status

    await hup("max_bookings_per_user = 1")
    assert [await book(0, 3), await book(0, 4)] == [200, 400]
    await hup('max_bookings_per_user = "many"')
    assert [await book(1, 5), await book(1, 6)] == [200, 400]  # the quota of 1 holds
    stop(two_workers)
    (refused,) = [line for line in log_lines(tmp_path) if line["level"] == "ERROR"]
    assert refused["message"] == "reload: keeping the running settings"
    assert "max_bookings_per_user" in refused["error"]


@stress
async def test_term_stops_every_process_within_the_grace_period(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Each server has a metrics directory of its own, gone when the server is."""
    temp = tmp_path / "temp"
    temp.mkdir()
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(start_server(tmp_path / name, WORKERS="2", TMPDIR=str(temp)))
    assert len([p for p in temp.iterdir() if p.name.startswith("rero-metrics-")]) == 2
    server = servers[0]
    workers = workers_answering(server.url, 2)
    ws = await session.ws_connect(server.ws_url())
    assert (await ws.receive_json())["type"] == "slots_update"
    server.proc.terminate()
    closing = await ws.receive(timeout=GRACE)
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)  # going away
    assert await asyncio.to_thread(server.proc.wait, GRACE) == 0
    assert not any(running(pid) for pid in workers)
    assert len(list(temp.iterdir())) == 1  # the other server's
    stop(servers[1])
    assert list(temp.iterdir()) == []


@stress
async def test_one_scrape_gives_the_totals_of_every_worker(
    two_workers: Server, session: aiohttp.ClientSession
) -> None:
    url = two_workers.url
    booked_by: Counter[str] = Counter()  # successful bookings by worker
    tries = iter(range(320))

    async def book_and_cancel() -> bool:
        """On a fresh connection, so on either worker: the first to accept it. A worker
        whose board still shows another worker's booking of the slot may refuse it."""
        i = next(tries)
        body = {"slot_id": 3 + i % 12, "username": f"user{i}", "password": f"pw-{i}"}
        async with aiohttp.ClientSession() as fresh:
            async with fresh.post(url + "/book-slot", json=body) as resp:
                if resp.status != 200:
                    return False
                booked_by[resp.headers["X-Rero-Worker"]] += 1
            async with fresh.post(url + "/cancel-slot", json=body) as resp:
                assert resp.status == 200
        return len(booked_by) == 2 and booked_by.total() >= 10

    await eventually(book_and_cancel, 30, what="bookings through both workers")
    booked = booked_by.total()
    sockets = await sockets_on_each_worker(session, two_workers)
    opened = sum(len(s) for s in sockets.values())
    ops = ("rero_operations_total", (("action", "book"), ("outcome", "success")))
    cancels = ("rero_operations_total", (("action", "cancel"), ("outcome", "success")))
    found: list[Samples] = []

    async def totals() -> bool:
        found.append(await scrape(session, url))
        sockets_open = found[-1][("rero_websocket_connections", ())]
        return found[-1].get(ops) == booked and sockets_open == opened

    # Each worker publishes its counts every PUBLISH_SECONDS; its HTTP figures at once.
    await eventually(totals, 5 * PUBLISH_SECONDS, what="one scrape with every worker's counts")
    samples = found[-1]
    http = (("method", "POST"), ("route", "/book-slot"), ("status", "200"))
    assert samples[("rero_http_request_duration_seconds_count", http)] == booked
    assert samples[cancels] == booked
    for socket_list in sockets.values():
        for ws in socket_list:
            await ws.close()
