"""The hub: fans each committed board out to every subscribed WebSocket.

Every committed change reaches the hub as a new board, which it serializes and
frames once. Publishing never awaits a socket: a client whose transport can take
the frame gets it written at once (the fast path); a client that is behind keeps
only the newest pending board (conflation) and gets one writer task until it
catches up, or is cut off when it stays blocked past ``ws_send_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Final

from aiohttp import WSCloseCode, web

from rero.board import Board
from rero.compat import close_frame, text_frame

log: Final = logging.getLogger(__name__)

SHUTDOWN_GRACE: Final = 3.0
SESSION_ENDED: Final = '{"type":"session_ended"}'


def slots_update(board: Board) -> str:
    """The ``slots_update`` message for ``board``, stamped now; built once per change."""
    stamp = datetime.now(timezone.utc).isoformat()
    return f'{{"type":"slots_update","data":{board.json},"timestamp":"{stamp}"}}'


class Subscriber:
    """The hub's side of one socket: its transport for the fast path, at most one pending
    board, and the writer task it has only while it is behind."""

    __slots__ = ("pending", "protocol", "raw", "session", "transport", "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.transport = request.transport
        self.protocol = request.protocol
        # Frames written by hand must stay out of aiohttp's compressor's way.
        self.raw = not ws.compress
        self.pending: tuple[str, bytes] | None = None
        self.writer: asyncio.Task[None] | None = None
        #: The digest of the session token the socket signed in with, if any.
        self.session: str | None = None


class Hub:
    """Owns the subscribed sockets; fans each new board out without awaiting anyone."""

    def __init__(self, send_timeout: float) -> None:
        self.clients: set[Subscriber] = set()
        self._signed_in: dict[str, set[Subscriber]] = {}
        self._ending: set[asyncio.Task[None]] = set()
        self._send_timeout = send_timeout
        self._message = ("", b"")
        self.boards = 0
        self.sent = 0
        self.conflated = 0
        self.cut_off = 0

    @property
    def connections(self) -> int:
        """Sockets subscribed now (a client cut off no longer counts)."""
        return len(self.clients)

    def publish(self, board: Board) -> None:
        """Serialize and frame once, then offer the same bytes to every client."""
        text = slots_update(board)
        self._message = (text, text_frame(text.encode()))
        self.boards += 1
        for client in self.clients:
            self._offer(client)

    def join(self, ws: web.WebSocketResponse, request: web.Request) -> Subscriber:
        """Register a prepared socket and send it the current board."""
        client = Subscriber(ws, request)
        self.clients.add(client)
        self._offer(client)
        return client

    def leave(self, client: Subscriber) -> None:
        self.clients.discard(client)
        self.sign_in(client, None)
        if client.writer is not None:
            client.writer.cancel()

    def sign_in(self, client: Subscriber, session: str | None) -> None:
        """Note the session (a token's digest) ``client`` now acts under; None: none."""
        if client.session is not None:
            holders = self._signed_in.get(client.session, set())
            holders.discard(client)
            if not holders:
                self._signed_in.pop(client.session, None)
        client.session = session
        if session is not None:
            self._signed_in.setdefault(session, set()).add(client)

    def end_sessions(self, sessions: list[str]) -> None:
        """Tell every socket signed in with one of ``sessions`` that it ended, and close
        it with 1008; never awaits here (a revocation must not wait on a socket)."""
        for session in sessions:
            for client in self._signed_in.pop(session, set()):
                client.session = None
                task = asyncio.create_task(self._end(client))
                self._ending.add(task)
                task.add_done_callback(self._ending.discard)

    async def _end(self, client: Subscriber) -> None:
        try:
            await asyncio.wait_for(client.ws.send_str(SESSION_ENDED), self._send_timeout)
            await client.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Session ended")
        except (ConnectionError, asyncio.TimeoutError):
            if client.transport is not None:
                client.transport.abort()

    def resend(self, client: Subscriber) -> None:
        """``get_slots``: the current board again, to this client only."""
        self._offer(client)

    def _offer(self, client: Subscriber) -> None:
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

    async def _write_behind(self, client: Subscriber) -> None:
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

    def _cut(self, client: Subscriber) -> None:
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
