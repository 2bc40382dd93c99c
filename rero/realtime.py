"""Real-time board: the ``/slot-booking`` WebSocket and the hub that fans changes out.

Every committed change reaches the hub as a new board, which it serializes and
frames once. Publishing never awaits a socket: a client whose transport can take
the frame gets it written at once (the fast path); a client that is behind keeps
only the newest pending board (conflation) and gets one writer task until it
catches up, or is cut off when it stays blocked past ``ws_send_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from marshmallow import ValidationError

from rero import schemas
from rero.auth import User
from rero.errors import AuthUnavailable, InvalidCredentials, ReroError
from rero.keys import HUB, SERVICE, SETTINGS
from rero.slots import Board, Credentials, Identity, SlotService, Token
from rero.views import client_address

log: Final = logging.getLogger(__name__)

MAX_MESSAGE: Final = 64 * 1024
SHUTDOWN_GRACE: Final = 3.0


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
    payload = struct.pack("!H", code) + reason
    return struct.pack("!BB", 0x88, len(payload)) + payload


def slots_update(board: Board) -> str:
    """The ``slots_update`` message for ``board``, stamped now; built once per change."""
    stamp = datetime.now(timezone.utc).isoformat()
    return f'{{"type":"slots_update","data":{board.json},"timestamp":"{stamp}"}}'


class Client:
    """One connected socket: its transport for the fast path and at most one pending board."""

    __slots__ = ("pending", "protocol", "raw", "transport", "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.transport = request.transport
        self.protocol = request.protocol
        # Frames written by hand must stay out of aiohttp's compressor's way.
        self.raw = not ws.compress
        self.pending: tuple[str, bytes] | None = None
        self.writer: asyncio.Task[None] | None = None


class Hub:
    """Owns the connected clients; fans each new board out without awaiting anyone."""

    def __init__(self, send_timeout: float) -> None:
        self.clients: set[Client] = set()
        self._send_timeout = send_timeout
        self._message = ("", b"")
        self.boards = 0
        self.sent = 0
        self.conflated = 0
        self.cut_off = 0

    def publish(self, board: Board) -> None:
        """Serialize and frame once, then offer the same bytes to every client."""
        text = slots_update(board)
        self._message = (text, text_frame(text.encode()))
        self.boards += 1
        for client in self.clients:
            self._offer(client)

    def join(self, ws: web.WebSocketResponse, request: web.Request) -> Client:
        """Register a prepared socket and send it the current board."""
        client = Client(ws, request)
        self.clients.add(client)
        self._offer(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        if client.writer is not None:
            client.writer.cancel()

    def resend(self, client: Client) -> None:
        """``get_slots``: the current board again, to this client only."""
        self._offer(client)

    def _offer(self, client: Client) -> None:
        transport = client.transport
        if transport is None or transport.is_closing():
            return
        if client.writer is None and client.raw and not client.protocol.writing_paused:
            transport.write(self._message[1])
            self.sent += 1
            return
        if client.pending is not None:
            self.conflated += 1
        client.pending = self._message
        if client.writer is None:
            client.writer = asyncio.create_task(self._write_behind(client))

    async def _write_behind(self, client: Client) -> None:
        """Wait for a blocked transport to drain, then send the newest pending board."""
        loop = asyncio.get_running_loop()
        try:
            while client.pending is not None:
                deadline = loop.time() + self._send_timeout
                delay = 0.001
                while client.protocol.writing_paused:
                    if loop.time() >= deadline:
                        self._cut(client)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
                text, frame = client.pending
                client.pending = None
                if client.transport is None or client.transport.is_closing():
                    return
                if client.raw:
                    client.transport.write(frame)
                else:
                    await asyncio.wait_for(client.ws.send_str(text), self._send_timeout)
                self.sent += 1
        except (ConnectionError, asyncio.TimeoutError):
            self._cut(client)
        finally:
            client.writer = None

    def _cut(self, client: Client) -> None:
        """Close a client that stopped reading: 1008, then drop the connection."""
        self.cut_off += 1
        self.clients.discard(client)  # no more boards for it, and no longer counted
        log.warning("websocket client too slow: cut off")
        transport = client.transport
        client.pending = None
        if transport is not None and not transport.is_closing():
            transport.write(close_frame(WSCloseCode.POLICY_VIOLATION, b"Client too slow"))
            asyncio.get_running_loop().call_later(1.0, transport.abort)

    async def close_all(self) -> None:
        """Shutdown: close every socket with 1001 from a snapshot of the set, then abort."""
        clients = list(self.clients)
        closes = [
            c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutdown") for c in clients
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), SHUTDOWN_GRACE)
        except asyncio.TimeoutError:
            log.warning("websocket shutdown: some clients did not answer the close")
        for client in clients:
            if client.transport is not None and not client.transport.is_closing():
                client.transport.abort()


# ---- messages -------------------------------------------------------------------------------

Reply = dict[str, Any]


def error(message: str) -> Reply:
    return {"type": "error", "message": message}


def _failure_sentence(e: ReroError) -> str:
    """The HTTP route's sentence, except for bad credentials, which the protocol words itself."""
    if isinstance(e, InvalidCredentials):
        return "Authentication failed. Invalid credentials."
    if isinstance(e, AuthUnavailable):
        return "Authentication service unavailable, try again later"
    return e.detail


@dataclass
class Connection:
    """What one socket has told the server about itself."""

    address: str
    user: User | None = None


