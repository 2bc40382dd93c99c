"""Where rero leans on what its dependencies do not promise: one small function each.

Each is here, and nowhere else, so an upgrade that changes what it relies on breaks
one place, and ``tests/test_compat.py`` says so loudly:
- aiosqlite has no public call to run a whole function on its connection's thread;
- aiohttp-cors adds one response hook per app, which rero runs only for requests with
  an Origin (each hook costs ``GET /slots`` throughput);
- the hub writes pre-built WebSocket frames straight to a transport, past aiohttp's
  writer (docs/performance.md).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, cast

import aiohttp_cors
import aiosqlite
from aiohttp import web

T = TypeVar("T")

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[object]]


async def run_on_connection_thread(
    db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``work(connection)`` on aiosqlite's thread in one hop, queued like its own calls.

    aiosqlite hops between threads once per statement, and a hop costs more than a
    statement; a transaction run this way costs one.
    """
    result = await db._execute(work, db._conn)  # type: ignore[no-untyped-call]
    return cast(T, result)


def cors_hooks(
    app: web.Application, origins: Mapping[str, aiohttp_cors.ResourceOptions]
) -> list[ResponseHook]:
    """Add CORS to every route of ``app``; return aiohttp-cors's response hooks, taken off
    ``app.on_response_prepare`` so the caller decides when they run."""
    before = len(app.on_response_prepare)
    cors = aiohttp_cors.setup(app, defaults=dict(origins))
    for route in list(app.router.routes()):
        cors.add(route)
    hooks = list(app.on_response_prepare[before:])
    del app.on_response_prepare[before:]
    return hooks


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def close_frame(code: int, reason: bytes) -> bytes:
    """A close frame with ``code`` and a short ``reason`` (under 124 bytes)."""
    payload = struct.pack("!H", code) + reason
    return struct.pack("!BB", 0x88, len(payload)) + payload
