"""HTTP transport for booking: parse, call the services, render. No rules live here."""

from __future__ import annotations

from aiohttp import web

from rero import schemas
from rero.calendar import clock_text
from rero.identity import Token
from rero.keys import IDENTITY, SERVICE
from rero.request_info import credentials, identify, parse, require_bearer


async def get_slots(request: web.Request) -> web.Response:
    """Served from the board's cached JSON: no database, no serialization per request."""
    board = await request.app[SERVICE].board()
    return web.Response(body=board.body, content_type="application/json", charset="utf-8")


async def login(request: web.Request) -> web.Response:
    data = await parse(request, schemas.LOGIN)
    session = await request.app[IDENTITY].login(credentials(request, data))
    return web.json_response(
        {
            "success": True,
            "message": "Login successful",
            "user": session.user.to_dict(),
            "token": session.token,
            "expires_at": session.expires_at,
        }
    )


async def logout(request: web.Request) -> web.Response:
    await request.app[IDENTITY].logout(require_bearer(request))
    return web.Response(status=204)


async def logout_all(request: web.Request) -> web.Response:
    who, _ = await identify(request, None, schemas.LOGIN)
    ended = await request.app[IDENTITY].logout_all(who)
    return web.json_response({"success": True, "sessions_ended": ended})


async def book_slot(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.SLOT_ONLY, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].book(who, slot_id)
    return web.json_response(
        {"success": True, "message": f"Slot {slot_id} booked successfully", "slot_id": slot_id}
    )


async def cancel_slot(request: web.Request) -> web.Response:
    who, data = await identify(request, schemas.SLOT_ONLY, schemas.SLOT)
    slot_id = data["slot_id"]
    await request.app[SERVICE].cancel(who, slot_id)
    return web.json_response(
        {
            "success": True,
            "message": f"Slot {slot_id} booking cancelled successfully",
            "slot_id": slot_id,
        }
    )


async def my_bookings(request: web.Request) -> web.Response:
    who, _ = await identify(request, None, schemas.LOGIN)
    step = request.app[SERVICE].resource.slot_minutes
    bookings = [
        {
            "id": slot_id,
            "start_time": clock_text(slot_id * step),
            "end_time": clock_text((slot_id + 1) * step),
            "booked_at": row.created_at,
        }
        for slot_id, row in await request.app[SERVICE].bookings(who)
    ]
    return web.json_response(
        {"success": True, "bookings": bookings, "total_bookings": len(bookings)}
    )


async def admin_reset(request: web.Request) -> web.Response:
    who, _ = await identify(request, schemas.RESET, schemas.LOGIN)
    if not isinstance(who, Token):
        await parse(request, schemas.RESET)
    released = await request.app[SERVICE].reset(who)
    return web.json_response(
        {"success": True, "message": f"Released {released} bookings", "released": released}
    )
