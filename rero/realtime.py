"""WebSocket transport: the ``/slot-booking`` socket, its messages and its replies.

A sibling of the HTTP views: it parses, calls the services, renders. Boards reach
the socket through the hub, which the handler joins and leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from marshmallow import ValidationError

from rero import calendar_schemas, schemas
from rero.auth import User
from rero.board import DayBoard
from rero.bookings import BookingService
from rero.errors import (
    AuthUnavailable,
    InvalidCredentials,
    InvalidSession,
    RequestInvalid,
    ReroError,
)
from rero.identity import Credentials, Identity, IdentityService, Token
from rero.keys import CALENDAR, HUB, IDENTITY, SERVICE, SETTINGS
from rero.request_info import client_address
from rero.slots import SlotService

log: Final = logging.getLogger(__name__)

MAX_MESSAGE: Final = 64 * 1024

# ---- messages -------------------------------------------------------------------------------

Reply = dict[str, Any]


#: The reply was the board the hub already sent: nothing more to send.
SENT: Final[Reply] = {}


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
class Peer:
    """What the client at the other end of one socket has told the server about itself.

    A socket signed in acts under its session token, checked again on every request,
    so a revoked or expired session stops it at once; ``bind`` tells the hub which
    session that is, so a revocation reaches the socket.
    """

    address: str
    bind: Callable[[str | None, str | None], None] = lambda _, __: None
    token: Token | None = None

    def sign_in(self, token: Token | None, srn: str | None = None) -> None:
        self.token = token
        self.bind(None if token is None else token.digest, srn)


def _invalid(e: ValidationError) -> Reply:
    return error(_first_problem(e.messages_dict))


def _first_problem(errors: Any) -> str:
    name, messages = next(iter(errors.items()))
    return f"Invalid {name}: {' '.join(map(str, messages))}"


def _identity(peer: Peer, msg: dict[str, Any], what: str) -> tuple[Identity, int] | Reply:
    """A token, the message's credentials, or the connection's session; and the slot id."""
    missing = error(f"Missing slot_id, username, or password in {what} request")
    try:
        if "token" in msg:
            data = schemas.SLOT_ONLY.load(msg)
            return Token(schemas.TOKEN.load(msg)["token"]), data["slot_id"]
        if peer.token is not None and "username" not in msg and "password" not in msg:
            return peer.token, schemas.SLOT_ONLY.load(msg)["slot_id"]
        data = schemas.SLOT.load(msg)
    except ValidationError as e:
        if any("Missing data for required field." in m for m in e.messages_dict.values()):
            return missing
        return _invalid(e)
    return Credentials(data["username"], data["password"], peer.address), data["slot_id"]


async def _slot_request(
    peer: Peer,
    msg: dict[str, Any],
    response_type: str,
    what: str,
    act: Callable[[Identity, int], Awaitable[User]],
    done: str,
) -> Reply:
    parsed = _identity(peer, msg, what)
    if isinstance(parsed, dict):
        return parsed
    who, slot_id = parsed
    reply: Reply = {"type": response_type, "slot_id": slot_id}
    try:
        await act(who, slot_id)
    except ReroError as e:
        return {**reply, "success": False, "message": _failure_sentence(e)}
    return {**reply, "success": True, "message": done.format(slot_id)}


async def _authenticate(identity: IdentityService, peer: Peer, msg: dict[str, Any]) -> Reply:
    """Sign the connection in once, by token or by credentials (which open a session)."""
    reply: Reply = {"type": "auth_response"}
    try:
        if "token" in msg:
            token = Token(schemas.TOKEN.load(msg)["token"])
            user = await identity.authenticate(token)
            peer.sign_in(token, user.srn)
            return {**reply, "success": True, "user": user.to_dict()}
        data = schemas.LOGIN.load(msg)
        session = await identity.login(
            Credentials(data["username"], data["password"], peer.address)
        )
    except ValidationError as e:
        if any("Missing data for required field." in m for m in e.messages_dict.values()):
            return error("Missing token, or username and password, in authenticate request")
        return _invalid(e)
    except ReroError as e:
        return {**reply, "success": False, "message": _failure_sentence(e)}
    peer.sign_in(Token(session.token), session.user.srn)
    return {
        **reply,
        "success": True,
        "user": session.user.to_dict(),
        "token": session.token,
        "expires_at": session.expires_at,
    }


async def _logout(identity: IdentityService, peer: Peer) -> Reply:
    """Revoke the session the socket signed in with (this socket is not told it ended)."""
    token = peer.token
    peer.sign_in(None)
    if token is not None:
        try:
            await identity.logout(token)
        except InvalidSession:
            pass  # already ended: the socket is signed out all the same
        except ReroError as e:
            peer.sign_in(token)
            return {"type": "logout_response", "success": False, "message": e.detail}
    return {"type": "logout_response", "success": True}


@dataclass
class Boards:
    """The calendar's side of one socket: the boards it follows, through the hub."""

    calendar: BookingService
    follow: Callable[[DayBoard], None]
    unfollow: Callable[[tuple[str, str]], None]
    following: Callable[[], set[tuple[str, str]]]
    limit: int

    def key(self, msg: dict[str, Any]) -> tuple[str, str] | Reply:
        """The board a message names: a resource, and a date (default: its today)."""
        try:
            data = calendar_schemas.BOARD_KEY.load(msg)
            resource = self.calendar.resource(data["resource"])
        except ValidationError as e:
            return _invalid(e)
        except ReroError as e:
            return error(e.detail)
        return resource.id, (data["date"] or resource.today(self.calendar.now())).isoformat()

    async def subscribe(self, msg: dict[str, Any]) -> Reply:
        """Follow a resource's date: its board now (sent by the hub), then every change.
        Following a board again re-sends it and counts once."""
        key = self.key(msg)
        if isinstance(key, dict):
            return key
        followed = self.following()
        if key not in followed and len(followed) >= self.limit:
            return error(f"At most {self.limit} subscriptions per connection")
        self.follow(await self.calendar.board(key[0], date.fromisoformat(key[1])))
        return SENT

    def unsubscribe(self, msg: dict[str, Any]) -> Reply:
        key = self.key(msg)
        if isinstance(key, dict):
            return key
        self.unfollow(key)
        return {"type": "unsubscribed", "resource": key[0], "date": key[1]}

    async def act(self, peer: Peer, msg: dict[str, Any], response_type: str) -> Reply:
        """``book_slot`` / ``cancel_slot`` naming a resource and a date."""
        what = "booking" if response_type == "booking_response" else "cancellation"
        parsed = _identity(peer, msg, what)
        if isinstance(parsed, dict):
            return parsed
        who, slot_id = parsed
        reply: Reply = {"type": response_type, "slot_id": slot_id}
        try:
            target = calendar_schemas.TARGET.load(msg)
            where = (target["resource"], target["date"], slot_id)
            reply.update(resource=where[0], date=where[1].isoformat())
            if what == "booking":
                row = await self.calendar.book(who, *where)
                done = f"Slot {slot_id} booked successfully"
            else:
                row = await self.calendar.cancel_at(who, *where)
                done = f"Slot {slot_id} booking cancelled successfully"
        except ValidationError as e:
            return _invalid(e)
        except RequestInvalid as e:
            return {**reply, "success": False, "message": _first_problem(e.errors)}
        except ReroError as e:
            return {**reply, "success": False, "message": _failure_sentence(e)}
        booking = self.calendar.as_json(row)
        return {**reply, "success": True, "message": done, "booking": booking}