def _invalid(e: ValidationError) -> Reply:
    name, messages = next(iter(e.messages_dict.items()))
    return error(f"Invalid {name}: {' '.join(map(str, messages))}")


def _identity(conn: Connection, msg: dict[str, Any], what: str) -> tuple[Identity, int] | Reply:
    """A token, the message's credentials, or the connection's user; and the slot id."""
    missing = error(f"Missing slot_id, username, or password in {what} request")
    try:
        if "token" in msg:
            data = schemas.SLOT_ONLY.load(msg)
            return Token(schemas.TOKEN.load(msg)["token"]), data["slot_id"]
        if conn.user is not None and "username" not in msg and "password" not in msg:
            return conn.user, schemas.SLOT_ONLY.load(msg)["slot_id"]
        data = schemas.SLOT.load(msg)
    except ValidationError as e:
        if any("Missing data for required field." in m for m in e.messages_dict.values()):
            return missing
        return _invalid(e)
    return Credentials(data["username"], data["password"], conn.address), data["slot_id"]


async def _slot_request(
    conn: Connection,
    msg: dict[str, Any],
    response_type: str,
    what: str,
    act: Callable[[Identity, int], Awaitable[User]],
    done: str,
) -> Reply:
    parsed = _identity(conn, msg, what)
    if isinstance(parsed, dict):
        return parsed
    who, slot_id = parsed
    reply: Reply = {"type": response_type, "slot_id": slot_id}
    try:
        await act(who, slot_id)
    except ReroError as e:
        return {**reply, "success": False, "message": _failure_sentence(e)}
    return {**reply, "success": True, "message": done.format(slot_id)}


async def _authenticate(service: SlotService, conn: Connection, msg: dict[str, Any]) -> Reply:
    """Sign the connection in once, by token or by credentials (which open a session)."""
    reply: Reply = {"type": "auth_response"}
    try:
        if "token" in msg:
            conn.user = await service.authenticate(Token(schemas.TOKEN.load(msg)["token"]))
            return {**reply, "success": True, "user": conn.user.to_dict()}
        data = schemas.LOGIN.load(msg)
        session = await service.login(Credentials(data["username"], data["password"], conn.address))
    except ValidationError as e:
        if any("Missing data for required field." in m for m in e.messages_dict.values()):
            return error("Missing token, or username and password, in authenticate request")
        return _invalid(e)
    except ReroError as e:
        return {**reply, "success": False, "message": _failure_sentence(e)}
    conn.user = session.user
    return {
        **reply,
        "success": True,
        "user": session.user.to_dict(),
        "token": session.token,
        "expires_at": session.expires_at,
    }


async def answer(service: SlotService, conn: Connection, text: str) -> Reply | None:
    """The reply to one text message; ``None`` means "send this client the board"."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        return error("Invalid JSON")
    if not isinstance(msg, dict):
        return error("Message must be a JSON object")
    kind = msg.get("type")
    if kind == "get_slots":
        return None
    if kind == "book_slot":
        return await _slot_request(
            conn, msg, "booking_response", "booking", service.book,
            "Slot {} booked successfully",
        )  # fmt: skip
    if kind == "cancel_slot":
        return await _slot_request(
            conn, msg, "cancellation_response", "cancellation", service.cancel,
            "Slot {} booking cancelled successfully",
        )  # fmt: skip
    if kind == "authenticate":
        return await _authenticate(service, conn, msg)
    if kind == "logout":
        conn.user = None
        return {"type": "logout_response", "success": True}
    if kind is None:
        return error("Missing message type")
    return error(f"Unknown message type: {str(kind)[:64]}")


# ---- the handler ----------------------------------------------------------------------------


def origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str) -> bool:
    """Browsers always send Origin; tools that send none are not the CSRF risk. The
    server's own pages (``/board``) are same-origin: allowed whatever the list says."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == host


async def slot_booking(request: web.Request) -> web.StreamResponse:
    """``/slot-booking``: one reader task per socket; all writes are whole frames."""
    settings = request.app[SETTINGS]
    hub = request.app[HUB]
    if not origin_allowed(request.headers.get("Origin"), settings.ws_allowed_origins, request.host):
        raise web.HTTPForbidden(reason="Origin not allowed")
    if len(hub.clients) >= settings.ws_max_connections:
        raise web.HTTPServiceUnavailable(reason="Too many connections, try again later")
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_seconds or None,
        max_msg_size=MAX_MESSAGE,
        compress=settings.ws_compression,
    )
    await ws.prepare(request)
    client = hub.join(ws, request)
    service = request.app[SERVICE]
    conn = Connection(client_address(request, settings.trusted_proxies))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                reply = await _safe_answer(service, conn, msg.data)
                if reply is None:
                    hub.resend(client)
                else:
                    await ws.send_str(json.dumps(reply))
            elif msg.type == WSMsgType.BINARY:
                await ws.send_str(
                    json.dumps(error("Binary frames are not supported: send JSON text"))
                )
    except (ConnectionError, asyncio.TimeoutError):
        pass  # the peer went away mid-reply; nothing to tell it
    finally:
        hub.leave(client)
    return ws


async def _safe_answer(service: SlotService, conn: Connection, text: str) -> Reply | None:
    """Nothing a client sends can make the handler raise."""
    try:
        return await answer(service, conn, text)
    except Exception:
        log.exception("websocket message failed")
        return error("Internal error")
