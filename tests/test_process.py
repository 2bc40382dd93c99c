"""Real concurrency against a real server process: the rush, and a prompt shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import Server, StartingGate, eventually, observe, start_server


async def test_rush_of_300_over_both_transports_one_winner(
    server: Server, session: aiohttp.ClientSession
) -> None:
    ws_users = await observe(session, [server.ws_url()] * 150)
    gate = StartingGate(300)

    async def over_ws(i: int) -> str:
        await gate.wait()
        obs = ws_users[i]
        await obs.ws.send_json(
            {"type": "book_slot", "slot_id": 9, "username": f"user{i}", "password": f"pw-{i}"}
        )
        await eventually(lambda: obs.responses, 60, what=f"user{i}'s answer")
        reply = obs.responses[0]
        assert reply["type"] == "booking_response"
        return "won" if reply["success"] else str(reply["message"])

    async def over_http(i: int) -> str:
        await gate.wait()
        body = {"slot_id": 9, "username": f"user{i}", "password": f"pw-{i}"}
        async with session.post(server.url + "/book-slot", json=body) as resp:
            data = await resp.json()
            return "won" if resp.status == 200 else str(data["detail"])

    tasks = [asyncio.create_task(over_ws(i)) for i in range(150)]
    tasks += [asyncio.create_task(over_http(i)) for i in range(150, 300)]
    await gate.open()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert Counter(outcomes) == {"won": 1, "Slot 9 is not available": 299}
    winner = outcomes.index("won")
    async with session.get(server.url + "/slots") as resp:
        final = await resp.json()
    assert final["booked_slots"] == [9]
    assert final["slots"][6]["booked_by"] == f"SRN{winner:04d}"
    await eventually(lambda: all(o.board == final for o in ws_users), 5)
    for o in ws_users:
        await o.ws.close()


async def test_twelve_users_twelve_slots_over_ws(
    server: Server, session: aiohttp.ClientSession
) -> None:
    clients = await observe(session, [server.ws_url()] * 12)
    await asyncio.gather(
        *(
            o.ws.send_json(
                {
                    "type": "book_slot",
                    "slot_id": 3 + i,
                    "username": f"user{i}",
                    "password": f"pw-{i}",
                }
            )
            for i, o in enumerate(clients)
        )
    )
    await eventually(lambda: all(o.responses for o in clients), 10)
    assert all(o.responses[0]["success"] for o in clients)
    async with session.get(server.url + "/slots") as resp:
        final = await resp.json()
    assert final["available_slots"] == []
    await eventually(lambda: all(o.board == final for o in clients), 5)
    for o in clients:
        await o.ws.close()


@pytest.mark.stress
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_closes_1000_sockets_with_1001_within_5s(
    tmp_path: Path, session: aiohttp.ClientSession, sig: signal.Signals
) -> None:
    srv = start_server(tmp_path)
    try:
        sockets = await asyncio.gather(*(session.ws_connect(srv.ws_url()) for _ in range(1000)))
        async with session.get(srv.url + "/health") as resp:
            assert (await resp.json())["active_connections"] == 1000

        async def close_code(ws: aiohttp.ClientWebSocketResponse) -> tuple[Any, Any]:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return msg.data, msg.extra

        readers = [asyncio.create_task(close_code(ws)) for ws in sockets]
        started = time.monotonic()
        srv.proc.send_signal(sig)
        codes = await asyncio.wait_for(asyncio.gather(*readers), 10)
        await asyncio.get_running_loop().run_in_executor(None, srv.proc.wait, 10)
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed
        assert srv.proc.returncode == 0
        assert Counter(codes) == {(1001, "Server shutdown"): 1000}
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


@pytest.mark.stress
async def test_sigterm_with_a_stalled_client_exits_within_the_grace(tmp_path: Path) -> None:
    """A client that promised a body and sent none does not hold the process for aiohttp's
    default 60 s: requests in flight get a 5 s grace, then they are cancelled."""
    srv = start_server(tmp_path, "body_timeout_seconds = 60.0")  # the deadline is no rescue
    try:
        port = int(srv.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /book-slot HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        # "100 Continue": the request is in flight, waiting for its body.
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 100 ")
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, srv.proc.wait, 20)
        elapsed = time.monotonic() - started
        assert elapsed < 5 + 2, elapsed
        assert srv.proc.returncode == 0
        writer.close()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
