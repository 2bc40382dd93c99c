"""The shims over what dependencies do not promise (``rero.compat``): each fails here,
loudly, if an upgrade changes what it relies on."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import aiohttp_cors
import aiosqlite
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from rero.compat import close_frame, cors_hooks, run_on_connection_thread, text_frame


async def test_aiosqlite_runs_a_function_on_its_connection_thread(tmp_path: Path) -> None:
    async with aiosqlite.connect(str(tmp_path / "shim.db"), isolation_level=None) as db:
        seen: dict[str, Any] = {}

        def work(conn: sqlite3.Connection) -> int:
            seen["conn"], seen["thread"] = conn, threading.get_ident()
            conn.execute("CREATE TABLE t (x INTEGER)")
            conn.execute("INSERT INTO t VALUES (41)")
            return int(conn.execute("SELECT x + 1 FROM t").fetchone()[0])

        assert await run_on_connection_thread(db, work) == 42
        assert isinstance(seen["conn"], sqlite3.Connection)
        assert seen["thread"] != threading.get_ident()
        # The same connection aiosqlite's own calls use: they see the row.
        assert list(await db.execute_fetchall("SELECT x FROM t")) == [(41,)]

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT * FROM missing")

        with pytest.raises(sqlite3.OperationalError, match="missing"):
            await run_on_connection_thread(db, broken)


async def test_cors_hooks_are_handed_back_and_answer_an_origin(
    aiohttp_client: Any,
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/hello", hello)
    before = list(app.on_response_prepare)
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers="*", allow_headers="*", allow_methods="*"
    )
    hooks = cors_hooks(app, {"https://lab.example": options})
    assert len(hooks) == 1, "aiohttp-cors now adds a different number of response hooks"
    assert list(app.on_response_prepare) == before

    async def run_hooks(request: web.Request, response: web.StreamResponse) -> None:
        for hook in hooks:
            await hook(request, response)

    app.on_response_prepare.append(run_hooks)
    client = await aiohttp_client(app)
    resp = await client.get("/hello", headers={"Origin": "https://lab.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://lab.example"
    resp = await client.get("/hello", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
async def test_hand_built_frames_reach_an_aiohttp_client(aiohttp_client: Any, size: int) -> None:
    """Every length encoding, written straight to the transport as the hub does."""
    text = "x" * size

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        assert request.transport is not None
        assert request.protocol is not None
        assert isinstance(request.protocol.writing_paused, bool)
        request.transport.write(text_frame(text.encode()))
        request.transport.write(close_frame(WSCloseCode.POLICY_VIOLATION, b"Client too slow"))
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws", max_msg_size=0) as ws:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, text)
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
        assert ws.close_code == WSCloseCode.POLICY_VIOLATION


def test_frame_headers_follow_rfc_6455() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"a" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert close_frame(1001, b"bye") == b"\x88\x05\x03\xe9bye"
