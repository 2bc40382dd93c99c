"""HTTP transport for the hour: holds, the waitlist, early release and suspensions. Parse,
call the service, render; no rules live here."""

from __future__ import annotations

from aiohttp import web

from rero import hour_schemas as schemas
from rero.keys import CALENDAR, HOUR
from rero.request_info import identify, number, query, require_bearer, srn


async def create_hold(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.TARGET, schemas.TARGET_LOGIN)
    hour = request.app[HOUR]
    held = await hour.hold(who, data["resource"], data["date"], data["slot_id"])
    return web.json_response({"hold": hour.hold_json(held)}, status=201)


async def confirm_hold(request: web.Request) -> web.Response:
    made = await request.app[HOUR].confirm(require_bearer(request), number(request, "hold_id"))
    body = {"success": True, "booking": request.app[CALENDAR].as_json(made)}
    return web.json_response(body, status=201)


async def drop_hold(request: web.Request) -> web.Response:
    hour = request.app[HOUR]
    gone = await hour.drop(require_bearer(request), number(request, "hold_id"))
    return web.json_response({"hold": hour.hold_json(gone)})


async def release(request: web.Request) -> web.Response:
    done = await request.app[HOUR].release(require_bearer(request), number(request, "booking_id"))
    return web.json_response({"success": True, "booking": request.app[CALENDAR].as_json(done)})


async def join_waitlist(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.TARGET, schemas.TARGET_LOGIN)
    hour = request.app[HOUR]
    entry = await hour.join(who, data["resource"], data["date"], data["slot_id"])
    return web.json_response({"entry": hour.entry_json(entry)}, status=201)


async def my_waitlist(request: web.Request) -> web.Response:
    hour = request.app[HOUR]
    entries = await hour.mine(require_bearer(request))
    body = {"waitlist": [hour.entry_json(e) for e in entries]}
    return web.json_response(body)


async def leave_waitlist(request: web.Request) -> web.Response:
    await request.app[HOUR].leave(require_bearer(request), number(request, "entry_id"))
    return web.Response(status=204)


async def suspension(request: web.Request) -> web.Response:
    srn = query(request, schemas.SRN)["srn"]
    token = require_bearer(request)
    hour = request.app[HOUR]
    until = await hour.suspension(token, srn)
    who = srn or (await hour.whoami(token))
    return web.json_response({"srn": who, "suspended_until": until})


async def lift_suspension(request: web.Request) -> web.Response:
    student = srn(request)
    await request.app[HOUR].lift_suspension(require_bearer(request), student)
    return web.json_response({"srn": student, "suspended_until": None})
