"""A light WebSocket client for load generation: a raw asyncio protocol.

It does the handshake, splits the server's (unmasked) frames and hands each to
``frame``; it answers pings, so it survives the server's heartbeat. No masking
work and no per-message coroutine, so one load process can hold thousands.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import TypeVar


class RawWebSocket(asyncio.Protocol):
    PING, PONG, CLOSE = 0x9, 0xA, 0x8

    def __init__(self) -> None:
        self.buf = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.handshaken = False
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /slot-booking HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed before the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(self.buf[:end]).decode()))
                self.buf.clear()
                return
            self.handshaken = True
            del self.buf[: end + 4]
            self.open.set_result(None)
        buf = self.buf
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            n = buf[1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, head = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + n:
                return
            payload = bytes(buf[head : head + n])
            del buf[: head + n]
            if opcode == self.PING:
                self._send(self.PONG, payload)
            elif opcode == self.CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
            else:
                self.frame(payload)

    def frame(self, payload: bytes) -> None:
        """One text or binary message from the server."""

    def _send(self, opcode: int, data: bytes) -> None:
        """A masked frame with an all-zero mask (valid, and no XOR work)."""
        assert len(data) < 65536
        if self.transport is None or self.transport.is_closing():
            return
        if len(data) < 126:
            header = bytes((0x80 | opcode, 0x80 | len(data)))
        else:
            header = bytes((0x80 | opcode, 0x80 | 126)) + len(data).to_bytes(2, "big")
        self.transport.write(header + b"\0\0\0\0" + data)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


W = TypeVar("W", bound=RawWebSocket)


async def connect(cls: type[W], port: int, n: int) -> list[W]:
    """``n`` open clients of ``cls`` on 127.0.0.1:``port``, connected 250 at a time so the
    server's listen backlog is not flooded."""
    loop = asyncio.get_running_loop()

    async def one(client: W) -> W:
        await loop.create_connection(lambda: client, "127.0.0.1", port)
        await client.open
        return client

    clients: list[W] = []
    for start in range(0, n, 250):
        clients += await asyncio.gather(*(one(cls()) for _ in range(min(250, n - start))))
    return clients
