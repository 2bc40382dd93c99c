"""The /slot-booking protocol, to the letter, through the real app in-process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from rero.app import create_app
from rero.keys import HUB
from tests.helpers import (
    ALICE,
    ALICE_SRN,
    BOB,
    ClientFactory,
    FakePesu,
    WSMessage,
    collect,
    connect,
    eventually,
    receive,
    users,
)


async def receive_type(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0
) -> WSMessage:
    """The next message of type ``kind``, skipping others (boards may interleave)."""
    while True:
        msg = await receive(ws, timeout)
        if msg["type"] == kind:
            return msg


async def test_greeting_is_the_board(client: Any) -> None:
    await client.post("/book-slot", json={"slot_id": 4, **ALICE})
    ws = await client.ws_connect("/slot-booking")
    msg = await receive(ws)
    assert set(msg) == {"type", "data", "timestamp"}
    assert msg["type"] == "slots_update"
    assert msg["data"] == await (await client.get("/slots")).json()
    assert datetime.fromisoformat(msg["timestamp"]).tzinfo is not None
    await ws.close()


async def test_book_over_ws_reaches_everyone(client: Any) -> None:
    ws, other = await connect(client), await connect(client)
    await ws.send_json({"type": "book_slot", "slot_id": 9, **ALICE})
    got = await collect(ws, "booking_response", "slots_update")
    assert got["booking_response"] == {
        "type": "booking_response",
        "success": True,
        "message": "Slot 9 booked successfully",
        "slot_id": 9,
    }
    for board in (got["slots_update"]["data"], (await receive(other))["data"]):
        assert board["booked_slots"] == [9]
        assert board["slots"][6]["booked_by"] == ALICE_SRN


async def test_cancel_over_ws(client: Any) -> None:
    await client.post("/book-slot", json={"slot_id": 9, **ALICE})
    ws = await connect(client)
    await ws.send_json({"type": "cancel_slot", "slot_id": 9, **ALICE})
    got = await collect(ws, "cancellation_response", "slots_update")
    assert got["cancellation_response"] == {
        "type": "cancellation_response",
        "success": True,
        "message": "Slot 9 booking cancelled successfully",
        "slot_id": 9,
    }
    assert got["slots_update"]["data"]["booked_slots"] == []


async def test_http_change_reaches_ws(client: Any) -> None:
    ws = await connect(client)
    await client.post("/book-slot", json={"slot_id": 12, **BOB})
    assert (await receive_type(ws, "slots_update"))["data"]["booked_slots"] == [12]


async def test_get_slots_answers_only_the_asker(client: Any) -> None:
    ws, other = await connect(client), await connect(client)
    await ws.send_json({"type": "get_slots"})
    msg = await receive(ws)
    assert msg["type"] == "slots_update"
    assert msg["data"] == await (await client.get("/slots")).json()
    with pytest.raises(asyncio.TimeoutError):
        await other.receive(timeout=0.2)


@pytest.mark.parametrize(
    ("setup", "request_", "expected"),
    [
        (None, {"type": "book_slot", "slot_id": 5, "username": "alice", "password": "bad"},
         ("booking_response", "Authentication failed. Invalid credentials.")),
        (("book", BOB), {"type": "book_slot", "slot_id": 5, **ALICE},
         ("booking_response", "Slot 5 is not available")),
        (None, {"type": "book_slot", "slot_id": 2, **ALICE},
         ("booking_response", "Slot 2 does not exist: valid slots are 3 to 14")),
        (("book", BOB), {"type": "cancel_slot", "slot_id": 5, **ALICE},
         ("cancellation_response", "You can only cancel your own bookings")),
        (None, {"type": "cancel_slot", "slot_id": 5, **ALICE},
         ("cancellation_response", "Slot 5 is not booked")),
        (None, {"type": "cancel_slot", "slot_id": 99, **ALICE},
         ("cancellation_response", "Slot 99 does not exist: valid slots are 3 to 14")),
        (None, {"type": "cancel_slot", "slot_id": 5, "username": "bob", "password": "x"},
         ("cancellation_response", "Authentication failed. Invalid credentials.")),
    ],
)  # fmt: skip
async def test_failures_answer_in_the_response_type(
    client: Any, setup: Any, request_: WSMessage, expected: tuple[str, str]
) -> None:
    if setup:
        await client.post("/book-slot", json={"slot_id": 5, **setup[1]})
    ws = await connect(client)
    await ws.send_json(request_)
    kind, message = expected
    assert await receive(ws) == {
        "type": kind,
        "success": False,
        "message": message,
        "slot_id": request_["slot_id"],
    }


async def test_upstream_down_is_told_apart(
    aiohttp_client: ClientFactory, settings: Any, pesu: FakePesu
) -> None:
    pesu.mode = "503"
    client = await aiohttp_client(
        create_app(replace(settings, auth_backend="pesu", pesu_auth_url=pesu.url))
    )
    ws = await connect(client)
    await ws.send_json({"type": "book_slot", "slot_id": 5, "username": "u", "password": "p"})
    reply = await receive(ws)
    assert reply["success"] is False
    assert "Authentication service unavailable" in reply["message"]


BOOK_MISSING = "Missing slot_id, username, or password in booking request"
CANCEL_MISSING = "Missing slot_id, username, or password in cancellation request"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "Invalid JSON"),
        ("{", "Invalid JSON"),
        ("[" * 100_00 + "]" * 100_00, "Invalid JSON"),
        ("[1, 2]", "Message must be a JSON object"),
        ('"book_slot"', "Message must be a JSON object"),
        ("null", "Message must be a JSON object"),
        ("{}", "Missing message type"),
        ('{"type": "launch_rocket"}', "Unknown message type: launch_rocket"),
        ('{"type": 5}', "Unknown message type: 5"),
        ('{"type": "book_slot"}', BOOK_MISSING),
        ('{"type": "book_slot", "slot_id": 5, "username": "alice"}', BOOK_MISSING),
        ('{"type": "cancel_slot", "username": "a", "password": "b"}', CANCEL_MISSING),
        ('{"type": "book_slot", "slot_id": "9", "username": "a", "password": "b"}',
         "Invalid slot_id: Not a valid integer."),
        ('{"type": "book_slot", "slot_id": null, "username": "a", "password": "b"}',
         "Invalid slot_id: Field may not be null."),
        ('{"type": "book_slot", "slot_id": 9.5, "username": "a", "password": "b"}',
         "Invalid slot_id: Not a valid integer."),
        ('{"type": "cancel_slot", "slot_id": true, "username": "a", "password": "b"}',
         "Invalid slot_id: Not a valid integer."),
        ('{"type": "book_slot", "slot_id": 9, "username": 7, "password": "b"}',
         "Invalid username: Not a valid string."),
    ],
)  # fmt: skip
async def test_malformed_messages_get_error_and_socket_stays_usable(
    client: Any, raw: str, message: str
) -> None:
    ws = await connect(client)
    await ws.send_str(raw)
    assert await receive(ws) == {"type": "error", "message": message}
    await ws.send_json({"type": "book_slot", "slot_id": 10, **ALICE})
    assert (await receive_type(ws, "booking_response"))["success"] is True
    assert (await (await client.get("/slots")).json())["booked_slots"] == [10]


async def test_binary_frame_gets_error(client: Any) -> None:
    ws = await connect(client)
    await ws.send_bytes(b'{"type": "get_slots"}')
    assert await receive(ws) == {
        "type": "error",
        "message": "Binary frames are not supported: send JSON text",
    }
    await ws.send_json({"type": "get_slots"})
    assert (await receive(ws))["type"] == "slots_update"


async def test_frame_over_64_kib_closes_with_1009(client: Any) -> None:
    ws = await connect(client)
    await ws.send_str(json.dumps({"type": "get_slots", "pad": "x" * 70_000}))
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1009


async def test_active_connections_exact_after_abrupt_disconnect(client: Any) -> None:
    sockets = [await connect(client) for _ in range(5)]

    async def count() -> int:
        return int((await (await client.get("/health")).json())["active_connections"])

    assert await count() == 5
    await sockets[0].close()
    sockets[1]._response.connection.transport.abort()  # vanish without a close frame

    async def three_left() -> bool:
        return await count() == 3

    await eventually(three_left, 5)
    assert (await (await client.get("/")).json())["active_connections"] == 3
    stats = await (await client.get("/stats")).json()
    assert stats["websocket"] == {"active_connections": 3}


async def test_disallowed_origin_is_refused_before_upgrade(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client = await aiohttp_client(
        create_app(replace(settings, ws_allowed_origins=("https://lab.example",)))
    )
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/slot-booking", headers={"Origin": "https://evil.example"})
    assert info.value.status == 403
    ws = await connect(client, headers={"Origin": "https://lab.example"})
    await ws.close()
    # The server's own page (/board) is same-origin, whatever the list says.
    host = f"{client.host}:{client.port}"
    ws = await connect(client, headers={"Origin": f"http://{host}"})
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/slot-booking", headers={"Origin": f"http://{host}.evil.example"})
    assert info.value.status == 403


async def test_connection_limit_answers_503(aiohttp_client: ClientFactory, settings: Any) -> None:
    client = await aiohttp_client(create_app(replace(settings, ws_max_connections=2)))
    first, _second = await connect(client), await connect(client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/slot-booking")
    assert info.value.status == 503
    await first.close()
    await eventually(lambda: len(client.server.app[HUB].clients) == 1, 5)
    await connect(client)


async def test_handshake_refusals_are_json(aiohttp_client: ClientFactory, settings: Any) -> None:
    client = await aiohttp_client(create_app(replace(settings, ws_max_connections=1)))
    await connect(client)
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
               "Sec-WebSocket-Version": "13"}  # fmt: skip
    resp = await client.get("/slot-booking", headers=headers)
    assert resp.status == 503
    assert await resp.json() == {"detail": "Too many connections, try again later"}


async def test_compression_off_by_default_and_configurable(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    plain = await aiohttp_client(create_app(settings))
    ws = await plain.ws_connect("/slot-booking", compress=15)
    assert ws.compress == 0
    deflate = await aiohttp_client(create_app(replace(settings, ws_compression=True)))
    ws = await deflate.ws_connect("/slot-booking", compress=15)
    assert ws.compress == 15
    assert (await receive(ws))["type"] == "slots_update"
    await ws.send_json({"type": "book_slot", "slot_id": 3, **ALICE})
    got = await collect(ws, "booking_response", "slots_update")
    assert got["booking_response"]["success"] is True
    assert got["slots_update"]["data"]["booked_slots"] == [3]


async def test_heartbeat_is_configured(aiohttp_client: ClientFactory, settings: Any) -> None:
    client = await aiohttp_client(create_app(replace(settings, ws_heartbeat_seconds=0.2)))
    ws = await client.ws_connect("/slot-booking", autoping=False)
    assert (await receive(ws))["type"] == "slots_update"
    msg = await ws.receive(timeout=2)
    assert msg.type == aiohttp.WSMsgType.PING
    # Never answer: the server drops the dead peer.
    await eventually(lambda: not client.server.app[HUB].clients, 5)


# ---- a client that never reads --------------------------------------------------------------


async def stalled_socket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Complete a WebSocket handshake by hand, then never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /slot-booking HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.pause_reading()
    return reader, writer


async def with_stalled_client(
    aiohttp_client: ClientFactory, settings: Any, send_timeout: float
) -> tuple[Any, Any, asyncio.StreamWriter]:
    """An app with one connected client that never reads; the server's kernel buffer for it
    is shrunk so the stall shows within a few hundred changes instead of being soaked up by
    megabytes of loopback socket buffers."""
    client = await aiohttp_client(
        create_app(replace(settings, fake_users=users(1), ws_send_timeout_seconds=send_timeout))
    )
    assert client.port is not None
    _, writer = await stalled_socket(client.port)
    (stalled,) = client.server.app[HUB].clients
    assert stalled.transport is not None
    stalled.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return client, stalled, writer


async def test_stalled_client_does_not_delay_anyone(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client, stalled, stalled_writer = await with_stalled_client(aiohttp_client, settings, 60)
    hub = client.server.app[HUB]
    # The test client's own pool stops at 100 connections.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = client.make_url("/slot-booking")
    normal = [await session.ws_connect(url) for _ in range(200)]
    last: list[WSMessage] = [{} for _ in normal]

    async def drain(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            last[i] = json.loads(msg.data)

    readers = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(normal)]
    who = {"username": "user0", "password": "pw-0"}
    peak_buffer = 0
    for n in range(500):
        path = "/book-slot" if n % 2 == 0 else "/cancel-slot"
        resp = await client.post(path, json={"slot_id": 7, **who})
        assert resp.status == 200
        assert stalled.transport is not None
        peak_buffer = max(peak_buffer, stalled.transport.get_write_buffer_size())
    final = await (await client.get("/slots")).json()
    await eventually(lambda: all(m.get("data") == final for m in last), 1.0)
    # The stalled client's memory on the server stays bounded: older boards were dropped
    # for the newest one, and its buffer stopped at the flow-control mark (64 KiB + 1 frame).
    assert hub.conflated > 400
    assert peak_buffer < 64 * 1024 + 4096
    for task in readers:
        task.cancel()
    await session.close()
    stalled_writer.close()


async def test_blocked_client_is_cut_off(aiohttp_client: ClientFactory, settings: Any) -> None:
    client, stalled, writer = await with_stalled_client(aiohttp_client, settings, 0.3)
    hub = client.server.app[HUB]
    who = {"username": "user0", "password": "pw-0"}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while hub.clients and loop.time() < deadline:
        for path in ("/book-slot", "/cancel-slot"):
            await client.post(path, json={"slot_id": 7, **who})
    assert not hub.clients
    assert hub.cut_off == 1
    # The connection itself is dropped soon after the close frame is queued (the hub
    # aborts it a second later): the bound is the assertion, the wait ends when it is.
    await eventually(stalled.transport.is_closing, 1.2)
    writer.close()