async def answer(
    slots: SlotService,
    identity: IdentityService,
    peer: Peer,
    text: str,
    boards: Boards | None = None,
) -> Reply | None:
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
    if boards is not None:
        if kind == "subscribe":
            return await boards.subscribe(msg)
        if kind == "unsubscribe":
            return boards.unsubscribe(msg)
        if kind in ("book_slot", "cancel_slot") and ("resource" in msg or "date" in msg):
            kinds = {"book_slot": "booking_response", "cancel_slot": "cancellation_response"}
            return await boards.act(peer, msg, kinds[kind])
    if kind == "book_slot":
        return await _slot_request(
            peer, msg, "booking_response", "booking", slots.book,
            "Slot {} booked successfully",
        )  # fmt: skip
    if kind == "cancel_slot":
        return await _slot_request(
            peer, msg, "cancellation_response", "cancellation", slots.cancel,
            "Slot {} booking cancelled successfully",
        )  # fmt: skip
    if kind == "authenticate":
        return await _authenticate(identity, peer, msg)
    if kind == "logout":
        return await _logout(identity, peer)
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
    if hub.connections >= settings.ws_max_connections:
        raise web.HTTPServiceUnavailable(reason="Too many connections, try again later")
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_seconds or None,
        max_msg_size=MAX_MESSAGE,
        compress=settings.ws_compression,
    )
    await ws.prepare(request)
    subscriber = hub.join(ws, request)
    slots, identity = request.app[SERVICE], request.app[IDENTITY]
    peer = Peer(
        client_address(request, settings.trusted_proxies),
        lambda session, srn: hub.sign_in(subscriber, session, srn),
    )
    boards = Boards(
        request.app[CALENDAR],
        lambda board: hub.subscribe(subscriber, board),
        lambda key: hub.unsubscribe(subscriber, key),
        lambda: subscriber.keys,
        settings.ws_max_subscriptions,
    )
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                reply = await _safe_answer(slots, identity, peer, msg.data, boards)
                if reply is None:
                    hub.resend(subscriber)
                elif reply is not SENT:
                    await ws.send_str(json.dumps(reply))
            elif msg.type == WSMsgType.BINARY:
                await ws.send_str(
                    json.dumps(error("Binary frames are not supported: send JSON text"))
                )
    except (ConnectionError, asyncio.TimeoutError):
        pass  # the peer went away mid-reply; nothing to tell it
    finally:
        hub.leave(subscriber)
    return ws


async def _safe_answer(
    slots: SlotService, identity: IdentityService, peer: Peer, text: str, boards: Boards
) -> Reply | None:
    """Nothing a client sends can make the handler raise."""
    try:
        return await answer(slots, identity, peer, text, boards)
    except Exception:
        log.exception("websocket message failed")
        return error("Internal error")
