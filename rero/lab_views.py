"""HTTP and WebSocket transport of the lab API, for the lab's own software (a key, no
browser): the session under way, out-of-service reports, a student's start, and the live
events. Parse, call :class:`rero.labs.LabService`, render."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from rero import lab_schemas as schemas
from rero.calendar import Resource
from rero.keys import LAB_EVENTS, LABS, SETTINGS
from rero.lab_events import SHUTDOWN, LabEvents, Subscription
from rero.labs import LabKeyRequired
from rero.middlewares import error_response
from rero.request_info import parse, query
from rero.setting_checks import LabConfig

log: Final = logging.getLogger(__name__)

#: Labs send nothing but control frames; anything larger is not a lab.
MAX_MESSAGE: Final = 4096
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="rero-lab"'}


def lab_key(request: web.Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, if one is sent."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _authorize(request: web.Request) -> tuple[Resource, LabConfig]:
    return request.app[LABS].authorize(request.match_info["resource"], lab_key(request))


def challenged(handler: Handler) -> Handler:
    """A missing key is 401 with ``WWW-Authenticate``, which the error middleware does
    not add."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LabKeyRequired as e:
            return error_response(e.status, e.detail, CHALLENGE)

    return wrapped


@challenged
async def current(request: web.Request) -> web.StreamResponse:
    resource, _ = _authorize(request)
    session = await request.app[LABS].current(resource)
    if session is None:
        return web.Response(status=204)
    return web.json_response(session)


@challenged
async def status(request: web.Request) -> web.StreamResponse:
    resource, _ = _authorize(request)
    data = await parse(request, schemas.STATUS)
    body = await request.app[LABS].set_available(resource, data["available"], data["reason"])
    return web.json_response(body)


@challenged
async def started(request: web.Request) -> web.StreamResponse:
    resource, lab = _authorize(request)
    booking_id = int(request.match_info["booking_id"])
    if booking_id > 2**62:  # too large to be an id
        raise web.HTTPNotFound()
    body = await request.app[LABS].started(resource, lab, booking_id)
    return web.json_response(body)


@challenged
async def events(request: web.Request) -> web.StreamResponse:
    """``/labs/{resource}/events``: every event of the resource, as stored, live; the key
    is checked before the upgrade, and ``?after=`` replays what followed that event."""
    resource, _ = _authorize(request)
    after = query(request, schemas.EVENTS)["after"]
    follower = request.app[LAB_EVENTS]
    sub = await follower.subscribe(resource.id, None if after is None else str(after))
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_seconds or None, max_msg_size=MAX_MESSAGE
    )
    pump: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        pump = asyncio.create_task(_pump(ws, follower, sub, settings.ws_send_timeout_seconds))
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break  # the lab says nothing else; it only listens
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        follower.leave(sub)
        if pump is not None:
            pump.cancel()
            await asyncio.wait([pump])
    return ws


async def _pump(
    ws: web.WebSocketResponse, follower: LabEvents, sub: Subscription, timeout: float
) -> None:
    """Catch up, then send each event as it comes; close when the subscription ends."""
    try:
        async for page in follower.backlog(sub):
            for text in page:
                await asyncio.wait_for(ws.send_str(text), timeout)
        while (live := await sub.next()) is not None:
            await asyncio.wait_for(ws.send_str(live), timeout)
        if sub.ended == SHUTDOWN:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutdown")
        else:
            await ws.close(
                code=WSCloseCode.POLICY_VIOLATION,
                message=b"Too far behind: reconnect with after=<the last event id>",
            )
    except (ConnectionError, asyncio.TimeoutError):
        log.warning("lab socket too slow: dropped", extra={"resource": sub.resource})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=WSCloseCode.POLICY_VIOLATION), 1.0)
