"""The hub: fans each committed board out to the WebSockets that follow it.

A socket follows the rolling board (the original ``slots_update``) until it subscribes
to a resource's date; then it follows exactly the boards it subscribed to. Every
committed change reaches the hub as new boards, each serialized and framed once, and
offered only to that board's followers: a change costs in proportion to them.
Publishing never awaits a socket: a client whose transport can take the frame gets it
written at once (the fast path); a client that is behind keeps only the newest pending
message of each board (conflation) and gets one writer task until it catches up, or is
cut off when it stays blocked past ``ws_send_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Final

from aiohttp import WSCloseCode, web

from rero.board import DayBoard, RollingBoard
from rero.compat import close_frame, text_frame
from rero.storage import DayKey

log: Final = logging.getLogger(__name__)

SHUTDOWN_GRACE: Final = 3.0
SESSION_ENDED: Final = '{"type":"session_ended"}'


#: What a pending message belongs to: a board's key, or None for the rolling board.
Channel = DayKey | None
Message = tuple[str, bytes]


def slots_update(board: RollingBoard) -> str:
    """The original ``slots_update`` message for ``board``, stamped now; built once."""
    stamp = datetime.now(timezone.utc).isoformat()
    return f'{{"type":"slots_update","data":{board.json},"timestamp":"{stamp}"}}'


def day_update(board: DayBoard) -> str:
    """A subscription's ``slots_update``: the board's resource and date, then its data."""
    stamp = datetime.now(timezone.utc).isoformat()
    head = f'"resource":"{board.resource.id}","date":"{board.date.isoformat()}"'
    return f'{{"type":"slots_update",{head},"data":{board.json},"timestamp":"{stamp}"}}'


def _framed(text: str) -> Message:
    return text, text_frame(text.encode())


class Subscriber:
    """The hub's side of one socket: its transport for the fast path, at most one pending
    board, and the writer task it has only while it is behind."""

    __slots__ = (
        "keys", "pending", "protocol", "raw", "session", "srn", "transport", "writer", "ws",
    )  # fmt: skip

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.transport = request.transport
        self.protocol = request.protocol
        # Frames written by hand must stay out of aiohttp's compressor's way.
        self.raw = not ws.compress
        self.pending: dict[Channel, Message] = {}
        self.writer: asyncio.Task[None] | None = None
        #: The boards it subscribed to; none: it follows the rolling board.
        self.keys: set[DayKey] = set()
        #: The digest of the session token the socket signed in with, if any; its student.
        self.session: str | None = None
        self.srn: str | None = None


class Hub:
    """Owns the subscribed sockets; fans each new board out without awaiting anyone."""

    def __init__(self, send_timeout: float) -> None:
        self.clients: set[Subscriber] = set()
        #: Sockets that never subscribed: they follow the rolling board.
        self.legacy: set[Subscriber] = set()
        self.followers: dict[DayKey, set[Subscriber]] = {}
        self._latest: dict[DayKey, Message] = {}
        self._signed_in: dict[str, set[Subscriber]] = {}
        self._students: dict[str, set[Subscriber]] = {}
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

    def publish(self, board: RollingBoard) -> None:
        """Serialize and frame once, then offer the same bytes to every legacy client."""
        self._message = message = _framed(slots_update(board))
        self.boards += 1
        for client in self.legacy:
            self._offer(client, None, message)

    def publish_day(self, board: DayBoard) -> None:
        """The same for a resource's date, offered to its followers only (if any)."""
        key = (board.resource.id, board.date.isoformat())
        followers = self.followers.get(key)
        if not followers:
            return
        self._latest[key] = message = _framed(day_update(board))
        self.boards += 1
        for client in followers:
            self._offer(client, key, message)

    def subscribe(self, client: Subscriber, board: DayBoard) -> None:
        """Follow ``board``'s key from now on (and no longer the rolling board); send it."""
        key = (board.resource.id, board.date.isoformat())
        self.legacy.discard(client)
        client.keys.add(key)
        followers = self.followers.setdefault(key, set())
        followers.add(client)
        message = self._latest.get(key) if len(followers) > 1 else None
        if message is None:
            self._latest[key] = message = _framed(day_update(board))
        self._offer(client, key, message)

    def unsubscribe(self, client: Subscriber, key: DayKey) -> None:
        client.keys.discard(key)
        client.pending.pop(key, None)
        followers = self.followers.get(key)
        if followers is not None:
            followers.discard(client)
            if not followers:
                del self.followers[key]
                self._latest.pop(key, None)

    def join(self, ws: web.WebSocketResponse, request: web.Request) -> Subscriber:
        """Register a prepared socket and send it the current rolling board."""
        client = Subscriber(ws, request)
        self.clients.add(client)
        self.legacy.add(client)
        self._offer(client, None, self._message)
        return client

    def leave(self, client: Subscriber) -> None:
        self.clients.discard(client)
        self.legacy.discard(client)
        for key in list(client.keys):
            self.unsubscribe(client, key)
        self.sign_in(client, None)
        if client.writer is not None:
            client.writer.cancel()

    def sign_in(self, client: Subscriber, session: str | None, srn: str | None = None) -> None:
        """Note the session (a token's digest) ``client`` now acts under, and its student;
        None: none."""
        for held, key in ((self._signed_in, client.session), (self._students, client.srn)):
            holders = held.get(key, set()) if key is not None else set()
            holders.discard(client)
            if key is not None and not holders:
                held.pop(key, None)
        client.session, client.srn = session, srn if session is not None else None
        if session is not None:
            self._signed_in.setdefault(session, set()).add(client)
        if client.srn is not None:
            self._students.setdefault(client.srn, set()).add(client)

    def connected(self, srn: str) -> bool:
        """Whether ``srn`` has a socket signed in here."""
        return srn in self._students

    def tell(self, srn: str, kind: str, text: str) -> None:
        """Send ``text`` to every socket ``srn`` signed in with; a slow one keeps only
        the newest message of each ``kind``."""
        message = _framed(text)
        for client in self._students.get(srn, ()):
            self._offer(client, ("student", kind), message)

    def end_sessions(self, sessions: list[str]) -> None:
        """Tell every socket signed in with one of ``sessions`` that it ended, and close
        it with 1008; never awaits here (a revocation must not wait on a socket)."""
        for session in sessions:
            for client in self._signed_in.pop(session, set()):
                self.sign_in(client, None)
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
        """``get_slots``: the current rolling board again, to this client only."""
        self._offer(client, None, self._message)

    def _offer(self, client: Subscriber, channel: Channel, message: Message) -> None:
        transport = client.transport
        if transport is None or transport.is_closing():
            return
        if client.writer is None and client.raw and not client.protocol.writing_paused:
            transport.write(message[1])
            self.sent += 1
            return
        if channel in client.pending:
            self.conflated += 1
        client.pending[channel] = message
        if client.writer is None:
            client.writer = asyncio.create_task(self._write_behind(client))

    async def _write_behind(self, client: Subscriber) -> None:
        """Wait for a blocked transport to drain, then send the newest pending board."""
        loop = asyncio.get_running_loop()
        try:
            while client.pending:
                deadline = loop.time() + self._send_timeout
                delay = 0.001
                while client.protocol.writing_paused:
                    if loop.time() >= deadline:
                        self._cut(client)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
                channel = next(iter(client.pending))
                text, frame = client.pending.pop(channel)
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
        self.legacy.discard(client)
        for key in list(client.keys):
            self.unsubscribe(client, key)
        log.warning("websocket client too slow: cut off")
        transport = client.transport
        client.pending = {}
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
