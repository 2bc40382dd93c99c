"""A light HTTP/1.1 client for a rush: one raw keep-alive connection per student, opened
beforehand, so sending two thousand requests at once is two thousand ``write`` calls.

The load side must stay cheap on a 2-core machine: no per-request coroutine, no header
objects; a reply is read by its ``Content-Length`` (rero and the bare ceiling both send
one) and timed from the moment its request was written.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class RawHTTP(asyncio.Protocol):
    """One connection, one request at a time: ``send``, then await ``reply``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.sent = 0.0
        self.took = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(ConnectionError("closed before the reply"))

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.buf.clear()
        self.reply = asyncio.get_running_loop().create_future()
        self.sent = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.reply.done():
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in head[1:]
            if line.lower().startswith("content-length:")
        )
        if len(self.buf) >= end + 4 + length:
            self.took = time.perf_counter() - self.sent
            body = bytes(self.buf[end + 4 : end + 4 + length])
            self.reply.set_result((int(head[0].split()[1]), body))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def post(path: str, body: Any, token: str | None = None) -> bytes:
    """The bytes of a ``POST path`` with a JSON body (and a bearer token)."""
    data = json.dumps(body).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{auth}\r\n"
    ).encode() + data


async def open_many(port: int, n: int, batch: int = 100) -> list[RawHTTP]:
    """``n`` open connections to 127.0.0.1:``port``, ``batch`` at a time: past the listen
    backlog (128 for aiohttp) a dropped SYN is retried only after a second."""
    loop = asyncio.get_running_loop()

    async def one() -> RawHTTP:
        _, protocol = await loop.create_connection(RawHTTP, "127.0.0.1", port)
        return protocol

    out: list[RawHTTP] = []
    for start in range(0, n, batch):
        out += await asyncio.gather(*(one() for _ in range(min(batch, n - start))))
    return out


async def rush(
    conns: list[RawHTTP], requests: list[bytes], seconds: float = 60
) -> list[tuple[int, bytes, float]]:
    """Write every request at once, one per connection, and return each reply's status,
    body and seconds from its write; a reply missing after ``seconds`` is an error."""
    for conn, request in zip(conns, requests, strict=True):
        conn.send(request)
    replies = await asyncio.wait_for(asyncio.gather(*(c.reply for c in conns)), seconds)
    return [(status, body, c.took) for (status, body), c in zip(replies, conns, strict=True)]
